"""The PyTorch and JAX adapters: they load, convert every dtype exactly (0-d included),
name dtypes correctly, expose the library's own ops, and differentiate in both modes.

Each backend's tests are skipped cleanly when its library is not installed."""
from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

from ffnspec.adapters import DTYPES, Backend, load_backend
from ffnspec.conformance.machinery import xfails
from ffnspec.reference.floatformat import all_values, from_ordinal, get_format, ordinal

LIBRARIES = {"torch": "torch", "jax": "jax"}
OPS = ("neg", "exp", "log1p", "add", "sub", "mul", "sigmoid", "softplus", "log_sigmoid", "tanh", "silu",
       "logaddexp")


@pytest.fixture(scope="module", params=sorted(LIBRARIES))
def backend(request) -> Backend:
    pytest.importorskip(LIBRARIES[request.param])
    if request.param == "jax":
        pytest.importorskip("ml_dtypes")
    return load_backend(request.param)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).view(np.int64)


def _sample(dtype: str) -> np.ndarray:
    """Exactly representable values of dtype: every 16-bit value, or both ends, subnormals and a spread."""
    fmt = get_format(dtype)
    if dtype in ("float16", "bfloat16"):
        v = all_values(fmt)
    else:
        top = int(ordinal(np.array([fmt.max_finite]), fmt)[0])
        idx = np.concatenate([np.arange(0, 40), np.arange(top - 40, top + 1),
                              np.random.default_rng(1).integers(0, top, 4000)])
        v = from_ordinal(np.concatenate([idx, -idx]), fmt)
    return np.concatenate([v, [-0.0, np.inf, -np.inf]])


# ------------------------------------------------------------------------ loading --
def test_loads_with_the_declared_shape(backend):
    assert isinstance(backend, Backend)
    assert backend.dtypes == frozenset(DTYPES)
    assert backend.devices[0] == "cpu"
    assert backend.conventions["flush_to_zero"] in ("yes", "no")
    lib = importlib.import_module(LIBRARIES[backend.name])
    assert backend.version == lib.__version__
    assert set(OPS) <= set(backend.ops)
    assert backend.deviations == f"{backend.name}.toml"


def test_declared_deviations_parse_and_name_this_backend(backend):
    from importlib import resources
    text = resources.files("ffnspec.adapters").joinpath("deviations", backend.deviations).read_text()
    entries = xfails.parse(text, backend.deviations)
    assert entries, "the shipped deviation file is empty"
    for d in entries:
        assert d.backend == backend.name and d.reason and d.reproducer
        assert d.dtype is None or set(d.dtype) <= set(DTYPES)


def test_ops_are_the_librarys_own(backend):
    if backend.name == "torch":
        import torch
        import torch.nn.functional as F
        want = {"sigmoid": torch.sigmoid, "softplus": F.softplus, "log_sigmoid": F.logsigmoid,
                "tanh": torch.tanh, "silu": F.silu, "logaddexp": torch.logaddexp, "exp": torch.exp}
    else:
        import jax
        import jax.numpy as jnp
        want = {"sigmoid": jax.nn.sigmoid, "softplus": jax.nn.softplus, "log_sigmoid": jax.nn.log_sigmoid,
                "tanh": jnp.tanh, "silu": jax.nn.silu, "logaddexp": jnp.logaddexp, "exp": jnp.exp}
    for name, f in want.items():
        assert backend.ops[name] is f, name


@pytest.mark.parametrize("dtype", DTYPES)
def test_flush_to_zero_is_declared_truthfully(backend, dtype):
    fmt = get_format(dtype)
    x = backend.asarray(np.array([4 * fmt.min_subnormal]), dtype, "cpu")  # a subnormal of dtype
    y = backend.to_numpy(backend.ops.mul(x, backend.asarray(np.array([2.0]), dtype, "cpu")))
    flushes = y[0] == 0.0
    assert flushes or y[0] == 8 * fmt.min_subnormal
    assert (dtype in backend.conventions["flush_to_zero_dtypes"].split(",")) == flushes
    if flushes:
        assert backend.conventions["flush_to_zero"] == "yes"


