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


def evaluate(f: Callable, args: tuple[float, ...], fmt: Format) -> tuple[float, float, float]:
    """(hi, lo, cr) for f at exactly representable float args, cr correctly rounded to fmt."""
    w = fmt.p + GUARD_BITS
    while True:
        v1 = _evaluate(f, args, w)
        v2 = _evaluate(f, args, w + GUARD_BITS)
        cr = round_mpf(v2, fmt)
        if not v2._mpf_[1] and (v1 == v2 or v2 != v2):  # 0, inf at both precisions, or nan: exact
            break
        ctx = context(w + 2 * GUARD_BITS)
        # |v1 - v2| scales with 2^-w like the relative floor, so requiring it to be below
        # the floor never succeeds once a formula cancels more than SLACK_BITS bits.
        tol = max(abs(ctx.mpf(v1) - v2), ctx.ldexp(abs(v2), SLACK_BITS - w))
        if round_mpf(ctx.mpf(v2) - tol, fmt) == cr == round_mpf(ctx.mpf(v2) + tol, fmt):
            break
        if w >= MAX_PREC:  # an exact midpoint (rational results only): v2 is exact enough
            break
        w *= 2
    hi = float(v2)
    lo = 0.0 if math.isinf(hi) or not v2._mpf_[1] else float(v2 - hi)
    return hi, lo, cr


def evaluate_array(f: Callable, args: tuple[np.ndarray, ...], fmt: Format) -> Exact:
    """Elementwise ``evaluate`` over broadcast argument arrays."""
    arrays = np.broadcast_arrays(*[np.asarray(a, dtype=np.float64) for a in args])
    shape = arrays[0].shape
    flat = [a.ravel().tolist() for a in arrays]
    n = len(flat[0])
    hi, lo, cr = np.empty(n), np.empty(n), np.empty(n)
    for i, xs in enumerate(zip(*flat)):
        hi[i], lo[i], cr[i] = evaluate(f, xs, fmt)
    return Exact(hi.reshape(shape), lo.reshape(shape), cr.reshape(shape))


def approximate(f: Callable, args: tuple[float, ...], *, prec: int = 64) -> float:
    """f to float64 accuracy; for error *scales*, which need no correct rounding."""
    return float(_evaluate(f, args, prec))
