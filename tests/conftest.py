# pytester runs the conformance suite in-process against the mutants (tests/test_mutants.py, tests/test_plugin.py).
pytest_plugins = ["pytester"]
