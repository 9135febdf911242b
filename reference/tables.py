"""Reference values for arrays of inputs: complete 16-bit tables, bounded point stores, and
``prebuild``, which computes what a run will need in parallel before it starts.

Values are the canonical triples of ``precision.py`` (hi, lo, sgn): they do not depend on the
engine or on who asked, so one value serves every clause, seed and process; cr = RN_fmt(t) is
derived on lookup (``floatformat.round_exact``).

  16-bit tables: for an elementwise reference f(z, *params) whose z are float16 (bfloat16)
      values and whose other arguments are fixed, one table per (f, format, params) holds the
      triple at every bit pattern (every finite value and +-inf; NaN inputs take the point
      path), looked up by bit pattern.  It serves rounding to its own format and to float64
      (``approximate``).  Built by ``prebuild``, or at the first request of TABLE_MIN inputs;
      from then on every request of that function and format uses it.
  points and items: other inputs (float32/float64 values, varying extra arguments, the rows of
      vector references) are looked up by their bytes in the function's PointStore.  Requests of
      PERSIST_MIN values or more (the deterministic regions) go to disk; hypothesis draws stay
      in the process, so the cache does not grow with seeds.
Files carry a hash of the reference sources (the function's module, the reference modules it
uses, and the precision code): editing a formula invalidates exactly what depends on it.

Shipped values (``seed/``): the files of the default run's costliest deterministic inputs, as
``benchmarks/seed_cache.py`` built them, under the same names.  A cache that lacks a file takes
the shipped one of the same name (so only current sources are ever used); tests/test_seed.py
regenerates them and compares bit for bit.
"""
from __future__ import annotations

import atexit
import collections
import concurrent.futures
import concurrent.futures.process  # now, not at the first build: pytester's in-process runs restore sys.modules
import contextlib
import functools
import hashlib
import inspect
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ffnspec.reference import balls, floatformat, function, precision, store
from ffnspec.reference.floatformat import FORMATS, Format, round_array, round_exact

TABLE_MIN = 1 << 14  # a 16-bit request this large (a quarter of the grid) builds the whole table
PERSIST_MIN = 512   # requests this large are written to the point store
CHUNK = 2048        # values per task in a parallel build
PARALLEL_MIN = 1 << 14  # fewer values than this are computed in the calling process
SIXTEEN = ("float16", "bfloat16")
_MODE_CODE = {**{name: i for i, name in enumerate(FORMATS)}, "scale": len(FORMATS)}

_cache_dir: Path | None = Path(os.path.expanduser("~/.cache/ffnspec/reference"))
SEED = Path(__file__).parent / "seed"  # shipped files, laid out as the cache directory
_seed_dir: Path | None = SEED


def set_cache_dir(path: str | os.PathLike | None, *, seeded: bool = True) -> None:
    """Where tables and point stores live; None keeps everything in memory.  ``seeded``: a file
    the cache lacks is first taken from the shipped values (``SEED``) of the same name."""
    global _cache_dir, _seed_dir
    flush()
    _cache_dir = Path(path) if path is not None else None
    _seed_dir = SEED if seeded else None
    _tables.clear()
    _stores.clear()
    _absent.clear()
    _listed.clear()
    _memo.clear()


def cache_dir() -> Path | None:
    return _cache_dir


# --- sources ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def sources_hash(name: str) -> str:
    """Hash of everything reference ``name``'s values depend on: its module, the reference
    modules that module uses, and the precision code."""
    module = inspect.getmodule(function(name))
    mods = {module, precision, balls, floatformat}
    for v in vars(module).values():
        m = inspect.getmodule(v)
        if m is not None and m.__name__.startswith("ffnspec.reference."):
            mods.add(m)
    text = "\n".join(inspect.getsource(m) for m in sorted(mods, key=lambda m: m.__name__))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- 16-bit grids ----------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def patterns(fmt_name: str) -> np.ndarray:
    """The value (as float64) of each of the 65536 bit patterns of a 16-bit format."""
    bits = np.arange(1 << 16, dtype=np.uint32)
    with np.errstate(invalid="ignore"):
        if fmt_name == "float16":
            return bits.astype(np.uint16).view(np.float16).astype(np.float64)
        if fmt_name == "bfloat16":
            return (bits << 16).view(np.float32).astype(np.float64)
    raise ValueError(f"{fmt_name} is not a 16-bit format")


def bit_patterns(z: np.ndarray, fmt_name: str) -> np.ndarray:
    """The bit pattern of each value of z, all representable in the 16-bit format."""
    z = np.asarray(z, dtype=np.float64)
    if fmt_name == "float16":
        return z.astype(np.float16).view(np.uint16).astype(np.intp)
    return (z.astype(np.float32).view(np.uint32) >> 16).astype(np.intp)


@dataclass
class Table:
    """The triples of f(z, *params) at every bit pattern z of a 16-bit format."""
    hi: np.ndarray
    lo: np.ndarray
    sgn: np.ndarray


