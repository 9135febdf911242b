"""Verdict records, accuracy grades and failure messages.

One ``Record`` per clause x backend x dtype x device (x mode): max error, worst
input, examples, grade, and a reproducer when a check fails.  The plugin turns
records into the JSON report; a failure raises ``ConformanceFailure`` whose text
carries the clause id, statement, criterion, worst input and a reproducer.

Folding a batch into a record: ``Record.observe`` (elementwise inputs), ``observe_items``
(an (items, k) batch of a group of arrays), ``conclude`` (a structured batch, failing with
its own reproducer).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from ffnspec.conformance.machinery import reproduce
from ffnspec.conformance.machinery.harness import Target
from ffnspec.conformance.machinery.reproduce import format_float
from ffnspec.spec import Clause

CURVE_POINTS = 128  # Record.curve: at most this many (input, error) points, the worst of each input slice
ULP_EDGES = (0.0, 0.5, 1.0, 2.0, 4.0, 16.0, 64.0, 1024.0)  # Record.ulp_hist: [edge_i, edge_i+1), the last open
GRADES = ("correctly rounded", "faithful", "<=2 ULP", "<=4 ULP", "<=16 ULP", ">16 ULP")


def grade(max_ulp: float, max_distance: int) -> str:
    if max_distance == 0:
        return GRADES[0]
    for bound, name in ((1.0, GRADES[1]), (2.0, GRADES[2]), (4.0, GRADES[3]), (16.0, GRADES[4])):
        if max_ulp < bound or (bound > 1 and max_ulp <= bound):
            return name
    return GRADES[5]


def _short(v: float) -> float | str:
    """A curve point for report.json: 4 significant digits (what a plot shows), non-finite as text."""
    if not np.isfinite(v):
        return str(v)
    r = float(f"{v:.4g}")
    return r if np.isfinite(r) else v  # rounding the largest finite values up overflows


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
    deviation_reproducer: str | None = None  # the declared entry's reproducer, when it gives one
    accuracy: float | None = None      # the accuracy criterion's bound (ULPs, or k of its mixed bound)
    accuracy_error: float | None = None  # the largest error seen in the accuracy criterion's unit
    findings: int = 0                  # inputs violating the accuracy criterion (a failure under --strict)
    finding: str | None = None         # the worst finding: criterion, input, error, reproducer
    conventions_used: dict[str, int] = field(default_factory=dict)  # declared conventions that changed results
    unexcused: int = 0                 # violations outside a scoped declared deviation (they fail)
    unexcused_worst: list[float] | None = None  # [error, *input] of the worst of them
    notes: list[str] = field(default_factory=list)
    curve: dict[str, list[float]] | None = None  # {"x", "error"}: down-sampled error (criterion units) vs input
    ulp_hist: list[int] | None = None  # counts of ULP errors in the bins of ULP_EDGES, then non-finite
    scope: Any = field(default=None, repr=False, compare=False)  # the declared deviation (not reported)
    scope_reached: bool = field(default=False, repr=False, compare=False)  # an input lay in its scope

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("scope")
        d.pop("scope_reached")
        for k in ("max_error", "max_ulp", "worst_output", "worst_exact", "accuracy_error"):
            v = d[k]
            if v is not None and not np.isfinite(v):
                d[k] = str(v)
        for k in ("worst_input", "unexcused_worst"):
            if d[k] is not None:
                d[k] = [v if np.isfinite(v) else str(v) for v in d[k]]
        if d["curve"] is not None:
            d["curve"] = {k: [_short(v) for v in vs] for k, vs in d["curve"].items()}
        return d

    # -- updating ---------------------------------------------------------------
    def observe(self, *, inputs: list[np.ndarray], error: np.ndarray, output: np.ndarray,
                exact: np.ndarray, ulp: np.ndarray | None = None, distance: np.ndarray | None = None,
                curve: bool = False) -> None:
        """Fold one batch of measured errors (criterion units) into the record.  ``curve``: an
        elementwise check of one argument also keeps the error against the input, down-sampled
        (``curve``, the plots of report.html), and a histogram of the ULP errors (``ulp_hist``)."""
        error = np.asarray(error, dtype=np.float64).ravel()
        if error.size == 0:
            return
        self.examples += int(error.size)
        if curve and len(inputs) == 1 and np.size(inputs[0]) == error.size:
            self._sample_curve(np.asarray(inputs[0], dtype=np.float64).ravel(), error)
        if curve and ulp is not None:
            u = np.asarray(ulp, dtype=np.float64).ravel()
            counts = np.histogram(u[np.isfinite(u)], bins=[*ULP_EDGES, np.inf])[0].tolist() + [int((~np.isfinite(u)).sum())]
            self.ulp_hist = counts if self.ulp_hist is None else [a + b for a, b in zip(self.ulp_hist, counts)]
        if self.scope is not None and self.scope.scoped:
            self._check_scope(inputs, error)
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

    def _sample_curve(self, x: np.ndarray, error: np.ndarray) -> None:
        """Merge a batch into ``curve``: the points sorted by input, cut into CURVE_POINTS slices,
        the worst error of each kept, so the plotted envelope keeps every peak's height."""
        old = self.curve or {"x": [], "error": []}
        x = np.concatenate([np.asarray(old["x"], dtype=np.float64), x])
        e = np.concatenate([np.asarray(old["error"], dtype=np.float64), error])
        keep = np.isfinite(x)
        x, e = x[keep], np.where(np.isnan(e[keep]), np.inf, e[keep])
        order = np.argsort(x, kind="stable")
        x, e = x[order], e[order]
        if x.size > CURVE_POINTS:  # the slices of np.array_split; in each, the first worst point
            q, r = divmod(x.size, CURVE_POINTS)
            sizes = np.where(np.arange(CURVE_POINTS) < r, q + 1, q)
            starts = np.cumsum(sizes) - sizes
            slice_of = np.repeat(np.arange(CURVE_POINTS), sizes)
            at_max = np.flatnonzero(e == np.maximum.reduceat(e, starts)[slice_of])
            picks = at_max[np.unique(slice_of[at_max], return_index=True)[1]]
            x, e = x[picks], e[picks]
        self.curve = {"x": x.tolist(), "error": e.tolist()}

    def uses_convention(self, name: str, results: int) -> None:
        """Count results that meet the criterion only under a declared convention that changes
        results (flush-to-zero): the record is then a declared deviation, never a silent pass."""
        if results:
            self.conventions_used[name] = self.conventions_used.get(name, 0) + results

    def _check_scope(self, inputs: list[np.ndarray], error: np.ndarray) -> None:
        """Count the violations a scoped declared deviation does not cover: above its ceiling or
        outside its region (the criterion's violation threshold: must for ulp and mixed, 1 for
        identity residuals in allowance units, 0 for exact relations)."""
        limit = {"ulp": self.must, "mixed": self.must, "identity": 1.0}.get(self.criterion, 0.0)
        bad = ~(error <= (limit if limit is not None else 0.0))
        out = bad & ~self.scope.covers(inputs, error, self.dtype)
        self.scope_reached = self.scope_reached or bool(self.scope.covers(inputs, np.zeros_like(error), self.dtype).any())
        if out.any():
            self.unexcused += int(out.sum())
            i = int(np.argmax(np.where(out, np.nan_to_num(error, nan=np.inf, posinf=np.inf), -1.0)))
            if self.unexcused_worst is None or not error[i] <= self.unexcused_worst[0]:
                args = [np.asarray(a, dtype=np.float64).reshape(error.size, -1)[i, 0] for a in inputs
                        if np.asarray(a).size and np.asarray(a).size % error.size == 0]
                self.unexcused_worst = [float(error[i]), *map(float, args)]


