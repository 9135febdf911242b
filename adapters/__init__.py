"""Adapters: how ffnspec talks to a backend.

NumPy float64 arrays holding exactly representable values cross the boundary; a
backend converts them with ``asarray`` and back with ``to_numpy``.  Backend imports
stay inside each ``*_backend.py`` module.  A backend is selected by entry-point name
(group ``ffnspec.adapters``), as ``NAME:ARGUMENT`` for an entry point whose class takes
one argument (``array-api:array_api_strict``), or as ``package.module:Class``.
"""
from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

ENTRY_POINT_GROUP = "ffnspec.adapters"
DTYPES = ("float16", "bfloat16", "float32", "float64")


class BackendError(RuntimeError):
    """A backend cannot be found, loaded or used as asked."""


class BackendUnavailable(ImportError):
    """Raised by an adapter's constructor: its library or device is not here (the message
    says which), e.g. "cannot import cupy: No module named 'cupy'"."""


class OpTable(Mapping[str, Callable]):
    """Op name -> callable, readable as ``ops.sigmoid(z)``.  Missing ops are absent."""

    def __init__(self, ops: Mapping[str, Callable]):
        self._ops = dict(ops)

    def __getitem__(self, name: str) -> Callable:
        return self._ops[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ops)

    def __len__(self) -> int:
        return len(self._ops)

    def __getattr__(self, name: str) -> Callable:
        try:
            return self._ops[name]
        except KeyError:
            raise AttributeError(f"op {name!r} is not implemented by this backend") from None


@runtime_checkable
class Backend(Protocol):
    """What an adapter provides.  ``vjp``/``jvp`` are optional capabilities.

    Programs (a composition to differentiate) are written ``fn(ops, *args)`` so
    that one program runs on every backend.  Conventions are declared, e.g.
    ``{"flush_to_zero": "no", "relu_grad_at_0": "0"}``.
    """

    name: str
    dtypes: frozenset[str]
    devices: tuple[str, ...]
    conventions: Mapping[str, str]
    ops: OpTable

    def asarray(self, a: np.ndarray, dtype: str, device: str) -> Any: ...

    def to_numpy(self, x: Any) -> np.ndarray: ...

    def dtype_of(self, x: Any) -> str: ...

    def vjp(self, fn: Callable, primals: Sequence[Any], cotangent: Any) -> tuple[Any, tuple[Any, ...]]:
        """(fn(ops, *primals), cotangent-weighted gradients w.r.t. each primal)."""
        ...

    def jvp(self, fn: Callable, primals: Sequence[Any], tangents: Sequence[Any]) -> tuple[Any, Any]:
        """(fn(ops, *primals), directional derivative along tangents)."""
        ...


def quiet(f: Callable) -> Callable:
    """f with NumPy's floating-point warnings off: an overflow to inf is a result to measure."""
    def op(*args, **params):
        with np.errstate(all="ignore"):
            return f(*args, **params)
    op.__name__ = getattr(f, "__name__", "op")
    return op


# dtype -> (a subnormal x, a normal a and b whose product is subnormal)
SUBNORMAL_PROBES = {"float16": (2.0 ** -20, 2.0 ** -10, 2.0 ** -10),
                    "bfloat16": (2.0 ** -130, 2.0 ** -100, 2.0 ** -30),
                    "float32": (2.0 ** -140, 2.0 ** -100, 2.0 ** -30),
                    "float64": (2.0 ** -1070, 2.0 ** -1000, 2.0 ** -30)}


def flushes_subnormals(backend: Any, dtype: str, device: str) -> bool:
    """Whether the backend's own ``mul`` in dtype on device flushes a subnormal result (FTZ)
    or reads a subnormal input as zero (DAZ): probed, not assumed."""
    x, a, b = (backend.asarray(np.array([v]), dtype, device) for v in SUBNORMAL_PROBES[dtype])
    two = backend.asarray(np.array([2.0]), dtype, device)
    return (float(backend.to_numpy(backend.ops.mul(x, two))[0]) == 0.0
            or float(backend.to_numpy(backend.ops.mul(a, b))[0]) == 0.0)