_tables: dict[tuple, Table] = {}
_absent: set[tuple] = set()  # tables known not to be on disk (small requests do not look again)


def _params_text(params: tuple[float, ...]) -> str:
    return "" if not params else "-" + hashlib.sha256(repr([p.hex() for p in params]).encode()).hexdigest()[:8]


def _table_path(key: tuple) -> Path | None:
    name, fmt_name, params = key
    if _cache_dir is None:
        return None
    return _cache_dir / "tables" / f"{name}-{fmt_name}{_params_text(params)}-{sources_hash(name)}.npz"


def _table_meta(key: tuple) -> str:
    name, fmt_name, params = key
    return f"table|{name}|{fmt_name}|{[p.hex() for p in params]}|{sources_hash(name)}"


def _seeded(path: Path) -> None:
    """Put the shipped file of this name into the cache if the cache lacks it (atomically)."""
    if _seed_dir is None or path.exists():
        return
    shipped = _seed_dir / path.parent.name / path.name
    if shipped.is_file():
        with contextlib.suppress(OSError):  # a cache that cannot be written computes instead
            store.write_atomically(path, lambda fh: fh.write(shipped.read_bytes()))


_listed: dict[Path, set[str]] = {}  # file names per directory, listed once per process


def _present(path: Path) -> bool:
    """Whether the cache or the shipped values hold a file of this name, from one listing of
    each directory per process: a table another process writes later is computed again here
    (speed, never results), and a table this process writes is added (``_save_table``)."""
    dirs = [path.parent] + ([_seed_dir / path.parent.name] if _seed_dir is not None else [])
    for d in dirs:
        names = _listed.get(d)
        if names is None:
            try:
                names = _listed[d] = set(os.listdir(d))
            except OSError:
                names = _listed[d] = set()
        if path.name in names:
            return True
    return False


def _load_table(key: tuple) -> Table | None:
    t = _tables.get(key)
    if t is not None:
        return t
    if _cache_dir is None or key in _absent:
        return None
    path = _table_path(key)
    if not _present(path):
        _absent.add(key)
        return None
    _seeded(path)
    data = store.load(path, _table_meta(key))
    if data is None:
        _absent.add(key)
        return None
    t = _tables[key] = Table(data["hi"], data["lo"], data["sgn"])
    return t


@functools.lru_cache(maxsize=4)
def _table_inputs(key: tuple) -> tuple[np.ndarray, list[tuple]]:
    """The bit patterns a table evaluates (every non-NaN one) and their argument tuples."""
    name, fmt_name, params = key
    z = patterns(fmt_name)
    idx = np.flatnonzero(~np.isnan(z))
    return idx, [(float(v), *params) for v in z[idx]]


def _save_table(key: tuple, idx: np.ndarray, packed: Packed) -> Table:
    counts, vhi, vlo, vsgn = packed
    assert (counts == 1).all(), "a 16-bit table holds elementwise (one-component) references"
    hi = np.full(1 << 16, np.nan)
    lo = np.zeros(1 << 16)
    sgn = np.zeros(1 << 16, dtype=np.int8)
    hi[idx], lo[idx], sgn[idx] = vhi, vlo, vsgn
    t = _tables[key] = Table(hi, lo, sgn)
    _absent.discard(key)
    path = _table_path(key)
    if path is not None:
        store.save(path, {"meta": np.array(_table_meta(key)), "hi": hi, "lo": lo, "sgn": sgn})
        _listed.setdefault(path.parent, set()).add(path.name)
    return t


def table(name: str, fmt_name: str, params: tuple[float, ...] = ()) -> Table:
    """The complete table of ``name`` over ``fmt_name``'s bit patterns (built if missing)."""
    key = (name, fmt_name, tuple(float(p) for p in params))
    t = _load_table(key)
    if t is None:
        _run([_TableUnit(key)], jobs=1, progress=None)
        t = _tables[key]
    return t


# --- point stores ----------------------------------------------------------------------

_stores: dict[tuple[str, str], store.PointStore] = {}


def _store(name: str, kind: str) -> store.PointStore:
    s = _stores.get((name, kind))
    if s is None:
        path = None if _cache_dir is None else _cache_dir / "points" / f"{name}-{kind}-{sources_hash(name)}.npz"
        if path is not None:
            _seeded(path)
        s = _stores[(name, kind)] = store.PointStore(path, f"{kind}|{name}|{sources_hash(name)}")
        _register_flush()
    return s


@functools.lru_cache(maxsize=None)
def _register_flush() -> None:
    atexit.register(flush)


def flush() -> None:
    """Write the marked entries of every point store (merged under each file's lock) and keep
    the cache directory within its size bound."""
    for s in list(_stores.values()):
        s.flush()
    if _cache_dir is not None and _cache_dir.exists():
        store.prune(_cache_dir)


