"""Ground rules for every op (kind "invariance"): [num.dtype], [num.shape] and
[num.no_mutation] through the harness, which supervises every call (forward and through
each derivative mode the backend has); [num.length_invariance]: results bitwise equal
across lengths, offsets and 0-d inputs.
"""
from __future__ import annotations

import numpy as np

from ffnspec import spec
from ffnspec.conformance.inputs import rows
from ffnspec.conformance.inputs.scalars import LENGTHS, make_args
from ffnspec.conformance.machinery import reproduce
from ffnspec.conformance.machinery.harness import MODES, REDUCTION_SHAPES, AdapterFault, Target, is_reduction_op, \
    reduction_shape
from ffnspec.conformance.machinery.records import Record, fail

STRUCTURAL = {"num.dtype", "num.shape", "num.no_mutation"}


def run(clause: spec.Clause, target: Target, record: Record, z: np.ndarray) -> None:
    """The clause's ground rule over every op the other families' clauses call, on a sample of z."""
    ops = ops_in_scope([c for c in spec.clauses() if c.family != "num"])
    if clause.id in STRUCTURAL:
        elementwise(clause, target, record, ops, sample(z))
        reduction(clause, target, record)  # ops over rows, losses
    elif clause.id == "num.length_invariance":
        length_invariance(clause, target, record, ops, sample(z), LENGTHS)
    else:
        raise AssertionError(f"no check for invariance clause {clause.id}")


def sample(z: np.ndarray, n: int = 1026) -> np.ndarray:
    """n values of the region, spread over it, with +-0, +-1, +-1/2 and +-2, in a fixed order."""
    rng = np.random.default_rng(7)
    return rng.permutation(np.concatenate([z[np.linspace(0, z.size - 1, n - 8).astype(int)], [0.0, -0.0, 1.0, -1.0,
                                                                                                  0.5, -0.5, 2.0, -2.0]]))


def ops_in_scope(clauses: list[spec.Clause]) -> dict[str, tuple[str, ...]]:
    """op -> argument templates, for every op the given clauses call."""
    found: dict[str, tuple[str, ...]] = {}
    for c in clauses:
        if c.kind.startswith("reduction"):  # ops over rows and losses: ``reduction`` below
            continue
        if c.op:
            found.setdefault(c.op, c.args)
        for rel in c.relations:
            for t in rel:
                if "op" in t:
                    found.setdefault(t["op"], tuple("z" for _ in t["args"]))
    return found


def elementwise(clause: spec.Clause, target: Target, record: Record, ops: dict[str, tuple[str, ...]],
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
                fail(record, clause, target, what=str(e), op_call=reproduce.op_call(op), criterion=clause.statement)
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
             op_call=reproduce.op_call(op), criterion="bitwise equal across lengths and 0-d inputs")


def reduction(clause: spec.Clause, target: Target, record: Record) -> None:
    """num.dtype / num.shape / num.no_mutation for the ops over rows and the losses: each is
    called on a few items of a recipe that uses it, batched and as one item, and through each
    derivative mode the backend has (w.r.t. its first argument); the harness supervises every
    call (dtype, shape by REDUCTION_SHAPES, representable values, inputs unchanged)."""
    seen: set[str] = set()
    for c in spec.clauses():
        if not c.kind.startswith("reduction"):
            continue
        for op in c.ops():
            if op in seen or not is_reduction_op(op):
                continue
            seen.add(op)
            if op not in target.backend.ops:
                record.notes.append(f"{op}: not implemented")
                continue
            group = tuple(a[:4] for a in rows.groups(c.extra["vectors"], target.fmt)[0])
            args = rows.op_args(op, group)
            scalar = REDUCTION_SHAPES.get(op) == "scalar"
            calls = [tuple(a[0] for a in args)] if scalar else [args, tuple(a[0] for a in args)]
            modes = [m for m in MODES if callable(getattr(target.backend, m, None))]
            try:
                for a in calls:
                    target.call_reduction(op, *a)
                    shape = reduction_shape(op, [x.shape for x in a])
                    for mode in modes:
                        seed = np.ones(shape) if mode == "vjp" else [np.ones_like(a[0])]
                        target.reduction_derivative(op, a, [0], seed, mode=mode)
                    record.examples += int(a[0].size)
            except AdapterFault as e:
                if e.rule is not None and e.rule != clause.id:
                    record.notes.append(f"{op}: {e} (reported under [{e.rule}])")
                    continue
                record.violations += 1
                record.worst_input = [float(v) for v in np.ravel(args[0])[:8]]
                fail(record, clause, target, what=str(e), op_call=reproduce.op_call(op), criterion=clause.statement)