def assess_accuracy(record: Record, clause: Clause, target: Target, *, inputs: list[np.ndarray],
                    error: np.ndarray, output: np.ndarray, exact: np.ndarray, op_call: str,
                    strict: bool = False, repro: str | None = None) -> None:
    """The accuracy tier: fold the errors in the accuracy criterion's unit (ULPs of the exact
    value, or k of its mixed bound) into the record.  Inputs above the clause's ``accuracy``
    bound are findings, with the worst one described and a reproducer; under ``strict`` they
    fail the check.  Elementwise: ``inputs`` are the argument arrays, aligned with ``error``.
    Reductions: ``inputs`` are the worst item's arguments (rows), ``repro`` its reproducer."""
    bound = clause.tolerance.accuracy
    error = np.asarray(error, dtype=np.float64).ravel()
    if bound is None or error.size == 0:
        return
    error = np.where(np.isnan(error), np.inf, error)
    record.accuracy = bound
    worse = record.accuracy_error is None or float(np.max(error)) > record.accuracy_error
    record.accuracy_error = max(record.accuracy_error or 0.0, float(np.max(error)))
    criterion = f"error <= {bound:g} ULP of the exact value" if clause.tolerance.accuracy_scale is None else \
        f"|g - t| <= k u (|t| + S_acc) + eta with k = {bound:g}, S_acc = {clause.tolerance.accuracy_scale} (error in k)"
    _findings(record, clause, target, error, bound, criterion + " (a good implementation achieves this; "
              "the MUST bound is met)", inputs=inputs, output=output, exact=exact, op_call=op_call,
              strict=strict, repro=repro, describe=worse)


