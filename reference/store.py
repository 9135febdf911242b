"""The on-disk cache of reference values: atomic writes, file locks, a size bound.

Layout under the cache directory (``~/.cache/ffnspec/reference`` by default):

    tables/<function>-<fmt>[-<params>]-<sources>.npz   one complete 16-bit table (tables.py)
    points/<function>-<kind>-<sources>.npz             a bounded store of other inputs' values
    requests/requests.npz                              small requests (deterministic, derandomised draws), whole
    draws/<digest>.npz                                 derandomised hypothesis examples (conformance/machinery/draws.py)
    plots/images.json                                  report.html's rendered images (conformance/machinery/plots.py)
    jax-compiled/<fingerprint>/                        jax's compiled executables (adapters/jax_backend.py; jax's own
                                                       files, bounded by the adapter, outside this module's bound)

Safety for concurrent runs sharing a cache:
  - every write goes to a unique temporary file in the same directory and is renamed over
    the target (``os.replace``): a reader sees the old file or the new one, never a part;
  - writers of one file hold an exclusive lock (``fcntl.flock`` on ``<file>.lock``) while they
    read, merge and replace it, so no update is lost; where fcntl is missing (Windows) there
    is no lock: an update may be lost, never corrupted;
  - a file that does not load, or whose metadata does not match, is treated as absent.

Bounds: a point store keeps at most ``MAX_ENTRIES`` entries, evicting the least recently
used (each entry carries the time of the last run that used it); the whole directory is kept
under ``MAX_BYTES`` by deleting the least recently used files (mtime, refreshed on load).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np

try:
    import fcntl
except ImportError:  # no advisory locks on this platform
    fcntl = None

MAX_ENTRIES = 1 << 20          # entries (points or items) per point store (MAX_BYTES bounds the whole)
MAX_BYTES = 60 * 1024 * 1024   # the whole cache directory
FORMAT = ";format=2"           # appended to every file's meta: 2 = byte-shuffled arrays (another version's files read as absent)


# --- files ---------------------------------------------------------------------------------

@contextlib.contextmanager
def locked(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    """Hold the exclusive lock of ``path`` (on ``path.lock``); yields False if ``blocking`` is
    off and another process holds it."""
    if fcntl is None:
        yield True
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _shuffled(a: np.ndarray) -> np.ndarray:
    """The bytes of a numeric array grouped by position within the element (byte k of every
    element, then byte k + 1, ...): exponents and high bytes repeat, so zlib packs them
    ~1.4x denser (the shuffle filter of HDF5 and Blosc)."""
    a = np.ascontiguousarray(a)
    if a.dtype.itemsize == 1 or a.dtype.kind not in "fiu":
        return a
    return a.reshape(-1).view(np.uint8).reshape(-1, a.dtype.itemsize).T.copy()


def _unshuffled(b: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return np.ascontiguousarray(b.T).view(dtype).reshape(-1)


def save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz atomically (a unique temporary file, then rename over ``path``); numeric
    1-d arrays are stored byte-shuffled (``_shuffled``) under ``<name>.<dtype>``."""
    packed = {}
    if "meta" in arrays:
        arrays = {**arrays, "meta": np.array(str(arrays["meta"]) + FORMAT)}
    for k, a in arrays.items():
        a = np.asarray(a)
        if a.ndim == 1 and a.dtype.itemsize > 1 and a.dtype.kind in "fiu":
            packed[f"{k}.{a.dtype.str}"] = _shuffled(a)
        else:
            packed[k] = a
    write_atomically(path, lambda fh: np.savez_compressed(fh, **packed))


