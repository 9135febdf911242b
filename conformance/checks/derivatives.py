"""Derivatives through the backend's own reverse (vjp) and forward (jvp) modes (kinds
"derivative" and "reduction_derivative").

  elementwise  |g - f'(z)| <= k (u (|f'(z)| + S(z)) + eta (1 + c(z))): S and c from the
               reference, eta = 2^(emin-p) (Higham §2.1), not a finite-difference approximation
  reduction    J^T v (vjp) and J t (jvp) of an op over rows or a batch w.r.t. the clause's
               ``wrt`` arguments, with seeded directions, per component within the mixed bound
               of the clause's per-mode reference (machinery/measure.py)
"""
from __future__ import annotations

import numpy as np

from ffnspec import spec
from ffnspec.conformance.inputs.rows import directions
from ffnspec.conformance.machinery import measure, reproduce
from ffnspec.conformance.machinery.harness import REDUCTION_SHAPES, Target, reduction_shape
from ffnspec.conformance.machinery.records import Record, assess_accuracy, fail, fail_items, observe_items
from ffnspec.reference import tables
from ffnspec.reference.floatformat import ulp_distance, ulp_error


def elementwise(clause: spec.Clause, target: Target, record: Record, z: np.ndarray, *, mode: str) -> None:
    """kind = derivative: d op / dz at z through ``mode``, within the clause's mixed bound."""
    fmt = target.fmt
    g = target.derivative(clause.op, z, mode=mode)
    ex = tables.exact(clause.reference, (z,), fmt)
    scale = tables.approximate(clause.tolerance.scale, (z,))
    # eta = 2^(emin-p), half the subnormal spacing (or 2^emin/2 with FTZ); kept doubled,
    # since 2^-1075 itself is not a float64.
    two_eta = measure.two_eta(target)
    if clause.tolerance.underflow:  # an intermediate's underflow error, multiplied by c(z)
        two_eta = two_eta * (1 + tables.approximate(clause.tolerance.underflow, (z,)))
    with np.errstate(invalid="ignore", over="ignore"):
        err = 2 * np.abs((g - ex.hi) - ex.lo) / (2 * fmt.unit_roundoff * (np.abs(ex.hi) + scale) + two_eta)
    err = np.where(np.isnan(err), np.inf, err)
    record.observe(inputs=[z], error=err, output=g, exact=ex.hi + ex.lo,
                   ulp=ulp_error(g, ex.hi, ex.lo, fmt), distance=ulp_distance(g, ex.cr, fmt), curve=True)
    if target.ftz:  # results that pass only by the flush-to-zero allowance: the convention changed them
        gradual = fmt.min_subnormal * (two_eta / measure.two_eta(target))
        with np.errstate(invalid="ignore", over="ignore"):
            strict_err = 2 * np.abs((g - ex.hi) - ex.lo) / (2 * fmt.unit_roundoff * (np.abs(ex.hi) + scale) + gradual)
        record.uses_convention("flush_to_zero", int(np.sum((err <= clause.tolerance.must)
                                                           & ~(strict_err <= clause.tolerance.must))))
    bad = ~(err <= clause.tolerance.must)
    record.violations += int(bad.sum())
    if clause.tolerance.accuracy is not None:  # before a MUST failure raises: a declared deviation keeps its findings
        assess_accuracy(record, clause, target, inputs=[z], error=measure.accuracy_error(clause, target, z, g, ex),
                        output=g, exact=ex.hi + ex.lo, op_call=reproduce.derivative_call(clause.op, target, mode),
                        strict=target.strict and not bad.any())
    if bad.any():
        fail(record, clause, target, what=f"{mode} derivative error exceeds k = {clause.tolerance.must:g}",
             op_call=reproduce.derivative_call(clause.op, target, mode),
             criterion=f"|g - f'(z)| <= {clause.tolerance.must:g} (u (|f'(z)| + S(z)) + eta)")


