"""Exact properties: ranges, monotonicity, bounds, saturation."""
import pytest

from ffnspec.conformance import checks


# Properties provable from monotone rounding hold exactly for any faithful implementation,
# so the check has no tolerance.  §3.10, §6.2.2.2.
@pytest.mark.ffnspec(kind="property")
def test_property(case):
    with case.supervised():
        checks.property_(case.clause, case.target, case.record, case.region())
        case.explore(checks.property_)