def write_atomically(path: Path, write) -> None:
    """``write(fh)`` into a unique temporary file beside ``path``, synced, then renamed over it:
    readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load(path: Path, meta: str) -> dict[str, np.ndarray] | None:
    """The arrays of an .npz written by ``save`` with the same ``meta`` string, or None if it is
    missing, unreadable or for something else.  Refreshes its mtime (least recently used)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {}
            for k in data.files:
                name, _, dtype = k.partition(".")
                arrays[name] = _unshuffled(data[k], np.dtype(dtype)) if dtype else data[k]
    except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile):
        return None
    if str(arrays.get("meta", np.array(""))) != meta + FORMAT:
        return None
    with contextlib.suppress(OSError):
        os.utime(path)
    return arrays


def prune(root: Path, max_bytes: int = MAX_BYTES) -> None:
    """Delete least recently used .npz files (and stale temporary files) until the cache
    directory is under ``max_bytes``."""
    files = []
    now = time.time()
    for p in root.rglob("*"):
        try:
            st = p.stat()
        except OSError:
            continue
        if p.suffix == ".tmp" and now - st.st_mtime > 3600:  # left by a killed writer
            with contextlib.suppress(OSError):
                p.unlink()
        elif p.suffix == ".npz":
            files.append((st.st_mtime, st.st_size, p))
    total = sum(s for _, s, _ in files)
    evicted = False
    for _, size, p in sorted(files):
        if total <= max_bytes:
            break
        with contextlib.suppress(OSError):
            p.unlink()
            total -= size
            evicted = True
    if evicted:  # the prebuild stamps vouch for what was there: the next run plans again
        for p in (root / "prebuilt").glob("*"):
            with contextlib.suppress(OSError):
                p.unlink()


# --- point stores ------------------------------------------------------------------------

def _now() -> int:
    """The stamp of a use: seconds since the epoch."""
    return int(time.time())


RESTAMP_AFTER = 86400  # seconds: an entry used again is re-stamped (rewriting its file) at most daily


Keys = np.ndarray | list  # an (n, W) uint8 array of keys of one width W, or a list of bytes


def _rows_by_width(keys) -> list[tuple[np.ndarray | None, np.ndarray]]:
    """[(positions, rows)]: the keys as (n, W) uint8 arrays, one per width W (positions None:
    all of them, in order)."""
    if isinstance(keys, np.ndarray):
        return [(None, keys if keys.ndim == 2 else keys.reshape(len(keys), -1))]
    widths = np.fromiter((len(k) for k in keys), dtype=np.int64, count=len(keys))
    out = []
    for w in np.unique(widths).tolist():
        pos = np.flatnonzero(widths == w)
        sel = keys if pos.size == len(keys) else [keys[i] for i in pos.tolist()]
        out.append((None if pos.size == len(keys) else pos,
                    np.frombuffer(b"".join(sel), dtype=np.uint8).reshape(pos.size, w)))
    return out


def _words(rows: np.ndarray) -> np.ndarray:
    """(n, W) uint8 rows as (n, ceil(W / 8)) uint64 words, zero-padded."""
    n, w = rows.shape
    pad = -w % 8
    if pad:
        rows = np.concatenate([rows, np.zeros((n, pad), dtype=np.uint8)], axis=1)
    return np.ascontiguousarray(rows).view(np.uint64).reshape(n, -1)


_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xFF51AFD7ED558CCD))


def _hash(words: np.ndarray) -> np.ndarray:
    """A 64-bit hash per row of words (multiply-xorshift): it only orders the index; a match is
    confirmed on the whole key."""
    h = np.full(len(words), 0x243F6A8885A308D3, dtype=np.uint64)
    for j in range(words.shape[1]):
        h ^= words[:, j]
        h *= _MIX[0]
        h ^= h >> np.uint64(29)
    h *= _MIX[1]
    return h ^ (h >> np.uint64(32))


