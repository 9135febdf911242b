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
from ffnspec.conformance.machinery.harness import INDEX_ARGS, MODES, REDUCTION_SHAPES, AdapterFault, Target, \
    is_reduction_op, reduction_shape
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
    through each derivative mode the backend has, is supervised by the harness.  A call that
    breaks another rule, or raises, is noted and the next op checked: this record cites only
    the op that broke its own rule, with a reproducer at the shape that shows it."""
    for op, templates in ops.items():
        if not target.offers(op):
            record.notes.append(f"{op}: not implemented" + ("" if op not in target.backend.ops else f" in {target.dtype}"))
            continue
        modes = [m for m in MODES if templates == ("z",) and callable(getattr(target.backend, m, None))]
        for shape in ((z.size,), (2, z.size // 2), ()):
            x = z[: int(np.prod(shape))].reshape(shape) if shape else np.asarray(z[0])
            fault = _first_fault(target, op, templates, x, modes)
            record.examples += int(x.size)
            if fault is None:
                continue
            e, mode = fault
            if e.rule != clause.id:
                record.notes.append(f"{op} at shape {x.shape}: {e}"
                                    + (f" (reported under [{e.rule}])" if e.rule else
                                       " (a raise fails the clauses that call the op, not this rule)"))
                break
            record.violations += 1
            small = _smallest(target, op, templates, x, modes, clause.id)
            record.worst_input = [float(v) for v in np.ravel(small)[:8]]
            fail(record, clause, target, what=f"{e} (at input shape {small.shape})", op_call="",
                 criterion=clause.statement, repro=_shape_repro(target, op, templates, small, mode))


def _first_fault(target: Target, op: str, templates, x: np.ndarray, modes) -> tuple[AdapterFault, str | None] | None:
    """The first supervised call of op at x (the value, then each derivative mode) that faults."""
    for mode in (None, *modes):
        try:
            if mode is None:
                target.call(op, *make_args(templates, x))
            else:
                target.derivative(op, x, mode=mode)
        except AdapterFault as e:
            return e, mode
    return None


def _smallest(target: Target, op: str, templates, x: np.ndarray, modes, rule: str) -> np.ndarray:
    """A small input of x's rank (2 entries, 2x2, or the 0-d value) that still breaks ``rule``, else x."""
    small = x if x.ndim == 0 else x[:2] if x.ndim == 1 else x[:2, :2]
    fault = _first_fault(target, op, templates, small, modes)
    return small if fault is not None and fault[0].rule == rule else x


def _shape_repro(target: Target, op: str, templates, x: np.ndarray, mode: str | None) -> str:
    args = make_args(templates, x)
    names = {f"a{i}": a for i, a in enumerate(args)}
    if mode is None:
        call = f"b.ops.{op}({', '.join(names)})"
        lines = [f"y = {call}", "print(b.dtype_of(y), b.to_numpy(y).shape)"]
    else:
        seed = (f"b.asarray(np.ones({x.shape}), {target.dtype!r}, {target.device!r})")
        call = (f"b.vjp(lambda ops, z: ops.{op}(z), [a0], {seed})[1][0]" if mode == "vjp"
                else f"b.jvp(lambda ops, z: ops.{op}(z), [a0], [{seed}])[1]")
        lines = [f"y = {call}", "print(b.dtype_of(y), b.to_numpy(y).shape)"]
    text = reproduce.named(target, names, "a0.shape if hasattr(a0, 'shape') else None")
    return "\n".join(text.splitlines()[:-1] + lines)


def length_invariance(clause: spec.Clause, target: Target, record: Record, ops: dict[str, tuple[str, ...]],
                      z: np.ndarray, lengths: tuple[int, ...]) -> None:
    for op, templates in ops.items():
        if not target.offers(op):
            record.notes.append(f"{op}: not implemented" + ("" if op not in target.backend.ops else f" in {target.dtype}"))
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
            if not target.offers(op):
                record.notes.append(f"{op}: not implemented" + ("" if op not in target.backend.ops else f" in {target.dtype}"))
                continue
            group = tuple(a[:4] for a in rows.groups(c.extra["vectors"], target.fmt)[0])
            args = rows.op_args(op, group)
            scalar = REDUCTION_SHAPES.get(op) == "scalar"
            calls = [tuple(a[0] for a in args)] if scalar else [args, tuple(a[0] for a in args)]
            modes = [m for m in MODES if callable(getattr(target.backend, m, None))]
            for a in calls:
                record.examples += int(a[0].size)
                try:
                    target.call_reduction(op, *a)
                    shape = reduction_shape(op, [x.shape for x in a])
                    for mode in modes:
                        seed = np.ones(shape) if mode == "vjp" else [np.ones_like(a[0])]
                        target.reduction_derivative(op, a, [0], seed, mode=mode)
                except AdapterFault as e:
                    if e.rule != clause.id:  # another rule's, or a raise: noted, the next op checked
                        record.notes.append(f"{op}: {e}" + (f" (reported under [{e.rule}])" if e.rule else
                                                            " (a raise fails the clauses that call the op)"))
                        break
                    record.violations += 1
                    record.worst_input = [float(v) for v in np.ravel(a[0])[:8]]
                    repro = reproduce.items(target, [f"y = b.ops.{op}(*args)", "print(b.dtype_of(y), b.to_numpy(y).shape)"],
                                            [(x, k in INDEX_ARGS.get(op, ())) for k, x in enumerate(a)])
                    fail(record, clause, target, what=f"{e} (at argument shapes {[x.shape for x in a]})", op_call="",
                         criterion=clause.statement, repro=repro)