def _row_keys(prefix: bytes, arrays: list[np.ndarray]) -> np.ndarray:
    """One key per item (leading axis), an (items, width) uint8 array: prefix + the item's
    bytes (hashed when long)."""
    m = arrays[0].shape[0]
    raw = np.concatenate([np.ascontiguousarray(a).reshape(m, -1).view(np.uint8) for a in arrays], axis=1)
    if raw.shape[1] > 64:
        raw = np.frombuffer(b"".join(hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in raw),
                            dtype=np.uint8).reshape(m, 16)
    head = np.broadcast_to(np.frombuffer(prefix, dtype=np.uint8), (m, len(prefix)))
    return np.concatenate([head, raw], axis=1)


def _prefix(mode: str, arrays: list[np.ndarray]) -> bytes:
    """Key prefix: the mode (the format rounded to, or scale) and the items' shapes."""
    shapes = repr([a.shape[1:] for a in arrays]).encode()
    return bytes([_MODE_CODE[mode]]) + hashlib.blake2b(shapes, digest_size=3).digest()


# --- the in-process memo of whole requests ------------------------------------------------

MEMO_MAX = 1 << 22  # values (items x components) the memo keeps, about 70 MB
REQUEST_MAX = 256   # requests of at most this many inputs (not random draws') are kept whole (requests/)
_memo: collections.OrderedDict[bytes, tuple] = collections.OrderedDict()
_memo_size = [0]


def _requests() -> store.PointStore:
    """Whole small requests by their digest: a check's many small lookups (drawn rows, single
    problems) cost more in planning than in values, so a later run takes each one whole."""
    s = _stores.get(("", "requests"))
    if s is None:
        path = None if _cache_dir is None else _cache_dir / "requests" / "requests.npz"
        s = _stores[("", "requests")] = store.PointStore(path, "requests")
        _register_flush()
    return s


def _memoised(kind: str, name: str, mode: str, arrays: list[np.ndarray], compute: Callable[[], tuple]) -> tuple:
    """``compute()`` for a request (kind, name, mode, the argument arrays' shapes and bytes),
    or copies of its result if the same request was served in this process already: checks
    look up one input set several times (value, bound, accuracy scale).  The key holds the
    engine and whether draws are kept, so neither is bypassed.  Small requests (at most
    REQUEST_MAX inputs: rows and arrays a check derives from one drawn example or one
    deterministic group), deterministic or derandomised draws', are also served whole from the
    ``requests`` store, keyed with the reference's sources hash; random draws' never are."""
    h = hashlib.blake2b(repr((kind, name, mode, precision.engine(), _exploring, sources_hash(name),
                              [(a.shape, a.dtype.str) for a in arrays])).encode(), digest_size=16)
    for a in arrays:
        h.update(np.ascontiguousarray(a).data)
    key = h.digest()
    hit = _memo.get(key)
    if hit is not None:
        _memo.move_to_end(key)
        return tuple(x.copy() for x in hit)
    whole = _exploring is not False and arrays[0].size <= REQUEST_MAX  # deterministic, or a kept draw
    if whole:
        s = _requests()
        i = s.find_one(key, persist=True)
        shape = arrays[0].shape if kind == "values" else (arrays[0].shape[0], -1)
        if i >= 0:
            out = tuple(c.reshape(shape) for c in s.gather(np.array([i])))
        else:
            out = compute()
            s.add_packed(np.frombuffer(key, dtype=np.uint8)[None, :],
                         (np.array([out[0].size]), *(np.asarray(c).ravel() for c in out)), persist=True)
    else:
        out = compute()
    size = sum(x.size for x in out)
    if size <= MEMO_MAX // 8:
        _memo[key] = tuple(x.copy() for x in out)
        _memo_size[0] += size
        while _memo_size[0] > MEMO_MAX:
            _memo_size[0] -= sum(x.size for x in _memo.popitem(last=False)[1])
    return out


# --- elementwise values ------------------------------------------------------------------

@dataclass
class _Plan:
    """How a request is served: table lookups, and keyed points (some missing)."""
    hi: np.ndarray
    lo: np.ndarray
    sgn: np.ndarray
    missing_tables: list[tuple] = field(default_factory=list)
    store: store.PointStore | None = None
    keys: np.ndarray | None = None                     # store keys of the positions it serves
    where: np.ndarray | None = None        # positions served by the store
    args: list[tuple] = field(default_factory=list)   # argument tuples of the missing keys
    missing: np.ndarray | None = None                  # the distinct keys it lacks
    ids: np.ndarray | None = None                      # store entries of keys found at planning
    persist: bool = False


SCALE = "scale"  # the mode of approximate / approximate_items: RN64 only, stored without lo and sgn


def _table_formats(mode: str) -> tuple[str, ...]:
    """Tables that may serve a mode: a 16-bit format's own grid; any 16-bit grid for float64
    and for scales (rounding to float64 needs no sgn)."""
    if mode in SIXTEEN:
        return (mode,)
    return SIXTEEN if mode in ("float64", SCALE) else ()