# --------------------------------------------------------------------- conversions --
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_is_exact(backend, dtype):
    a = _sample(dtype)
    x = backend.asarray(a, dtype, "cpu")
    assert backend.dtype_of(x) == dtype
    back = backend.to_numpy(x)
    assert back.dtype == np.float64 and back.shape == a.shape
    assert np.array_equal(_bits(back), _bits(a))  # bitwise: signed zeros, subnormals, infinities
    nan = backend.to_numpy(backend.asarray(np.array([np.nan]), dtype, "cpu"))
    assert np.isnan(nan).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [1.5, -0.0, -math.inf, 2.0 ** -14, 0.5])
def test_zero_d_round_trip_and_ops(backend, dtype, value):
    x = backend.asarray(np.array(value), dtype, "cpu")
    back = backend.to_numpy(x)
    assert back.shape == () and back.dtype == np.float64
    assert _bits(back) == _bits(np.array(value))
    assert backend.dtype_of(x) == dtype
    y = backend.ops.sigmoid(x)
    assert backend.dtype_of(y) == dtype and backend.to_numpy(y).shape == ()


def test_to_numpy_does_not_alias_the_backend_array(backend):
    x = backend.asarray(np.array([1.0, 2.0]), "float64", "cpu")
    a = backend.to_numpy(x)
    a[0] = 7.0
    assert backend.to_numpy(x)[0] == 1.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_ops_keep_dtype_and_shape(backend, dtype):
    a = np.array([[-2.0, -0.5, 0.0], [0.5, 1.0, 3.0]])
    x = backend.asarray(a, dtype, "cpu")
    for name in OPS:
        args = (x, x) if name in ("add", "sub", "mul", "logaddexp") else (x,)
        y = backend.ops[name](*args)
        assert backend.dtype_of(y) == dtype, name
        assert backend.to_numpy(y).shape == a.shape, name


def test_float64_values_are_computed_in_float64(backend):
    """jax without x64 silently computes in float32: the adapter must have switched it on."""
    x = backend.asarray(np.array([1.0 + 2.0 ** -40]), "float64", "cpu")
    y = backend.to_numpy(backend.ops.sub(x, backend.asarray(np.array([1.0]), "float64", "cpu")))
    assert y[0] == 2.0 ** -40


# --------------------------------------------------------------------- derivatives --
def _program(ops, x, y):
    return ops.add(ops.mul(x, y), ops.sigmoid(x))  # x*y + sigma(x)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_vjp_values(backend, dtype):
    xs, ys = np.array([0.0, 1.0, -2.0]), np.array([3.0, -0.5, 0.25])
    x, y = backend.asarray(xs, dtype, "cpu"), backend.asarray(ys, dtype, "cpu")
    ct = backend.asarray(np.array([1.0, 2.0, -1.0]), dtype, "cpu")
    out, (gx, gy) = backend.vjp(_program, [x, y], ct)
    s = 1 / (1 + np.exp(-xs))
    tol = 1e-6 if dtype == "float32" else 1e-14
    np.testing.assert_allclose(backend.to_numpy(out), xs * ys + s, rtol=tol)
    np.testing.assert_allclose(backend.to_numpy(gx), np.array([1.0, 2.0, -1.0]) * (ys + s * (1 - s)), rtol=tol)
    np.testing.assert_allclose(backend.to_numpy(gy), np.array([1.0, 2.0, -1.0]) * xs, rtol=tol, atol=0)
    assert backend.dtype_of(gx) == dtype and backend.dtype_of(gy) == dtype


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jvp_values(backend, dtype):
    xs, ys = np.array([0.0, 1.0, -2.0]), np.array([3.0, -0.5, 0.25])
    tx, ty = np.array([1.0, 0.5, 2.0]), np.array([0.0, 1.0, -1.0])
    args = [backend.asarray(v, dtype, "cpu") for v in (xs, ys)]
    tangents = [backend.asarray(v, dtype, "cpu") for v in (tx, ty)]
    out, t = backend.jvp(_program, args, tangents)
    s = 1 / (1 + np.exp(-xs))
    tol = 1e-6 if dtype == "float32" else 1e-14
    np.testing.assert_allclose(backend.to_numpy(out), xs * ys + s, rtol=tol)
    np.testing.assert_allclose(backend.to_numpy(t), tx * (ys + s * (1 - s)) + ty * xs, rtol=tol)
    assert backend.dtype_of(t) == dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_derivatives_of_a_unary_op_in_every_dtype(backend, dtype):
    z = backend.asarray(np.array([0.0, 2.0]), dtype, "cpu")
    one = backend.asarray(np.ones(2), dtype, "cpu")
    _, (g,) = backend.vjp(lambda ops, v: ops.tanh(v), [z], one)
    _, t = backend.jvp(lambda ops, v: ops.tanh(v), [z], [one])
    for d in (g, t):
        assert backend.dtype_of(d) == dtype
        got = backend.to_numpy(d)
        assert got[0] == 1.0 and abs(got[1] - (1 - math.tanh(2.0) ** 2)) < 2e-2


