"""The CuPy adapter's logic over a fake cupy built from NumPy (tests/fake_cupy.py): device
listing, exact conversions onto the requested device, ops and derivatives inside the array's
device, the engine over a namespace without errstate, op dtypes, a truthful flush-to-zero
probe, and a clean "cannot import cupy" where CuPy is absent.  No GPU is needed; what a real
GPU does is benchmarks/gpu_check.sh's to measure."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from ffnspec.adapters import BackendError, BackendUnavailable, load_backend, probe
from ffnspec.adapters.cupy_backend import CupyBackend
from ffnspec.reference.floatformat import all_values, get_format
from tests import fake_cupy
from tests._inner import run_suite


def _two() -> CupyBackend:
    return CupyBackend(*fake_cupy.make(2))


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="cupy is installed here")
def test_without_cupy_it_says_so_and_never_crashes():
    # `ffnspec backends` must give the reason (issue 13: "cupy: no — cannot import cupy").
    ok, why = probe("cupy")
    assert not ok and "cannot import cupy" in why and "ffnspec[cupy]" in why
    with pytest.raises(BackendError, match="cannot load here: cannot import cupy"):
        load_backend("cupy")


@pytest.mark.parametrize("count, devices", [(1, ("cuda",)), (3, ("cuda", "cuda:1", "cuda:2"))])
def test_devices_are_listed(count, devices):
    assert CupyBackend(*fake_cupy.make(count)).devices == devices


@pytest.mark.parametrize("kw", [dict(count=0), dict(fail=RuntimeError("cudaErrorNoDevice: no CUDA-capable device"))])
def test_no_device_is_a_reason_not_a_crash(kw):
    with pytest.raises(BackendUnavailable, match="imports but finds no CUDA device"):
        CupyBackend(*fake_cupy.make(**kw))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_conversions_are_exact_and_land_on_the_device(dtype):
    b = _two()
    fmt = get_format(dtype)
    a = all_values(fmt) if dtype == "float16" else np.array([fmt.min_subnormal, -fmt.max_finite, 1 / 3, -0.0, np.inf])
    a = np.asarray(a, dtype=np.dtype(dtype)).astype(np.float64)  # representable values only
    x = b.asarray(a, dtype, "cuda:1")
    assert isinstance(x, b.xp.ndarray) and x.device_id == 1 and b.dtype_of(x) == dtype
    back = b.to_numpy(x)
    assert type(back) is np.ndarray and back.dtype == np.float64
    assert np.array_equal(back.view(np.int64), a.view(np.int64))  # bitwise: -0, subnormals, inf
    assert b.xp.state.current == 0  # the device context was left


def test_ops_run_on_the_device_and_reject_host_arrays():
    b = _two()
    x = b.asarray(np.array([[-1.0, 0.5, 2.0]]), "float32", "cuda:1")
    for op in ("sigmoid", "log_sigmoid", "tanh", "softmax", "logsumexp", "relu", "exp"):
        y = b.ops[op](x)  # called outside any device context: the op enters the array's
        assert isinstance(y, b.xp.ndarray) and y.device_id == 1 and b.dtype_of(y) == "float32", op
    with pytest.raises(TypeError):
        b.ops.exp(np.ones(3, dtype=np.float32))  # CuPy takes no NumPy arrays


@pytest.mark.parametrize("mode", ["vjp", "jvp"])
def test_engine_runs_over_the_cupy_namespace_on_a_second_device(mode):
    # CuPy has no autodiff and no errstate; the engine's one-hot (arange) must be made on the
    # array's device, or the fake refuses to mix devices.  [out.ce.grad]
    b = _two()
    z = np.array([[1.0, 2.0, -0.5], [0.0, 0.0, 3.0]])
    zb, y = b.asarray(z, "float32", "cuda:1"), b.asindex(np.array([1, 2]), "cuda:1")
    prog = lambda ops, v: ops.cross_entropy(v, y)  # noqa: E731
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    grad = p - np.eye(3)[[1, 2]]
    if mode == "vjp":
        out, (g,) = b.vjp(prog, [zb], b.asarray(np.ones(2), "float32", "cuda:1"))
        np.testing.assert_allclose(b.to_numpy(g), grad, rtol=1e-6, atol=1e-7)
    else:
        out, t = b.jvp(prog, [zb], [b.asarray(np.ones_like(z), "float32", "cuda:1")])
        g = t
        np.testing.assert_allclose(b.to_numpy(t), (grad * 1.0).sum(-1), atol=1e-6)
    assert g.device_id == 1 and out.device_id == 1 and b.dtype_of(g) == "float32"
    assert not hasattr(b.xp, "errstate")


def test_float16_ops_without_a_float16_kernel_are_declared():
    # cupyx.scipy.special.expit/log_expit have 'e->d' (float16 in, float64 out): op_dtypes, no cast.
    b = CupyBackend(*fake_cupy.make(1))
    assert b.op_dtypes == {"sigmoid": ["float32", "float64"], "log_sigmoid": ["float32", "float64"]}
    assert "softplus" not in b.ops  # cupyx.scipy.special has none: not implemented


def test_flush_to_zero_is_probed_per_dtype_and_device():
    # CuPy compiles with -ftz=true: a device that flushes float32 must be declared as such.
    xp, special = fake_cupy.make(2)
    mul = xp.multiply

    def flushing_mul(a, b):
        r = mul(a, b)
        if r.dtype == np.float32 and r.device_id == 1:
            r = r * (abs(r) >= np.finfo(np.float32).tiny)
        return r
    xp.multiply = flushing_mul
    b = CupyBackend(xp, special)
    assert b.conventions["flush_to_zero"] == "yes"
    assert b.conventions["flush_to_zero_dtypes"] == "float32"
    assert b.conventions["flush_to_zero_devices"] == "cuda:1"
    assert CupyBackend(*fake_cupy.make(1)).conventions["flush_to_zero"] == "no"


def test_the_suite_runs_through_the_adapter_and_records_the_device(pytester):
    # Every record carries its device (issue 13); the fake's values are NumPy's/SciPy's.
    ret, rep, out = run_suite(pytester, "tests.fake_cupy:FakeCupyTwoDevices", ("float32",),
                              ("act.tanh", "act.softplus*", "out.softmax", "out.ce.grad", "hid.relu", "num.*"),
                              "--ffnspec-device=cuda:1")
    assert rep is not None, out
    assert {r["device"] for r in rep["records"]} == {"cuda:1"}
    verdicts = {(r["clause"], r["mode"]): r["verdict"] for r in rep["records"]}
    assert verdicts[("act.tanh", None)] == "pass" and verdicts[("out.ce.grad", "vjp")] == "pass", out
    assert verdicts[("act.softplus", None)] == "not_implemented"
    assert not [r for r in rep["records"] if r["verdict"] in ("error", "internal_error")], out
