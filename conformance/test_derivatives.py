"""Exact derivatives through the backend's own reverse (vjp) and forward (jvp) modes."""
import pytest

from ffnspec.conformance import checks


# Back-propagated derivatives must meet the mixed bound k u (|f'| + S) + eta in every dtype,
# not a finite-difference approximation.  §6.5, Higham §2.1.
@pytest.mark.ffnspec(kind="derivative")
def test_derivative(case):
    with case.supervised():
        checks.derivative(case.clause, case.target, case.record, case.region(), mode=case.mode)
        case.explore(checks.derivative, mode=case.mode)


# Derivatives at +-inf, 0 and NaN are exact limits; e.g. 0 * inf must not leak a NaN.  §6.5.
@pytest.mark.ffnspec(kind="derivative")
def test_derivative_special_values(case):
    if not case.clause.special:
        pytest.skip("clause has no special-value table")
    with case.supervised():
        checks.special(case.clause, case.target, case.record, mode=case.mode)
