"""Ground rules for every op: dtype, shape, no mutation, length invariance."""
import pytest

from ffnspec.conformance.checks import structural


# Every op keeps the input dtype and shape and leaves its inputs untouched (the harness
# supervises each call, this check makes the rule visible per op), and gives bitwise the same
# results at every length and for 0-d inputs.  [num.dtype] [num.shape] [num.no_mutation]
@pytest.mark.ffnspec(kind="invariance")
def test_invariance(case):
    with case.supervised():
        structural.run(case.clause, case.target, case.record, case.region())
