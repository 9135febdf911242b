"""Family-agnostic machinery: plugin, session, harness, records, measures, reproducers, registry,
declared deviations and report.  Imports nothing: the pytest plugin (``machinery.plugin``)
loads in every pytest run of the environment."""
