"""Special values: the clause's table of inputs with exact answers, signed zeros included
(IEEE 754-2019 §9.2).

  elementwise  f(z) (kind accuracy) or f'(z) through a mode (kind derivative) at +-0, +-inf, NaN
  reduction    ops over rows at masked (-inf), infinite and NaN entries and at the largest
               finite values ("max", "tiny" name the format's extremes)
"""
from __future__ import annotations

import numpy as np

from ffnspec import spec
from ffnspec.conformance.inputs.scalars import make_args
from ffnspec.conformance.machinery import reproduce
from ffnspec.conformance.machinery.harness import Target, call_items, items
from ffnspec.conformance.machinery.records import Record, fail, fail_items, observe_items
from ffnspec.reference.floatformat import Format, round_array


def _parse_special(s: str) -> float:
    return float(s)


def elementwise(clause: spec.Clause, target: Target, record: Record, *, mode: str | None = None) -> None:
    """The table of a unary clause: ``z`` -> ``value`` (``signed = false``: either sign of zero)."""
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
    # a wrong special value is infinitely far from its criterion: no declared scope's ceiling or
    # the MUST threshold can pass it, only a scope's region or predicate
    record.observe(inputs=[z], error=np.where(bad, np.inf, 0.0), output=y, exact=want)
    record.violations += int(bad.sum())
    if bad.any():
        i = int(np.argmax(bad))
        record.worst_input, record.worst_output, record.worst_exact = [float(z[i])], float(y[i]), float(want[i])
        call = reproduce.op_call(clause.op) if clause.kind != "derivative" else reproduce.derivative_call(
            clause.op, target, mode or "vjp")
        fail(record, clause, target, what=f"special value: f({entries[i]['z']}) must be {entries[i]['value']}"
             + ("" if signed[i] else " (either sign of zero)"), op_call=call, criterion="exact special values")


def _token(v, fmt: Format) -> float:
    if isinstance(v, str):
        s = v.strip()
        sign = -1.0 if s.startswith("-") else 1.0
        body = s.lstrip("+-")
        if body == "max":
            return sign * fmt.max_finite
        if body == "tiny":
            return sign * fmt.min_subnormal
        return float(s)
    return float(v)


def _parse(v, fmt: Format) -> np.ndarray:
    a = np.array([_token(x, fmt) for x in v]) if isinstance(v, list) else np.array(_token(v, fmt))
    return round_array(a, fmt)


def reduction(clause: spec.Clause, target: Target, record: Record) -> None:
    """Special inputs (masked, infinite, NaN entries, the largest finite values) have exact answers."""
    fmt = target.fmt
    for entry in clause.special:
        args = [_parse(a, fmt) for a in entry["args"]]
        group = tuple(a[None, ...] for a in args)
        want = items(_parse(entry["value"], fmt)[None, ...])
        y = call_items(target, clause.op, group)
        same = (y == want) | (np.isnan(y) & np.isnan(want))
        if entry.get("signed", True):
            same &= (want != 0) | (np.signbit(y) == np.signbit(want))
        bad = ~same
        observe_items(record, group, np.where(bad, np.inf, 0.0), y, want)  # as in elementwise
        record.violations += int(bad.sum())
        if bad.any():
            record.worst_input = [float(v) for a in group for v in np.ravel(a)]
            record.worst_output, record.worst_exact = float(y[bad][0]), float(want[bad][0])
            fail_items(record, clause, target,
                       what=f"special value: {clause.op}{tuple(entry['args'])} must be {entry['value']}",
                       criterion="exact special values", repro=reproduce.row_value(target, clause.op, group, 0))
