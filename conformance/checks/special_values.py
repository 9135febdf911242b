"""Special values: the clause's table of inputs with exact answers, signed zeros included
(IEEE 754-2019 §9.2).

  elementwise  f(z) (kind accuracy) or f'(z) through a mode (kind derivative) at +-0, +-inf, NaN
  reduction    ops over rows at masked (-inf), infinite and NaN entries and at the largest
               finite values ("max", "tiny" name the format's extremes)
  generated    ops of several arguments and over rows: every combination of the specials over
               all arguments or row positions (conformance/inputs/specials.py), expected values
               the joint limits of reference/limits.py; for a derivative clause that asks
               (generated_specials), its partials where an argument is infinite or NaN
"""
from __future__ import annotations

import numpy as np

from ffnspec import reference, spec
from ffnspec.conformance.inputs import specials
from ffnspec.conformance.inputs.scalars import make_args
from ffnspec.conformance.machinery import reproduce
from ffnspec.conformance.machinery.harness import Target, call_items, items
from ffnspec.conformance.machinery.records import Record, fail, fail_items, observe_items
from ffnspec.reference import limits
from ffnspec.reference.floatformat import Format, round_array, round_mpf


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


def _expected(lims: list[limits.Limit], fmt: Format) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(value, demanded sign of a zero: +1, -1 or 0 for either, the value also accepted in place
    of NaN or NaN) of each component, rounded once to fmt."""
    want = np.array([round_mpf(lim.value, fmt) for lim in lims])
    alt = np.array([np.nan if lim.or_value is None else round_mpf(lim.or_value, fmt) for lim in lims])
    return want, np.array([lim.sign for lim in lims]), alt


def generated(clause: spec.Clause, target: Target, record: Record) -> None:
    """The op's generated table (conformance/inputs/specials.py): every combination of +-0, +-inf
    and NaN over all arguments, or at every row position, against the joint limit of the exact
    function (ffnspec.reference.limits, docs/measure.md "Special values")."""
    op = spec.ops()[_op_name(clause)]
    fn = reference.function(clause.reference)
    domains = [op.interval(a) for a in op.arguments]
    for table in specials.tables(op, target.fmt):
        doms = [None if i in table.fixed else d for i, d in enumerate(domains)]
        lims = [limits.joint_limit(fn, e, doms) for e in table.entries]
        y = call_items(target, op.name, table.group).reshape(len(table.entries), -1)
        _judge(clause, target, record, table, y, lims, what=op.name,
               repro=lambda item, j: reproduce.row_value(target, op.name, table.group, item))


def generated_derivative(clause: spec.Clause, target: Target, record: Record, *, mode: str) -> None:
    """kind = reduction_derivative with ``generated_specials``: each partial derivative (a unit
    cotangent in reverse mode, a unit tangent per ``wrt`` argument in forward mode) at every
    combination of the op's generated table with an infinite or NaN argument, against the joint
    limit of the clause's per-mode reference.  Entries with finite arguments only are the
    derivative bounds' business (an extreme value there is no special value)."""
    op = spec.ops()[clause.op]
    wrt = list(clause.extra.get("wrt", [0]))
    fn = reference.function(clause.extra["modes"][mode]["reference"])
    domains = [op.interval(a) for a in op.arguments]
    for full in specials.tables(op, target.fmt):
        keep = [i for i, e in enumerate(full.entries) if not all(np.isfinite(np.ravel(a)).all() for a in e)]
        if not keep:
            continue
        table = specials.Table(tuple(a[keep] for a in full.group), [full.entries[i] for i in keep], full.fixed)
        doms = [None if i in table.fixed else d for i, d in enumerate(domains)]
        n = len(table.entries)
        units = [[float(j == k) for j in range(len(wrt))] for k in range(len(wrt))]
        if mode == "vjp":
            _, grads = target.reduction_derivative(op.name, table.group, wrt, np.ones(n), mode="vjp")
            y = np.stack([np.ravel(g) for g in grads], axis=1)
            # a reference that raises (1/beta at beta = 0) gives one NaN limit: one per partial
            lims = [(lambda lim: lim * len(wrt) if len(lim) == 1 else lim)(
                limits.joint_limit(fn, (*e, 1.0), [*doms, None])) for e in table.entries]
        else:
            y = np.stack([np.ravel(target.reduction_derivative(op.name, table.group, wrt,
                                                               [np.full(n, t) for t in unit], mode="jvp")[1])
                          for unit in units], axis=1)
            lims = [[limits.joint_limit(fn, (*e, *unit), [*doms, *[None] * len(wrt)])[0] for unit in units]
                    for e in table.entries]
        seeds = lambda j: (np.ones(n),) if mode == "vjp" else tuple(np.full(n, t) for t in units[j])  # noqa: E731
        _judge(clause, target, record, table, y, lims, what=f"{mode} partials of {op.name}",
               repro=lambda item, j: reproduce.row_derivative(target, clause, mode, tuple(table.group) + seeds(j),
                                                              len(table.group), item))


