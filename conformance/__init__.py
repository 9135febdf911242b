"""ffnspec.conformance: the pytest plugin, inputs and checks that run every clause against a backend.

Layout (ARCHITECTURE.md "One family, one column"): a family's checks live in the module named
for it, beside ``reference/<family>.py`` and ``spec/NN_<family>.toml``: ``act.py``, ``hid.py``,
``out.py`` hold only what is specific to their family (predicates, composite programs, input
constructions), each registered by name so that a clause's ``check``/``predicate`` resolves to
it.  Below them, family-agnostic: ``checks/`` holds one generic check per clause kind
(accuracy, derivatives, special values, identities, properties, structural, piecewise,
composites, conventions, variants); ``inputs/`` the exactly representable inputs, ``scalars``
(regions, thresholds, kinks, hypothesis strategies) and ``rows`` (recipes of rows and batches);
``machinery/`` the pytest plugin, the session and its cases, the supervised harness (``Target``),
records, error measures, reproducers, the registry, declared deviations (``xfails``) and the
report with its comparison (``python -m ffnspec.conformance.machinery.compare A B``).  The
pytest entry modules ``test_values``, ``test_derivatives``, ``test_properties`` and
``test_invariants`` are thin: each test loops over the clauses of one kind.  This package and
``machinery/__init__.py`` import nothing, so the plugin stays light in unrelated pytest runs.
"""