def assess_policy(record: Record, clause: Clause, target: Target, *, inputs: list[np.ndarray],
                  error: np.ndarray, output: np.ndarray, exact: np.ndarray, strict: bool = False,
                  repro: str | None = None) -> None:
    """The 16-bit evaluation policy (measure.policy_error, error in its units, <= 1 meets it):
    results beyond it are findings, unless the adapter declares ``accumulation = "storage"``:
    then the declared convention changed them, and the record is a declared deviation."""
    error = np.asarray(error, dtype=np.float64).ravel()
    bad = ~(error <= 1.0)
    if not bad.any():
        return
    if str(target.backend.conventions.get("accumulation", "float32")) == "storage":
        record.uses_convention("accumulation", int(bad.sum()))
        return
    describe = record.finding is None
    if clause.tolerance.accuracy is None:  # the record's accuracy figure is this one's (units of the policy bound)
        error = np.where(np.isnan(error), np.inf, error)
        describe = record.accuracy_error is None or float(np.max(error)) > record.accuracy_error
        record.accuracy = 1.0
        record.accuracy_error = max(record.accuracy_error or 0.0, float(np.max(error)))
    _findings(record, clause, target, error, 1.0,
              "16-bit data evaluated in float32 and rounded once: |g - t| <= u|t| + eta + "
              "(1 + u)(k (u32 (|t| + S) + eta32) + u32 A) (error in units of that; the MUST bound is met)",
              inputs=inputs, output=output, exact=exact, op_call="", strict=strict, repro=repro,
              describe=describe)


def _findings(record: Record, clause: Clause, target: Target, error: np.ndarray, bound: float, criterion: str, *,
              inputs, output, exact, op_call: str, strict: bool, repro: str | None, describe: bool) -> None:
    """Count the errors above ``bound`` as findings; describe the worst (``describe``: it is the
    record's worst so far), with a reproducer; under ``strict`` raise."""
    bad = ~(error <= bound)
    record.findings += int(bad.sum())
    if not bad.any() or not describe:
        return
    i = int(np.argmax(error))
    if repro is None:
        args = [float(np.ravel(a)[i]) for a in inputs]
        repro = reproduce.scalars(target, op_call, args)
        shown = ", ".join(format_float(v) for v in args)
    else:
        flat = [float(v) for a in inputs for v in np.ravel(a)]
        shown = ", ".join(format_float(v) for v in flat[:24]) + (f", ... ({len(flat)} values)" if len(flat) > 24 else "")
    record.finding = "\n".join([
        f"{clause.citation} {clause.title}: accuracy finding",
        f"  accuracy criterion: {criterion}",
        f"  backend {target.backend.name} / {target.dtype} / {target.device}" + (f" / {record.mode}" if record.mode else ""),
        f"  worst input: ({shown}) -> got {format_float(float(np.ravel(output)[i]))}, "
        f"exact {float(np.ravel(exact)[i])!r}; error {error[i]:.4g}",
        f"  findings: {record.findings} of {record.examples} inputs",
        "  reproducer:", *("    " + ln for ln in repro.splitlines())])
    if strict:
        record.reproducer, record.message = repro, record.finding + "\n  (--strict: findings fail)"
        raise ConformanceFailure(record.message)


def _order_hint(record: Record, clause: Clause) -> list[str]:
    """Where every input fails, the likeliest cause is the adapter's argument order: say the
    order ffnspec calls the op with (spec/ops.toml)."""
    from ffnspec import spec
    op = spec.ops().get(clause.op or "")
    if op is None or len(op.arguments) < 2 or not record.examples or record.violations < record.examples:
        return []
    return [f"  every input failed: check the argument order; ffnspec calls {op.signature} "
            f"(docs/adapters.md, the ops table)"]


