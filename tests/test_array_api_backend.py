"""The generic Array API adapter over array-api-strict: it loads by ``array-api:MODULE``,
converts exactly, exposes the standard's own functions, differentiates through ffnspec's engine
over a namespace without array methods, reports ops outside the standard as not implemented,
and conforms on the clauses it implements while a broken namespace fails them."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("array_api_compat")
xp = pytest.importorskip("array_api_strict")

from ffnspec.adapters import load_backend  # noqa: E402
from tests._inner import run_suite  # noqa: E402
from tests.test_backends import _sample  # noqa: E402  (both ends, subnormals, a spread)


@pytest.fixture(scope="module")
def backend():
    return load_backend("array-api:array_api_strict")


def test_loads_by_parametrised_name_and_by_default(backend):
    # `array-api:MODULE` is an entry point with an argument; plain `array-api` takes array_api_strict.
    assert backend.name == "array-api:array_api_strict"
    assert load_backend("array-api").name == "array-api:array_api_strict"
    assert backend.dtypes == frozenset({"float32", "float64"})  # the standard has no float16 or bfloat16
    assert backend.devices == ("cpu",)
    assert backend.conventions["flush_to_zero"] == "no" and backend.conventions["relu_at_minus_0"] == "+0"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_exact(backend, dtype):
    # NumPy float64 arrays of representable values cross the boundary unchanged (docs/adapters.md).
    a = _sample(dtype)
    x = backend.asarray(a, dtype, "cpu")
    assert type(x).__module__.startswith("array_api_strict") and backend.dtype_of(x) == dtype
    back = backend.to_numpy(x)
    assert back.dtype == np.float64 and np.array_equal(back.view(np.int64), a.view(np.int64))
    assert backend.to_numpy(backend.asarray(np.array(-0.0), dtype, "cpu")).shape == ()


def test_ops_are_the_standards_functions(backend):
    # The values are the namespace's own (ops must be the library's public functions).
    a = np.array([-0.75, -0.5, 0.0, 0.25, 40.0])
    x = backend.asarray(a, "float32", "cpu")
    for op, f in (("exp", xp.exp), ("log1p", xp.log1p), ("tanh", xp.tanh), ("neg", xp.negative), ("abs", xp.abs)):
        assert np.array_equal(backend.to_numpy(backend.ops[op](x)), np.asarray(f(x), dtype=np.float64)), op
    assert np.array_equal(backend.to_numpy(backend.ops.softplus(x)),
                          np.asarray(xp.logaddexp(xp.zeros_like(x), x), dtype=np.float64))
    assert not {"sigmoid", "softmax", "silu", "cross_entropy", "leaky_relu"} & set(backend.ops)


@pytest.mark.parametrize("mode", ["vjp", "jvp"])
def test_engine_differentiates_over_the_standard_namespace(backend, mode):
    # array-api-strict arrays have no astype/reshape methods and xp has no errstate (backprop.py).
    z = np.array([-2.0, 0.5, 3.0])
    x = backend.asarray(z, "float64", "cpu")
    one = backend.asarray(np.ones(3), "float64", "cpu")
    prog = lambda ops, v: ops.mul(ops.tanh(v), ops.softplus(v))  # noqa: E731
    if mode == "vjp":
        out, (g,) = backend.vjp(prog, [x], one)
    else:
        out, g = backend.jvp(prog, [x], [one])
    sp, t = np.logaddexp(0, z), np.tanh(z)
    np.testing.assert_allclose(backend.to_numpy(out), t * sp, rtol=1e-15)
    np.testing.assert_allclose(backend.to_numpy(g), (1 - t * t) * sp + t / (1 + np.exp(-z)), rtol=1e-14)
    assert backend.dtype_of(g) == "float64"


def test_maxout_gradient_splits_ties_over_the_namespace(backend):
    # maxout_ties = "even" (the engine's rule), with the tie count formed without summing booleans.
    x = backend.asarray(np.array([[1.0, 1.0, 0.0, 2.0]]), "float32", "cpu")
    _, (g,) = backend.vjp(lambda ops, v: ops.maxout(v, k=2), [x], backend.asarray(np.ones((1, 2)), "float32", "cpu"))
    assert backend.to_numpy(g).tolist() == [[0.5, 0.5, 0.0, 1.0]]


def test_conforms_on_what_it_implements(pytester):
    # CI's check of the generic adapter: real clauses, array-api-strict, no declared deviation.
    clauses = ("act.softplus", "act.softplus.grad", "act.tanh", "hid.relu", "hid.maxout.grad", "num.*")
    ret, rep, out = run_suite(pytester, "array-api:array_api_strict", ("float32",), clauses)
    assert ret == 0 and rep["summary"]["conforms"], out
    verdicts = {r["clause"]: r["verdict"] for r in rep["records"]}
    assert verdicts["act.softplus"] == "pass" and verdicts["hid.relu"] == "pass"
    assert rep["backend"]["name"] == "array-api:array_api_strict"


def test_ops_outside_the_standard_are_not_implemented(pytester):
    ret, rep, out = run_suite(pytester, "array-api:array_api_strict", ("float32",), ("act.sigmoid", "out.softmax"))
    assert {r["verdict"] for r in rep["records"]} == {"not_implemented"}, out
    assert all("does not implement op(s)" in r["message"] for r in rep["records"])


def test_a_broken_namespace_fails(pytester):
    # The generic adapter's passes mean something: a naive logaddexp is caught.  [act.softplus]
    ret, rep, out = run_suite(pytester, "tests.mutants_backends:NaiveLogaddexp", ("float32",), ("act.softplus",))
    assert ret == pytest.ExitCode.TESTS_FAILED, out
    [rec] = [r for r in rep["records"] if r["clause"] == "act.softplus"]
    assert rec["verdict"] == "fail" and "[act.softplus]" in rec["message"]
