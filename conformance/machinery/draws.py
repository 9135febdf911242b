"""Derandomised hypothesis draws, kept and replayed.

Under a derandomised profile (``ci``, ``strict``) hypothesis draws the same examples from a
strategy on every run: they depend on the strategy, the settings, the hypothesis version and the
source of the drawing code, nothing else (not the backend, not the clause).  The first
exploration of a strategy keeps the examples its test body received, in order, in memory and
under the cache's ``draws/``; every later exploration of that strategy -- another clause, mode
or backend of the same format and domain, or a later run -- feeds them to the check directly,
without hypothesis's engine.  If a replayed example raises, the record is restored and
hypothesis runs for real, so a failure is found, shrunk and reported exactly as without replay.
Random profiles (``fast``, ``thorough``) never replay.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import io
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ffnspec.conformance.machinery.records import Record

Example = Any  # an ndarray, or a tuple of ndarrays (a group of the recipe)
_kept: dict[str, list[Example]] = {}


@functools.lru_cache(maxsize=None)
def _sources() -> bytes:
    """What decides the draws besides the key: hypothesis's and NumPy's versions, the strategies
    (conformance/inputs), the formats, and the modules that hold the ``@given`` functions."""
    import hypothesis

    from ffnspec.conformance import inputs
    from ffnspec.reference import floatformat
    root = Path(inputs.__file__).parent
    files = sorted(root.glob("*.py")) + [Path(__file__).with_name("session.py"), Path(floatformat.__file__)]
    h = hashlib.blake2b(f"{hypothesis.__version__}|{np.__version__}|{sys.version_info[:2]}".encode(), digest_size=16)
    for f in files:
        h.update(f.name.encode() + f.read_bytes())
    return h.digest()


def _digest(key: tuple, settings) -> str:
    h = hashlib.blake2b(_sources(), digest_size=16)
    h.update(repr((key, settings.max_examples, settings.derandomize)).encode())
    return h.hexdigest()


def _path(digest: str) -> Path | None:
    from ffnspec.reference import tables
    root = tables.cache_dir()
    return None if root is None else root / "draws" / f"{digest}.npz"


def _load(digest: str) -> list[Example] | None:
    if digest in _kept:
        return _kept[digest]
    path = _path(digest)
    if path is None or not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            parts = f["parts"]
            examples = [f[f"e{i}"] if k < 0 else tuple(f[f"e{i}_{j}"] for j in range(k))
                        for i, k in enumerate(parts.tolist())]
    except (OSError, KeyError, ValueError):  # unreadable or another layout: draw again
        return None
    _kept[digest] = examples
    return examples


def _save(digest: str, examples: list[Example]) -> None:
    _kept[digest] = examples
    path = _path(digest)
    if path is None:
        return
    arrays: dict[str, np.ndarray] = {"parts": np.array([-1 if isinstance(e, np.ndarray) else len(e) for e in examples])}
    for i, e in enumerate(examples):
        if isinstance(e, np.ndarray):
            arrays[f"e{i}"] = e
        else:
            arrays.update({f"e{i}_{j}": a for j, a in enumerate(e)})
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    from ffnspec.reference import store
    try:
        store.write_atomically(path, lambda fh: fh.write(buf.getvalue()))
    except OSError:  # a read-only cache only costs the next run the engine
        pass


def _copy(e: Example) -> Example:
    return np.array(e, copy=True) if isinstance(e, np.ndarray) else tuple(np.array(a, copy=True) for a in e)


def _keepable(e: Any) -> bool:
    return isinstance(e, np.ndarray) or (isinstance(e, tuple) and all(isinstance(a, np.ndarray) for a in e))


class Exploration:
    """One exploration of a strategy: ``replay`` the kept examples into ``body``, or record what
    the engine's test body receives (``recording``) and ``keep`` it once the engine finishes."""

    def __init__(self, key: tuple, settings) -> None:
        self.active = bool(settings.derandomize)
        self.digest = _digest(key, settings) if self.active else ""
        self.seen: list[Example] | None = [] if self.active else None

    def replay(self, body: Callable[[Example], None], record: Record) -> bool:
        """Feed the kept examples to ``body``; True if all passed.  False (nothing kept, or an
        example raised: the record is then as before) means: run the engine."""
        examples = _load(self.digest) if self.active else None
        if examples is None:
            return False
        before = {k: (v if k == "scope" else copy.deepcopy(v)) for k, v in vars(record).items()}
        try:
            for e in examples:
                body(_copy(e))
        except BaseException:
            vars(record).update(before)
            return False
        return True

    def recording(self, check: Callable, position: int) -> Callable:
        """``check`` that also keeps its argument at ``position`` (the drawn example)."""
        if self.seen is None:
            return check

        def keeping(*args, **kw):
            e = args[position]
            if self.seen is not None:
                if _keepable(e):
                    self.seen.append(_copy(e))
                else:
                    self.seen = None
            return check(*args, **kw)
        return keeping

    def keep(self) -> None:
        """The engine finished without a failure: keep what it drew."""
        if self.seen:
            _save(self.digest, self.seen)
