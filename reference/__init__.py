"""High-precision mpmath reference for every clause.

``function("act.sigmoid")`` resolves a clause's reference name to ``f(ctx, *args)``
in the module ``ffnspec.reference.act``.  Evaluation, precision and rounding live
in ``ffnspec.reference.precision``; cached arrays in ``ffnspec.reference.tables``.
"""
from __future__ import annotations

import importlib
from typing import Callable


def function(name: str) -> Callable:
    module, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(f"ffnspec.reference.{module}"), attr)
    except (ImportError, AttributeError):
        raise KeyError(f"no reference function {name!r}") from None