def _plan(name: str, arrays: list[np.ndarray], mode: str, *, build: bool, bulk: bool | None = None) -> _Plan:
    flat = [a.ravel() for a in arrays]
    n = flat[0].size
    plan = _Plan(np.empty(n), np.empty(n), np.zeros(n, dtype=np.int8))
    todo = np.ones(n, dtype=bool)
    z = flat[0]
    for tf in _table_formats(mode):
        grid = FORMATS[tf]
        ok = todo & ~np.isnan(z)
        if not ok.any():
            break
        with np.errstate(invalid="ignore", over="ignore"):
            ok &= round_array(z, grid) == z
        if not ok.any():
            continue
        if len(flat) > 1:  # group by the other arguments' bits (one table per fixed parameters)
            others = np.ascontiguousarray(np.stack([a[ok] for a in flat[1:]], axis=1))
            rows = others.view(np.dtype((np.void, others.shape[1] * 8))).ravel()
            groups, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
            params_of = [tuple(others[i].tolist()) for i in first.tolist()]
            inverse = inverse.ravel()
        else:
            params_of, inverse = [()], np.zeros(int(ok.sum()), dtype=np.intp)
        pos = np.flatnonzero(ok)
        order = np.argsort(inverse, kind="stable")
        ends = np.cumsum(np.bincount(inverse, minlength=len(params_of)))
        for g, params in enumerate(params_of):
            key = (name, tf, params)
            size = int(ends[g] - (ends[g - 1] if g else 0))
            if size < TABLE_MIN and len(params_of) > 1 and key not in _tables:
                continue  # a small group of one of many parameter values: the point store
            sel = pos[order[ends[g] - size:ends[g]]]
            t = _load_table(key)
            if t is None:
                if sel.size < TABLE_MIN:
                    continue
                if not build:
                    plan.missing_tables.append(key)
                    todo[sel] = False
                    continue
                t = table(name, tf, params)
            b = bit_patterns(z[sel], tf)
            plan.hi[sel], plan.lo[sel], plan.sgn[sel] = t.hi[b], t.lo[b], t.sgn[b]
            todo[sel] = False
    if todo.any():
        where = np.flatnonzero(todo)
        plan.where = where
        plan.store = _store(name, "points")
        plan.persist = _persist(n >= PERSIST_MIN if bulk is None else bulk)
        sub = [a[where] for a in flat]
        plan.keys = _row_keys(_prefix(mode, sub), sub)
        plan.missing, plan.args, plan.ids = _missing(plan.store, plan.keys, plan.persist,
                                           lambda i: tuple(float(a[i]) for a in sub))
    return plan


def _missing(s: store.PointStore, keys: np.ndarray, persist: bool, args: Callable[[int], tuple]):
    """The distinct keys absent from the store, their argument tuples, and the entry ids of
    all keys (-1 where absent)."""
    ids = s.find(keys, persist=persist)
    absent = np.flatnonzero(ids < 0)
    if absent.size > 1:
        rows = np.ascontiguousarray(keys[absent]).view(np.dtype((np.void, keys.shape[1]))).ravel()
        absent = absent[np.sort(np.unique(rows, return_index=True)[1])]
    return keys[absent], [args(i) for i in absent.tolist()], ids


def _gather(s: store.PointStore, keys: list[bytes], ids: np.ndarray):
    """The entries of keys, given their ids found before the missing ones were added."""
    absent = np.flatnonzero(ids < 0)
    if absent.size:
        ids = ids.copy()
        ids[absent] = s.find(keys[absent], persist=False)
    return s.gather(ids)


