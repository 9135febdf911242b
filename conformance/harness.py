"""Calling a backend under supervision.

Every op call converts exact float64 inputs to the backend, runs the op, and
checks the ground rules on the way back: the op must not raise, must return the
input's shape and dtype (num.shape, num.dtype), must return values representable
in that dtype, and must leave its inputs bitwise unchanged (num.no_mutation).
A violation is an ``AdapterFault`` reported against the clause being checked.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ffnspec.adapters import Backend
from ffnspec.reference.floatformat import Format, get_format, is_representable


class AdapterFault(AssertionError):
    """The backend misbehaved structurally; ``rule`` is the num.* clause it broke, or
    None when an adapter call raised (a failure of whichever clause is being checked)."""

    def __init__(self, rule: str | None, message: str):
        super().__init__(f"[{rule}] {message}" if rule else message)
        self.rule = rule


class NotImplementedByBackend(Exception):
    """The backend lacks an op or capability: reported as 'not implemented', never a pass."""


@dataclass
class Target:
    backend: Backend
    backend_spec: str          # what the user passed: entry-point name or module:Class
    dtype: str
    device: str
    fmt: Format = field(init=False)

    def __post_init__(self) -> None:
        self.fmt = get_format(self.dtype)

    @property
    def ftz(self) -> bool:
        return str(self.backend.conventions.get("flush_to_zero", "no")).lower() in ("yes", "true", "1")

    def require(self, *ops: str) -> None:
        missing = [o for o in ops if o not in self.backend.ops]
        if missing:
            raise NotImplementedByBackend(f"backend {self.backend.name!r} does not implement op(s): {', '.join(missing)}")

    def require_mode(self, mode: str) -> None:
        if not callable(getattr(self.backend, mode, None)):
            raise NotImplementedByBackend(f"backend {self.backend.name!r} has no {mode} (forward/reverse mode) capability")

    # -- conversions with checks -------------------------------------------------
    def to_backend(self, a: np.ndarray) -> Any:
        try:
            return self.backend.asarray(np.asarray(a, dtype=np.float64), self.dtype, self.device)
        except Exception as e:
            raise AdapterFault("num.dtype", f"asarray(..., {self.dtype!r}, {self.device!r}) raised {type(e).__name__}: {e}") from None

    def from_backend(self, x: Any, *, like: np.ndarray, what: str) -> np.ndarray:
        try:
            dt = self.backend.dtype_of(x)
            y = np.asarray(self.backend.to_numpy(x), dtype=np.float64)
        except Exception as e:
            raise AdapterFault("num.dtype", f"{what} returned {type(x).__name__} that to_numpy/dtype_of cannot read: "
                                            f"{type(e).__name__}: {e}") from None
        if dt != self.dtype:
            raise AdapterFault("num.dtype", f"{what} returned dtype {dt}, input dtype {self.dtype}")
        if y.shape != like.shape:
            raise AdapterFault("num.shape", f"{what} returned shape {y.shape}, input shape {like.shape}")
        bad = ~is_representable(y, self.fmt)
        if bad.any():
            raise AdapterFault("num.dtype", f"{what} returned {y[bad].ravel()[0]!r}, not a {self.dtype} value")
        return y

    def _snapshot(self, xs: Sequence[Any]) -> list[np.ndarray]:
        return [np.asarray(self.backend.to_numpy(x), dtype=np.float64).copy() for x in xs]

    def _check_unchanged(self, xs: Sequence[Any], before: list[np.ndarray], what: str) -> None:
        for i, (x, b) in enumerate(zip(xs, before)):
            after = np.asarray(self.backend.to_numpy(x), dtype=np.float64)
            same = (after.view(np.int64) == b.view(np.int64)) if after.shape == b.shape else np.array(False)
            if not np.all(same):
                raise AdapterFault("num.no_mutation", f"{what} modified its input #{i}")

    def _run(self, what: str, thunk: Callable[[], Any]) -> Any:
        try:
            return thunk()
        except (AdapterFault, NotImplementedByBackend):
            raise
        except Exception as e:
            raise AdapterFault(None, f"{what} raised {type(e).__name__}: {e}") from None

    # -- the three ways a check calls a backend -----------------------------------
    def call(self, op: str, *args: np.ndarray) -> np.ndarray:
        """op(*args) elementwise; args broadcast to one shape."""
        self.require(op)
        arrays = np.broadcast_arrays(*[np.asarray(a, dtype=np.float64) for a in args])
        xs = [self.to_backend(a) for a in arrays]
        before = self._snapshot(xs)
        what = f"{self.backend.name}.ops.{op}"
        out = self._run(what, lambda: self.backend.ops[op](*xs))
        self._check_unchanged(xs, before, what)
        return self.from_backend(out, like=arrays[0], what=what)

    def derivative(self, op: str, z: np.ndarray, *, mode: str) -> np.ndarray:
        """d op / dz elementwise, by the backend's reverse (vjp) or forward (jvp) mode."""
        self.require(op)
        self.require_mode(mode)
        z = np.asarray(z, dtype=np.float64)
        zb, one = self.to_backend(z), self.to_backend(np.ones_like(z))
        before = self._snapshot([zb, one])
        fn = _unary_program(op)
        what = f"{self.backend.name}.{mode}({op})"
        if mode == "vjp":
            _, grads = self._run(what, lambda: self.backend.vjp(fn, [zb], one))
            g = grads[0]
        else:
            _, g = self._run(what, lambda: self.backend.jvp(fn, [zb], [one]))
        self._check_unchanged([zb, one], before, what)
        return self.from_backend(g, like=z, what=what)

    def program_vjp(self, fn: Callable, z: np.ndarray, *, ops: Sequence[str]) -> np.ndarray:
        """Reverse-mode derivative of a composite ``fn(ops, z)`` (elementwise in z)."""
        self.require(*ops)
        self.require_mode("vjp")
        z = np.asarray(z, dtype=np.float64)
        zb, one = self.to_backend(z), self.to_backend(np.ones_like(z))
        before = self._snapshot([zb, one])
        what = f"{self.backend.name}.vjp(program)"
        _, grads = self._run(what, lambda: self.backend.vjp(fn, [zb], one))
        self._check_unchanged([zb, one], before, what)
        return self.from_backend(grads[0], like=z, what=what)


@dataclass(frozen=True)
class _UnaryProgram:
    op: str

    def __call__(self, ops, z):
        return ops[self.op](z)


def _unary_program(op: str) -> Callable:
    return _UnaryProgram(op)


def format_float(v: float) -> str:
    """A float as exact Python source: repr for finite, float('inf') etc otherwise."""
    if math.isnan(v):
        return "float('nan')"
    if math.isinf(v):
        return "float('inf')" if v > 0 else "-float('inf')"
    return repr(float(v))
