"""Reference values for arrays of inputs, cached in memory and on disk.

Exhaustive 16-bit tables and the threshold neighbourhoods are the expensive part
of a run; they are stored as .npz files keyed by the reference function, the
format, the input bytes and a hash of the reference sources, so editing a
reference formula invalidates exactly its tables.
"""
from __future__ import annotations

import hashlib
import inspect
import os
from pathlib import Path

import numpy as np

from ffnspec.reference import function, precision
from ffnspec.reference.floatformat import Format

_DISK_MIN = 512  # arrays smaller than this are memoised per element only
_memo: dict[tuple, tuple[float, float, float]] = {}
_cache_dir: Path | None = Path(os.path.expanduser("~/.cache/ffnspec/reference"))


def set_cache_dir(path: str | os.PathLike | None) -> None:
    """Where tables are stored; None disables the disk cache."""
    global _cache_dir
    _cache_dir = Path(path) if path is not None else None


def _source_hash(name: str) -> str:
    module = inspect.getmodule(function(name))
    parts = [inspect.getsource(module), inspect.getsource(precision), str(precision.GUARD_BITS)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def exact(name: str, args: tuple[np.ndarray, ...], fmt: Format) -> precision.Exact:
    """Exact values of reference ``name`` at the (broadcast) argument arrays."""
    arrays = np.broadcast_arrays(*[np.ascontiguousarray(a, dtype=np.float64) for a in args])
    n = arrays[0].size
    path = None
    if _cache_dir is not None and n >= _DISK_MIN:
        h = hashlib.sha256(f"{name}|{fmt.name}|{_source_hash(name)}".encode())
        for a in arrays:
            h.update(np.ascontiguousarray(a).tobytes())
        path = _cache_dir / f"{name}-{fmt.name}-{h.hexdigest()[:24]}.npz"
        if path.exists():
            try:
                with np.load(path) as data:
                    return precision.Exact(data["hi"], data["lo"], data["cr"])
            except (OSError, ValueError, KeyError):
                pass  # a corrupt cache entry is recomputed
    f = function(name)
    flat = [a.ravel().tolist() for a in arrays]
    hi, lo, cr = np.empty(n), np.empty(n), np.empty(n)
    for i, xs in enumerate(zip(*flat)):
        key = (name, fmt.name, xs)
        v = _memo.get(key)
        if v is None:
            v = _memo[key] = precision.evaluate(f, xs, fmt)
        hi[i], lo[i], cr[i] = v
    shape = arrays[0].shape
    result = precision.Exact(hi.reshape(shape), lo.reshape(shape), cr.reshape(shape))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, hi=result.hi, lo=result.lo, cr=result.cr)
        os.replace(tmp, path)
    return result


def approximate(name: str, args: tuple[np.ndarray, ...]) -> np.ndarray:
    """Float64 approximations (for error scales S); shares the exact-value cache."""
    from ffnspec.reference.floatformat import FORMATS
    e = exact(name, args, FORMATS["float64"])
    return e.hi + e.lo


# --- vector-valued references: one evaluation per item (a row, a batch) -------------------

def _item_args(arrays: list[np.ndarray], i: int) -> tuple:
    """Item i of every argument: a float, a row (list) or a batch of rows (nested lists)."""
    return tuple(a[i].tolist() if a.ndim > 1 else float(a[i]) for a in arrays)


def _items(name: str, args: tuple[np.ndarray, ...], fmt_name: str, compute, kind: str):
    """(items, k) arrays of reference ``name`` per item (leading axis) of ``args``, memoised per
    item and cached on disk for large sets."""
    arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in args]
    m = arrays[0].shape[0]
    path = None
    if _cache_dir is not None and sum(a.size for a in arrays) >= _DISK_MIN:
        h = hashlib.sha256(f"{kind}|{name}|{fmt_name}|{_source_hash(name)}".encode())
        for a in arrays:
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
        path = _cache_dir / f"{name}-{kind}-{fmt_name}-{h.hexdigest()[:24]}.npz"
        if path.exists():
            try:
                with np.load(path) as data:
                    return [data[k] for k in data.files]
            except (OSError, ValueError, KeyError):
                pass  # a corrupt cache entry is recomputed
    parts = 3 if kind == "exact" else 1  # (hi, lo, cr) or the approximation
    if m == 0:
        return [np.empty((0, 1)) for _ in range(parts)]
    f = function(name)
    rows = []
    for i in range(m):
        xs = _item_args(arrays, i)
        key = (kind, name, fmt_name, tuple(a[i].tobytes() for a in arrays))
        v = _memo.get(key)
        if v is None:
            v = _memo[key] = compute(f, xs)
        rows.append(v)
    out = [np.array([[c[j] for c in r] for r in rows], dtype=np.float64).reshape(m, -1) for j in range(parts)]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, *out)
        os.replace(tmp, path)
    return out


def exact_items(name: str, args: tuple[np.ndarray, ...], fmt: Format) -> precision.Exact:
    """Exact values of a vector-valued reference per item: (items, k) arrays, each component
    correctly rounded to fmt (Ziv per component)."""
    hi, lo, cr = _items(name, args, fmt.name, lambda f, xs: precision.evaluate_vector(f, xs, fmt), "exact")
    return precision.Exact(hi, lo, cr)


def approximate_items(name: str, args: tuple[np.ndarray, ...]) -> np.ndarray:
    """Float64 approximations per item, (items, k): error scales S and accumulation terms A."""
    (v,) = _items(name, args, "approx", lambda f, xs: [(x,) for x in precision.approximate_vector(f, xs)], "approx")
    return v
