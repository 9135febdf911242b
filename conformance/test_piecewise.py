"""Piecewise-linear hidden units: exact values and exact (sub)gradients, kinks by declared convention."""
import pytest

from ffnspec.conformance import conventions, piecewise


# max{0,z}, alpha_hat z (one rounding), |z| and clamp are exactly representable or rounded once,
# so the correctly rounded value is required bitwise, at and beside every kink.  §6.3.1, IEEE 754 §4.3.
@pytest.mark.ffnspec(kind="piecewise")
def test_piecewise(case):
    with case.supervised():
        fmt = case.target.fmt
        used = piecewise.value(case.clause, case.target, case.record, piecewise.inputs(fmt, case.clause, case.region()))
        case.explore(piecewise.value)
        conventions.finish(case.record, case.target, used)


# The derivative is 0, +-1 or alpha_hat away from kinks and the declared convention at them, in
# reverse and forward mode (001: "defined left and right derivatives"; 004).  §6.3, §6.5.
@pytest.mark.ffnspec(kind="subgradient")
def test_subgradient(case):
    with case.supervised():
        fmt = case.target.fmt
        z = piecewise.inputs(fmt, case.clause, case.region(), nan=False)
        used = piecewise.subgradient(case.clause, case.target, case.record, z, mode=case.mode)
        case.explore(piecewise.subgradient, mode=case.mode)
        conventions.finish(case.record, case.target, used)
