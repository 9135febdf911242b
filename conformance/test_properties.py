"""Exact properties and relations: ranges, monotonicity, bounds, identities between ops,
declared kink/tie conventions and bitwise agreement of an op's variants."""
import pytest

from ffnspec.conformance.checks import conventions, identities, properties, variants
from ffnspec.conformance.machinery.session import explore_groups, groups


# Properties provable from monotone rounding hold exactly for any faithful implementation,
# so the check has no tolerance.  §3.10, §6.2.2.2.
@pytest.mark.ffnspec(kind="property")
def test_property(case):
    case.run(properties.elementwise)


# The residual of the backend's results may not exceed the sum of the terms' own allowances
# (triangle inequality); a larger residual means one op disagrees with another.  §3.10.
@pytest.mark.ffnspec(kind="identity")
def test_identity(case):
    case.run(identities.check)


# Exact properties and relations between ops (ranges, sums, shift invariance, masks, reductions,
# NLL = CE, KL = H(p,q) - H(p), asymptotics, best constants, PSD); a declared convention other
# than the preferred one is reported as a deviation, never a silent pass.  §6.2; ARCHITECTURE.md.
@pytest.mark.ffnspec(kind="reduction_property")
def test_reduction_property(case):
    with case.supervised():
        deviation = None
        for group in groups(case):
            out = properties.reduction(case.clause, case.target, case.record, group)
            deviation = deviation or (out.deviation if out is not None else None)
        if not case.clause.extra.get("deterministic_only"):
            explore_groups(case, properties.reduction)
        if deviation:
            case.record.deviation = deviation
            pytest.xfail(f"declared convention: {deviation}")


# Every row of the [hid.conventions] table is declared with an allowed value and matches the
# backend's behaviour at its point (001 §6.3: units with left and right derivatives; 004).
@pytest.mark.ffnspec(kind="convention")
def test_conventions(case):
    with case.supervised():
        conventions.check(case.clause, case.target, case.record)


# An in-place variant or a 0-d input is the same function: values and both AD modes' derivatives
# must be bitwise those of the out-of-place op on arrays, kinks included.  §6.5.1, §6.5.6.
@pytest.mark.ffnspec(kind="variant")
def test_variant(case):
    with case.supervised():
        variants.run(case.clause, case.target, case.record, case.region())
