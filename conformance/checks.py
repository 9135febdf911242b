"""The generic checks, one per clause kind.  Each takes a clause, a target and a
record, measures a batch of inputs with the clause's criterion, folds the result
into the record and raises ``ConformanceFailure`` on a MUST violation.

Criteria (written down in spec/ and docs/measure.md):
  ulp      |y - t| / u(t) <= must                       (elementwise values)
  mixed    |y - t| / (u (|t| + S) + eta) <= must          (derivatives; Higham §2.1:
           eta = 2^(emin-p) per operation for gradual underflow, 2^emin/2... with FTZ)
  identity |sum_i c_i y_i| <= sum_i |c_i| must_i u(t_i)   (residual of the backend's own results)
  exact    the stated relation holds exactly on the backend's results
"""
from __future__ import annotations

import math

import numpy as np

from ffnspec import spec
from ffnspec.conformance import properties
from ffnspec.conformance.machinery.harness import AdapterFault, Target
from ffnspec.conformance.machinery.records import Record, fail
from ffnspec.reference import tables
from ffnspec.reference.floatformat import ulp, ulp_distance, ulp_error

MODES = ("vjp", "jvp")


def make_args(templates: tuple[str, ...], z: np.ndarray) -> list[np.ndarray]:
    """Arguments of an op call formed exactly from z: "z", "-z", "2z" or a constant."""
    out = []
    for t in templates:
        if t == "z":
            out.append(z)
        elif t == "-z":
            out.append(-z)
        elif t == "2z":
            out.append(2 * z)
        else:
            out.append(np.full_like(z, float(t)))
    return out


def _finite_args(templates: tuple[str, ...], z: np.ndarray, target: Target) -> np.ndarray:
    """Drop inputs whose derived arguments would overflow the format (e.g. 2z)."""
    keep = np.ones(z.shape, dtype=bool)
    for a in make_args(templates, z):
        keep &= np.abs(a) <= target.fmt.max_finite
    return z[keep]


def _call_text(op: str) -> str:
    return f"b.ops.{op}(*args)"


def _derivative_text(op: str, target: Target, mode: str) -> str:
    one = f"b.asarray(np.ones(1), {target.dtype!r}, {target.device!r})"
    if mode == "vjp":
        return f"b.vjp(lambda ops, z: ops.{op}(z), args, {one})[1][0]"
    return f"b.jvp(lambda ops, z: ops.{op}(z), args, [{one}])[1]"


def _flushed(target: Target, ex) -> np.ndarray:
    """FTZ policy: where the exact or the correctly rounded result is subnormal, zero also counts."""
    return ((np.abs(ex.hi) < target.fmt.min_normal) | (np.abs(ex.cr) < target.fmt.min_normal)) & target.ftz


def _underflow_spacing(target: Target) -> float:
    """2 eta: twice the absolute error one underflowing operation may add (Higham §2.1):
    eta = 2^(emin-p) with gradual underflow (doubled because 2^-1075 is not a float64),
    eta = 2^emin with flush-to-zero, which may lose a whole subnormal."""
    return 2 * target.fmt.min_normal if target.ftz else target.fmt.min_subnormal


# ---------------------------------------------------------------------- accuracy --
def accuracy(clause: spec.Clause, target: Target, record: Record, z: np.ndarray) -> None:
    fmt = target.fmt
    z = _finite_args(clause.args, z, target)
    args = make_args(clause.args, z)
    y = target.call(clause.op, *args)
    ex = tables.exact(clause.reference, (z,), fmt)
    err = ulp_error(y, ex.hi, ex.lo, fmt)
    dist = ulp_distance(y, ex.cr, fmt).astype(np.float64)
    flushed = _flushed(target, ex)
    if flushed.any():
        with np.errstate(over="ignore"):
            as_zero = np.abs(y) / fmt.min_subnormal
        err = np.where(flushed, np.minimum(err, as_zero), err)
        dist = np.where(flushed & (y == 0), 0.0, dist)
    must = clause.tolerance.must
    limit = np.full_like(err, must)
    criterion = f"|y - f(z)| <= {must:g} ULP of f(z)"
    if clause.tolerance.underflow:  # gradual underflow of an intermediate: + c(z) 2^(emin-p)
        c = tables.approximate(clause.tolerance.underflow, (z,))
        with np.errstate(over="ignore"):
            limit = limit + c * (_underflow_spacing(target) / ulp(ex.hi, ex.lo, fmt)) / 2
        criterion += " + c(z) 2^(emin-p)"
    record.observe(inputs=args, error=err / limit * must, output=y, exact=ex.hi + ex.lo, ulp=err, distance=dist)
    bad = ~(err <= limit)
    record.violations += int(bad.sum())
    if bad.any():
        fail(record, clause, target, what=f"value error exceeds the bound ({must:g} ULP)",
             op_call=_call_text(clause.op), criterion=criterion)


