"""The CuPy backend: CuPy's own functions on NVIDIA GPUs, derivatives by ffnspec's
back-propagation engine over the cupy namespace (CuPy has no autodiff).

The op table is the SciPy backend's (``scipy_backend.special_ops``) over ``cupy`` and
``cupyx.scipy.special`` (expit, log_expit, softmax, log_softmax, logsumexp), so the two report
the same ops with the same compositions.  Devices are ``cuda`` (device 0) and ``cuda:N``;
arrays are made, ops run and derivatives are taken inside the array's ``cupy.cuda.Device``.

Conventions: flush-to-zero is probed on every device and dtype with CuPy's own multiply (CuPy
compiles its elementwise kernels with NVRTC and ``-ftz=true``, so float32 is expected to flush
and float64 not; the probe, not this expectation, is what is declared).  CuPy passes no
``--use_fast_math``, so division and square root are IEEE; ``-fmad`` (NVRTC's default) may
contract a*b + c into one FMA.  Those two are read from CuPy's source, not measured here.

The namespaces are injectable (``CupyBackend(xp=..., special=...)``), so the adapter's logic
runs over a fake "cupy" built from NumPy in tests/ where there is no GPU.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Sequence

import numpy as np

from ffnspec.adapters import BackendUnavailable, OpTable, backprop, flush_conventions, value_conventions
from ffnspec.adapters.scipy_backend import DTYPES, NO_FLOAT16, special_ops


def _on(*arrays: Any):
    """The device context of the first array that has one (``cupy.cuda.Device``)."""
    for a in arrays:
        dev = getattr(a, "device", None)
        if hasattr(dev, "__enter__"):
            return dev
    return contextlib.nullcontext()


def _on_device(f: Callable) -> Callable:
    def op(*args, **params):
        with _on(*args):
            return f(*args, **params)
    op.__name__ = getattr(f, "__name__", "op")
    return op


class CupyBackend:
    name = "cupy"
    deviations = "cupy.toml"

    def __init__(self, xp: Any = None, special: Any = None) -> None:
        if xp is None:
            try:
                import cupy as xp
                import cupyx.scipy.special as special
            except ImportError as e:  # not installed, or installed without its CUDA libraries
                raise BackendUnavailable(f"cannot import cupy: {e} (pip install 'ffnspec[cupy]' on a "
                                         "machine with an NVIDIA GPU and CUDA 12)") from None
        self.xp, self.special = xp, special
        try:
            count = int(xp.cuda.runtime.getDeviceCount())
        except Exception as e:  # cudaErrorNoDevice, cudaErrorInsufficientDriver, ...
            raise BackendUnavailable(f"cupy {xp.__version__} imports but finds no CUDA device: "
                                     f"{type(e).__name__}: {e}") from None
        if count < 1:
            raise BackendUnavailable(f"cupy {xp.__version__} imports but finds no CUDA device")
        self.devices = tuple("cuda" if i == 0 else f"cuda:{i}" for i in range(count))
        self._index = {d: i for i, d in enumerate(self.devices)}
        try:
            runtime = xp.cuda.runtime.runtimeGetVersion()
        except Exception:
            runtime = "?"
        self.version = f"cupy {xp.__version__}, CUDA runtime {runtime}"
        self.dtypes = frozenset(DTYPES)
        table = special_ops(xp, special)
        self.names = {op: n.replace("xp.", "cupy.").replace("special.", "cupyx.scipy.special.")
                      for op, (_, n) in table.items()}
        self.ops = OpTable({op: _on_device(f) for op, (f, _) in table.items()})
        self.op_dtypes = {op: ["float32", "float64"] for op in NO_FLOAT16 if op in self.ops}
        # probed on the ops: FTZ per device and dtype, relu(-0) (CUDA's fmax may return either
        # zero), a masked softmax row; the derivative conventions are the engine's
        self.conventions = {**flush_conventions(self), **backprop.CONVENTIONS, **value_conventions(self)}

    # -- conversions ---------------------------------------------------------------
    def asarray(self, a: np.ndarray, dtype: str, device: str = "cuda") -> Any:
        host = np.array(a, dtype=np.dtype(dtype))  # exact: the values are representable
        with self.xp.cuda.Device(self._index[device]):
            return self.xp.asarray(host)

    def asindex(self, a: np.ndarray, device: str = "cuda") -> Any:
        with self.xp.cuda.Device(self._index[device]):
            return self.xp.asarray(np.array(a, dtype=np.int64))

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.array(self.xp.asnumpy(x), dtype=np.float64)

    def dtype_of(self, x: Any) -> str:
        return x.dtype.name

    # -- derivatives: ffnspec's engine over the cupy namespace ------------------------------
    def vjp(self, fn: Callable, primals: Sequence[Any], cotangent: Any):
        with _on(*primals):
            return backprop.vjp(self.xp, self.ops, fn, primals, cotangent)

    def jvp(self, fn: Callable, primals: Sequence[Any], tangents: Sequence[Any]):
        with _on(*primals):
            return backprop.jvp(self.xp, self.ops, fn, primals, tangents)