def _judge(clause: spec.Clause, target: Target, record: Record, table: specials.Table, y: np.ndarray,
           lims: list, *, what: str, repro) -> None:
    """Results y (entries, components) against their joint limits, recorded like a failure;
    ``repro(item, component)`` is the reproducer of a failing one."""
    parts = [_expected(lim, target.fmt) for lim in lims]
    want, sign, alt = (np.array([p[k] for p in parts]) for k in range(3))
    if clause.extra.get("zero") == "any":  # the clause leaves the sign of a zero result free
        sign = np.zeros_like(sign)
    same = ((y == want) | (np.isnan(y) & np.isnan(want))) & (
        (want != 0) | (sign == 0) | (np.signbit(y) == (sign < 0)))
    # a finite nonzero limit (lse([-inf, 1]) = 1) is the accuracy clauses' business: here it
    # must only be finite, of its sign and near it, 2^(8-p) relative (a term lost or added)
    ordinary = np.isfinite(want) & (want != 0)
    with np.errstate(invalid="ignore"):
        same |= ordinary & (np.abs(y - want) <= np.abs(want) * 2.0 ** (8 - target.fmt.p))
    same |= np.isnan(want) & (y == alt)  # rule 1: a value independent of the NaN argument
    bad = ~same
    observe_items(record, table.group, np.where(bad, np.inf, 0.0).reshape(table.group[0].shape[0], -1),
                  y, want)  # as in elementwise
    record.violations += int(bad.sum())
    if bad.any():
        i, j = np.unravel_index(int(np.argmax(bad)), bad.shape)
        record.worst_input = [float(v) for a in table.entries[i] for v in np.ravel(a)]
        item = int(i) if table.group[0].shape[0] == len(table.entries) else 0  # channels: one item
        record.worst_output, record.worst_exact = float(y[i, j]), float(want[i, j])
        expect = _describe(float(want[i, j]), int(sign[i, j]), float(alt[i, j]))
        fail_items(record, clause, target,
                   what=f"special value (generated table): {what}{_show(table.entries[i])}"
                        f"{f'[{j}]' if bad.shape[1] > 1 else ''} must be {expect}",
                   criterion="exact special values: the joint limit of the exact function "
                             "(docs/measure.md, IEEE 754-2019 §9.2)",
                   repro=repro(item, int(j)))


def _show(entry: tuple) -> str:
    return "(" + ", ".join(repr(list(a)) if isinstance(a, tuple) else repr(a) for a in entry) + ")"


def _describe(want: float, sign: int, alt: float) -> str:
    if want == 0:
        return {1: "+0", -1: "-0", 0: "0 (either sign)"}[sign]
    return repr(want) + ("" if np.isnan(alt) else f" (or {alt!r}: the result does not depend on the NaN)")


def _op_name(clause: spec.Clause) -> str:
    """The op a clause's value is: ``op``, or its one ``uses`` entry where the clause declares
    ``generated_specials`` (structured units)."""
    uses = clause.extra.get("uses", [])
    return clause.op or (uses[0] if len(uses) == 1 and clause.extra.get("generated_specials") else "")


def has_generated_derivative(clause: spec.Clause) -> bool:
    """A derivative clause asks for the generated table of its op's partials (``generated_specials``)."""
    op = spec.ops().get(clause.op or "")
    return bool(clause.kind == "reduction_derivative" and clause.extra.get("generated_specials")
                and op and op.specials == "cartesian" and op.shape == "elementwise")


def has_generated(clause: spec.Clause) -> bool:
    """A generated table applies: the op has a ``specials`` layout and the clause's reference is
    the op's own function (not a restriction such as softmax([0, z])), by name or as the clause
    declares with ``generated_specials = true``."""
    op = spec.ops().get(_op_name(clause))
    return bool(op and op.specials and clause.reference and (
        clause.reference.split(".")[-1] == op.name or clause.extra.get("generated_specials")))