# -------------------------------------------------------------------- derivative --
def derivative(clause: spec.Clause, target: Target, record: Record, z: np.ndarray, *, mode: str) -> None:
    fmt = target.fmt
    g = target.derivative(clause.op, z, mode=mode)
    ex = tables.exact(clause.reference, (z,), fmt)
    scale = tables.approximate(clause.tolerance.scale, (z,))
    # eta = 2^(emin-p), half the subnormal spacing (or 2^emin/2 with FTZ); kept doubled,
    # since 2^-1075 itself is not a float64.
    two_eta = _underflow_spacing(target)
    if clause.tolerance.underflow:  # an intermediate's underflow error, multiplied by c(z)
        two_eta = two_eta * (1 + tables.approximate(clause.tolerance.underflow, (z,)))
    with np.errstate(invalid="ignore", over="ignore"):
        err = 2 * np.abs((g - ex.hi) - ex.lo) / (2 * fmt.unit_roundoff * (np.abs(ex.hi) + scale) + two_eta)
    err = np.where(np.isnan(err), np.inf, err)
    record.observe(inputs=[z], error=err, output=g, exact=ex.hi + ex.lo,
                   ulp=ulp_error(g, ex.hi, ex.lo, fmt), distance=ulp_distance(g, ex.cr, fmt))
    bad = ~(err <= clause.tolerance.must)
    record.violations += int(bad.sum())
    if bad.any():
        fail(record, clause, target, what=f"{mode} derivative error exceeds k = {clause.tolerance.must:g}",
             op_call=_derivative_text(clause.op, target, mode), criterion=f"|g - f'(z)| <= {clause.tolerance.must:g} (u (|f'(z)| + S(z)) + eta)")


# ------------------------------------------------------------------------ special --
def _parse_special(s: str) -> float:
    return float(s)


def special(clause: spec.Clause, target: Target, record: Record, *, mode: str | None = None) -> None:
    entries = clause.special
    z = np.array([_parse_special(e["z"]) for e in entries])
    want = np.array([_parse_special(e["value"]) for e in entries])
    signed = np.array([e.get("signed", True) for e in entries])
    if clause.kind == "derivative":
        y = target.derivative(clause.op, z, mode=mode or "vjp")
    else:
        y = target.call(clause.op, *make_args(clause.args, z))
    same = (y == want) | (np.isnan(y) & np.isnan(want))
    zero_sign_ok = ~((want == 0) & signed) | (np.signbit(y) == np.signbit(want))
    bad = ~(same & zero_sign_ok)
    record.observe(inputs=[z], error=bad.astype(np.float64), output=y, exact=want)
    record.violations += int(bad.sum())
    if bad.any():
        i = int(np.argmax(bad))
        record.worst_input, record.worst_output, record.worst_exact = [float(z[i])], float(y[i]), float(want[i])
        call = _call_text(clause.op) if clause.kind != "derivative" else _derivative_text(clause.op, target,
                                                                                           mode or "vjp")
        fail(record, clause, target, what=f"special value: f({entries[i]['z']}) must be {entries[i]['value']}"
             + ("" if signed[i] else " (either sign of zero)"), op_call=call, criterion="exact special values")


# ----------------------------------------------------------------------- identity --
def _primary_accuracy_clause(op: str) -> spec.Clause:
    for c in spec.select(kind="accuracy"):
        if c.op == op and c.args == ("z",):
            return c
    raise KeyError(f"no accuracy clause bounds op {op!r}")


def identity(clause: spec.Clause, target: Target, record: Record, z: np.ndarray) -> None:
    fmt = target.fmt
    for rel in clause.relations:
        templates = tuple(a for t in rel for a in t.get("args", []))
        zz = _finite_args(templates, z, target)
        parts, tol = [], np.zeros_like(zz)
        for t in rel:
            c = float(t.get("coef", 1))
            if "const" in t:
                parts.append(np.full_like(zz, c * float(t["const"])))
            elif "input" in t:
                parts.append(c * zz)
            elif "ref" in t:
                ex = tables.exact(t["ref"], (zz,), fmt)
                parts += [c * ex.hi, c * ex.lo]
            else:
                (arg,) = make_args(tuple(t["args"]), zz)
                parts.append(c * target.call(t["op"], arg))
                bound = _primary_accuracy_clause(t["op"])
                ex = tables.exact(bound.reference, (arg,), fmt)
                allowance = bound.tolerance.must * ulp(ex.hi, ex.lo, fmt)
                if target.ftz:
                    allowance = allowance + fmt.min_normal
                tol = tol + abs(c) * allowance
        stacked = np.stack(parts, axis=-1)
        with np.errstate(invalid="ignore"):
            residual = np.array([math.fsum(row) if np.all(np.isfinite(row)) else math.nan for row in stacked])
        err = np.abs(residual) / tol
        err = np.where(np.isnan(err), np.inf, err)
        record.observe(inputs=[zz], error=err, output=residual, exact=np.zeros_like(zz))
        bad = ~(err <= 1.0)
        record.violations += int(bad.sum())
        if bad.any():
            worst = np.array(record.worst_input[:1])
            ops = [t for t in rel if "op" in t]
            fail(record, clause, target, what="identity residual exceeds the sum of the terms' allowances",
                 op_call=[f"b.ops.{t['op']}(args[{i}])" for i, t in enumerate(ops)],
                 call_inputs=[float(make_args(tuple(t["args"]), worst)[0][0]) for t in ops],
                 criterion="|residual| <= sum |c_i| must_i u(t_i)  (error in units of that allowance)")


