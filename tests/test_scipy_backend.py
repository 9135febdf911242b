"""The SciPy adapter: scipy.special's own functions, NumPy for the rest, ffnspec's engine for
derivatives; its declared deviations are real (reproduced natively, confirmed with mpmath), and
its run conforms with them declared.  Also the loader's parametrised names, the registry as
`ffnspec backends` shows it, and the device metadata of the torch and JAX adapters."""
from __future__ import annotations

import importlib.util
from importlib import resources

import mpmath
import numpy as np
import pytest
import scipy
import scipy.special as sc

from ffnspec import cli
from ffnspec.adapters import BackendError, load_backend, probe
from ffnspec.conformance.machinery import xfails
from tests._inner import run_suite

CTX = mpmath.MPContext()
CTX.prec = 200


@pytest.fixture(scope="module")
def backend():
    return load_backend("scipy")


def _sigma(x: float) -> float:
    """sigma(x) at 200 bits, rounded once to float64."""
    return float(1 / (1 + CTX.exp(-CTX.mpf(x))))


def test_ops_are_scipys_and_numpys_own(backend):
    # Ops must be the library's public functions (docs/adapters.md); the table names each one.
    assert backend.names["sigmoid"] == "scipy.special.expit"
    assert backend.names["log_sigmoid"] == "scipy.special.log_expit"
    assert backend.names["softmax"] == "scipy.special.softmax"
    assert backend.names["tanh"] == "np.tanh"
    z = np.linspace(-30, 30, 101).astype(np.float32)
    assert np.array_equal(backend.ops.sigmoid(z), sc.expit(z))
    assert np.array_equal(backend.ops.log_sigmoid(z), sc.log_expit(z))
    assert np.array_equal(backend.ops.softplus(z), sc.softplus(z))
    assert np.array_equal(backend.ops.logsumexp(z[None]), sc.logsumexp(z[None], axis=-1))
    assert scipy.__version__ in backend.version


def test_float16_without_a_scipy_loop_is_declared_not_cast(backend):
    # expit's loops are f->f, d->d, g->g: float16 comes back float64.  If SciPy adds a float16
    # loop, drop the op_dtypes entry.  (docs/adapters.md "A library without a float16 version")
    assert sc.expit(np.ones(1, dtype=np.float16)).dtype == np.float64
    assert sc.log_expit(np.ones(1, dtype=np.float16)).dtype == np.float64
    assert backend.op_dtypes == {"sigmoid": ["float32", "float64"], "log_sigmoid": ["float32", "float64"]}
    assert "bfloat16" not in backend.dtypes


@pytest.mark.parametrize("dtype, x, lowest", [(np.float32, -88.72283935546875, -103.972),
                                              (np.float64, -709.7827128933841, -745.133)])
def test_expit_loses_the_subnormal_tail(dtype, x, lowest):
    # The declared act.sigmoid deviation is real: expit = 1/(1+exp(-x)) is 0 once exp(-x)
    # overflows, where mpmath's sigma(x) is a representable subnormal.  (docs/deviations.md S1)
    assert sc.expit(np.array([x], dtype=dtype))[0] == 0.0
    exact = _sigma(x)
    assert 0 < dtype(exact) < np.finfo(dtype).tiny
    assert dtype(_sigma(lowest)) > 0  # the tail reaches down to `lowest`
    assert sc.expit(np.array([np.nextafter(dtype(x), dtype(0))], dtype=dtype))[0] > 0  # one step up: fine


def test_numpy_float16_maximum_keeps_minus_zero():
    # The declared hid.relu (float16) deviation is real: maximum(-0, +0) is -0 in float16 only.
    assert np.signbit(np.maximum(np.array([-0.0], dtype=np.float16), 0))[0]
    assert not np.signbit(np.maximum(np.array([-0.0], dtype=np.float32), 0))[0]
    assert not np.signbit(np.maximum(np.array([-0.0], dtype=np.float64), 0))[0]


def test_declared_deviations_reproduce_natively():
    # Every reproducer in scipy.toml calls scipy/NumPy itself and shows the defect (a zero or -0,
    # or True for np.isnan of a NaN where the limit is a number: SO1).
    text = resources.files("ffnspec.adapters").joinpath("deviations", "scipy.toml").read_text()
    entries = xfails.parse(text, "scipy.toml")
    assert entries and all(d.backend == "scipy" and d.device == "cpu" and "mpmath" in text for d in entries)
    for d in entries:
        got = eval(d.reproducer.split("  #")[0], {"np": np, "scipy": scipy})  # noqa: S307  (our own file)
        first = np.asarray(got[0] if isinstance(got, tuple) else got).ravel()[0]
        assert first == 0 or first is np.True_ or first is True, (d.clause, got)


def test_conforms_with_its_declared_deviations(pytester):
    ret, rep, out = run_suite(pytester, "scipy", ("float32",), ("act.sigmoid", "act.softplus", "act.log_sigmoid",
                                                                "out.softmax", "out.logsumexp", "hid.relu"))
    assert ret == 0 and rep["summary"]["conforms"], out
    verdicts = {r["clause"]: r["verdict"] for r in rep["records"]}
    # out.softmax: a +inf logit makes scipy's row NaN (SO1, the generated special-value table)
    assert verdicts == {"act.sigmoid": "deviation", "act.softplus": "pass", "act.log_sigmoid": "pass",
                        "out.softmax": "deviation", "out.logsumexp": "pass", "hid.relu": "pass"}, verdicts


# ------------------------------------------------------------------- the registry ----
def test_backends_lists_every_adapter_with_its_reason(capsys):
    # Issue 13: `ffnspec backends` lists scipy, cupy and array-api, with why each does (not) load.
    assert cli.main(["backends"]) == cli.CONFORMS
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[2:] if line.strip()}
    assert {"numpy", "scipy", "cupy", "array-api"} <= set(rows)
    assert " yes " in rows["scipy"] and "array-api:array_api_strict" in rows["array-api"]
    if importlib.util.find_spec("cupy") is None:
        assert " no " in rows["cupy"] and "cannot import cupy" in rows["cupy"]


def test_package_module_class_keeps_its_meaning():
    # The colon of `package.module:Class` is not a parametrised name unless NAME is registered.
    assert load_backend("ffnspec.adapters.numpy_backend:NumpyBackend").name == "numpy"
    with pytest.raises(BackendError, match="cannot load backend 'nosuch.module:X'"):
        load_backend("nosuch.module:X")
    with pytest.raises(BackendError, match="give an argument after the colon"):
        load_backend("array-api:")
    ok, why = probe("array-api:nosuch_module")
    assert not ok and "cannot import nosuch_module" in why


@pytest.mark.parametrize("name, gpu", [("torch", "cuda"), ("jax", "gpu")])
def test_gpu_devices_are_listed_or_their_absence_explained(name, gpu):
    # `--device cuda` / `--device gpu` where present; otherwise a reason for the skipped records.
    pytest.importorskip(name)
    b = load_backend(name)
    assert (gpu in b.devices) != (gpu in b.absent_devices)
    if gpu not in b.devices:
        assert b.absent_devices[gpu]
    assert set(b.conventions["flush_to_zero_devices"].split(",")) <= set(b.devices) | {"none"}
    text = resources.files("ffnspec.adapters").joinpath("deviations", f"{name}.toml").read_text()
    assert all(d.device == "cpu" for d in xfails.parse(text, name))  # GPU deviations are declared apart
