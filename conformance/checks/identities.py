"""Identities that hold exactly in real arithmetic, checked on the backend's own results
(kind "identity"): the residual |sum_i c_i y_i| may not exceed sum_i |c_i| must_i u(t_i), the
terms' own allowances (triangle inequality; + 2^emin per op term with declared flush-to-zero).
"""
from __future__ import annotations

import math

import numpy as np

from ffnspec import spec
from ffnspec.conformance.inputs.scalars import finite_args, make_args
from ffnspec.conformance.machinery.harness import Target
from ffnspec.conformance.machinery.records import Record, fail
from ffnspec.reference import tables
from ffnspec.reference.floatformat import ulp


def primary_accuracy_clause(op: str) -> spec.Clause:
    """The accuracy clause bounding op on its plain argument z: its MUST bound is the op's allowance."""
    for c in spec.select(kind="accuracy"):
        if c.op == op and c.args == ("z",):
            return c
    raise KeyError(f"no accuracy clause bounds op {op!r}")


def check(clause: spec.Clause, target: Target, record: Record, z: np.ndarray) -> None:
    """kind = identity: each relation sum_i c_i t_i = 0, t_i an op's result, a reference value, z or a constant."""
    fmt = target.fmt
    for rel in clause.relations:
        templates = tuple(a for t in rel for a in t.get("args", []))
        zz = finite_args(templates, z, fmt)
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
                bound = primary_accuracy_clause(t["op"])
                ex = tables.exact(bound.reference, (arg,), fmt)
                allowance = bound.tolerance.must * ulp(ex.hi, ex.lo, fmt)
                if target.ftz:
                    allowance = allowance + fmt.min_normal
                tol = tol + abs(c) * allowance
        stacked = np.stack(parts, axis=-1)
        with np.errstate(invalid="ignore"):
            finite = np.isfinite(stacked).all(axis=-1).tolist()
            residual = np.array([math.fsum(row) if ok else math.nan for row, ok in zip(stacked.tolist(), finite)])
        err = np.abs(residual) / tol
        err = np.where(np.isnan(err), np.inf, err)
        record.observe(inputs=[zz], error=err, output=residual, exact=np.zeros_like(zz), curve=True)
        bad = ~(err <= 1.0)
        record.violations += int(bad.sum())
        if bad.any():
            worst = np.array(record.worst_input[:1])
            ops = [t for t in rel if "op" in t]
            fail(record, clause, target, what="identity residual exceeds the sum of the terms' allowances",
                 op_call=[f"b.ops.{t['op']}(args[{i}])" for i, t in enumerate(ops)],
                 call_inputs=[float(make_args(tuple(t["args"]), worst)[0][0]) for t in ops],
                 criterion="|residual| <= sum |c_i| must_i u(t_i)  (error in units of that allowance)")
