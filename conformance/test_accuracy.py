"""Elementwise values against the exact reference, in ULPs of the exact value."""
import pytest

from ffnspec.conformance import checks


# Values must stay within the clause's ULP bound over the whole finite grid (exhaustive in
# 16-bit formats, threshold neighbourhoods otherwise); graded beyond.  Muller RR-5504.
@pytest.mark.ffnspec(kind="accuracy")
def test_accuracy(case):
    with case.supervised():
        checks.accuracy(case.clause, case.target, case.record, case.region())
        case.explore(checks.accuracy)


# Special inputs (+-0, +-inf, NaN) have exact answers, signed zeros included.  IEEE 754-2019 §9.2.
@pytest.mark.ffnspec(kind="accuracy")
def test_special_values(case):
    if not case.clause.special:
        pytest.skip("clause has no special-value table")
    with case.supervised():
        checks.special(case.clause, case.target, case.record)
