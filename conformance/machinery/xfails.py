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
    ceiling = 6.2e5                  # optional: the largest error (criterion units) excused
    region = [[20.0, 1e300]]         # optional: [min, max] per argument of the op's input
    where = "nonfinite"              # optional predicate (WHERE): only items with an inf or NaN
                                     # input; "rows_beyond_65504": only rows of more entries than that;
                                     # "posinf_entry": only rows with a +inf entry; "label_is_max":
                                     # only rows whose label's logit is the largest; "apart_beyond_exp_range":
                                     # only items whose first two arguments differ by more than
                                     # log(max_finite) of the dtype; a list: any of them

A scoped entry (ceiling, region, where, or several) excuses only the violations inside its scope:
one above the ceiling or outside the region fails the check as usual, so a new defect in
an already-declared record is never reported as the old deviation.  Several entries may match
one record: their scopes add up (a violation any one of them covers is excused).  A malformed file is a
usage error naming the file and entry; an entry that matches no collected check draws a
warning.
"""
from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path

_KEYS = {"clause", "backend", "dtype", "device", "mode", "reason", "reproducer", "ceiling", "region", "where"}
WHERE = {  # the predicates ``where`` may name
    "nonfinite": "an input entry is infinite or NaN",
    "rows_beyond_65504": "the row has more than 65504 entries (a sum of its e^(z - max z) can pass float16's range)",
    "posinf_entry": "the row (the first argument) has a +inf entry",
    "label_is_max": "the label's logit is the row's largest (the loss is at most log n, and the composed "
                    "logsumexp(z) - z_y cancels the leading digits of logsumexp)",
    "apart_beyond_exp_range": "the first two arguments differ by more than log(max_finite) of the dtype "
                              "(e^|a - b| overflows in it)",
}


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
    ceiling: float | None = None                          # largest excused error, criterion units
    region: tuple[tuple[float, float] | None, ...] | None = None  # per argument: [min, max] or any
    where: tuple[str, ...] | None = None                  # predicates of WHERE (any one)
    matched: int = 0

    @property
    def scoped(self) -> bool:
        return self.ceiling is not None or self.region is not None or self.where is not None

    def covers(self, inputs: list, error, dtype: str | None = None) -> "np.ndarray":
        """Which measured inputs lie inside this entry's scope: error (criterion units) at most
        the ceiling, and argument i within region[i].  ``inputs`` holds one array per argument
        with a leading axis matching ``error`` (a row's entries must all lie in the region);
        ``dtype``, the record's, for predicates that depend on the format."""
        import numpy as np
        error = np.asarray(error, dtype=np.float64).ravel()
        inside = np.ones(error.shape, dtype=bool)
        if self.ceiling is not None:
            inside &= error <= self.ceiling
        for arg, bounds in zip(inputs, self.region or ()):
            a = np.asarray(arg, dtype=np.float64)
            if bounds is None or a.size == 0 or a.size % max(error.size, 1):
                continue
            a = a.reshape(error.size, -1)
            inside &= np.all((a >= bounds[0]) & (a <= bounds[1]), axis=1)
        if self.where is not None:  # a predicate, or a list of them: any one holds
            inside &= np.any([self._holds(w, inputs, error.size, dtype) for w in self.where], axis=0)
        return inside

    @staticmethod
    def _holds(pred: str, inputs: list, size: int, dtype: str | None = None) -> "np.ndarray":
        """Which of ``size`` items satisfy the WHERE predicate ``pred``."""
        import numpy as np
        n = max(size, 1)
        if pred == "apart_beyond_exp_range":  # elementwise items: a, b (, a direction)
            if len(inputs) < 2 or dtype is None:
                return np.zeros(size, dtype=bool)
            from ffnspec.reference.floatformat import get_format
            a, b = (np.asarray(x, dtype=np.float64).ravel() for x in inputs[:2])
            if a.size != size or b.size != size:
                return np.zeros(size, dtype=bool)
            with np.errstate(invalid="ignore", over="ignore"):
                return np.abs(a - b) > np.log(get_format(dtype).max_finite)
        if pred == "rows_beyond_65504":
            a = np.asarray(inputs[0]) if inputs else np.empty(0)
            return np.full(size, (a.size // n if a.size % n == 0 else 0) > 65504)
        if pred == "posinf_entry":
            a = np.asarray(inputs[0], dtype=np.float64) if inputs else np.empty(0)
            return (np.any(np.isposinf(a.reshape(size, -1)), axis=1) if a.size and a.size % n == 0
                    else np.zeros(size, dtype=bool))
        if pred == "label_is_max":  # inputs: rows z (items, n) and their labels y (items,)
            if len(inputs) < 2:
                return np.zeros(size, dtype=bool)
            z, y = np.asarray(inputs[0], dtype=np.float64), np.asarray(inputs[1], dtype=np.float64).ravel()
            if not z.size or z.size % n or y.size != size:
                return np.zeros(size, dtype=bool)
            z = z.reshape(size, -1)
            lab = np.clip(y, 0, z.shape[1] - 1).astype(np.int64)
            return z[np.arange(size), lab] == z.max(axis=1)
        some = np.zeros(size, dtype=bool)  # nonfinite
        for arg in inputs:
            a = np.asarray(arg, dtype=np.float64)
            if a.size and a.size % n == 0:
                some |= ~np.all(np.isfinite(a.reshape(size, -1)), axis=1)
        return some

    def scope_text(self) -> str:
        parts = [f"error <= {self.ceiling:g}"] if self.ceiling is not None else []
        if self.region is not None:
            parts += [f"argument {i} in [{b[0]:g}, {b[1]:g}]" for i, b in enumerate(self.region) if b is not None]
        if self.where is not None:
            parts.append(" or ".join(WHERE[w] for w in self.where))
        return " and ".join(parts) or "everywhere"

    def matches(self, *, clause: str, backend: str, dtype: str, device: str, mode: str | None) -> bool:
        return (fnmatch.fnmatchcase(clause, self.clause)
                and (self.backend is None or self.backend == backend)
                and (self.dtype is None or dtype in self.dtype)
                and (self.device is None or fnmatch.fnmatchcase(device, self.device))
                and (self.mode is None or self.mode == mode))


@dataclass
class Declared:
    """Every entry declared for one record (clause x dtype x device x mode), in file order: a
    violation is excused where any one of them covers it, so two scoped entries (say, a region
    of finite inputs and the non-finite ones, each with its own reason) add up."""
    parts: tuple[Deviation, ...]

    @property
    def reason(self) -> str:
        return "; ".join(p.reason for p in self.parts)

    @property
    def source(self) -> str:
        return ", ".join(dict.fromkeys(p.source for p in self.parts))

    @property
    def reproducer(self) -> str | None:
        return next((p.reproducer for p in self.parts if p.reproducer), None)

    @property
    def scoped(self) -> bool:
        return all(p.scoped for p in self.parts)  # an unscoped entry excuses everything

    def covers(self, inputs: list, error, dtype: str | None = None) -> "np.ndarray":
        import numpy as np
        return np.any([p.covers(inputs, error, dtype) for p in self.parts], axis=0)

    def scope_text(self) -> str:
        return " or ".join(f"({p.scope_text()})" for p in self.parts)


def declared(deviations: list[Deviation], **record) -> Deviation | Declared | None:
    """The entries matching a record (``Deviation.matches``' keywords), each counted as matched:
    None, the one entry, or all of them together."""
    found = [d for d in deviations if d.matches(**record)]
    for d in found:
        d.matched += 1
    return None if not found else found[0] if len(found) == 1 else Declared(tuple(found))


def parse(text: str, source: str) -> list[Deviation]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise XfailFileError(f"malformed xfail file {source}: not valid TOML: {e}") from None
    unknown_top = set(data) - {"deviation"}
    if unknown_top:
        raise XfailFileError(f"malformed xfail file {source}: unknown top-level key(s) {sorted(unknown_top)}; expected [[deviation]] tables")
    out = []
    for i, raw in enumerate(data.get("deviation", []), 1):
        where = f"malformed xfail file {source}: [[deviation]] #{i}"
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
        ceiling = raw.get("ceiling")
        if ceiling is not None and (isinstance(ceiling, bool) or not isinstance(ceiling, (int, float)) or ceiling < 0):
            raise XfailFileError(f"{where}: 'ceiling' must be a non-negative number (the largest excused error)")
        region = raw.get("region")
        if region is not None:
            ok = isinstance(region, list) and all(
                b == [] or (isinstance(b, list) and len(b) == 2 and all(isinstance(x, (int, float)) and
                                                                        not isinstance(x, bool) for x in b)
                            and b[0] <= b[1]) for b in region)
            if not ok:
                raise XfailFileError(f"{where}: 'region' must be a list with one [min, max] (or []) per argument")
            region = tuple(tuple(float(x) for x in b) if b else None for b in region)
        pred = raw.get("where")
        if pred is not None:
            pred = (pred,) if isinstance(pred, str) else tuple(pred) if isinstance(pred, list) else (pred,)
            if not pred or any(p not in WHERE for p in pred):
                raise XfailFileError(f"{where}: 'where' must be one of {sorted(WHERE)} or a list of them, not {raw.get('where')!r}")
        out.append(Deviation(clause=raw["clause"], reason=raw["reason"].strip(), source=source,
                             backend=raw.get("backend"), dtype=dtype, device=raw.get("device"),
                             mode=raw.get("mode"), reproducer=raw.get("reproducer"),
                             ceiling=None if ceiling is None else float(ceiling), region=region, where=pred))
    return out


def load(path: str | Path) -> list[Deviation]:
    p = Path(path)
    if not p.exists():
        raise XfailFileError(f"xfail file {str(p)!r} does not exist")
    if not p.is_file():
        raise XfailFileError(f"xfail file {str(p)!r} is not a file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise XfailFileError(f"xfail file {str(p)!r} cannot be read: {getattr(e, 'strerror', None) or e}") from None
    return parse(text, str(p))