# ----------------------------------------------------------------------- property --
def property_(clause: spec.Clause, target: Target, record: Record, z: np.ndarray) -> None:
    out = properties.PROPERTIES[clause.predicate](target, z)
    record.observe(inputs=out.inputs, error=out.bad.astype(np.float64), output=out.output, exact=out.expected)
    record.violations += int(out.bad.sum())
    if out.bad.any():
        fail(record, clause, target, what=out.explain, op_call=_call_text(clause.op),
             criterion="exact: " + clause.statement)


# --------------------------------------------------------------------- invariance --
def ops_in_scope(clauses: list[spec.Clause]) -> dict[str, tuple[str, ...]]:
    """op -> argument templates, for every op the given clauses call."""
    found: dict[str, tuple[str, ...]] = {}
    for c in clauses:
        if c.kind.startswith("reduction"):  # ops over rows and losses: conformance/reductions.structural
            continue
        if c.op:
            found.setdefault(c.op, c.args)
        for rel in c.relations:
            for t in rel:
                if "op" in t:
                    found.setdefault(t["op"], tuple("z" for _ in t["args"]))
    return found


def structural(clause: spec.Clause, target: Target, record: Record, ops: dict[str, tuple[str, ...]],
               z: np.ndarray) -> None:
    """num.dtype / num.shape / num.no_mutation: every op call, forward and (for unary ops)
    through each derivative mode the backend has, is supervised by the harness."""
    for op, templates in ops.items():
        if op not in target.backend.ops:
            record.notes.append(f"{op}: not implemented")
            continue
        modes = [m for m in MODES if templates == ("z",) and callable(getattr(target.backend, m, None))]
        for shape in ((z.size,), (2, z.size // 2), ()):
            x = z[: int(np.prod(shape))].reshape(shape) if shape else np.asarray(z[0])
            try:
                target.call(op, *make_args(templates, x))
                for mode in modes:
                    target.derivative(op, x, mode=mode)
            except AdapterFault as e:
                if e.rule is not None and e.rule != clause.id:
                    record.notes.append(f"{op}: {e} (reported under [{e.rule}])")
                    break
                record.violations += 1
                record.worst_input = [float(np.ravel(x)[0])]
                fail(record, clause, target, what=str(e), op_call=_call_text(op), criterion=clause.statement)
            record.examples += int(x.size)


def length_invariance(clause: spec.Clause, target: Target, record: Record, ops: dict[str, tuple[str, ...]],
                      z: np.ndarray, lengths: tuple[int, ...]) -> None:
    for op, templates in ops.items():
        if op not in target.backend.ops:
            record.notes.append(f"{op}: not implemented")
            continue
        full = target.call(op, *make_args(templates, z))
        pieces = [(o, n) for n in lengths for o in (0, max(0, z.size - n), min(5, max(0, z.size - n)))]
        for o, n in pieces:
            part = target.call(op, *make_args(templates, z[o:o + n]))
            _compare_bits(clause, target, record, op, z[o:o + n], part, full[o:o + n], f"length {n} at offset {o}")
        for i in range(min(8, z.size)):
            one = target.call(op, *make_args(templates, np.asarray(z[i])))
            _compare_bits(clause, target, record, op, z[i:i + 1], one.reshape(1), full[i:i + 1], "0-d input")


def _compare_bits(clause, target, record, op, z, got, want, where):
    same = (got.view(np.int64) == want.view(np.int64)) | (np.isnan(got) & np.isnan(want))
    record.examples += int(z.size)
    if not same.all():
        i = int(np.argmin(same))
        record.violations += int((~same).sum())
        record.worst_input, record.worst_output, record.worst_exact = [float(z[i])], float(got[i]), float(want[i])
        record.max_error = 1.0
        fail(record, clause, target, what=f"{op}: {where} gives {got[i]!r}, the full array {want[i]!r}",
             op_call=_call_text(op), criterion="bitwise equal across lengths and 0-d inputs")
