"""Deliberately broken Array API namespaces, run through the generic adapter
(``--ffnspec-backend=tests.mutants_backends:NaiveLogaddexp``): the generic adapter's records
can fail, so its passes on array-api-strict mean something (tests/test_array_api_backend.py)."""
from __future__ import annotations

import types

from ffnspec.adapters.array_api_backend import ArrayApiBackend


def _namespace_with(**replace) -> types.ModuleType:
    """array_api_strict with some functions replaced."""
    import array_api_strict as xp
    ns = types.ModuleType("array_api_strict_mutant")
    for name in dir(xp):
        setattr(ns, name, getattr(xp, name))
    for name, f in replace.items():
        setattr(ns, name, f(xp))
    return ns


class NaiveLogaddexp(ArrayApiBackend):
    """logaddexp(a, b) = log(exp(a) + exp(b)): overflows to inf for max(a, b) > log(max float)."""
    catches = ("act.softplus",)
    says = "act.softplus"

    def __init__(self) -> None:
        super().__init__("array_api_strict", xp=_namespace_with(
            logaddexp=lambda xp: (lambda a, b: xp.log(xp.exp(a) + xp.exp(b)))))
        self.name = "mutant-NaiveLogaddexp"
