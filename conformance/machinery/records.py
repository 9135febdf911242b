"""Verdict records, accuracy grades and failure messages.

One ``Record`` per clause x backend x dtype x device (x mode): max error, worst
input, examples, grade, and a reproducer when a check fails.  The plugin turns
records into the JSON report; a failure raises ``ConformanceFailure`` whose text
carries the clause id, statement, criterion, worst input and a reproducer.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ffnspec.conformance.machinery.harness import Target, format_float
from ffnspec.spec import Clause

GRADES = ("correctly rounded", "faithful", "<=2 ULP", "<=4 ULP", "<=16 ULP", ">16 ULP")


def grade(max_ulp: float, max_distance: int) -> str:
    if max_distance == 0:
        return GRADES[0]
    for bound, name in ((1.0, GRADES[1]), (2.0, GRADES[2]), (4.0, GRADES[3]), (16.0, GRADES[4])):
        if max_ulp < bound or (bound > 1 and max_ulp <= bound):
            return name
    return GRADES[5]


class ConformanceFailure(AssertionError):
    pass


@dataclass
class Record:
    clause: str
    backend: str
    dtype: str
    device: str
    mode: str | None = None
    verdict: str = "pending"           # pass | fail | deviation | xpass | not_implemented | error | skipped
    criterion: str = ""
    must: float | None = None
    max_error: float = 0.0             # in the clause criterion's unit
    max_ulp: float | None = None       # graded measure (ULPs of the exact value)
    max_distance: int | None = None    # grid steps from the correctly rounded value
    grade: str | None = None
    worst_input: list[float] | None = None
    worst_output: float | None = None
    worst_exact: float | None = None
    examples: int = 0
    violations: int = 0
    message: str | None = None
    reproducer: str | None = None
    deviation: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("max_error", "max_ulp", "worst_output", "worst_exact"):
            v = d[k]
            if v is not None and not np.isfinite(v):
                d[k] = str(v)
        if d["worst_input"] is not None:
            d["worst_input"] = [v if np.isfinite(v) else str(v) for v in d["worst_input"]]
        return d

    # -- updating ---------------------------------------------------------------
    def observe(self, *, inputs: list[np.ndarray], error: np.ndarray, output: np.ndarray,
                exact: np.ndarray, ulp: np.ndarray | None = None, distance: np.ndarray | None = None) -> None:
        """Fold one batch of measured errors (criterion units) into the record."""
        error = np.asarray(error, dtype=np.float64).ravel()
        if error.size == 0:
            return
        self.examples += int(error.size)
        i = int(np.argmax(error))
        if error[i] >= self.max_error or self.worst_input is None:
            self.max_error = float(error[i])
            self.worst_input = [float(np.ravel(a)[i]) for a in inputs]
            self.worst_output = float(np.ravel(output)[i])
            self.worst_exact = float(np.ravel(exact)[i])
        if ulp is not None:
            ulp = np.asarray(ulp).ravel()
            self.max_ulp = max(self.max_ulp or 0.0, float(np.max(ulp)))
        if distance is not None:
            d = int(np.max(np.asarray(distance).ravel()))
            self.max_distance = max(self.max_distance or 0, d)
        if self.max_ulp is not None and self.max_distance is not None:
            self.grade = grade(self.max_ulp, self.max_distance)


def reproducer(target: Target, op_call: str | list[str], inputs: list[float]) -> str:
    """Copy-paste Python that re-runs the worst case through the same adapter; ``op_call``
    (one expression or several) reads its arguments from ``args``."""
    arrays = ", ".join(f"b.asarray(np.array([{format_float(v)}]), {target.dtype!r}, {target.device!r})" for v in inputs)
    calls = [op_call] if isinstance(op_call, str) else op_call
    lines = [
        "import numpy as np",
        "from ffnspec.adapters import load_backend",
        f"b = load_backend({target.backend_spec!r})",
        f"args = [{arrays}]",
        *(f"print(b.to_numpy({call}).tolist())" for call in calls),
    ]
    native = getattr(target.backend, "snippet", None)
    if callable(native) and len(calls) == 1:
        try:
            lines.append("# natively: " + native(calls[0], inputs, target.dtype, target.device))
        except Exception:  # a hint only; never let it mask the failure
            pass
    return "\n".join(lines)


def fail(record: Record, clause: Clause, target: Target, *, what: str, op_call: str | list[str],
         criterion: str, call_inputs: list[float] | None = None, repro: str | None = None) -> None:
    """Raise a ConformanceFailure describing the record's worst case.  ``call_inputs``
    are the reproducer's arguments when they differ from the clause input z; ``repro`` is a
    ready reproducer (structured inputs: arrays, programs), used instead of building one."""
    inputs = record.worst_input or []
    record.reproducer = repro if repro is not None else reproducer(
        target, op_call, inputs if call_inputs is None else call_inputs)
    shown = ", ".join(format_float(v) for v in inputs)
    lines = [
        f"{clause.citation} {clause.title}",
        f"  statement: {clause.statement}",
        f"  criterion: {criterion}",
        f"  backend {target.backend.name} / {target.dtype} / {target.device}"
        + (f" / {record.mode}" if record.mode else ""),
        f"  {what}",
        f"  worst input: ({shown}) -> got {format_float(record.worst_output or 0.0)}, "
        f"exact {record.worst_exact!r}; error {record.max_error:.4g}"
        + (f"; {record.max_ulp:.4g} ULP" if record.max_ulp is not None else ""),
        f"  violations: {record.violations} of {record.examples} inputs",
        "  reproducer:",
        *("    " + ln for ln in record.reproducer.splitlines()),
    ]
    record.message = "\n".join(lines)
    raise ConformanceFailure(record.message)
