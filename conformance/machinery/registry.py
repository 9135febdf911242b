"""Family checks registered by name.

A clause names the family check it runs (``check = "prelu_value"``, ``predicate =
"softmax_sum"``); the family's module, conformance/<family>.py, registers it with
``@REGISTRY.register(name)`` when imported.  Looking a clause's name up imports that
module first, so the generic checks never list the families.
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Callable, TypeVar

from ffnspec import spec

F = TypeVar("F", bound=Callable)


def family_module(family: str):
    """conformance/<family>.py, imported (importing it registers its checks)."""
    return importlib.import_module(f"ffnspec.conformance.{family}")


def load_families() -> None:
    """Import the module of every family the spec has one for, whatever the clause selection.
    Hypothesis also draws numbers from the constants of the local modules loaded at the time of
    each draw, so a derandomised run repeats only if the same modules are loaded from the start."""
    for family in sorted({c.family for c in spec.clauses()}):
        if importlib.util.find_spec(f"ffnspec.conformance.{family}") is not None:
            family_module(family)


class Registry(dict[str, Callable]):
    """name -> family check (a predicate, a composite program, ...) of one clause kind."""

    def __init__(self, what: str):
        super().__init__()
        self.what = what

    def register(self, name: str) -> Callable[[F], F]:
        def add(f: F) -> F:
            self[name] = f
            return f
        return add

    def lookup(self, clause: spec.Clause, name: str | None) -> Callable:
        """The check ``name`` of ``clause``, importing the clause's family module if needed."""
        if name not in self:
            family_module(clause.family)
        if name not in self:
            raise KeyError(f"[{clause.id}] names {self.what} {name!r}, which no module registers "
                           f"(conformance/{clause.family}.py registers its family's)")
        return self[name]
