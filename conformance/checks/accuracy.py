"""Values against the exact reference (kinds "accuracy" and "reduction").

  elementwise  |y - f(z)| / u(f(z)) <= must ULP of the exact value (+ c(z) 2^(emin-p) where an
               intermediate may underflow); with declared flush-to-zero, 0 also counts where
               the exact or the correctly rounded value is subnormal (docs/measure.md)
  reduction    every output component of an op over rows or a batch within the mixed bound
               k (u (|y| + S) + eta) + u_acc A (machinery/measure.py); graded in ULPs

Each takes a clause, a target and a record, measures a batch of inputs with the clause's
criterion, folds the result into the record and raises ``ConformanceFailure`` on a MUST
violation.
"""
from __future__ import annotations

import numpy as np

from ffnspec import spec
from ffnspec.conformance.inputs.scalars import finite_args, make_args
from ffnspec.conformance.machinery import measure, reproduce
from ffnspec.conformance.machinery.harness import Target, call_items
from ffnspec.conformance.machinery.records import Record, assess_accuracy, assess_policy, fail, fail_items, observe_items
from ffnspec.reference import tables
from ffnspec.reference.floatformat import ulp, ulp_distance, ulp_error


def _flushed(target: Target, ex) -> np.ndarray:
    """FTZ policy: where the exact or the correctly rounded result is subnormal, zero also counts."""
    return ((np.abs(ex.hi) < target.fmt.min_normal) | (np.abs(ex.cr) < target.fmt.min_normal)) & target.ftz


def elementwise(clause: spec.Clause, target: Target, record: Record, z: np.ndarray) -> None:
    """kind = accuracy: the op's value at args formed from z, in ULPs of the exact value."""
    fmt = target.fmt
    z = finite_args(clause.args, z, fmt)
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
            limit = limit + c * (measure.two_eta(target) / ulp(ex.hi, ex.lo, fmt)) / 2
        criterion += " + c(z) 2^(emin-p)"
    record.observe(inputs=args, error=err / limit * must, output=y, exact=ex.hi + ex.lo, ulp=err, distance=dist,
                   curve=True)
    if flushed.any():  # results that pass only as flushed: the declared convention changed them
        record.uses_convention("flush_to_zero", int(np.sum(flushed & ~(ulp_error(y, ex.hi, ex.lo, fmt) <= limit))))
    bad = ~(err <= limit)
    record.violations += int(bad.sum())
    if bad.any():
        fail(record, clause, target, what=f"value error exceeds the bound ({must:g} ULP)",
             op_call=reproduce.op_call(clause.op), criterion=criterion)


def reduction(clause: spec.Clause, target: Target, record: Record, group: tuple[np.ndarray, ...]) -> None:
    """kind = reduction: every output component within the clause's mixed bound; graded in ULPs."""
    y = call_items(target, clause.op, group)
    b = measure.bound(clause.tolerance, clause.reference, target, group)
    err, ulps, dist, bad = measure.against(y, b, target.fmt, target)
    i, _ = observe_items(record, group, err, y, b.exact.hi + b.exact.lo, ulps, dist)
    if clause.tolerance.accumulation and target.dtype in measure.ACCUMULATE_IN:
        _grade_accumulation(record, ulps)
    record.violations += int(bad.sum())
    if clause.tolerance.accuracy is not None:  # before a MUST failure raises: a declared deviation keeps its findings
        acc = np.reshape(measure.accuracy_error_items(clause, target, group, y, b.exact), (group[0].shape[0], -1))
        item = int(np.argmax(np.max(acc, axis=1))) if acc.size else 0
        assess_accuracy(record, clause, target, inputs=[a[item] for a in group], error=acc,
                        output=np.reshape(y, acc.shape), exact=np.reshape(b.exact.hi + b.exact.lo, acc.shape),
                        op_call="", strict=target.strict and not bad.any(),
                        repro=reproduce.row_value(target, clause.op, group, item))
    if clause.tolerance.accumulation and target.dtype in measure.ACCUMULATE_IN:  # the 16-bit evaluation policy
        pol = np.reshape(measure.policy_error(target, np.reshape(y, b.exact.hi.shape), b),
                         (group[0].shape[0], -1))
        item = int(np.argmax(np.max(pol, axis=1))) if pol.size else 0
        assess_policy(record, clause, target, inputs=[a[item] for a in group], error=pol,
                      output=np.reshape(y, pol.shape), exact=np.reshape(b.exact.hi + b.exact.lo, pol.shape),
                      strict=target.strict and not bad.any(), repro=reproduce.row_value(target, clause.op, group, item))
    if bad.any():
        fail_items(record, clause, target, what=f"value error exceeds the bound (k = {clause.tolerance.must:g})",
                   criterion=measure.mixed_criterion(clause.tolerance),
                   repro=reproduce.row_value(target, clause.op, group, i))


def _grade_accumulation(record: Record, ulps: np.ndarray) -> None:
    """The accumulation grade of a 16-bit record (a note): a float32 accumulation rounded once to
    the storage format is faithful (< 1 ULP); a 16-bit accumulation shows as several ULPs even
    where the MUST bound, whose other terms grow with log n, still holds."""
    worst = max(float(np.max(ulps)) if ulps.size else 0.0,
                float(next((n.split()[-2] for n in record.notes if n.startswith("accumulation:")), 0.0)))
    verdict = ("consistent with float32 accumulation rounded once (faithful)" if worst < 1 else
               "not faithful: accumulation or intermediate rounding in the 16-bit format")
    record.notes = [n for n in record.notes if not n.startswith("accumulation:")] + [
        f"accumulation: {verdict}; max {worst:.4g} ULP"]