def flush_conventions(backend: Any) -> dict[str, str]:
    """The flush-to-zero declaration from probing every dtype on every device: one flag for
    the harness, the flushing dtypes and devices for the record."""
    found = [(t, d) for t in DTYPES if t in backend.dtypes for d in backend.devices
             if flushes_subnormals(backend, t, d)]
    dtypes = [t for t in DTYPES if any(t == f for f, _ in found)]
    devices = [d for d in backend.devices if any(d == g for _, g in found)]
    return {"flush_to_zero": "yes" if found else "no", "flush_to_zero_dtypes": ",".join(dtypes) or "none",
            "flush_to_zero_devices": ",".join(devices) or "none"}


def value_conventions(backend: Any, dtype: str = "float32", device: str | None = None) -> dict[str, str]:
    """The value conventions an op's library leaves open, probed on the backend's own ops:
    relu(-0) (a maximum's sign of zero is implementation-defined) and softmax of a row of
    only -inf.  Only for ops the backend has; a result outside the allowed values is declared
    as measured, so [hid.conventions] and [out.softmax.all_masked] report it."""
    device = device or backend.devices[0]
    with np.errstate(all="ignore"):  # -inf - (-inf) in the masked row is the point
        return _value_conventions(backend, dtype, device)


def _value_conventions(backend: Any, dtype: str, device: str) -> dict[str, str]:
    out = {}
    if "relu" in backend.ops:
        r = float(backend.to_numpy(backend.ops.relu(backend.asarray(np.array([-0.0]), dtype, device)))[0])
        out["relu_at_minus_0"] = "-0" if r == 0 and np.signbit(r) else "+0" if r == 0 else repr(r)
    if "softmax" in backend.ops:
        s = backend.to_numpy(backend.ops.softmax(backend.asarray(np.array([[-np.inf, -np.inf]]), dtype, device)))
        out["softmax_all_masked"] = ("nan" if np.isnan(s).all() else "zero" if (s == 0).all()
                                     else "uniform" if (s == 0.5).all() else repr(s.tolist()))
    return out


def registered() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _split(spec: str, eps: Mapping[str, metadata.EntryPoint]) -> tuple[str, str | None]:
    """``NAME:ARGUMENT`` when NAME is a registered entry point (a parametrised backend), else
    (spec, None): ``package.module:Class`` keeps its meaning."""
    name, colon, arg = spec.partition(":")
    return (name, arg) if colon and name in eps else (spec, None)