def _compute(name: str, mode: str, args: list[tuple]) -> list[tuple]:
    """Triples of reference ``name`` at each argument tuple; for scales only hi is kept (lo = 0,
    sgn = 0).  A large request of the run's own process (a check's structured problems or
    derived rows, which no prebuild plans) is spread over the run's worker processes
    (``set_jobs``); small ones, and every request inside a worker, are computed here."""
    jobs = _jobs[0]
    least = PARALLEL_MIN if not _pool else PARALLEL_MIN // 16  # workers already started cost little
    if jobs > 1 and len(args) >= 2 * jobs and len(args) * _numbers(args[0]) >= least:
        eng = "mpmath" if precision.engine() == "mpmath" else "auto"
        step = -(-len(args) // (4 * jobs))
        pool = _executor(jobs)
        parts = [pool.submit(_work, (name, mode, eng, args[i:i + step])) for i in range(0, len(args), step)]
        return [v for fut in parts for v in _unpack(fut.result())]
    f = function(name)
    if mode == SCALE:
        return [tuple((v.hi, 0.0, 0) for v in vs) for vs in precision.values_many(f, args, None)]
    return [tuple(v) for v in precision.values_many(f, args, FORMATS[mode])]


def _values(name: str, args: tuple[np.ndarray, ...], mode: str) -> tuple[np.ndarray, ...]:
    """(hi, lo, sgn) of the elementwise reference at the broadcast argument arrays."""
    arrays = np.broadcast_arrays(*[np.ascontiguousarray(a, dtype=np.float64) for a in args])
    return _memoised("values", name, mode, arrays, lambda: _values_of(name, arrays, mode))


def _values_of(name: str, arrays: list[np.ndarray], mode: str) -> tuple[np.ndarray, ...]:
    shape = arrays[0].shape
    plan = _plan(name, arrays, mode, build=True)
    if plan.where is not None:
        if len(plan.missing):
            plan.store.add(plan.missing, _compute(name, mode, plan.args), persist=plan.persist)
        hi, lo, sgn = _gather(plan.store, plan.keys, plan.ids)
        plan.hi[plan.where], plan.lo[plan.where], plan.sgn[plan.where] = hi[:, 0], lo[:, 0], sgn[:, 0]
    return plan.hi.reshape(shape), plan.lo.reshape(shape), plan.sgn.reshape(shape)


def exact(name: str, args: tuple[np.ndarray, ...], fmt: Format) -> precision.Exact:
    """Exact values of reference ``name`` at the (broadcast) argument arrays, rounded to fmt."""
    hi, lo, sgn = _values(name, args, fmt.name)
    return precision.Exact(hi, lo, round_exact(hi, lo, sgn, fmt))


def approximate(name: str, args: tuple[np.ndarray, ...]) -> np.ndarray:
    """RN64 of the exact values (error scales S, underflow factors c); shares the 16-bit tables."""
    return _values(name, args, SCALE)[0]


# --- vector-valued references: one evaluation per item (a row, a batch) -----------------

def _item_args(arrays: list[np.ndarray], i: int) -> tuple:
    """Item i of every argument: a float, a row (list) or a batch of rows (nested lists)."""
    return tuple(a[i].tolist() if a.ndim > 1 else float(a[i]) for a in arrays)


def _item_plan(name: str, arrays: list[np.ndarray], mode: str, bulk: bool | None = None):
    s = _store(name, "items")
    persist = _persist(sum(a.size for a in arrays) >= PERSIST_MIN if bulk is None else bulk)
    keys = _row_keys(_prefix(mode, arrays), arrays)
    missing, margs, ids = _missing(s, keys, persist, lambda i: _item_args(arrays, i))
    return s, keys, missing, margs, persist, ids


@functools.lru_cache(maxsize=None)
def _components(name: str, nargs: int) -> int:
    """How many components reference ``name`` returns for scalar arguments (tried at 1/2)."""
    return len(precision.values(function(name), (0.5,) * nargs, None))


def _elementwise(name: str, arrays: list[np.ndarray]) -> bool:
    """Items that are single numbers (1-d arguments, e.g. elementwise losses) of a reference with
    one component are elementwise values: served like ``exact`` (16-bit tables included)."""
    return all(a.ndim == 1 for a in arrays) and _components(name, len(arrays)) == 1


def _items(name: str, args: tuple[np.ndarray, ...], mode: str):
    """(hi, lo, sgn) arrays (items, k) of a vector reference per item.  Items that are single
    numbers (1-d arguments: elementwise losses) are elementwise values, served like ``exact``."""
    arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in args]
    if arrays[0].shape[0] == 0:
        return np.empty((0, 1)), np.empty((0, 1)), np.empty((0, 1), dtype=np.int8)
    if _elementwise(name, arrays):
        return tuple(v[:, None] for v in _values(name, tuple(arrays), mode))
    return _memoised("items", name, mode, arrays, lambda: _items_of(name, arrays, mode))


def _items_of(name: str, arrays: list[np.ndarray], mode: str):
    s, keys, missing, margs, persist, ids = _item_plan(name, arrays, mode)
    if len(missing):
        s.add(missing, _compute(name, mode, margs), persist=persist)
    return _gather(s, keys, ids)


def exact_items(name: str, args: tuple[np.ndarray, ...], fmt: Format) -> precision.Exact:
    """Exact values of a vector-valued reference per item: (items, k) arrays, each component
    correctly rounded to fmt."""
    hi, lo, sgn = _items(name, args, fmt.name)
    return precision.Exact(hi, lo, round_exact(hi, lo, sgn, fmt))


def approximate_items(name: str, args: tuple[np.ndarray, ...]) -> np.ndarray:
    """RN64 per item and component, (items, k): error scales S and accumulation terms A."""
    return _items(name, args, SCALE)[0]


# --- structured problems: one evaluation per problem (nested arguments) --------------------

_exploring: bool | None = None  # None: not exploring; else whether drawn values are kept


@contextlib.contextmanager
def exploring(*, repeatable: bool = False):
    """Inside: hypothesis draws.  Fresh random draws (``repeatable`` False) are computed for
    this process only, never written to disk: a run's exploration must not grow the cache with
    every seed.  Derandomised draws (the same every run) are kept like bulk inputs."""
    global _exploring
    old, _exploring = _exploring, repeatable
    try:
        yield
    finally:
        _exploring = old


def _persist(bulk: bool) -> bool:
    return bulk if _exploring is None else _exploring