def fail(record: Record, clause: Clause, target: Target, *, what: str, op_call: str | list[str],
         criterion: str, call_inputs: list[float] | None = None, repro: str | None = None) -> None:
    """Raise a ConformanceFailure describing the record's worst case.  ``call_inputs``
    are the reproducer's arguments when they differ from the clause input z; ``repro`` is a
    ready reproducer (structured inputs: arrays, programs), used instead of building one."""
    inputs = record.worst_input or []
    record.reproducer = repro if repro is not None else reproduce.scalars(
        target, op_call, inputs if call_inputs is None else call_inputs)
    shown = ", ".join(format_float(v) for v in inputs)
    measured = record.worst_exact is not None or record.worst_output is not None
    lines = [
        f"{clause.citation} {clause.title}",
        f"  statement: {clause.statement}",
        f"  criterion: {criterion}",
        f"  backend {target.backend.name} / {target.dtype} / {target.device}"
        + (f" / {record.mode}" if record.mode else ""),
        f"  {what}",
        (f"  worst input: ({shown}) -> got {format_float(record.worst_output or 0.0)}, "
         f"exact {record.worst_exact!r}; error {record.max_error:.4g}"
         + (f"; {record.max_ulp:.4g} ULP" if record.max_ulp is not None else "")) if measured else
        f"  input: ({shown}{', ...' if len(inputs) >= 8 else ''})",
        f"  violations: {record.violations} of {max(record.examples, record.violations)} inputs",
        *_order_hint(record, clause),
        "  reproducer:",
        *("    " + ln for ln in record.reproducer.splitlines()),
    ]
    record.message = "\n".join(lines)
    raise ConformanceFailure(record.message)


def observe_items(record: Record, group: tuple[np.ndarray, ...], err: np.ndarray, y: np.ndarray, t: np.ndarray,
                  ulps: np.ndarray | None = None, dist: np.ndarray | None = None) -> tuple[int, int]:
    """Fold an (items, k) batch into the record; returns the worst (item, component)."""
    err = np.asarray(err, dtype=np.float64).reshape(group[0].shape[0], -1)
    if err.size == 0:
        return 0, 0
    record.examples += int(err.size)
    if record.scope is not None and record.scope.scoped:  # per item: its worst component
        record._check_scope(list(group), np.max(np.where(np.isnan(err), np.inf, err), axis=1))
    i, j = np.unravel_index(int(np.argmax(err)), err.shape)
    if err[i, j] >= record.max_error or record.worst_input is None:
        record.max_error = float(err[i, j])
        record.worst_input = [float(v) for a in group for v in np.ravel(a[i])]
        record.worst_output = float(np.reshape(y, err.shape)[i, j])
        record.worst_exact = float(np.reshape(t, err.shape)[i, j])
        record.notes = [n for n in record.notes if not n.startswith("worst: ")] + [
            f"worst: item of shapes {[tuple(np.shape(a[i])) for a in group]}, component {j}"]
    if ulps is not None:
        record.max_ulp = max(record.max_ulp or 0.0, float(np.max(ulps)))
    if dist is not None:
        record.max_distance = max(record.max_distance or 0, int(np.max(dist)))
    if record.max_ulp is not None and record.max_distance is not None:
        record.grade = grade(record.max_ulp, record.max_distance)
    return int(i), int(j)


def fail_items(record: Record, clause: Clause, target: Target, *, what: str, criterion: str, repro: str) -> None:
    """Raise a ConformanceFailure citing the clause, with the worst item and a reproducer."""
    record.reproducer = repro
    shown = record.worst_input or []
    text = ", ".join(format_float(v) for v in shown[:24]) + (f", ... ({len(shown)} values)" if len(shown) > 24 else "")
    record.message = "\n".join([
        f"{clause.citation} {clause.title}",
        f"  statement: {clause.statement}",
        f"  criterion: {criterion}",
        f"  backend {target.backend.name} / {target.dtype} / {target.device}" + (f" / {record.mode}" if record.mode else ""),
        f"  {what}",
        f"  worst input: ({text}) -> got {format_float(record.worst_output or 0.0)}, exact {record.worst_exact!r}; "
        f"error {record.max_error:.4g}" + (f"; {record.max_ulp:.4g} ULP" if record.max_ulp is not None else ""),
        *(f"  {n}" for n in record.notes if n.startswith("worst: ")),
        f"  violations: {record.violations} of {record.examples} outputs",
        *_order_hint(record, clause),
        "  reproducer:", *("    " + ln for ln in repro.splitlines())])
    raise ConformanceFailure(record.message)


def conclude(record: Record, clause: Clause, target: Target, bad: np.ndarray, err: np.ndarray, *,
             what: str, criterion: str, reproducer: Callable[[int], str], inputs: list[np.ndarray],
             got: np.ndarray, want: np.ndarray) -> None:
    """Fold one structured batch into the record; on a violation fail with the worst case's reproducer."""
    record.observe(inputs=[np.ravel(a) for a in inputs], error=np.ravel(err), output=np.ravel(got),
                   exact=np.ravel(want))
    record.violations += int(np.sum(bad))
    if np.any(bad):
        i = int(np.argmax(np.where(np.ravel(bad), np.ravel(err), -1)))
        fail(record, clause, target, what=what, op_call="", criterion=criterion, repro=reproducer(i))
