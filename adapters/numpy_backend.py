"""The NumPy backend: stable formulas in NumPy, derivatives by ffnspec's own
back-propagation (``ffnspec.adapters.backprop``).  16-bit inputs are computed in
float32 and rounded once to the storage type; bfloat16 needs ml_dtypes."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ffnspec.adapters import OpTable, backprop

try:
    import ml_dtypes
    _BF16 = {"bfloat16": np.dtype(ml_dtypes.bfloat16)}
except ImportError:  # bfloat16 is then simply not offered
    _BF16 = {}

NP_DTYPES = {"float16": np.dtype(np.float16), "float32": np.dtype(np.float32),
             "float64": np.dtype(np.float64), **_BF16}
_NARROW = {"float16", "bfloat16"}


def _compute_wide(f: Callable) -> Callable:
    """Evaluate 16-bit inputs in float32 and round the result once."""
    def op(*args):
        dtype = np.result_type(*args)
        if dtype.name in _NARROW:
            args = [np.asarray(a, dtype=np.float32) for a in args]
            return np.asarray(f(*args)).astype(dtype)
        return np.asarray(f(*args))
    op.__name__ = f.__name__
    return op


_TAIL = 40.0  # below -40, 1 + e^z rounds to 1 in every format, so sigma(z) = e^z


def _sigmoid(z):
    """1/(1+e^-z), a composition of monotone roundings (so monotone on the grid);
    e^z in the far-negative tail, where e^-z would overflow."""
    return np.where(z >= -_TAIL, 1 / (1 + np.exp(-z)), np.exp(z))


def _softplus(z):
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def _log_sigmoid(z):
    return np.minimum(z, 0) - np.log1p(np.exp(-np.abs(z)))


def _silu(z):
    return np.where(np.isneginf(z), -0.0, z * _sigmoid(z)).astype(z.dtype)


class NumpyBackend:
    name = "numpy"
    devices = ("cpu",)
    conventions = {"flush_to_zero": "no"}

    def __init__(self) -> None:
        self.dtypes = frozenset(NP_DTYPES)
        raw = {
            "neg": np.negative, "exp": np.exp, "log1p": np.log1p,
            "add": np.add, "sub": np.subtract, "mul": np.multiply,
            "sigmoid": _sigmoid, "softplus": _softplus, "log_sigmoid": _log_sigmoid,
            "tanh": np.tanh, "silu": _silu, "logaddexp": np.logaddexp,
        }
        self.ops = OpTable({n: _compute_wide(self._quiet(f)) for n, f in raw.items()})

    @staticmethod
    def _quiet(f: Callable) -> Callable:
        def op(*args):
            with np.errstate(all="ignore"):
                return f(*args)
        op.__name__ = getattr(f, "__name__", "op")
        return op

    def asarray(self, a: np.ndarray, dtype: str, device: str = "cpu") -> Any:
        return np.array(a, dtype=NP_DTYPES[dtype])

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x).astype(np.float64)

    def dtype_of(self, x: Any) -> str:
        return np.asarray(x).dtype.name

    def vjp(self, fn: Callable, primals: Sequence[Any], cotangent: Any):
        return backprop.vjp(np, self.ops, fn, primals, cotangent)

    def jvp(self, fn: Callable, primals: Sequence[Any], tangents: Sequence[Any]):
        return backprop.jvp(np, self.ops, fn, primals, tangents)