def _problem_bytes(a, out: list) -> None:
    """A canonical encoding of nested arguments: floats by their bits, arrays with their shapes."""
    if isinstance(a, float):
        out.append(b"f" + np.float64(a).tobytes())
    elif isinstance(a, np.ndarray):
        a = np.ascontiguousarray(a, dtype=np.float64)
        out.append(b"a" + repr(a.shape).encode() + a.tobytes())
    elif isinstance(a, (list, tuple)):
        out.append(b"(" if isinstance(a, tuple) else b"[")
        for x in a:
            _problem_bytes(x, out)
        out.append(b")")
    else:
        out.append(b"o" + repr(a).encode() + b";")


def reference_name(f: Callable) -> str | None:
    """The name ``function`` resolves to f, or None for any other callable."""
    module = getattr(f, "__module__", "") or ""
    if not module.startswith("ffnspec.reference."):
        return None
    name = f"{module.removeprefix('ffnspec.reference.')}.{getattr(f, '__name__', '')}"
    try:
        return name if function(name) is f else None
    except KeyError:
        return None


def _problems(f: Callable, problems: list[tuple], mode: str):
    """(hi, lo, sgn) arrays (problems, k) of reference f at each problem (a tuple of arguments:
    floats, arrays, nested lists/tuples, and ints or strs passed through)."""
    name = reference_name(f)
    if name is None:  # not a named reference: computed, not cached
        return store.unpack([tuple(v) for v in precision.values_many(
            f, [tuple(p) for p in problems], None if mode == SCALE else FORMATS[mode])])
    s = _store(name, "problems")
    prefix = bytes([_MODE_CODE[mode]])
    digests = []
    for p in problems:
        parts: list[bytes] = []
        _problem_bytes(tuple(p), parts)
        digests.append(prefix + hashlib.blake2b(b"".join(parts), digest_size=16).digest())
    keys = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(len(problems), 17)
    persist = _persist(True)
    missing, margs, ids = _missing(s, keys, persist, lambda i: tuple(problems[i]))
    if len(missing):
        s.add(missing, _compute(name, mode, margs), persist=persist)
    return _gather(s, keys, ids)


def exact_problems(f: Callable, problems: list[tuple], fmt: Format) -> precision.Exact:
    """Exact values of reference f at each structured problem, (problems, k), rounded to fmt;
    cached by the problems' bytes like points (not persisted while ``exploring`` random draws)."""
    hi, lo, sgn = _problems(f, problems, fmt.name)
    return precision.Exact(hi, lo, round_exact(hi, lo, sgn, fmt))


def approximate_problems(f: Callable, problems: list[tuple]) -> np.ndarray:
    """RN64 of reference f at each structured problem, (problems, k): error scales."""
    return _problems(f, problems, SCALE)[0]


# --- prebuild: parallel computation of what a run will need -------------------------------

@dataclass(frozen=True)
class Request:
    """Reference values a run will need.

    ``args`` None: the complete 16-bit table of ``function``(z, *params) over ``fmt``'s bit
    patterns.  Otherwise the values at ``args`` (arrays, broadcast) rounded to ``fmt``, as
    ``exact`` (``items=False``) or ``exact_items`` (``items=True``) will ask for them; with
    ``scale``, as ``approximate`` / ``approximate_items`` will (fmt is then only the grid of a
    16-bit table that may serve them)."""
    function: str
    fmt: str
    args: tuple[np.ndarray, ...] | None = None
    params: tuple[float, ...] = ()
    items: bool = False
    scale: bool = False


@dataclass(frozen=True)
class Progress:
    """One progress report of ``prebuild``: the unit being computed and the whole build."""
    unit: str            # e.g. "act.sigmoid float16" or "out.softmax float32 (items)"
    unit_done: int
    unit_total: int
    units_done: int
    units_total: int
    done: int            # values computed so far, all units
    total: int
    elapsed: float       # seconds
    eta: float | None    # seconds left, from the rate so far


@dataclass
class Summary:
    """What ``prebuild`` did: units and values computed, seconds taken, workers used."""
    units: int
    values: int
    seconds: float
    jobs: int


@dataclass
class _TableUnit:
    key: tuple

    @property
    def label(self) -> str:
        name, fmt_name, params = self.key
        return f"{name} {fmt_name}" + (f" {list(params)}" if params else "")


@dataclass
class _PointsUnit:
    name: str
    mode: str                    # a format name, or SCALE
    store: store.PointStore
    keys: np.ndarray             # (n, width) uint8
    args: list[tuple]
    persist: bool
    kind: str

    @property
    def label(self) -> str:
        return f"{self.name} {self.mode} ({self.kind})"


