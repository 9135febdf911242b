"""Calling a backend under supervision.

Every op call converts exact float64 inputs to the backend, runs the op, and
checks the ground rules on the way back: the op must not raise, must return the
input's shape and dtype (num.shape, num.dtype), must return values representable
in that dtype, and must leave its inputs bitwise unchanged (num.no_mutation).
A violation is an ``AdapterFault`` reported against the clause being checked.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ffnspec.adapters import Backend
from ffnspec.reference.floatformat import Format, get_format, is_representable


MODES = ("vjp", "jvp")  # reverse and forward mode

# Here rather than in floatformat: floatformat's source is in every shipped table's sources hash.
_CASTS = {"float16": np.float16, "float32": np.float32}


def _representable(y: np.ndarray, fmt: Format) -> np.ndarray:
    """Which float64 values are fmt values: a round trip through NumPy's own cast where it has
    the dtype (bfloat16: ml_dtypes', if a backend loaded it; a value survives a round trip iff
    representable, whatever the cast's rounding), else floatformat's correct rounding."""
    cast = _CASTS.get(fmt.name)
    if cast is None and fmt.name == "bfloat16" and "ml_dtypes" in sys.modules:
        cast = sys.modules["ml_dtypes"].bfloat16
    if cast is None:
        return is_representable(y, fmt)
    with np.errstate(over="ignore", invalid="ignore"):
        return (y.astype(cast).astype(np.float64) == y) | np.isnan(y)


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
    strict: bool = False       # accuracy findings fail (--strict, the strict profile)
    fmt: Format = field(init=False)

    def __post_init__(self) -> None:
        self.fmt = get_format(self.dtype)

    @property
    def ftz(self) -> bool:
        """Declared flush-to-zero for this dtype: conventions["flush_to_zero"] = "yes"/"no",
        optionally narrowed by conventions["flush_to_zero_dtypes"] = "float32,float64"."""
        conv = self.backend.conventions
        if str(conv.get("flush_to_zero", "no")).lower() not in ("yes", "true", "1"):
            return False
        dtypes = conv.get("flush_to_zero_dtypes")
        return dtypes is None or self.dtype in str(dtypes).split(",")

    def offers(self, op: str) -> bool:
        """Whether the backend provides op in this target's dtype (its OpTable and op_dtypes)."""
        only = getattr(self.backend, "op_dtypes", None) or {}
        return op in self.backend.ops and (op not in only or self.dtype in only[op])

    def require(self, *ops: str) -> None:
        missing = [o for o in ops if o not in self.backend.ops]
        if missing:
            raise NotImplementedByBackend(f"backend {self.backend.name!r} does not implement op(s): {', '.join(missing)}")
        only = getattr(self.backend, "op_dtypes", None) or {}  # ops the library offers in some dtypes only
        narrow = [o for o in ops if o in only and self.dtype not in only[o]]
        if narrow:
            raise NotImplementedByBackend(f"backend {self.backend.name!r} declares op(s) {', '.join(narrow)} "
                                          f"unavailable in {self.dtype} (op_dtypes)")

    def require_mode(self, mode: str) -> None:
        if not callable(getattr(self.backend, mode, None)):
            what = "Hessian-vector product" if mode == "hvp" else "forward/reverse mode"
            raise NotImplementedByBackend(f"backend {self.backend.name!r} has no {mode} ({what}) capability")

    # -- conversions with checks -------------------------------------------------
    def to_backend(self, a: np.ndarray) -> Any:
        try:
            return self.backend.asarray(np.asarray(a, dtype=np.float64), self.dtype, self.device)
        except Exception as e:
            raise AdapterFault("num.dtype", f"asarray(..., {self.dtype!r}, {self.device!r}) raised {type(e).__name__}: {e}") from None

    def from_backend(self, x: Any, *, like: np.ndarray, what: str) -> np.ndarray:
        try:
            dt = self.backend.dtype_of(x)
            raw = self.backend.to_numpy(x)
            y = np.asarray(raw, dtype=np.float64)
        except Exception as e:
            raise AdapterFault("num.dtype", f"{what} returned {type(x).__name__} that to_numpy/dtype_of cannot read: "
                                            f"{type(e).__name__}: {e}") from None
        if dt != self.dtype:
            raise AdapterFault("num.dtype", f"{what} returned dtype {dt}, input dtype {self.dtype}")
        if y.shape != like.shape:
            raise AdapterFault("num.shape", f"{what} returned shape {y.shape}, input shape {like.shape}")
        if self.dtype in ("float32", "float64") and getattr(raw, "dtype", None) == np.dtype(self.dtype):
            return y  # a NumPy array of the dtype itself holds only its values
        bad = ~_representable(y, self.fmt)
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
        except NotImplementedError as e:  # the adapter says it lacks this: not implemented, never a pass
            raise NotImplementedByBackend(f"{what}: {e}") from None
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

    # -- structured ops and programs: several inputs of their own shapes, keyword
    # parameters (hid family); supervised like the calls above ---------------------
    def apply(self, op: str, *args: np.ndarray, shape: tuple[int, ...], **params: Any) -> np.ndarray:
        """op(*args, **params) with arguments of their own shapes (no broadcasting, e.g. a PReLU
        slope of shape (C, 1)); the result must have ``shape`` and the target dtype."""
        self.require(op)
        arrays = [np.asarray(a, dtype=np.float64) for a in args]
        xs = [self.to_backend(a) for a in arrays]
        before = self._snapshot(xs)
        what = f"{self.backend.name}.ops.{op}"
        out = self._run(what, lambda: self.backend.ops[op](*xs, **params))
        self._check_unchanged(xs, before, what)
        return self.from_backend(out, like=np.empty(shape), what=what)

    def gradient(self, fn: Callable, primals: Sequence[np.ndarray], seed, *, mode: str,
                 shape: tuple[int, ...], uses: Sequence[str]):
        """(value, derivative) of the program ``fn(ops, *primals)`` (result shape ``shape``).
        mode "vjp": ``seed`` is the cotangent; the derivative is one gradient per primal, of its
        shape.  mode "jvp": ``seed`` is one tangent per primal; the derivative is the output
        tangent.  Primals and seeds must come back unchanged; every array has the target dtype."""
        self.require(*uses)
        self.require_mode(mode)
        ps = [np.asarray(a, dtype=np.float64) for a in primals]
        seeds = [np.asarray(seed, dtype=np.float64)] if mode == "vjp" else [np.asarray(t, dtype=np.float64)
                                                                           for t in seed]
        xs, ss = [self.to_backend(a) for a in ps], [self.to_backend(a) for a in seeds]
        before = self._snapshot(xs + ss)
        what = f"{self.backend.name}.{mode}(program)"
        if mode == "vjp":
            out, grads = self._run(what, lambda: self.backend.vjp(fn, xs, ss[0]))
        else:
            out, grads = self._run(what, lambda: self.backend.jvp(fn, xs, ss))
        self._check_unchanged(xs + ss, before, what)
        value = self.from_backend(out, like=np.empty(shape), what=what)
        if mode == "jvp":
            return value, self.from_backend(grads, like=np.empty(shape), what=what)
        if len(grads) != len(ps):
            raise AdapterFault("num.shape", f"{what} returned {len(grads)} gradients for {len(ps)} primals")
        return value, [self.from_backend(g, like=a, what=what) for g, a in zip(grads, ps)]

    def hessian_vector(self, fn: Callable, primals: Sequence[np.ndarray], tangents: Sequence[np.ndarray], *,
                       uses: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        """(value, H t per primal) of the scalar program ``fn(ops, *primals)`` through the backend's
        ``hvp(fn, primals, tangents)`` (bp family); supervised like ``gradient``."""
        self.require(*uses)
        self.require_mode("hvp")
        ps = [np.asarray(a, dtype=np.float64) for a in primals]
        ts = [np.asarray(t, dtype=np.float64) for t in tangents]
        xs, tb = [self.to_backend(a) for a in ps], [self.to_backend(t) for t in ts]
        before = self._snapshot(xs + tb)
        what = f"{self.backend.name}.hvp(program)"
        out, hv = self._run(what, lambda: self.backend.hvp(fn, xs, tb))
        self._check_unchanged(xs + tb, before, what)
        value = self.from_backend(out, like=np.empty(()), what=what)
        if len(hv) != len(ps):
            raise AdapterFault("num.shape", f"{what} returned {len(hv)} products for {len(ps)} primals")
        return value, [self.from_backend(h, like=a, what=what) for h, a in zip(hv, ps)]

    def count_vjp(self, fn: Callable, primals: Sequence[np.ndarray], cotangent: np.ndarray, *,
                  uses: Sequence[str]) -> dict[str, int]:
        """The backend's own counts of one reverse sweep (``count_vjp``: ``applications`` of
        derivative rules, ``edges`` of its graph), where it exposes them (bp family)."""
        self.require(*uses)
        if not callable(getattr(self.backend, "count_vjp", None)):
            raise NotImplementedByBackend(f"backend {self.backend.name!r} exposes no counts of its reverse sweep "
                                          "(count_vjp): the cost of its back-propagation cannot be observed")
        xs = [self.to_backend(np.asarray(a, dtype=np.float64)) for a in primals]
        cot = self.to_backend(np.asarray(cotangent, dtype=np.float64))
        what = f"{self.backend.name}.count_vjp(program)"
        counts = self._run(what, lambda: self.backend.count_vjp(fn, xs, cot))
        if not isinstance(counts, dict) or not all(isinstance(counts.get(k), int) for k in ("applications", "edges")):
            raise AdapterFault(None, f"{what} returned {counts!r}, not a dict of int applications and edges")
        return counts

    def count_jacobian(self, fn: Callable, primals: Sequence[np.ndarray], *, mode: str,
                       uses: Sequence[str]) -> dict[str, int]:
        """The backend's own counts of the full Jacobian of ``fn(ops, *primals)`` with respect to
        ``primals[0]`` by ``mode`` (``count_jacobian``: ``sweeps``, ``madds`` scalar multiply-adds),
        where it exposes them (bp family)."""
        self.require(*uses)
        self.require_mode(mode)
        if not callable(getattr(self.backend, "count_jacobian", None)):
            raise NotImplementedByBackend(f"backend {self.backend.name!r} exposes no operation counts of its "
                                          "sweeps (count_jacobian): the cost of reverse against forward mode "
                                          "cannot be observed")
        xs = [self.to_backend(np.asarray(a, dtype=np.float64)) for a in primals]
        what = f"{self.backend.name}.count_jacobian(program, mode={mode!r})"
        counts = self._run(what, lambda: self.backend.count_jacobian(fn, xs, mode))
        if not isinstance(counts, dict) or not all(isinstance(counts.get(k), int) for k in ("sweeps", "madds")):
            raise AdapterFault(None, f"{what} returned {counts!r}, not a dict of int sweeps and madds")
        return counts

    def call_inplace(self, op: str, z: np.ndarray, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        """(what the in-place variant returned, its argument afterwards): writing into the
        argument is the op's contract, so mutation is expected here and nowhere else."""
        self.require(op)
        z = np.asarray(z, dtype=np.float64)
        x = self.to_backend(z)
        what = f"{self.backend.name}.ops.{op}"
        out = self._run(what, lambda: self.backend.ops[op](x, **params))
        return self.from_backend(out, like=z, what=what), self.from_backend(x, like=z, what=what)


    # -- ops over rows and batches (out family: softmax, logsumexp, losses; conformance/
    # out.py).  Arguments keep their own shapes; class labels cross as integers
    # (``asindex``); the result's shape follows REDUCTION_SHAPES. ----------------------
    def to_backend_index(self, a: np.ndarray) -> Any:
        fn = getattr(self.backend, "asindex", None)
        if not callable(fn):
            raise NotImplementedByBackend(f"backend {self.backend.name!r} has no asindex (integer class labels)")
        try:
            return fn(np.asarray(a, dtype=np.int64), self.device)
        except Exception as e:
            raise AdapterFault("num.dtype", f"asindex(..., {self.device!r}) raised {type(e).__name__}: {e}") from None

    def _reduction_args(self, op: str, args: Sequence[np.ndarray]) -> list:
        index = INDEX_ARGS.get(op, ())
        return [self.to_backend_index(a) if i in index else self.to_backend(a) for i, a in enumerate(args)]

    def call_reduction(self, op: str, *args: np.ndarray) -> np.ndarray:
        """op(*args) for an op over rows or a batch, supervised like ``call``."""
        self.require(op)
        arrays = [np.asarray(a, dtype=np.float64) for a in args]
        xs = self._reduction_args(op, arrays)
        before = self._snapshot(xs)
        what = f"{self.backend.name}.ops.{op}"
        out = self._run(what, lambda: self.backend.ops[op](*xs))
        self._check_unchanged(xs, before, what)
        return self.from_backend(out, like=np.empty(reduction_shape(op, [a.shape for a in arrays])), what=what)

    def reduction_derivative(self, op: str, args: Sequence[np.ndarray], wrt: Sequence[int], seed, *,
                             mode: str) -> tuple[np.ndarray, Any]:
        """(value, derivative) of op w.r.t. the arguments at positions ``wrt`` (the others, labels
        included, are held fixed and must come back unchanged): vjp -> one gradient per wrt
        argument; jvp (``seed`` = one tangent per wrt argument) -> the output tangent."""
        arrays = [np.asarray(a, dtype=np.float64) for a in args]
        fixed = {i: x for i, x in enumerate(self._reduction_args(op, arrays)) if i not in wrt}
        before = self._snapshot(list(fixed.values()))
        out = self.gradient(_BoundProgram(op, tuple(wrt), fixed), [arrays[i] for i in wrt], seed, mode=mode,
                            shape=reduction_shape(op, [a.shape for a in arrays]), uses=[op])
        self._check_unchanged(list(fixed.values()), before, f"{self.backend.name}.{mode}({op})")
        return out


# Output shapes of the ops that are not elementwise: "same" (softmax over the last axis),
# "rows" (one value per row: the last axis reduced), "scalar" (the whole array reduced),
# "gram" (B B^T over the last two axes).  Positions of integer (class label) arguments.
REDUCTION_SHAPES = {
    "softmax": "same", "log_softmax": "same",
    "logsumexp": "rows", "cross_entropy": "rows", "nll": "rows", "cross_entropy_soft": "rows", "kl_div": "rows",
    "mdn_nll": "rows",
    "cross_entropy_sum": "scalar", "cross_entropy_mean": "scalar", "mse": "scalar", "mae": "scalar",
    "cov_from_factor": "gram",
}
INDEX_ARGS = {"cross_entropy": (1,), "cross_entropy_sum": (1,), "cross_entropy_mean": (1,), "nll": (1,)}
# elementwise ops of several arguments checked as out-family groups: the losses, and logaddexp
ELEMENTWISE_GROUPED = ("bce", "bce_pos_weight", "bce_prob", "half_sq_error", "gaussian_nll", "logaddexp")


def is_reduction_op(op: str) -> bool:
    """An op over rows or a batch, or an elementwise op of ELEMENTWISE_GROUPED (called through ``call_reduction``)."""
    return op in REDUCTION_SHAPES or op in ELEMENTWISE_GROUPED


def reduction_shape(op: str, shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    """The result shape of op at arguments of these shapes (elementwise ops: the broadcast shape)."""
    rule = REDUCTION_SHAPES.get(op)
    if rule == "same":
        return tuple(shapes[0])
    if rule == "rows":
        return tuple(shapes[0][:-1])
    if rule == "scalar":
        return ()
    if rule == "gram":
        return tuple(shapes[0][:-1]) + tuple(shapes[0][-2:-1])
    return tuple(np.broadcast_shapes(*shapes))


def items(a: np.ndarray) -> np.ndarray:
    """(items, k): one row per item, the components flattened."""
    return np.asarray(a, dtype=np.float64).reshape(a.shape[0], -1) if np.ndim(a) else np.reshape(a, (1, 1))


def call_items(target: Target, op: str, group: tuple[np.ndarray, ...]) -> np.ndarray:
    """op on a group, (items, k): one call for row-wise ops, one call per item for ops that
    reduce a whole array."""
    if REDUCTION_SHAPES.get(op) == "scalar":
        return np.array([target.call_reduction(op, *[a[i] for a in group]) for i in range(group[0].shape[0])])[:, None]
    return items(target.call_reduction(op, *group))


class _BoundProgram:
    """fn(ops, *primals) = ops[op](*args) with the primals placed at positions ``wrt`` and the
    other (backend) arguments held fixed."""

    def __init__(self, op: str, wrt: tuple[int, ...], fixed: dict[int, Any]):
        self.op, self.wrt, self.fixed = op, wrt, fixed

    def __call__(self, ops, *primals):
        args = dict(self.fixed)
        args.update(zip(self.wrt, primals))
        return ops[self.op](*[args[i] for i in range(len(args))])

@dataclass(frozen=True)
class OpProgram:
    """fn(ops, *xs) = ops[op](*xs, **params); with ``copy``, the first argument is copied first
    (in-place variants must not write into a primal)."""
    op: str
    params: tuple[tuple[str, Any], ...] = ()
    copy: bool = False

    def __call__(self, ops, *xs):
        if self.copy:
            xs = (ops.copy(xs[0]),) + tuple(xs[1:])
        return ops[self.op](*xs, **dict(self.params))


@dataclass(frozen=True)
class _UnaryProgram:
    op: str

    def __call__(self, ops, z):
        return ops[self.op](z)


def _unary_program(op: str) -> Callable:
    return _UnaryProgram(op)

