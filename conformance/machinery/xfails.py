"""Declared deviations (xfail files).

TOML, one ``[[deviation]]`` table per entry:

    [[deviation]]
    clause = "act.softplus"          # clause id or glob (required)
    backend = "torch"                # optional; default any
    dtype = "float64"                # optional; string or list; default any
    device = "cpu"                   # optional; default any
    mode = "vjp"                     # optional (derivative clauses); default any
    reason = "threshold 20 returns z; wrong by 6e5 ULP in float64"   (required)
    reproducer = "torch.nn.functional.softplus(torch.tensor([20.5], dtype=torch.float64))"

A malformed file is a usage error naming the file and entry; an entry that
matches no collected check draws a warning.
"""
from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path

_KEYS = {"clause", "backend", "dtype", "device", "mode", "reason", "reproducer"}


class XfailFileError(ValueError):
    pass


@dataclass
class Deviation:
    clause: str
    reason: str
    source: str
    backend: str | None = None
    dtype: tuple[str, ...] | None = None
    device: str | None = None
    mode: str | None = None
    reproducer: str | None = None
    matched: int = 0

    def matches(self, *, clause: str, backend: str, dtype: str, device: str, mode: str | None) -> bool:
        return (fnmatch.fnmatchcase(clause, self.clause)
                and (self.backend is None or self.backend == backend)
                and (self.dtype is None or dtype in self.dtype)
                and (self.device is None or fnmatch.fnmatchcase(device, self.device))
                and (self.mode is None or self.mode == mode))


def parse(text: str, source: str) -> list[Deviation]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise XfailFileError(f"{source}: not valid TOML: {e}") from None
    unknown_top = set(data) - {"deviation"}
    if unknown_top:
        raise XfailFileError(f"{source}: unknown top-level key(s) {sorted(unknown_top)}; expected [[deviation]] tables")
    out = []
    for i, raw in enumerate(data.get("deviation", []), 1):
        where = f"{source}: [[deviation]] #{i}"
        if not isinstance(raw, dict):
            raise XfailFileError(f"{where}: must be a table")
        bad = set(raw) - _KEYS
        if bad:
            raise XfailFileError(f"{where}: unknown key(s) {sorted(bad)}; allowed: {sorted(_KEYS)}")
        for key in ("clause", "reason"):
            if not isinstance(raw.get(key), str) or not raw[key].strip():
                raise XfailFileError(f"{where}: {key!r} is required and must be a non-empty string")
        dtype = raw.get("dtype")
        if isinstance(dtype, str):
            dtype = (dtype,)
        elif dtype is not None:
            if not isinstance(dtype, list) or not all(isinstance(d, str) for d in dtype):
                raise XfailFileError(f"{where}: 'dtype' must be a string or a list of strings")
            dtype = tuple(dtype)
        for key in ("backend", "device", "mode", "reproducer"):
            if key in raw and not isinstance(raw[key], str):
                raise XfailFileError(f"{where}: {key!r} must be a string")
        out.append(Deviation(clause=raw["clause"], reason=raw["reason"].strip(), source=source,
                             backend=raw.get("backend"), dtype=dtype, device=raw.get("device"),
                             mode=raw.get("mode"), reproducer=raw.get("reproducer")))
    return out


def load(path: str | Path) -> list[Deviation]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise XfailFileError(f"{p}: cannot read xfail file: {e.strerror}") from None
    return parse(text, str(p))
