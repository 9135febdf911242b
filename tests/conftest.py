# pytester runs the conformance suite in-process against the mutants (tests/test_mutants.py, tests/test_plugin.py).
import pytest

pytest_plugins = ["pytester"]


def pytest_addoption(parser):
    parser.addoption("--thorough", action="store_true",
                     help="also run the exhaustive checks marked 'thorough' (minutes: every 16-bit input)")


def pytest_configure(config):
    config.addinivalue_line("markers", "thorough: exhaustive and slow; runs only with --thorough")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--thorough"):
        return
    skip = pytest.mark.skip(reason="exhaustive: run with --thorough")
    for item in items:
        if "thorough" in item.keywords:
            item.add_marker(skip)
