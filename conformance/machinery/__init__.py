"""Family-agnostic machinery: plugin, session, harness, records, report and declared
deviations.  Imports nothing: the pytest plugin (``machinery.plugin``) loads in every
pytest run of the environment."""
