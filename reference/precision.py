"""Precision policy: the one place where working precision, guard bits and the
final rounding are decided (in the manner of mpmath's own guard-bit handling).

A reference function is written once as ``f(ctx, *args)`` against an mpmath
context and evaluated here:

  1. at w = p + GUARD_BITS and again at w + GUARD_BITS, in private contexts;
  2. the higher-precision value v2 is taken to be within
     tol = max(|v1 - v2|, 2^-(w - SLACK_BITS) |v2|) of the exact value (it is assumed
     at least twice as accurate as v1); if v2 - tol and v2 + tol round to different
     fmt values, w doubles (Ziv's strategy), up to MAX_PREC bits;
  3. the higher-precision value is rounded to fmt once (``round_mpf``) and kept
     as a double-double (hi, lo) for the vectorised ULP measure.

The two-precision comparison catches cancellation inside a formula (e.g. near
the zero of SiLU'), which a single evaluation cannot.  A zero counts as exact only
when both precisions give it.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import mpmath
import numpy as np

from ffnspec.reference.floatformat import Format, round_mpf

GUARD_BITS = 32
SLACK_BITS = 8
MAX_PREC = 4096


@functools.lru_cache(maxsize=None)
def context(prec: int) -> mpmath.ctx_mp.MPContext:
    """A private mpmath context at ``prec`` bits (never the global mp)."""
    ctx = mpmath.MPContext()
    ctx.prec = prec
    return ctx


@dataclass(frozen=True)
class Exact:
    """Arrays describing exact values t: hi + lo (double-double) and cr = RN_fmt(t)."""

    hi: np.ndarray
    lo: np.ndarray
    cr: np.ndarray


def _evaluate(f: Callable, args: tuple[float, ...], prec: int):
    ctx = context(prec)
    return f(ctx, *[ctx.mpf(a) for a in args])


def _settled(v1, v2, w: int, fmt: Format) -> bool:
    """Whether evaluations at w and w + GUARD_BITS bits pin the rounding of the exact value."""
    if not v2._mpf_[1] and (v1 == v2 or v2 != v2):  # 0, inf at both precisions, or nan: exact
        return True
    ctx = context(w + 2 * GUARD_BITS)
    # |v1 - v2| scales with 2^-w like the relative floor, so requiring it to be below
    # the floor never succeeds once a formula cancels more than SLACK_BITS bits.
    tol = max(abs(ctx.mpf(v1) - v2), ctx.ldexp(abs(v2), SLACK_BITS - w))
    return round_mpf(ctx.mpf(v2) - tol, fmt) == round_mpf(v2, fmt) == round_mpf(ctx.mpf(v2) + tol, fmt)


def _result(v2, fmt: Format) -> tuple[float, float, float]:
    hi = float(v2)
    lo = 0.0 if math.isinf(hi) or not v2._mpf_[1] else float(v2 - hi)
    return hi, lo, round_mpf(v2, fmt)


def evaluate(f: Callable, args: tuple[float, ...], fmt: Format) -> tuple[float, float, float]:
    """(hi, lo, cr) for f at exactly representable float args, cr correctly rounded to fmt."""
    w = fmt.p + GUARD_BITS
    while True:
        v1 = _evaluate(f, args, w)
        v2 = _evaluate(f, args, w + GUARD_BITS)
        if _settled(v1, v2, w, fmt):
            break
        if w >= MAX_PREC:  # an exact midpoint (rational results only): v2 is exact enough
            break
        w *= 2
    return _result(v2, fmt)


# --- vector-valued references (rows, losses over a batch) -------------------------------
# A reference may take lists of floats (a row, a batch of rows) as well as floats, and may
# return a list; each output component is rounded once, and Ziv's test is applied to every
# component: the whole evaluation is repeated at doubled precision until all are settled.

def _to_ctx(ctx, a):
    return [_to_ctx(ctx, x) for x in a] if isinstance(a, (list, tuple)) else ctx.mpf(a)


def _flat(v) -> list:
    return [x for e in v for x in _flat(e)] if isinstance(v, (list, tuple)) else [v]


def _evaluate_vector(f: Callable, args: tuple, prec: int) -> list:
    ctx = context(prec)
    return _flat(f(ctx, *[_to_ctx(ctx, a) for a in args]))


def evaluate_vector(f: Callable, args: tuple, fmt: Format) -> list[tuple[float, float, float]]:
    """(hi, lo, cr) for every component of f's (flattened) result; args are floats or
    (nested) lists of floats, all exactly representable."""
    w = fmt.p + GUARD_BITS
    while True:
        v1 = _evaluate_vector(f, args, w)
        v2 = _evaluate_vector(f, args, w + GUARD_BITS)
        if all(_settled(a, b, w, fmt) for a, b in zip(v1, v2)) or w >= MAX_PREC:
            break
        w *= 2
    return [_result(v, fmt) for v in v2]


def approximate_vector(f: Callable, args: tuple, *, prec: int = 80) -> list[float]:
    """f's components to about float64 accuracy, for error *scales*, which need no correct rounding."""
    return [float(v) for v in _evaluate_vector(f, args, prec)]
