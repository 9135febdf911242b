"""Exact properties and relations (kinds "property" and "reduction_property"): the clause
names a predicate, which a family module registers by name; the predicate calls the backend
and says which inputs violate the clause's statement, and the check judges that.

  elementwise  ``ELEMENTWISE[name](target, z) -> Finding``: a 0/1 verdict per input
               (ranges, monotonicity, bounds, saturation: exact for a faithful implementation)
  reduction    ``REDUCTION[name](clause, target, group) -> Outcome | None``: an error per
               item, <= 1 passes (exact relations use 0 / inf; allowances from the value
               clauses' bounds otherwise)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ffnspec import spec
from ffnspec.conformance.machinery import reproduce
from ffnspec.conformance.machinery.harness import Target
from ffnspec.conformance.machinery.records import Record, fail, fail_items, observe_items
from ffnspec.conformance.machinery.registry import Registry


@dataclass
class Finding:
    """What an elementwise predicate found: its inputs, the backend output and the expected
    values, which inputs violate the statement, and why."""
    inputs: list[np.ndarray]
    output: np.ndarray
    expected: np.ndarray
    bad: np.ndarray
    explain: str


@dataclass
class Outcome:
    """What a predicate over rows found: per-item error (<= 1 passes; exact checks use 0/1), the
    group (worst input), backend output and expected values, and a reproducer."""
    group: tuple[np.ndarray, ...]
    error: np.ndarray
    output: np.ndarray
    expected: np.ndarray
    explain: str
    repro: Callable[[int], str]
    deviation: str | None = None   # a declared convention other than the preferred one


ELEMENTWISE = Registry("property predicate")   # act.py registers its predicates here
REDUCTION = Registry("row predicate")          # out.py registers its predicates here


def elementwise(clause: spec.Clause, target: Target, record: Record, z: np.ndarray) -> None:
    """kind = property: run the clause's predicate on z; any violation fails."""
    out = ELEMENTWISE.lookup(clause, clause.predicate)(target, z)
    record.observe(inputs=out.inputs, error=out.bad.astype(np.float64), output=out.output, exact=out.expected)
    record.violations += int(out.bad.sum())
    if out.bad.any():
        fail(record, clause, target, what=out.explain, op_call=reproduce.op_call(clause.op),
             criterion="exact: " + clause.statement)


def reduction(clause: spec.Clause, target: Target, record: Record,
              group: tuple[np.ndarray, ...]) -> Outcome | None:
    """kind = reduction_property: run the clause's predicate on a group and judge it."""
    out = REDUCTION.lookup(clause, clause.predicate)(clause, target, group)
    if out is None or out.error.size == 0:
        return out
    err = np.reshape(out.error, (out.group[0].shape[0], -1))
    i, _ = observe_items(record, out.group, err, out.output, out.expected)
    bad = ~(err <= 1.0)
    record.violations += int(bad.sum())
    if bad.any():
        fail_items(record, clause, target, what=out.explain,
                   criterion=clause.tolerance.criterion + ": " + clause.statement, repro=out.repro(i))
    return out