def reduction(clause: spec.Clause, target: Target, record: Record, group: tuple[np.ndarray, ...], *,
              mode: str, salt: int = 0) -> None:
    """kind = reduction_derivative: J^T v (vjp) or J t (jvp) through the backend's own AD."""
    ref = clause.extra["modes"][mode]
    group = domain(clause, group, target.fmt)
    if group[0].shape[0] == 0:
        return
    d, ref_args = derivative_values(clause, target, group, mode, salt)
    tol = spec.Tolerance(criterion="mixed", must=clause.tolerance.must, scale=ref.get("scale"),
                         accumulation=ref.get("accumulation"), underflow=ref.get("underflow"),
                         derivation=clause.tolerance.derivation)
    b = measure.bound(tol, ref["reference"], target, ref_args)
    err, ulps, dist, bad = measure.against(d, b, target.fmt, target)
    i, _ = observe_items(record, ref_args, err, d, b.exact.hi + b.exact.lo, ulps, dist)
    record.violations += int(bad.sum())
    if clause.tolerance.accuracy is not None:  # before a MUST failure raises: a declared deviation keeps its findings
        acc = np.reshape(measure.accuracy_error_items(clause, target, ref_args, d, b.exact, underflow=ref.get("underflow")),
                         (d.shape[0], -1))
        item = int(np.argmax(np.max(acc, axis=1))) if acc.size else 0
        assess_accuracy(record, clause, target, inputs=[a[item] for a in ref_args], error=acc, output=np.reshape(d, acc.shape),
                        exact=np.reshape(b.exact.hi + b.exact.lo, acc.shape), op_call="",
                        strict=target.strict and not bad.any(),
                        repro=reproduce.row_derivative(target, clause, mode, ref_args, len(group), item))
    if bad.any():
        fail_items(record, clause, target, what=f"{mode} derivative error exceeds k = {tol.must:g}",
                   criterion=measure.mixed_criterion(tol),
                   repro=reproduce.row_derivative(target, clause, mode, ref_args, len(group), i))


def domain(clause: spec.Clause, group: tuple[np.ndarray, ...], fmt) -> tuple[np.ndarray, ...]:
    """The group's items in the clause's domain: with ``finite_value``, those whose value (the op's
    reduction clause) is finite in the format."""
    if not clause.extra.get("finite_value"):
        return tuple(group)
    value = next(c.reference for c in spec.clauses() if c.kind == "reduction" and c.op == clause.op)
    keep = np.isfinite(tables.exact_items(value, group, fmt).cr).all(axis=1)
    return tuple(a[keep] for a in group)


def seed_directions(clause: spec.Clause, dtype: str, per_item: list[tuple], mode: str, salt: int = 0) -> list[tuple]:
    """The seeded directions of each call: (v,) for vjp, the tangents of the ``wrt`` arguments
    for jvp (backend-free, so the run's prebuild can ask for the same reference values)."""
    wrt = list(clause.extra.get("wrt", [0]))
    out_shape = reduction_shape(clause.op, [a.shape for a in per_item[0]])
    if mode == "vjp":
        return [tuple(directions(clause, dtype, [out_shape], salt * 7919 + j)) for j in range(len(per_item))]
    return [tuple(directions(clause, dtype, [args[i].shape for i in wrt], salt * 7919 + j))
            for j, args in enumerate(per_item)]


def _per_item(op: str, group) -> tuple[bool, list[tuple]]:
    scalar = REDUCTION_SHAPES.get(op) == "scalar"
    items = group[0].shape[0]
    return scalar, ([tuple(a[i] for a in group) for i in range(items)] if scalar else [tuple(group)])


def reference_args(clause: spec.Clause, dtype: str, group, mode: str, salt: int = 0) -> tuple[np.ndarray, ...]:
    """The arguments of the clause's per-mode reference: the group, then the directions."""
    scalar, per_item = _per_item(clause.op, group)
    seeds = seed_directions(clause, dtype, per_item, mode, salt)
    if scalar:
        return tuple(group) + tuple(np.stack([s[k] for s in seeds]) for k in range(len(seeds[0])))
    return tuple(group) + tuple(seeds[0])


def derivative_values(clause: spec.Clause, target: Target, group, mode: str, salt: int = 0):
    """(backend derivative (items, K), reference arguments): vjp -> the gradients w.r.t. the
    clause's ``wrt`` arguments, concatenated per item; jvp -> the output tangent."""
    op, wrt = clause.op, list(clause.extra.get("wrt", [0]))
    scalar, per_item = _per_item(op, group)
    items = group[0].shape[0]
    results = []
    for args, seed in zip(per_item, seed_directions(clause, target.dtype, per_item, mode, salt)):
        if mode == "vjp":
            _, grads = target.reduction_derivative(op, args, wrt, seed[0], mode="vjp")
            d = np.concatenate([g.reshape(1 if scalar else items, -1) for g in grads], axis=1)
        else:
            _, t = target.reduction_derivative(op, args, wrt, list(seed), mode="jvp")
            d = np.reshape(t, (1 if scalar else items, -1))
        results.append(d)
    return np.concatenate(results, axis=0), reference_args(clause, target.dtype, group, mode, salt)