def load_backend(spec: str) -> Backend:
    """Instantiate a backend from an entry-point name, ``NAME:ARGUMENT`` (the entry point's
    class called with ARGUMENT) or ``package.module:Class``."""
    eps = registered()
    name, arg = _split(spec, eps)
    if arg is not None:
        if not arg.strip():
            raise BackendError(f"backend {spec!r}: give an argument after the colon ({name}:ARGUMENT)")
        try:
            cls = eps[name].load()
        except ImportError as e:
            raise BackendError(f"backend {name!r} is registered but cannot load here: {e}") from None
    elif ":" in spec:
        module_name, _, attr = spec.partition(":")
        import os
        import sys
        if os.getcwd() not in sys.path:  # as `python -m` does: a module in the current folder loads
            sys.path.append(os.getcwd())
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise BackendError(f"cannot load backend {spec!r}: {e}") from None
        except Exception as e:  # the adapter's module itself raised on import
            raise BackendError(f"cannot load backend {spec!r}: importing {module_name!r} raised "
                               f"{type(e).__name__}: {e}") from None
    else:
        if spec not in eps:
            known = ", ".join(sorted(eps)) or "none"
            raise BackendError(f"unknown backend {spec!r}; registered: {known} (or give package.module:Class)")
        try:
            cls = eps[spec].load()
        except ImportError as e:
            raise BackendError(f"backend {spec!r} is registered but cannot load here: {e}") from None
    try:
        backend = cls() if arg is None else cls(arg)
    except BackendUnavailable as e:  # the library or its device is not here: not the adapter's fault
        raise BackendError(f"backend {spec!r} cannot load here: {e}") from None
    except Exception as e:  # an adapter's constructor failing is the adapter's fault
        raise BackendError(f"backend {spec!r} failed to initialise: {type(e).__name__}: {e}") from None
    missing = [a for a in ("name", "dtypes", "devices", "conventions", "ops", "asarray", "to_numpy", "dtype_of")
               if not hasattr(backend, a)]
    if missing:
        raise BackendError(f"backend {spec!r} lacks required attributes: {', '.join(missing)}")
    if isinstance(backend.dtypes, str) or isinstance(backend.devices, str):
        raise BackendError(f"backend {spec!r}: dtypes and devices must be collections of strings, "
                           f"e.g. frozenset({{'float32'}}) and ('cpu',), not one string")
    try:
        dtypes, devices, ops = set(backend.dtypes), tuple(backend.devices), backend.ops
    except Exception as e:
        raise BackendError(f"backend {spec!r}: reading dtypes, devices or ops raised {type(e).__name__}: {e}") from None
    if any(not isinstance(d, str) for d in dtypes | set(devices)):
        raise BackendError(f"backend {spec!r}: dtypes and devices must be strings")
    unknown = dtypes - set(DTYPES)
    if unknown:
        raise BackendError(f"backend {spec!r} declares unknown dtypes {sorted(unknown)}; known: {', '.join(DTYPES)}")
    if not dtypes or not devices:
        raise BackendError(f"backend {spec!r} declares no {'dtypes' if not dtypes else 'devices'}")
    if not isinstance(ops, Mapping) or not all(callable(f) for f in ops.values()):
        raise BackendError(f"backend {spec!r}: 'ops' must map op names to callables (an OpTable)")
    if not isinstance(backend.conventions, Mapping):
        raise BackendError(f"backend {spec!r}: 'conventions' must be a mapping of names to strings")
    only = getattr(backend, "op_dtypes", None) or {}
    if not isinstance(only, Mapping) or any(o not in ops or not set(ds) <= set(DTYPES) for o, ds in only.items()):
        raise BackendError(f"backend {spec!r}: 'op_dtypes' must map ops it provides to lists of known dtypes")
    for capability in ("vjp", "jvp"):
        if hasattr(backend, capability) and getattr(backend, capability) is not None \
                and not callable(getattr(backend, capability)):
            raise BackendError(f"backend {spec!r}: {capability!r} must be a method (or absent)")
    return backend


def probe(name: str) -> tuple[bool, str]:
    """Whether a registered backend loads here, and why not if it does not."""
    try:
        b = load_backend(name)
    except BackendError as e:
        return False, str(e)
    named = "" if b.name == name else f"{b.name}: "  # a parametrised backend's default argument
    return True, f"{named}dtypes {', '.join(d for d in DTYPES if d in b.dtypes)}; devices {', '.join(b.devices)}"


def snippet_function(op_call: str, names: Mapping[str, str], arity: Mapping[str, int],
                     inputs: Sequence[float]) -> str:
    """The library function a reproducer line calls for ``op_call`` (as written by
    ffnspec.conformance.machinery.reproduce): its public name, with the hid slope bound when given."""
    import re
    m = re.search(r"ops\.(\w+)\(", op_call)
    if m is None or m.group(1) not in names:
        raise ValueError(f"no op in {op_call!r}")
    op = m.group(1)
    n = arity.get(op, 1)
    if len(inputs) != n:
        raise ValueError(f"{op} takes {n} argument(s), {len(inputs)} given")
    alpha = re.search(r"alpha=([^,)\s]+)", op_call)
    return f"(lambda t: {names[op]}(t, {alpha.group(1)}))" if alpha else names[op]