class _Index:
    """Keys of one width -> entry ids: per level, the hashes sorted, the keys' words as added
    (``perm`` maps a sorted position to its row: the words are never copied into hash order),
    in two levels (a main one and a small recent one merged into it when it grows past an
    eighth), so a lookup is a binary search and an addition costs the size of the recent level."""

    def __init__(self, width: int):
        self.width = width
        k = (width + 7) // 8
        self.levels = [self._empty(k), self._empty(k)]

    @staticmethod
    def _empty(k: int) -> tuple:
        return (np.empty(0, dtype=np.uint64), np.empty((0, k), dtype=np.uint64), np.empty(0, dtype=np.int64),
                np.empty(0, dtype=np.int64))

    @staticmethod
    def _merge(a: tuple, b: tuple) -> tuple:
        h = np.concatenate([a[0], b[0]])
        order = np.argsort(h, kind="stable")  # two sorted runs: linear
        perm = np.concatenate([a[2], b[2] + len(a[1])])
        return h[order], np.concatenate([a[1], b[1]]), perm[order], np.concatenate([a[3], b[3]])[order]

    def add(self, rows: np.ndarray, ids: np.ndarray) -> None:
        w = _words(rows)
        h = _hash(w)
        order = np.argsort(h, kind="stable")
        new = (h[order], w, order, ids[order])
        main, recent = self.levels
        if not main[0].size and not recent[0].size:  # the first addition (a store's load): one sort
            self.levels = [new, recent]
            return
        recent = self._merge(recent, new)
        if len(recent[0]) > max(4096, len(main[0]) // 8):
            main, recent = self._merge(main, recent), self._empty(w.shape[1])
        self.levels = [main, recent]

    def find(self, rows: np.ndarray) -> np.ndarray:
        w = _words(rows)
        h = _hash(w)
        out = np.full(len(h), -1, dtype=np.int64)
        for lh, lw, perm, lid in self.levels:
            if not lh.size:
                continue
            i = np.searchsorted(lh, h)
            i[i == lh.size] = 0
            hit = (lh[i] == h) & (out < 0)
            same = hit.copy()
            same[hit] = (lw[perm[i[hit]]] == w[hit]).all(axis=1)
            out[same] = lid[i[same]]
            for q in np.flatnonzero(hit & ~same).tolist():  # another key of the same hash first
                j = int(i[q]) + 1
                while j < lh.size and lh[j] == h[q]:
                    if (lw[perm[j]] == w[q]).all():
                        out[q] = lid[j]
                        break
                    j += 1
        return out

    def items(self):
        """(ids, rows) of every key."""
        for _, lw, perm, lid in self.levels:
            if lid.size:
                yield lid, np.ascontiguousarray(lw[perm]).view(np.uint8).reshape(len(lid), -1)[:, :self.width]


class PointStore:
    """Values of one reference function at keyed inputs, in memory and (bounded) on disk.

    An entry is a key (bytes) and a value of one or more components, each a (hi, lo, sgn)
    triple.  Keys are looked up as arrays (an (n, W) uint8 array of one width, ``_Index``);
    a list of bytes is accepted too.  Entries added with ``persist`` (bulk, deterministic
    inputs), or found by a persisting lookup, are marked; ``flush`` merges the marked ones into
    the file under its lock, stamped with the time; others live for the process only."""

    def __init__(self, path: Path | None, meta: str):
        self.path, self.meta = path, meta
        self._index: dict[int, _Index] = {}
        self.n = 0                                   # entries
        self._stamp = np.zeros(0, dtype=np.int64)    # per entry (capacity >= n): the last run that used it
        self.marked: set[int] = set()
        self._cols = (np.empty(0), np.empty(0), np.empty(0, dtype=np.int8))  # flat components
        self._offset = np.zeros(1, dtype=np.int64)                            # entry i: offset[i]:offset[i+1]
        self._new: list[tuple] = []   # packed (counts, hi, lo, sgn) added since the last assembly
        self._disk_sig = None                        # (inode, size, mtime) of the file as last read or written
        self._on_disk = np.empty(0, dtype=np.int64)  # ids of the entries it holds
        self._by_key: dict[bytes, int] | None = None  # key -> id, for find_one (built at its first use)
        self._loaded = path is None

    def _load(self) -> None:
        self._loaded = True
        self._disk_sig = self._signature()
        data = load(self.path, self.meta)
        if data is None:
            self._disk_sig = None
            return
        try:
            groups = _disk_rows(data)
            stamp, cols, count = data["stamp"], (data["hi"], data["lo"], data["sgn"]), data["count"]
        except (KeyError, ValueError):  # not a store this version wrote: absent
            self._disk_sig = None
            return
        n = len(stamp)
        for ids, rows in groups:
            self._index_of(rows.shape[1]).add(rows, ids)
        self.n = n
        self._stamp = np.asarray(stamp, dtype=np.int64).copy()
        self._cols = cols
        self._offset = np.concatenate([[0], np.cumsum(count, dtype=np.int64)])
        self._on_disk = np.arange(n, dtype=np.int64)

    def _index_of(self, width: int) -> _Index:
        ix = self._index.get(width)
        if ix is None:
            ix = self._index[width] = _Index(width)
        return ix

    def find_one(self, key: bytes, *, persist: bool) -> int:
        """The entry id of one key (-1 where absent), from a dict of every key built at the
        first call and kept current by ``add_packed``: for callers that look up one at a time."""
        if not self._loaded:
            self._load()
        if self._by_key is None:
            self._by_key = {k: i for i, k in enumerate(self._keys())}
        i = self._by_key.get(key, -1)
        if persist and i >= 0 and self._stamp[i] < _now() - RESTAMP_AFTER:
            self.marked.add(i)
        return i

    def find(self, keys: Keys, *, persist: bool) -> np.ndarray:
        """Entry ids of the keys (-1 where absent)."""
        if not self._loaded:
            self._load()
        ids = np.full(len(keys), -1, dtype=np.int64)
        for pos, rows in _rows_by_width(keys):
            ix = self._index.get(rows.shape[1])
            if ix is not None and len(rows):
                found = ix.find(rows)
                if pos is None:
                    ids = found
                else:
                    ids[pos] = found
        if persist and ids.size:
            sel = ids[ids >= 0]
            sel = sel[self._stamp[sel] < _now() - RESTAMP_AFTER]
            if sel.size:
                self.marked.update(np.unique(sel).tolist())
        return ids

    def add(self, keys: Keys, values: list[tuple], *, persist: bool) -> None:
        """Add entries given as tuples of (hi, lo, sgn) components."""
        comps = [c for v in values for c in v]
        self.add_packed(keys, (np.array([len(v) for v in values], dtype=np.int64), np.array([c[0] for c in comps]),
                               np.array([c[1] for c in comps]), np.array([c[2] for c in comps], dtype=np.int8)),
                        persist=persist)

    def add_packed(self, keys: Keys, packed: tuple, *, persist: bool) -> None:
        """Add entries given as (counts, hi, lo, sgn): components per entry, then all components.
        Keys already present (or repeated) keep their first value."""
        if not self._loaded:
            self._load()
        counts, hi, lo, sgn = packed
        new = self.find(keys, persist=False) < 0
        groups = _rows_by_width(keys)
        for pos, rows in groups:  # a key repeated within the call: its first occurrence
            at = np.arange(len(rows)) if pos is None else pos
            sub = np.flatnonzero(new[at])
            if sub.size > 1:
                v = np.ascontiguousarray(rows[sub]).view(np.dtype((np.void, rows.shape[1]))).ravel()
                _, first = np.unique(v, return_index=True)
                keep = np.zeros(len(rows), dtype=bool)
                keep[sub[first]] = True
                new[at] &= keep
        take = np.flatnonzero(new)
        if not take.size:
            return
        n = self.n
        ids = np.full(len(new), -1, dtype=np.int64)
        ids[take] = n + np.arange(take.size)
        for pos, rows in groups:
            gid = ids if pos is None else ids[pos]
            sel = np.flatnonzero(gid >= 0)
            if sel.size:
                self._index_of(rows.shape[1]).add(rows[sel], gid[sel])
                if self._by_key is not None:
                    self._by_key.update(zip(map(bytes, rows[sel]), gid[sel].tolist()))
        if take.size < len(new):
            start = np.concatenate([[0], np.cumsum(counts)])
            sel = np.concatenate([np.arange(start[j], start[j + 1]) for j in take.tolist()])
            counts, hi, lo, sgn = np.asarray(counts)[take], hi[sel], lo[sel], sgn[sel]
        self.n = n + take.size
        if self.n > len(self._stamp):
            self._stamp = np.concatenate([self._stamp, np.zeros(max(self.n, 2 * len(self._stamp)) - len(self._stamp),
                                                                 dtype=np.int64)])
        self._stamp[n:self.n] = 0
        if persist:
            self.marked.update(range(n, self.n))
        self._new.append((np.asarray(counts, dtype=np.int64), np.asarray(hi, dtype=np.float64),
                          np.asarray(lo, dtype=np.float64), np.asarray(sgn, dtype=np.int8)))

    def _keys(self) -> list[bytes]:
        """Every entry's key, by id."""
        keys: list = [b""] * self.n
        for ix in self._index.values():
            for ids, rows in ix.items():
                for i, k in zip(ids.tolist(), rows.view(np.dtype((np.void, ix.width))).ravel().tolist()):
                    keys[i] = k
        return keys

    def _assemble(self) -> None:
        if not self._new:
            return
        self._cols = tuple(np.concatenate([col] + [p[j + 1] for p in self._new]) for j, col in enumerate(self._cols))
        counts = np.concatenate([p[0] for p in self._new])
        self._offset = np.concatenate([self._offset, self._offset[-1] + np.cumsum(counts)])
        self._new = []

    def gather(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hi, lo, sgn) arrays of shape (len(ids), k) for entries of the same k components."""
        self._assemble()
        ids = np.asarray(ids, dtype=np.int64)
        k = int(self._offset[ids[0] + 1] - self._offset[ids[0]]) if ids.size else 1
        at = self._offset[ids][:, None] + np.arange(k)[None, :]
        return tuple(col[at] for col in self._cols)

    def flush(self) -> None:
        """Merge the marked entries into the file, under its lock: stamped now, least recently
        used entries out beyond MAX_ENTRIES."""
        if self.path is None or not self.marked:
            return
        self._assemble()
        now = _now()
        keys = self._keys()
        marked = np.array(sorted(self.marked), dtype=np.int64)
        with locked(self.path):
            merged = self._signature() != self._disk_sig
            if not merged:  # the file is what we last read or wrote: we hold all of it
                ids = np.union1d(self._on_disk, marked)
                stamps = self._stamp[:self.n].copy()
                stamps[marked] = now
                parts = [([keys[i] for i in ids.tolist()], *_gather(self._offset, self._cols, ids), stamps[ids])]
            else:  # another process wrote it: its entries, ours re-stamped, and ours it lacks
                disk = load(self.path, self.meta)
                parts = []
                if disk is not None:
                    dkeys = _keys(disk)
                    ours = {keys[i] for i in marked.tolist()}
                    dstamp = disk["stamp"].copy()
                    dstamp[[j for j, k in enumerate(dkeys) if k in ours]] = now
                    parts.append((dkeys, disk["count"].astype(np.int64), disk["hi"], disk["lo"], disk["sgn"], dstamp))
                    have = set(dkeys)
                    marked = np.array([i for i in marked.tolist() if keys[i] not in have], dtype=np.int64)
                if marked.size:
                    parts.append(([keys[i] for i in marked.tolist()], *_gather(self._offset, self._cols, marked),
                                  np.full(marked.size, now, dtype=np.int64)))
            arrays = _encode(parts, self.meta)
            save(self.path, arrays)
            whole = not merged and len(arrays["stamp"]) == len(ids)
            self._disk_sig = self._signature() if whole else None  # else merge again next time
            if whole:
                self._on_disk = ids
        self._stamp[np.array(sorted(self.marked), dtype=np.int64)] = now
        self.marked.clear()

    def _signature(self):
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns


def unpack(values: list[tuple]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hi, lo, sgn) arrays (len(values), k) of values of k (hi, lo, sgn) components each."""
    if not values:
        return np.empty((0, 1)), np.empty((0, 1)), np.empty((0, 1), dtype=np.int8)
    a = np.array([c for v in values for c in v], dtype=np.float64).reshape(len(values), len(values[0]), 3)
    return a[:, :, 0], a[:, :, 1], a[:, :, 2].astype(np.int8)


def _gather(offset: np.ndarray, cols: tuple, ids: np.ndarray):
    """(counts, hi, lo, sgn) of entries ids: their component ranges concatenated."""
    starts = offset[ids]
    counts = offset[ids + 1] - starts
    total = int(counts.sum())
    at = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(starts, counts)
    return (counts, *(c[at] for c in cols))


def _encode(parts: list[tuple], meta: str) -> dict[str, np.ndarray]:
    """File arrays from parts (keys, counts, hi, lo, sgn, stamps); beyond MAX_ENTRIES the least
    recently used entries are left out."""
    keys = [k for p in parts for k in p[0]]
    counts, hi, lo, sgn, stamp = (np.concatenate([np.asarray(p[j]) for p in parts]) if parts else np.empty(0)
                                  for j in range(1, 6))
    if len(keys) > MAX_ENTRIES:
        keep = np.sort(np.argsort(-stamp, kind="stable")[:MAX_ENTRIES])
        offset = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        counts, hi, lo, sgn = _gather(offset, (hi, lo, sgn), keep)
        keys, stamp = [keys[i] for i in keep.tolist()], stamp[keep]
    return {
        "meta": np.array(meta),
        "key_len": np.array([len(k) for k in keys], dtype=np.int32),
        "keys": _key_blob(keys),
        "count": np.asarray(counts, dtype=np.int32),
        "hi": np.asarray(hi, dtype=np.float64),
        "lo": np.asarray(lo, dtype=np.float64),
        "sgn": np.asarray(sgn, dtype=np.int8),
        "stamp": np.asarray(stamp, dtype=np.int64),
    }


def _key_blob(keys: list[bytes]) -> np.ndarray:
    """The keys' bytes; keys of one width as a (width, n) array, byte k of every key in row k
    (shuffled, as ``save`` does numbers: their float bytes then compress)."""
    blob = np.frombuffer(b"".join(keys), dtype=np.uint8)
    widths = {len(k) for k in keys}
    if len(widths) == 1 and keys:
        return blob.reshape(len(keys), -1).T.copy()
    return blob


def _disk_rows(data: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(entry ids, (n, W) uint8 rows)] of a file's keys, one per width."""
    blob = data["keys"]
    if blob.ndim == 2:
        rows = np.ascontiguousarray(blob.T)
        return [(np.arange(len(rows), dtype=np.int64), rows)] if rows.size else []
    lens = np.asarray(data["key_len"], dtype=np.int64)
    starts = np.cumsum(lens) - lens
    out = []
    for w in np.unique(lens).tolist():
        ids = np.flatnonzero(lens == w)
        out.append((ids, blob[starts[ids][:, None] + np.arange(w)]))
    return out


def _keys(data: dict[str, np.ndarray]) -> list[bytes]:
    if data["keys"].ndim == 2:
        rows = np.ascontiguousarray(data["keys"].T)
        return rows.view(np.dtype((np.void, rows.shape[1]))).ravel().tolist() if rows.size else []
    blob = data["keys"].tobytes()
    ends = np.cumsum(data["key_len"]).tolist()
    return [blob[a:b] for a, b in zip([0] + ends[:-1], ends)]
