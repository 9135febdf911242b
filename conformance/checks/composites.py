"""Structured ops and programs (kinds "composite" and "gradient"): each clause names its
check (``check = "..."``), which its family module registers with ``register``.  A check
builds small structured problems from the drawn values z (exactly representable in the
format), calls the backend through the supervised harness (``Target.apply``,
``Target.gradient``), gets the exact answer from the reference, rounded once
(machinery/measure.exact), and measures with the clause's criterion: exact (bitwise,
conventions at kinks and ties) or mixed (|y - t| <= k (u (|t| + S) + eta), k = must +
per_term n, docs/measure.md).  It returns the convention rows it relied on.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ffnspec import spec
from ffnspec.conformance.machinery.harness import Target
from ffnspec.conformance.machinery.records import Record
from ffnspec.conformance.machinery.registry import Registry

CHECKS = Registry("composite check")
FIXED: set[str] = set()  # checks of a fixed construction: drawn values do not enter


def register(name: str, *, fixed: bool = False) -> Callable[[Callable], Callable]:
    """Register a family's composite check under ``name`` (``fixed``: it ignores drawn values)."""
    if fixed:
        FIXED.add(name)
    return CHECKS.register(name)


def run(clause: spec.Clause, target: Target, record: Record, z: np.ndarray, *, mode: str | None = None) -> list[dict]:
    """Run the clause's registered check; returns the convention rows it relied on."""
    kw = {} if mode is None else {"mode": mode}
    return CHECKS.lookup(clause, clause.check)(clause, target, record, np.asarray(z, dtype=np.float64), **kw) or []


def draws(clause: spec.Clause) -> bool:
    """Whether the clause's check reads drawn values (so hypothesis exploration adds to it)."""
    CHECKS.lookup(clause, clause.check)
    return clause.check not in FIXED


# ---- random programs (kind "graph"): the family registers a hypothesis strategy of problems
# under the check's name; each drawn problem runs the check.  A failing problem shrinks to a
# minimal one (hypothesis), whose reproducer the check's failure carries.
STRATEGIES = Registry("graph strategy")


def register_strategy(name: str) -> Callable[[Callable], Callable]:
    """Register ``strategy(target) -> SearchStrategy`` of problems for the graph check ``name``."""
    return STRATEGIES.register(name)


def run_drawn(clause: spec.Clause, target: Target, record: Record, settings) -> None:
    """The clause's check on problems drawn from its registered strategy, under ``settings``."""
    from hypothesis import given

    from ffnspec.reference import tables
    check = CHECKS.lookup(clause, clause.check)
    strategy = STRATEGIES.lookup(clause, clause.check)(target)

    from hypothesis import settings as with_settings

    @with_settings(settings, report_multiple_bugs=False)  # one failure, shrunk, is the record's
    @given(strategy)
    def explore(problem):
        check(clause, target, record, problem)

    with tables.exploring(repeatable=settings.derandomize):  # random draws: not cached (seeds do not grow it)
        explore()