def test_vjp_of_an_unused_input_is_zero(backend):
    x, y = (backend.asarray(np.array([1.0, 2.0]), "float64", "cpu") for _ in range(2))
    _, (gx, gy) = backend.vjp(lambda ops, a, b: ops.exp(a), [x, y], backend.asarray(np.ones(2), "float64", "cpu"))
    assert np.array_equal(backend.to_numpy(gy), [0.0, 0.0])
    np.testing.assert_allclose(backend.to_numpy(gx), np.exp([1.0, 2.0]), rtol=1e-15)


def test_differentiation_leaves_inputs_unchanged(backend):
    a = np.array([-1.0, 0.5, 3.0])
    x = backend.asarray(a, "float32", "cpu")
    backend.vjp(lambda ops, v: ops.silu(v), [x], backend.asarray(np.ones(3), "float32", "cpu"))
    backend.jvp(lambda ops, v: ops.silu(v), [x], [backend.asarray(np.ones(3), "float32", "cpu")])
    assert np.array_equal(backend.to_numpy(x), a)


# ----------------------------------------------------------------------- snippets --
def test_snippets_are_runnable_one_liners(backend):
    lib = importlib.import_module(LIBRARIES[backend.name])
    env = {"np": np, LIBRARIES[backend.name]: lib}
    if backend.name == "torch":
        env["torch"] = lib
    else:
        import jax.numpy as jnp
        env.update(jax=lib, jnp=jnp)
    calls = {
        "b.ops.softplus(*args)": ([2.0], 2.126928011042972),
        "b.vjp(lambda ops, z: ops.sigmoid(z), args, b.asarray(np.ones(1), 'float64', 'cpu'))[1][0]": ([0.0], 0.25),
        "b.jvp(lambda ops, z: ops.tanh(z), args, [b.asarray(np.ones(1), 'float64', 'cpu')])[1]": ([0.0], 1.0),
        "b.ops.logaddexp(*args)": ([0.0, 0.0], math.log(2)),
    }
    for call, (inputs, want) in calls.items():
        text = backend.snippet(call, inputs, "float64", "cpu")
        assert "\n" not in text
        stmt, _, expr = text.rpartition("; ")
        if stmt:
            exec(stmt, env)
        got = np.asarray(eval(expr, env), dtype=np.float64).ravel()[0]
        assert abs(got - want) < 1e-12, (call, text, got)
    with pytest.raises(ValueError):  # arity mismatch: no guessing
        backend.snippet("b.ops.logaddexp(*args)", [1.0], "float32", "cpu")


