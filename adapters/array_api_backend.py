"""Any Array API library, through array-api-compat: ``--backend array-api:MODULE``.

The ops are the standard's own functions (exp, log1p, tanh, logaddexp, negative, add,
subtract, multiply, abs, maximum, clip, max, matmul) and ffnspec's one-line compositions of
them (softplus(z) = logaddexp(0, z), relu(z) = maximum(z, 0), ...; said beside each).  Every
other op (sigmoid, softmax, the losses, ...) lies outside the standard and is reported *not
implemented*.  Derivatives: ffnspec's back-propagation engine over the namespace.

MODULE is imported and its namespace taken from array-api-compat (``array_namespace``), so
``numpy``, ``torch``, ``cupy`` and ``jax.numpy`` get their compatible namespace and
``array_api_strict`` is itself.  The dtypes are the standard's float32 and float64, and float16
where the namespace has it (an extension); the device is the namespace's default device.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Sequence

import numpy as np

from ffnspec.adapters import BackendUnavailable, OpTable, backprop, flush_conventions, quiet, value_conventions

DEFAULT_MODULE = "array_api_strict"


def standard_ops(xp: Any) -> dict[str, Callable]:
    """op -> a standard function of ``xp``, or a one-line composition of them."""
    def zero(z):
        return xp.zeros_like(z)

    return {
        "neg": xp.negative, "exp": xp.exp, "log1p": xp.log1p, "add": xp.add, "sub": xp.subtract,
        "mul": xp.multiply, "tanh": xp.tanh, "logaddexp": xp.logaddexp, "abs": xp.abs,
        "copy": lambda z: xp.asarray(z, copy=True),
        "softplus": lambda z: xp.logaddexp(zero(z), z),                   # composed: log(e^0 + e^z)
        "log_sigmoid": lambda z: xp.negative(xp.logaddexp(zero(z), xp.negative(z))),  # composed: -softplus(-z)
        "relu": lambda z: xp.maximum(z, zero(z)),                         # composed: maximum(z, 0)
        "hardtanh": lambda z: xp.clip(z, -1.0, 1.0),                       # composed: clip(z, -1, 1)
        "maxout": lambda z, k: xp.max(xp.reshape(z, z.shape[:-1] + (z.shape[-1] // k, k)), axis=-1),
        "lowrank": lambda x, V, U: xp.matmul(xp.matmul(x, xp.matrix_transpose(U)), xp.matrix_transpose(V)),
        "cov_from_factor": lambda b: xp.matmul(b, xp.matrix_transpose(b)),
        # bp: the graph primitives (differentiated by ffnspec's engine over the namespace)
        "div": lambda a, b: xp.divide(a, b), "log": lambda z: xp.log(z), "sin": lambda z: xp.sin(z),
        "cos": lambda z: xp.cos(z), "maximum": lambda a, b: xp.maximum(a, b),
        "where": lambda c, a, b: xp.where(c != 0, a, b), "matmul": lambda a, b: xp.matmul(a, b),
        "sum": lambda z, axis=None: xp.sum(z, axis=axis), "mean": lambda z, axis=None: xp.mean(z, axis=axis),
    }


def _sigmoid(xp: Any, z: Any) -> Any:
    e = xp.exp(xp.negative(xp.abs(z)))
    return xp.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _device_name(device: Any) -> str:
    text = str(device).lower()
    return "cuda" if ("cuda" in text or "gpu" in text) else "cpu" if "cpu" in text else "default"


class ArrayApiBackend:
    """The Array API namespace of ``module`` (default array_api_strict)."""

    deviations = "array_api.toml"

    def __init__(self, module: str = DEFAULT_MODULE, *, xp: Any = None) -> None:
        if xp is None:
            try:
                import array_api_compat
            except ImportError as e:
                raise BackendUnavailable(f"cannot import array_api_compat: {e} (pip install 'ffnspec[array-api]')") from None
            try:
                lib = importlib.import_module(module)
            except ImportError as e:
                raise BackendUnavailable(f"cannot import {module}: {e}") from None
            try:
                xp = array_api_compat.array_namespace(lib.asarray([0.0]))
            except (TypeError, AttributeError) as e:
                raise BackendUnavailable(f"{module} has no Array API namespace that array-api-compat knows: {e}") from None
        self.xp = xp
        self.name = f"array-api:{module}"
        self.version = f"{module} {getattr(xp, '__version__', '')}, standard {getattr(xp, '__array_api_version__', '?')}"
        self._device = xp.__array_namespace_info__().default_device() \
            if hasattr(xp, "__array_namespace_info__") else None
        self.devices = (_device_name(self._device),)
        self._dtypes = {d: getattr(xp, d) for d in ("float16", "float32", "float64") if hasattr(xp, d)}
        self.dtypes = frozenset(self._dtypes)
        self.ops = OpTable({op: quiet(f) for op, f in standard_ops(xp).items()})
        # The engine's rules for softplus' and log_sigmoid' read sigma from the backend, which the
        # standard lacks: for those rules only (never a measured op), sigma from the standard's exp
        # in the two-branch form (e = e^-|z|: 1/(1+e) or e/(1+e)), a few ULP, so the derivative
        # records measure the library's exp and division rather than a cancellation of ffnspec's.
        self._rule_ops = OpTable({**self.ops, "sigmoid": quiet(lambda z: _sigmoid(xp, z))})
        # probed on the ops: subnormals, relu(-0) = maximum(-0, +0) (implementation-defined in the
        # standard); the derivative conventions are the engine's
        self.conventions = {**flush_conventions(self), **backprop.CONVENTIONS, **value_conventions(self)}

    # -- conversions ---------------------------------------------------------------
    def asarray(self, a: np.ndarray, dtype: str, device: str | None = None) -> Any:
        host = np.array(a, dtype=np.dtype(dtype))  # exact: the values are representable
        return self.xp.asarray(host, dtype=self._dtypes[dtype], device=self._device, copy=True)

    def asindex(self, a: np.ndarray, device: str | None = None) -> Any:
        return self.xp.asarray(np.array(a, dtype=np.int64), dtype=self.xp.int64, device=self._device)

    def to_numpy(self, x: Any) -> np.ndarray:
        try:
            host = np.from_dlpack(x)  # the standard's interchange (CPU arrays)
        except (TypeError, RuntimeError, BufferError, AttributeError):
            host = np.asarray(x)
        return np.array(host, dtype=np.float64, copy=True)

    def dtype_of(self, x: Any) -> str:
        for name, dt in self._dtypes.items():
            if x.dtype == dt:
                return name
        return str(x.dtype)

    # -- derivatives: ffnspec's engine over the namespace ---------------------------------
    def vjp(self, fn: Callable, primals: Sequence[Any], cotangent: Any):
        return backprop.vjp(self.xp, self._rule_ops, fn, primals, cotangent)

    def jvp(self, fn: Callable, primals: Sequence[Any], tangents: Sequence[Any]):
        return backprop.jvp(self.xp, self._rule_ops, fn, primals, tangents)
