"""Values against the exact reference: elementwise ops in ULPs, piecewise-linear units
bitwise, structured units and ops over rows within their clauses' bounds; special values."""
import pytest

from ffnspec.conformance.checks import accuracy, composites, conventions, piecewise, special_values
from ffnspec.conformance.machinery.session import explore_groups, groups


# Values must stay within the clause's ULP bound over the whole finite grid (exhaustive in
# 16-bit formats, threshold neighbourhoods otherwise); graded beyond.  Muller RR-5504.
@pytest.mark.ffnspec(kind="accuracy")
def test_accuracy(case):
    case.run(accuracy.elementwise)


# Special inputs (+-0, +-inf, NaN) have exact answers, signed zeros included.  IEEE 754-2019 §9.2.
@pytest.mark.ffnspec(kind="accuracy")
def test_special_values(case):
    if not case.clause.special:
        pytest.skip("clause has no special-value table")
    with case.supervised():
        special_values.elementwise(case.clause, case.target, case.record)


# max{0,z}, alpha_hat z (one rounding), |z| and clamp are exactly representable or rounded once,
# so the correctly rounded value is required bitwise, at and beside every kink.  §6.3.1, IEEE 754 §4.3.
@pytest.mark.ffnspec(kind="piecewise")
def test_piecewise(case):
    with case.supervised():
        fmt = case.target.fmt
        used = piecewise.value(case.clause, case.target, case.record, piecewise.inputs(fmt, case.clause, case.region()))
        case.explore(piecewise.value)
        conventions.finish(case.record, case.target, used)


# Each clause names its check; values are exact (PReLU, maxout, folding, small-integer linearity)
# or within a mixed bound whose k grows with the summed terms (RBF, low rank).  §6.3.1-6.3.3, §6.4.1.
@pytest.mark.ffnspec(kind="composite")
def test_composite(case):
    with case.supervised():
        used = composites.run(case.clause, case.target, case.record, case.region())
        if composites.draws(case.clause):
            case.explore(composites.run)
        if special_values.has_generated(case.clause):  # prelu(z, alpha) at the specials of both
            special_values.generated(case.clause, case.target, case.record)
        conventions.finish(case.record, case.target, used)


# Every output component within the mixed bound k (u (|y| + S) + eta) + u_acc A, S and A from
# the reference, k derived per algorithm class; graded in ULPs.  Blanchard, Higham & Higham,
# IMA J. Numer. Anal. 2020 (doi:10.1093/imanum/draa038); Higham 2002 §4.2.
@pytest.mark.ffnspec(kind="reduction")
def test_reduction_value(case):
    with case.supervised():
        for group in groups(case):
            accuracy.reduction(case.clause, case.target, case.record, group)
        explore_groups(case, accuracy.reduction)


# Masked, infinite and NaN entries and the largest finite values have exact answers (e.g.
# logsumexp of one +inf entry is +inf, not inf - inf = NaN).  IEEE 754-2019 §9.2; BHH 2020 §2.
# ... and at every combination of +-0, +-inf, NaN over all arguments and row positions, the
# joint limit of the exact function (NaN where none exists: inf - inf, 0 * inf).  IEEE 754-2019 §9.2.
@pytest.mark.ffnspec(kind="reduction")
def test_reduction_special_values(case):
    if not case.clause.special and not special_values.has_generated(case.clause):
        pytest.skip("clause has no special-value table")
    with case.supervised():
        if case.clause.special:
            special_values.reduction(case.clause, case.target, case.record)
        if special_values.has_generated(case.clause):
            special_values.generated(case.clause, case.target, case.record)