def prebuild(requests: Iterable[Request], *, jobs: int | None = None,
             progress: Callable[[Progress], None] | bool | None = None) -> Summary:
    """Compute every table and value the requests need that is not cached yet, in ``jobs``
    worker processes (default: every core; 1 computes here), and store them.  ``progress`` is
    called after every finished chunk (True: a one-line display on stderr)."""
    units: list = []
    seen_tables: set = set()
    planned: dict[int, set] = {}  # keys already in a unit, per store: requests overlap

    def add(name, mode, s, keys, args, persist, kind):
        if keys is None or not len(keys):
            return
        mine = planned.setdefault(id(s), set())
        as_bytes = np.ascontiguousarray(keys).view(np.dtype((np.void, keys.shape[1]))).ravel().tolist()
        fresh = [i for i, k in enumerate(as_bytes) if k not in mine]
        mine.update(as_bytes[i] for i in fresh)
        if fresh:
            units.append(_PointsUnit(name, mode, s, keys[fresh], [args[i] for i in fresh], persist, kind))

    for r in requests:
        mode = SCALE if r.scale else r.fmt
        if r.args is None:
            key = (r.function, r.fmt, tuple(float(p) for p in r.params))
            if key not in seen_tables and _load_table(key) is None:
                seen_tables.add(key)
                units.append(_TableUnit(key))
            continue
        arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in r.args]
        items = r.items and not _elementwise(r.function, arrays)
        if not items:
            arrays = [np.ascontiguousarray(a) for a in np.broadcast_arrays(*arrays)]
        if items:
            s, _, missing, margs, persist, _ = _item_plan(r.function, arrays, mode, bulk=True)
            add(r.function, mode, s, missing, margs, persist, "items")
            continue
        plan = _plan(r.function, arrays, mode, build=False, bulk=True)  # requested: persisted, whatever the size
        for key in plan.missing_tables:
            if key not in seen_tables:
                seen_tables.add(key)
                units.append(_TableUnit(key))
        add(r.function, mode, plan.store, plan.missing, plan.args, plan.persist, "points")
    if progress is True:
        progress = TerminalProgress()
    jobs = (os.cpu_count() or 1) if jobs is None else max(1, jobs)
    t0 = time.perf_counter()
    total = _run(units, jobs=jobs, progress=progress or None)
    flush()
    return Summary(len(units), total, time.perf_counter() - t0, jobs)


Packed = tuple  # (counts, hi, lo, sgn): components per value, and the components, flat arrays


def _pack(values: list[tuple]) -> Packed:
    comps = [c for v in values for c in v]
    return (np.array([len(v) for v in values], dtype=np.int32), np.array([c[0] for c in comps], dtype=np.float64),
            np.array([c[1] for c in comps], dtype=np.float64), np.array([c[2] for c in comps], dtype=np.int8))


def _tasks(unit) -> list[tuple]:
    """(name, mode, engine, inputs) chunks of a unit; a table's chunk is the range of its inputs
    (the worker forms them), other chunks carry their argument tuples."""
    eng = "mpmath" if precision.engine() == "mpmath" else "auto"
    if isinstance(unit, _TableUnit):
        n = len(_table_inputs(unit.key)[1])
        return [(unit.key[0], unit.key[1], eng, (unit.key, i, min(i + CHUNK, n))) for i in range(0, n, CHUNK)]
    size = 64 if unit.args and isinstance(unit.args[0][0], list) else CHUNK  # rows: fewer per chunk
    return [(unit.name, unit.mode, eng, unit.args[i:i + size]) for i in range(0, len(unit.args), size)]


def _task_size(task: tuple) -> int:
    inputs = task[3]
    return inputs[2] - inputs[1] if isinstance(inputs, tuple) else len(inputs)


def _task_cost(task: tuple) -> int:
    """Work of a chunk, about: its numbers (a row of 1000 costs 1000 scalars)."""
    inputs = task[3]
    if isinstance(inputs, tuple):
        return inputs[2] - inputs[1]
    return len(inputs) * _numbers(inputs[0]) if inputs else 0


def _numbers(a) -> int:
    if isinstance(a, (list, tuple)):
        return sum(_numbers(x) for x in a)
    return a.size if isinstance(a, np.ndarray) else 1


def _unpack(packed: Packed) -> list[tuple]:
    """The triples of ``_pack``'s arrays, one tuple of components per input."""
    counts, hi, lo, sgn = packed
    ends = np.cumsum(counts).tolist()
    comps = list(zip(hi.tolist(), lo.tolist(), sgn.tolist()))
    return [tuple(comps[a:b]) for a, b in zip([0] + ends[:-1], ends)]


_jobs = [1]         # processes a run computes reference values in (set_jobs)
_pool: list = []    # [the kept worker pool, its size]: started once, for the prebuild and large requests


def set_jobs(jobs: int) -> None:
    """How many processes a run's reference values may use: the prebuild's workers, kept for
    the large requests its checks make later (``_compute``)."""
    _jobs[0] = max(1, int(jobs))


def _executor(jobs: int) -> concurrent.futures.ProcessPoolExecutor:
    """The kept pool of ``jobs`` spawned workers (never forked: a process may hold backend
    threads), shut down at exit; workers idle between uses cost nothing."""
    if _pool and _pool[1] == jobs:
        return _pool[0]
    if _pool:
        _pool[0].shutdown(wait=False, cancel_futures=True)
    ex = concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    _pool[:] = [ex, jobs]
    _register_shutdown()
    return ex


