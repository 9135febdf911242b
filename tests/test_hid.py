"""The hid family's conventions machinery, end to end through the plugin: a declared non-preferred
convention is reported ("conforms with declared deviations"), never a silent pass; the built-in
backend declares the preferred ones; optional in-place variants are skipped, not passed."""
from __future__ import annotations

import pytest

from ffnspec import spec
from ffnspec.adapters.numpy_backend import NumpyBackend
from tests._inner import run_suite


def _records(report, clause):
    return [r for r in report["records"] if r["clause"] == clause]


# The built-in backend declares every row of the table, each with the preferred value.  [hid.conventions]
def test_numpy_declares_the_preferred_conventions():
    for row in spec.clause("hid.conventions").conventions:
        assert NumpyBackend.conventions[row["name"]] == row["preferred"], row["name"]


# relu'(0) = 1 is allowed (the right derivative) but not preferred: the clauses relying on it and
# the conventions clause say "deviation", the run conforms with declared deviations.  [hid.relu.grad]
def test_allowed_non_preferred_convention_is_a_declared_deviation(pytester):
    ret, rep, out = run_suite(pytester, "tests.mutants_hid:ReluGradOneDeclared", ("float32",),
                              ("hid.relu.grad", "hid.conventions"))
    assert ret == pytest.ExitCode.OK, out
    assert rep["summary"]["conforms"] and rep["summary"]["verdict"].startswith("conforms with declared deviations")
    recs = _records(rep, "hid.relu.grad") + _records(rep, "hid.conventions")
    assert len(recs) == 3 and all(r["verdict"] == "deviation" for r in recs), [r["verdict"] for r in recs]
    assert all("relu_grad_at_0 = 1 (preferred 0)" in r["deviation"] for r in recs)


# A tie rule routing to the first maximum is allowed: declared, maxout's gradient conforms with a
# declared deviation.  [hid.maxout.grad] [hid.conventions]
def test_declared_first_tie_rule_is_a_deviation(pytester):
    ret, rep, out = run_suite(pytester, "tests.mutants_hid:MaxoutTiesFirstDeclared", ("float32",),
                              ("hid.maxout.grad", "hid.conventions"))
    assert ret == pytest.ExitCode.OK, out
    assert {r["verdict"] for r in rep["records"]} == {"deviation"}
    assert "maxout_ties = first (preferred even)" in _records(rep, "hid.maxout.grad")[0]["deviation"]


# In-place variants are optional ops: a backend offering none is "skipped", never "pass".  [hid.inplace]
def test_missing_inplace_variants_are_skipped_not_passed(pytester):
    ret, rep, out = run_suite(pytester, "tests.mutants_hid:NoInplaceVariants", ("float32",), ("hid.inplace",))
    assert ret == pytest.ExitCode.OK, out
    (r,) = _records(rep, "hid.inplace")
    assert r["verdict"] == "skipped", r


# The Markdown report lists every convention with its declared and preferred value.  [hid.conventions]
def test_report_shows_conventions(pytester):
    run_suite(pytester, "tests.mutants_hid:ReluGradOneDeclared", ("float32",), ("hid.relu.grad", "hid.conventions"),
              cache=False)
    md = next(pytester.path.glob("report*/report.md")).read_text()
    assert "| relu_grad_at_0 | 1 | 0 | 0, 1 | declared deviation |" in md
    assert "| maxout_ties | even | even | even, first, last | preferred |" in md


# The torch and jax adapters expose the libraries' own unit functions (compositions only where the
# library has none: maxout, RBF, jax's PReLU) and declare every convention with an allowed value.
# [hid.relu] [hid.hardtanh] [hid.inplace] [hid.conventions]
@pytest.mark.parametrize("name", ["torch", "jax"])
def test_library_adapters_use_their_own_units_and_declare_conventions(name):
    pytest.importorskip(name)
    from ffnspec.adapters import load_backend
    b = load_backend(name)
    if name == "torch":
        import torch
        import torch.nn.functional as F
        want = {"relu": torch.relu, "abs": torch.abs, "hardtanh": F.hardtanh, "copy": torch.clone,
                "relu_": torch.relu_, "hardtanh_": F.hardtanh_, "abs_": torch.abs_}
    else:
        import jax
        import jax.numpy as jnp
        want = {"relu": jax.nn.relu, "abs": jnp.abs, "hardtanh": jax.nn.hard_tanh}
        assert not any(op.endswith("_") for op in b.ops)  # immutable arrays: no in-place variants
    for op, f in want.items():
        assert b.ops[op] is f, op
    for row in spec.clause("hid.conventions").conventions:
        assert b.conventions[row["name"]] in row["allowed"], row["name"]
