"""The on-disk cache of reference values: atomic writes, file locks, a size bound.

Layout under the cache directory (``~/.cache/ffnspec/reference`` by default):

    tables/<function>-<fmt>[-<params>]-<sources>.npz   one complete 16-bit table (tables.py)
    points/<function>-<kind>-<sources>.npz             a bounded store of other inputs' values

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

MAX_ENTRIES = 1 << 18          # entries (points or items) per point store
MAX_BYTES = 60 * 1024 * 1024   # the whole cache directory


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


def save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz atomically (a unique temporary file, then rename over ``path``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)
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
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if str(arrays.get("meta", np.array(""))) != meta:
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
    for _, size, p in sorted(files):
        if total <= max_bytes:
            break
        with contextlib.suppress(OSError):
            p.unlink()
            total -= size


# --- point stores ------------------------------------------------------------------------

def _now() -> int:
    """The stamp of a use: seconds since the epoch."""
    return int(time.time())


RESTAMP_AFTER = 86400  # seconds: an entry used again is re-stamped (rewriting its file) at most daily


class PointStore:
    """Values of one reference function at keyed inputs, in memory and (bounded) on disk.

    An entry is a key (bytes) and a value of one or more components, each a (hi, lo, sgn)
    triple.  Entries added with ``persist`` (bulk, deterministic inputs), or found by a
    persisting lookup, are marked; ``flush`` merges the marked ones into the file under its
    lock, stamped with the time; others live for the process only."""

    def __init__(self, path: Path | None, meta: str):
        self.path, self.meta = path, meta
        self.index: dict[bytes, int] = {}
        self.stamp: list[int] = []
        self.marked: set[int] = set()
        self._cols = (np.empty(0), np.empty(0), np.empty(0, dtype=np.int8))  # flat components
        self._offset = np.zeros(1, dtype=np.int64)                            # entry i: offset[i]:offset[i+1]
        self._new: list[tuple] = []   # values added since the arrays were last assembled
        self._loaded = path is None

    def _load(self) -> None:
        self._loaded = True
        data = load(self.path, self.meta)
        if data is None:
            return
        keys = _keys(data)
        self.index = dict(zip(keys, range(len(keys))))
        self.stamp = data["stamp"].tolist()
        self._cols = (data["hi"], data["lo"], data["sgn"])
        self._offset = np.concatenate([[0], np.cumsum(data["count"], dtype=np.int64)])

    def find(self, keys: list[bytes], *, persist: bool) -> np.ndarray:
        """Entry ids of the keys (-1 where absent)."""
        if not self._loaded:
            self._load()
        get = self.index.get
        ids = np.fromiter((get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        if persist and ids.size:
            stale = _now() - RESTAMP_AFTER
            self.marked.update(i for i in set(ids.tolist()) if i >= 0 and self.stamp[i] < stale)
        return ids

    def add(self, keys: list[bytes], values: list[tuple], *, persist: bool) -> None:
        for k, v in zip(keys, values):
            if k in self.index:
                continue
            i = self.index[k] = len(self.stamp)
            self.stamp.append(0)
            self._new.append(v)
            if persist:
                self.marked.add(i)

    def _assemble(self) -> None:
        if not self._new:
            return
        comps = [c for v in self._new for c in v]
        self._cols = tuple(np.concatenate([col, np.array([c[j] for c in comps], dtype=col.dtype)])
                           for j, col in enumerate(self._cols))
        counts = np.array([len(v) for v in self._new], dtype=np.int64)
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
        if self.path is None or not self.marked:
            return
        self._assemble()
        now = _now()
        mine = {k: i for k, i in self.index.items() if i in self.marked}
        with locked(self.path):
            disk = load(self.path, self.meta)
            entries: dict[bytes, tuple] = {}
            stamps: dict[bytes, int] = {}
            if disk is not None:
                entries.update(_decode(disk))
                stamps.update(zip(_keys(disk), disk["stamp"].tolist()))
            for k, i in mine.items():
                a, b = self._offset[i], self._offset[i + 1]
                entries[k] = tuple(zip(*(col[a:b].tolist() for col in self._cols)))
                stamps[k] = now
            if len(entries) > MAX_ENTRIES:  # least recently used out
                keep = sorted(stamps, key=stamps.__getitem__, reverse=True)[:MAX_ENTRIES]
                entries = {k: entries[k] for k in keep}
            save(self.path, _encode(entries, stamps, self.meta))
        for i in self.marked:
            self.stamp[i] = now
        self.marked.clear()


def _encode(entries: dict[bytes, tuple], stamps: dict[bytes, int], meta: str) -> dict[str, np.ndarray]:
    keys = list(entries)
    comps = [c for k in keys for c in entries[k]]
    return {
        "meta": np.array(meta),
        "key_len": np.array([len(k) for k in keys], dtype=np.int32),
        "keys": np.frombuffer(b"".join(keys), dtype=np.uint8),
        "count": np.array([len(entries[k]) for k in keys], dtype=np.int32),
        "hi": np.array([c[0] for c in comps], dtype=np.float64),
        "lo": np.array([c[1] for c in comps], dtype=np.float64),
        "sgn": np.array([c[2] for c in comps], dtype=np.int8),
        "stamp": np.array([stamps[k] for k in keys], dtype=np.int64),
    }


def _keys(data: dict[str, np.ndarray]) -> list[bytes]:
    blob = data["keys"].tobytes()
    ends = np.cumsum(data["key_len"]).tolist()
    return [blob[a:b] for a, b in zip([0] + ends[:-1], ends)]


def _decode(data: dict[str, np.ndarray]) -> dict[bytes, tuple]:
    hi, lo, sgn = data["hi"].tolist(), data["lo"].tolist(), data["sgn"].tolist()
    out, i = {}, 0
    for k, n in zip(_keys(data), data["count"].tolist()):
        out[k] = tuple(zip(hi[i:i + n], lo[i:i + n], sgn[i:i + n]))
        i += n
    return out