def release_workers() -> None:
    """Shut the kept workers down (the plugin does at the end of a run; also at exit)."""
    if _pool:
        _pool[0].shutdown(wait=True, cancel_futures=True)
        _pool.clear()
    _jobs[0] = 1


@functools.lru_cache(maxsize=None)
def _register_shutdown() -> None:
    atexit.register(release_workers)


def _work(task: tuple) -> Packed:
    name, mode, eng, inputs = task
    if isinstance(inputs, tuple):  # a range of a table's inputs
        key, a, b = inputs
        inputs = _table_inputs(key)[1][a:b]
    with precision.use_engine(eng):
        return _pack(_compute(name, mode, inputs))


def _run(units: list, *, jobs: int, progress: Callable[[Progress], None] | None) -> int:
    """Compute the units (tables are written as they complete, under their locks); returns the
    number of values computed."""
    if not units:
        return 0
    with contextlib.ExitStack() as held:
        todo, waiting = [], []
        for u in units:
            path = _table_path(u.key) if isinstance(u, _TableUnit) else None
            if path is not None and not held.enter_context(store.locked(path, blocking=False)):
                waiting.append(u)  # another process is building it
            else:
                todo.append(u)
        total = _compute_units(todo, jobs, progress, units_total=len(units))
    for u in waiting:  # built elsewhere: wait for its writer, then load (or build it after all)
        path = _table_path(u.key)
        with store.locked(path):
            _absent.discard(u.key)
            _listed.pop(path.parent, None)  # list again: it was written after our listing
            if _load_table(u.key) is None:
                total += _compute_units([u], 1, progress, units_total=len(units))
    return total


def _compute_units(units: list, jobs: int, progress, *, units_total: int) -> int:
    chunks = [(ui, t) for ui, u in enumerate(units) for t in _tasks(u)]
    parts: list[dict[int, Packed]] = [{} for _ in units]
    expected = [0] * len(units)
    unit_total = [0] * len(units)
    for ci, (ui, t) in enumerate(chunks):
        expected[ui] += 1
        unit_total[ui] += _task_size(t)
    total = sum(unit_total)
    unit_done = [0] * len(units)
    state = {"done": 0, "units": 0}
    t0 = time.perf_counter()

    def finished(ci: int, packed: Packed) -> None:
        ui, task = chunks[ci]
        parts[ui][ci] = packed
        n = _task_size(task)
        unit_done[ui] += n
        state["done"] += n
        if len(parts[ui]) == expected[ui]:
            ordered = [parts[ui][k] for k in sorted(parts[ui])]
            _finish(units[ui], tuple(np.concatenate([p[j] for p in ordered]) for j in range(4)))
            parts[ui] = {}
            state["units"] += 1
        if progress is not None:
            el = time.perf_counter() - t0
            rate = state["done"] / el if el > 0 else 0.0
            progress(Progress(units[ui].label, unit_done[ui], unit_total[ui], state["units"], units_total,
                              state["done"], total, el, (total - state["done"]) / rate if rate > 0 else None))

    if jobs <= 1 or len(chunks) <= 1 or total < PARALLEL_MIN:  # starting workers would cost more
        for ci, (_, task) in enumerate(chunks):
            finished(ci, _work(task))
        return total
    pool = _executor(jobs)  # kept for the run's later large requests (_compute)
    order = sorted(range(len(chunks)), key=lambda ci: -_task_cost(chunks[ci][1]))  # longest first: both cores busy to the end
    futures = {pool.submit(_work, chunks[ci][1]): ci for ci in order}
    for fut in concurrent.futures.as_completed(futures):
        finished(futures[fut], fut.result())
    return total


def _finish(unit, packed: Packed) -> None:
    if isinstance(unit, _TableUnit):
        _save_table(unit.key, _table_inputs(unit.key)[0], packed)
    else:
        unit.store.add_packed(unit.keys, packed, persist=unit.persist)


class TerminalProgress:
    """The default progress display: one line on stderr, rewritten in place on a terminal,
    one line per finished unit otherwise.

        ffnspec reference [12/40] act.sigmoid float16: 32768/63488 values; 41% of 1.9e6, 38 s, ETA 55 s
    """

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = 0.0

    def __call__(self, p: Progress) -> None:
        eta = f"ETA {p.eta:.0f} s" if p.eta is not None else "ETA ?"
        line = (f"ffnspec reference [{p.units_done}/{p.units_total}] {p.unit}: {p.unit_done}/{p.unit_total} values; "
                f"{100 * p.done / max(p.total, 1):.0f}% of {p.total}, {p.elapsed:.0f} s, {eta}")
        end = p.done >= p.total
        if self.tty:
            now = time.perf_counter()
            if end or now - self._last > 0.2:
                self._last = now
                self.stream.write("\r" + line[:200].ljust(120) + ("\n" if end else ""))
                self.stream.flush()
        elif p.unit_done >= p.unit_total or end:
            self.stream.write(line + "\n")
            self.stream.flush()