def test_results_read_back_through_the_harness_without_ml_dtypes():
    # Target.from_backend is the one gate every result passes; in a torch-only process NumPy
    # knows no 'bfloat16' dtype (ml_dtypes is never imported), and that must not break it.  [num.dtype]
    pytest.importorskip("torch")
    import subprocess
    import sys
    code = ("import sys, numpy as np\n"
            "from ffnspec.adapters import load_backend\n"
            "from ffnspec.conformance.machinery.harness import Target\n"
            "b = load_backend('torch')\n"
            "for dt in ('float16', 'bfloat16', 'float32', 'float64'):\n"
            "    t = Target(backend=b, backend_spec='torch', dtype=dt, device='cpu')\n"
            "    a = np.array([-2.0, 0.5, 3.0])\n"
            "    y = t.from_backend(b.ops['sigmoid'](b.asarray(a, dt, 'cpu')), like=a, what='sigmoid')\n"
            "    assert np.all((y > 0) & (y < 1)), dt\n"
            "print('ml_dtypes' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def _jax_process(code: str, cache: str, **env: str):
    import os
    import subprocess
    import sys
    prelude = ("from ffnspec.reference import tables\n"
               f"tables.set_cache_dir({cache!r})\n"
               "from ffnspec.adapters import load_backend\n"
               "import jax, numpy as np\n"
               "b = load_backend('jax')\n")
    out = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=300,
                         env={**{k: v for k, v in os.environ.items() if not k.startswith("JAX_")}, **env})
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_jax_keeps_its_compiled_executables_in_the_cache(tmp_path):
    # A warm JAX run loads the executables a first run compiled (most of its time), within a
    # bound; a user's own jax cache setting is left alone.  [issue 15]
    pytest.importorskip("jax")
    import os
    from pathlib import Path
    from ffnspec.adapters import jax_backend
    code = ("x = b.asarray(np.linspace(-3, 3, 5), 'float32', 'cpu')\n"
            "np.asarray(b.ops['sigmoid'](x))\n"
            "print(b.compiled_cache)\n")
    stale = tmp_path / "ref" / "jax-compiled" / "0.0-old"  # another jaxlib's, unused for a year
    stale.mkdir(parents=True)
    (stale / "k-cache").write_bytes(b"x")
    os.utime(stale / "k-cache", (1, 1))
    (path,) = _jax_process(code, str(tmp_path / "ref")).split()
    assert path.startswith(str(tmp_path / "ref" / "jax-compiled")) and not stale.exists()
    assert any(p.name.endswith("-cache") for p in Path(path).iterdir()), "nothing was kept"
    big = Path(path) / "big-cache"  # past the bound: emptied by the next run, then refilled
    with open(big, "wb") as f:
        f.truncate(jax_backend.COMPILED_MAX + 1)  # sparse: the size without the bytes
    _jax_process(code, str(tmp_path / "ref"))
    assert not big.exists() and any(p.name.endswith("-cache") for p in Path(path).iterdir())
    mine = tmp_path / "mine"
    out = _jax_process("print(b.compiled_cache, jax.config.jax_compilation_cache_dir)\n", str(tmp_path / "ref2"),
                       JAX_COMPILATION_CACHE_DIR=str(mine))
    assert out.split() == ["None", str(mine)]
    assert not (tmp_path / "ref2" / "jax-compiled").exists()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_results_that_are_not_values_of_the_dtype_are_charged_to_num_dtype(dtype):
    # A result array that claims the dtype but holds wider values (a float64 computation left
    # unrounded) is an adapter fault against num.dtype, not a pass.  [num.dtype]
    pytest.importorskip("ml_dtypes")
    from ffnspec.conformance.machinery.harness import AdapterFault, Target
    b = load_backend("numpy")

    wide = type("Wide", (), {"dtype": dtype})()  # float64 values under the dtype's name
    b.dtype_of = lambda x: dtype if x is wide else type(b).dtype_of(b, x)
    b.to_numpy = lambda x: np.array([0.5, 1.0 + 2.0 ** -30]) if x is wide else type(b).to_numpy(b, x)
    t = Target(backend=b, backend_spec="numpy", dtype=dtype, device="cpu")
    with pytest.raises(AdapterFault, match="not a " + dtype) as e:
        t.from_backend(wide, like=np.zeros(2), what="sigmoid")
    assert e.value.rule == "num.dtype"
    ok = b.asarray(np.array([0.5, 1.0]), dtype, "cpu")
    assert t.from_backend(ok, like=np.zeros(2), what="sigmoid").tolist() == [0.5, 1.0]
