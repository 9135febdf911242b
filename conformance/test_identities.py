"""Identities that hold exactly in real arithmetic, checked on the backend's own results."""
import pytest

from ffnspec.conformance import checks


# The residual of the backend's results may not exceed the sum of the terms' own allowances
# (triangle inequality); a larger residual means one op disagrees with another.  §3.10.
@pytest.mark.ffnspec(kind="identity")
def test_identity(case):
    with case.supervised():
        checks.identity(case.clause, case.target, case.record, case.region())
        case.explore(checks.identity)
