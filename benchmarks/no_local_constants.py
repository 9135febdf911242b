"""A pytest plugin for comparing two versions' reports record by record:

    PYTHONPATH=benchmarks python -m pytest --pyargs ffnspec.conformance -p no_local_constants \
        --ffnspec-profile=ci --ffnspec-report=DIR ...

Hypothesis (>= 6.131) also draws literal constants found in the source of the project modules
it sees loaded (an editable install counts).  Any edit anywhere in ffnspec that adds or removes
a number then changes some derandomised examples, and with them examples, worst inputs and
max errors, although no value was computed differently.  This plugin empties that pool, so two
versions draw the same examples and their reports differ only where their results do.
"""


def pytest_configure(config):
    from hypothesis.internal.conjecture import providers
    empty = providers.Constants()
    providers._get_local_constants = lambda: empty
