"""Structured hidden units and programs: PReLU, maxout, radial basis units, the low-rank
projection and depth folding; values and gradients against the exact reference."""
import pytest

from ffnspec.conformance import composite, conventions


# Each clause names its check; values are exact (PReLU, maxout, folding, small-integer linearity)
# or within a mixed bound whose k grows with the summed terms (RBF, low rank).  §6.3.1-6.3.3, §6.4.1.
@pytest.mark.ffnspec(kind="composite")
def test_composite(case):
    with case.supervised():
        used = composite.run(case.clause, case.target, case.record, case.region())
        if case.clause.check not in composite.FIXED:
            case.explore(composite.run)
        conventions.finish(case.record, case.target, used)


# Gradients of structured units through each AD mode: the shared PReLU slope sums its uses
# (§6.5.6), maxout routes to the arg-max with declared ties, RBF gradients in x, W, sigma.  §6.5.
@pytest.mark.ffnspec(kind="gradient")
def test_gradient(case):
    with case.supervised():
        used = composite.run(case.clause, case.target, case.record, case.region(), mode=case.mode)
        case.explore(composite.run, mode=case.mode)
        conventions.finish(case.record, case.target, used)
