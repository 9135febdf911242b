"""The out family's machinery: output-shape rules, integer labels, the accumulation grade and a
declared convention reported as a deviation (the checks themselves are proven by
tests/mutants_out.py through tests/test_mutants.py)."""
from __future__ import annotations

import numpy as np
import pytest

from ffnspec import spec
from ffnspec.adapters import load_backend
from ffnspec.conformance.checks import properties
from ffnspec.conformance.inputs import rows
from ffnspec.conformance.machinery.harness import AdapterFault, Target, reduction_shape
from ffnspec.reference.floatformat import get_format, is_representable
from tests._inner import run_suite


def test_reduction_shapes():
    # Rows over the last axis, one value per row, whole-array reductions, B B^T.  [num.shape]
    assert reduction_shape("softmax", [(4, 3)]) == (4, 3)
    assert reduction_shape("logsumexp", [(4, 3)]) == (4,)
    assert reduction_shape("cross_entropy", [(4, 3), (4,)]) == (4,)
    assert reduction_shape("mse", [(7,), (7,)]) == ()
    assert reduction_shape("cov_from_factor", [(2, 3, 3)]) == (2, 3, 3)
    assert reduction_shape("bce", [(5,), (5,)]) == (5,)


def test_labels_cross_as_integers_and_shapes_are_supervised():
    # Class labels beyond bfloat16's exact integers (256) must reach the op unrounded.  [num.dtype]
    b = load_backend("numpy")
    t = Target(b, "numpy", "bfloat16", "cpu")
    z = np.zeros((1, 1026))
    z[0, 1025] = 16.0
    ce = t.call_reduction("cross_entropy", z, np.array([1025.0, 1024.0])[:1])
    assert ce.shape == (1,) and ce[0] < 0.01  # label 1024 (what 1025 rounds to in bfloat16) would give ~16
    b.ops = type(b.ops)({**b.ops, "logsumexp": lambda x: np.sum(x, axis=-1, keepdims=True)})
    with pytest.raises(AdapterFault, match=r"num\.shape"):
        t.call_reduction("logsumexp", z)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_recipes_are_representable(dtype):
    # Inputs are exactly representable, so the error measured is the backend's own.  [num.dtype]
    fmt = get_format(dtype)
    for name in rows.RECIPES:
        labels = 1 if name in ("logits_labels", "batches") else None  # class indices, not format values
        for group in rows.groups(name, fmt):
            for i, a in enumerate(group):
                if i == labels:
                    assert np.array_equal(a, np.round(a)) and a.min() >= 0
                    continue
                assert is_representable(a[np.isfinite(a)], fmt).all(), (name, dtype)


def test_every_out_clause_names_a_recipe_and_its_functions():
    # A clause without inputs or without its per-mode references would be silently unchecked.  [out.softmax]
    from ffnspec.reference import function
    for c in spec.clauses():
        if not c.kind.startswith("reduction"):
            continue
        assert c.extra["vectors"] in rows.RECIPES, c.id
        if c.kind == "reduction_property":
            assert properties.REDUCTION.lookup(c, c.predicate), c.id
        if c.kind == "reduction_derivative":
            assert set(c.extra["modes"]) == {"vjp", "jvp"}, c.id
            for m in c.extra["modes"].values():
                for key in ("reference", "scale", "accumulation", "underflow"):
                    if key in m:
                        function(m[key])


def test_declared_convention_is_a_deviation_not_a_pass(pytester):
    # A fully masked row returning 1/n, declared, conforms *with declared deviations*.  [out.softmax.all_masked]
    ret, rep, out = run_suite(pytester, "tests.mutants_out:SoftmaxAllMaskedUniformDeclared", ("float32",),
                              ("out.softmax.all_masked",))
    assert ret == pytest.ExitCode.OK, out
    recs = [r for r in rep["records"] if r["clause"] == "out.softmax.all_masked"]
    assert recs and all(r["verdict"] == "deviation" for r in recs), recs
    assert rep["summary"]["verdict"].startswith("conforms with declared deviations")


def test_accumulation_is_graded_for_16_bit(pytester):
    # The accumulation policy (float32 for 16-bit storage) is graded in every 16-bit record of a
    # clause with a sum: NumPy computes in float32 and rounds once.  [out.softmax]
    ret, rep, out = run_suite(pytester, "numpy", ("float16",), ("out.softmax",))
    assert ret == pytest.ExitCode.OK, out
    (rec,) = [r for r in rep["records"] if r["clause"] == "out.softmax"]
    assert any(n.startswith("accumulation: consistent with float32") for n in rec["notes"]), rec["notes"]


def test_storage_precision_accumulation_is_graded_not_faithful(pytester):
    # A term-by-term float16 sum is visible in the accumulation grade even where the MUST bound
    # holds (logsumexp: its log n terms absorb it).  [out.logsumexp]
    ret, rep, out = run_suite(pytester, "tests.mutants_out:SoftmaxAccumulatesIn16Bit", ("float16",),
                              ("out.logsumexp",))
    (rec,) = [r for r in rep["records"] if r["clause"] == "out.logsumexp"]
    assert any(n.startswith("accumulation: not faithful") for n in rec["notes"]), rec["notes"]


def test_prebuild_plans_every_value_of_the_deterministic_derivative_checks(monkeypatch):
    # A cold run computes its reference values in parallel before the tests; a value the plan
    # misses is computed serially inside a check (the accuracy tier's S_acc once was).  [issue 15]
    from ffnspec.conformance.checks import derivatives
    from ffnspec.conformance.machinery import prebuild
    from ffnspec.conformance.machinery.records import Record
    from ffnspec.reference import tables
    clauses = [c for c in spec.select(kind="reduction_derivative") if c.tolerance.accuracy is not None]
    assert clauses
    old = tables.cache_dir()
    tables.set_cache_dir(None)
    try:
        tables.prebuild(prebuild.requests(clauses, ("float32",)), jobs=1)
        tables.prebuild(prebuild.derivative_requests(clauses, ("float32",)), jobs=1)
        computed = []
        compute = tables._compute
        monkeypatch.setattr(tables, "_compute", lambda name, mode, args: computed.append((name, mode)) or compute(name, mode, args))
        t = Target(load_backend("numpy"), "numpy", "float32", "cpu")
        for c in clauses:
            for mode in c.extra["modes"]:
                record = Record(clause=c.id, backend="numpy", dtype="float32", device="cpu", mode=mode)
                for salt, group in enumerate(rows.groups(c.extra["vectors"], t.fmt)):
                    derivatives.reduction(c, t, record, group, mode=mode, salt=salt)
        assert not computed, sorted(set(computed))
    finally:
        tables.set_cache_dir(old)
