"""Variants of one op agree bitwise: in-place vs out-of-place, scalar vs array."""
import pytest

from ffnspec.conformance import variants


# An in-place variant or a 0-d input is the same function: values and both AD modes' derivatives
# must be bitwise those of the out-of-place op on arrays, kinks included.  §6.5.1, §6.5.6.
@pytest.mark.ffnspec(kind="variant")
def test_variant(case):
    with case.supervised():
        variants.run(case.clause, case.target, case.record, case.region())
