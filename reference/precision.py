"""Precision policy: the one place where working precision, guard bits and the final
rounding are decided.

A reference function is written once as ``f(ctx, *args)`` against a context and evaluated
here at exactly representable float arguments.  Its exact value t is delivered canonically,
independent of the engine and of the format it will be rounded to:

    hi = RN64(t),
    lo = t - hi rounded to nearest (ties to even) on the grid of spacing q = 2^(e - 106) (or
         2^-1074 if larger), where hi is in [2^(e-1), 2^e): hi + lo is t to 106 bits; a zero is +0,
    sgn = sign(t - hi) where hi is a rounding boundary of the target format fmt (a midpoint,
          or max + ulp/2), else sign(lo),

so |t - (hi + lo)| <= 2^-107 |hi|, and RN_fmt(t) and RN64(t) follow exactly from (hi, lo, sgn)
(``floatformat.round_exact``).  (hi, lo) does not depend on fmt; sgn only at fmt's boundaries,
where deciding it may take as many bits as t - hi is small (Ziv's table-maker's dilemma).  The grid keeps the cost bounded: t is needed to
about 106 bits, never to 53 bits of a tiny t - hi.  Two engines compute it:

  ball (python-flint's arb, ``balls.py``; the default when installed): the reference runs on
      balls that certainly contain the exact values; (hi, lo, sgn) is accepted only when every
      point of the final ball gives the same triple -- a proof.  Otherwise the precision
      doubles, from WORKING_BITS up to MAX_BALL_PREC; an undecided branch is retried once at
      twice the precision (a tie of two computed values never separates).  Beyond that, and for
      NaN inputs or results that are not finite, mpmath decides.
  mpmath (the reference of record; always available): Ziv's strategy.  f is evaluated at w
      and w + GUARD_BITS bits in private contexts; the higher-precision value v2 is taken to be
      within tol = max(|v1 - v2|, 2^-(w - SLACK_BITS) |v2|) of t, and the triple must be the same
      over [v2 - tol, v2 + tol]; otherwise w doubles, up to MAX_PREC.  When v1 == v2 the value is
      taken as exact for lo and sgn (a zero counts as exact only when both precisions give it),
      except that an apparent exact rounding boundary keeps escalating; at MAX_PREC the
      boundary is taken as an exact tie (rational results only).

``use_engine("mpmath")`` forces the reference of record (tests compare the engines bit for bit).
"""
from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple

import mpmath
import numpy as np
from mpmath import libmp

from ffnspec.reference import balls
from ffnspec.reference.floatformat import FORMATS, Format, round_dyadic, round_exact

GUARD_BITS = 32
SLACK_BITS = 8
WORKING_BITS = 2 * 53 + GUARD_BITS  # first precision: hi and lo of a double-double, plus guard bits
MAX_PREC = 4096
MAX_BALL_PREC = 4096
F64 = FORMATS["float64"]

_engine = "auto"


class Value(NamedTuple):
    """The canonical description of an exact value t (module docstring)."""
    hi: float
    lo: float
    sgn: int


@dataclass(frozen=True)
class Exact:
    """Arrays describing exact values t: hi + lo (double-double) and cr = RN_fmt(t)."""

    hi: np.ndarray
    lo: np.ndarray
    cr: np.ndarray


@functools.lru_cache(maxsize=None)
def context(prec: int) -> mpmath.ctx_mp.MPContext:
    """A private mpmath context at ``prec`` bits (never the global mp)."""
    ctx = mpmath.MPContext()
    ctx.prec = prec
    return ctx


def shared(f: Callable) -> Callable:
    """Evaluate a helper of the reference functions once per evaluation: a later call with the
    same context and the very same argument objects returns the first result (softmax's sum
    of exponentials, shared by the value, its scales and its derivatives).  Results must not be
    mutated by callers."""
    @functools.wraps(f)
    def once(ctx, *args):
        memo = getattr(ctx, "shared_memo", None)
        if memo is None:
            return f(ctx, *args)
        key = (f, tuple(map(id, args)))
        hit = memo.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], args)):
            return hit[1]
        r = f(ctx, *args)
        memo[key] = (args, r)  # holding args keeps their ids from being reused
        return r
    return once


def engine() -> str:
    """The engine in use: "ball" (arb, with mpmath for what it cannot decide) or "mpmath"."""
    return "ball" if _engine != "mpmath" and balls.AVAILABLE else "mpmath"


@contextlib.contextmanager
def use_engine(name: str) -> Iterator[None]:
    """Evaluate with engine ``name`` ("auto" or "mpmath") inside the block."""
    global _engine
    if name not in ("auto", "mpmath"):
        raise ValueError(f"unknown engine {name!r}")
    old, _engine = _engine, name
    try:
        yield
    finally:
        _engine = old


# --- canonical triple from an enclosure [L, U] of t (exact dyadics (man, exp)) -----------

def _dyadic(x: float) -> tuple[int, int]:
    """A finite float as (man, exp) with x = man 2^exp exactly."""
    m, e = math.frexp(x)
    return int(m * (1 << 53)), e - 53


def _sub(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """a - b exactly (a zero operand is never aligned: exponents may be astronomically apart)."""
    (ma, ea), (mb, eb) = a, b
    if not mb:
        return a
    if not ma:
        return -mb, eb
    e = min(ea, eb)
    return (ma << (ea - e)) - (mb << (eb - e)), e


def _rn64(d: tuple[int, int]) -> float:
    """RN64 of an exact dyadic (a tiny negative value rounds to -0, as IEEE 754 says).  In the
    normal range float(m) (Python rounds ints to nearest, ties to even) scaled by 2^e is exact."""
    m, e = d
    if not m:
        return 0.0
    bits = m.bit_length()
    if bits <= 1000 and -1021 <= e + bits <= 1023:
        return math.ldexp(float(m), e)
    return round_dyadic(m, e, F64)


def _rn_grid(d: tuple[int, int], qe: int) -> float:
    """d rounded to nearest, ties to even, on the grid of multiples of 2^qe (a zero is +0)."""
    m, e = d
    if not m or e + m.bit_length() < qe:  # |d| < 2^(qe-1), half a grid step: rounds to 0
        return 0.0
    if e >= qe:
        k = m << (e - qe)
    else:
        shift = qe - e
        k, r = divmod(m, 1 << shift)
        half = 1 << (shift - 1)
        if r > half or (r == half and k & 1):
            k += 1
    return math.ldexp(k, qe) + 0.0


def _grid_tie(d: tuple[int, int], qe: int) -> bool:
    """Whether d lies exactly halfway between two multiples of 2^qe."""
    m, e = d
    return bool(m) and e < qe and (m % (1 << (qe - e))) == 1 << (qe - e - 1) if e + m.bit_length() >= qe - 1 else False


def _lo_grid(hi: float) -> int:
    """Exponent of the grid lo is rounded to: 2^(e - 106) for hi in [2^(e-1), 2^e), at least 2^-1074."""
    return max(math.frexp(hi)[1] - 106, -1074) if hi else -1074


def _sign(d: tuple[int, int]) -> int:
    return (d[0] > 0) - (d[0] < 0)


def _same(a: float, b: float) -> bool:
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def is_boundary(hi: float, fmt: Format | None) -> bool:
    """Whether hi is a rounding boundary of fmt (a midpoint between neighbours, or max + ulp/2):
    only there does sign(t - hi) decide RN_fmt(t).  float64 (or None) has none: hi = RN64(t)."""
    if fmt is None or fmt.p >= 53 or not math.isfinite(hi) or hi == 0:
        return False
    m, e = math.frexp(abs(hi))
    e_lsb = max(e - 1, fmt.emin) - fmt.p + 1
    q = math.ldexp(m, e - e_lsb)
    return q - math.floor(q) == 0.5


def _on_boundary(d: tuple[int, int], fmt: Format) -> bool:
    """Whether the exact dyadic d is a rounding boundary of fmt: nudging it by 2^-64 of itself
    either way changes its rounding."""
    m, e = d
    return round_dyadic((m << 64) + 1, e - 64, fmt) != round_dyadic((m << 64) - 1, e - 64, fmt)


def _decide(lower: tuple[int, int], upper: tuple[int, int], exact: bool, fmt: Format | None) -> Value | None:
    """The triple if it is the same for every t in [lower, upper], else None.  With ``exact``
    (lower == upper is t itself) it always is."""
    hi = _rn64(lower)
    if not exact and not _same(hi, _rn64(upper)):
        return None
    if math.isinf(hi):
        return Value(hi, 0.0, 0)
    h, qe = _dyadic(hi), _lo_grid(hi)
    dl = _sub(lower, h)
    lo = _rn_grid(dl, qe)
    if exact:
        return Value(hi, lo, _sign(dl) if lo == 0 and is_boundary(hi, fmt) else (lo > 0) - (lo < 0))
    du = _sub(upper, h)
    if lo != _rn_grid(du, qe):
        return None
    if lo != 0 or not is_boundary(hi, fmt):
        return Value(hi, lo, (lo > 0) - (lo < 0))
    sl, su = _sign(dl), _sign(du)
    return Value(hi, lo, sl) if sl == su else None


# --- ball engine -------------------------------------------------------------------------

_ball_unsupported: set = set()  # code objects of references that use context features arb lacks
_ball_contexts: dict[int, balls.BallContext] = {}


def _ball_bounds(b) -> tuple[tuple[int, int], tuple[int, int], bool]:
    if b.is_exact():
        m, e = b.mid().man_exp()
        d = (int(m), int(e))
        return d, d, True
    lo_m, lo_e = b.lower().man_exp()
    up_m, up_e = b.upper().man_exp()
    return (int(lo_m), int(lo_e)), (int(up_m), int(up_e)), False


_REFINE, _BRANCH, _FAIL = "refine", "branch", "fail"


def _ball_try(f: Callable, ctx, args: tuple, fmt: Format | None):
    """The proven triples of f(args) at the current flint precision, or why not."""
    ctx.shared_memo = {}
    try:
        out = _flat(f(ctx, *[_to_ctx(ctx, a) for a in args]))
    except balls.Undecided:
        return _BRANCH
    except AttributeError:
        _ball_unsupported.add(getattr(f, "__code__", None))
        return _FAIL
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return _FAIL
    finally:
        ctx.shared_memo = None
    values = []
    for v in out:
        if isinstance(v, (int, float)):
            if not math.isfinite(v):
                return _FAIL
            d = _dyadic(float(v)) if isinstance(v, float) else (int(v), 0)
            values.append(_decide(d, d, True, fmt) if d[0] else Value(0.0, 0.0, 0))
            continue
        if not isinstance(v, balls.Ball) or not v.a.is_finite():
            return _FAIL
        lower, upper, exact = _ball_bounds(v.a)
        if exact and not lower[0]:
            values.append(Value(0.0, 0.0, 0))
            continue
        r = _decide(lower, upper, exact, fmt)
        if r is None:
            return _REFINE
        values.append(r)
    return values


def _ball_values(f: Callable, args_list: list[tuple], fmt: Format | None) -> list[list[Value] | None]:
    """Proven triples of every component of f at each argument tuple; None where arb cannot
    decide them (non-finite inputs or values, a branch undecided twice, MAX_BALL_PREC)."""
    results: list[list[Value] | None] = [None] * len(args_list)
    if not balls.AVAILABLE or getattr(f, "__code__", None) in _ball_unsupported:
        return results
    pending = [i for i, a in enumerate(args_list) if not _any_nan(a)]
    retried: set[int] = set()
    prec = WORKING_BITS
    while pending and prec <= MAX_BALL_PREC:
        later = []
        with balls.precision_bits(prec):
            ctx = _ball_contexts.get(prec)
            if ctx is None:
                ctx = _ball_contexts[prec] = balls.BallContext()
            for i in pending:
                r = _ball_try(f, ctx, args_list[i], fmt)
                if r is _FAIL:
                    if getattr(f, "__code__", None) in _ball_unsupported:
                        return results
                elif r is _BRANCH:  # a tie of computed values never separates: one more try
                    if i not in retried:
                        retried.add(i)
                        later.append(i)
                elif r is _REFINE:
                    later.append(i)
                else:
                    results[i] = r
        pending = later
        prec *= 2
    return results


def _any_nan(args) -> bool:
    for a in args:
        if isinstance(a, (list, tuple)):
            if _any_nan(a):
                return True
        elif isinstance(a, np.ndarray):
            if np.isnan(a).any():
                return True
        elif isinstance(a, float) and a != a:
            return True
    return False


# --- mpmath engine (the reference of record) ----------------------------------------------

def _to_ctx(ctx, a):
    """Arguments as context numbers: floats converted, lists, tuples and arrays recursively;
    anything else (an int index, a str option) passed as it is."""
    if isinstance(a, float):
        return ctx.mpf(a)
    if isinstance(a, list):
        return [_to_ctx(ctx, x) for x in a]
    if isinstance(a, tuple):
        return tuple(_to_ctx(ctx, x) for x in a)
    if isinstance(a, np.ndarray):
        return _to_ctx(ctx, a.tolist())
    return a


def _flat(v) -> list:
    return [x for e in v for x in _flat(e)] if isinstance(v, (list, tuple)) else [v]


def _evaluate(f: Callable, args: tuple, prec: int) -> list:
    ctx = context(prec)
    ctx.shared_memo = {}
    return [ctx.mpf(v) for v in _flat(f(ctx, *[_to_ctx(ctx, a) for a in args]))]


def _special(v1, v2) -> Value | None:
    """nan, +-inf, and an exact zero (zero at both precisions)."""
    t = v2._mpf_
    if t == libmp.fnan:
        return Value(math.nan, 0.0, 0)
    if t in (libmp.finf, libmp.fninf):
        return Value(float(v2), 0.0, 0)
    if t == libmp.fzero and v1._mpf_ == libmp.fzero:
        return Value(0.0, 0.0, 0)
    return None


def _mpf_dyadic(v) -> tuple[int, int]:
    sign, man, exp, _ = v._mpf_
    return (-man if sign else man), exp


def _ziv_value(v1, v2, w: int, last: bool, fmt: Format | None) -> Value | None:
    """The triple if evaluations at w and w + GUARD_BITS bits pin it (module docstring)."""
    s = _special(v1, v2)
    if s is not None:
        return s
    if v2._mpf_ == libmp.fzero and not last:  # zero at one precision only: not an exact zero
        return None
    d2 = _mpf_dyadic(v2)
    if last or v1._mpf_ == v2._mpf_:  # taken as exact, unless it sits on a rounding boundary
        if not last and (_on_boundary(d2, F64) or (fmt is not None and _on_boundary(d2, fmt))):
            return None  # t may be a hair off the tie: more precision (at MAX_PREC: an exact tie)
        r = _decide(d2, d2, True, fmt)
        if not last and math.isfinite(r.hi) and _grid_tie(_sub(d2, _dyadic(r.hi)), _lo_grid(r.hi)):
            return None  # the same for lo's grid
        return r
    diff = _sub(_mpf_dyadic(v1), d2)
    diff = (abs(diff[0]), diff[1])
    floor = (abs(d2[0]), d2[1] + SLACK_BITS - w)
    tol = diff if _sign(_sub(diff, floor)) > 0 else floor
    return _decide(_sub(d2, tol), _sub(d2, (-tol[0], tol[1])), False, fmt)


def _mpmath_values(f: Callable, args: tuple, fmt: Format | None) -> list[Value]:
    w = WORKING_BITS
    while True:
        v1 = _evaluate(f, args, w)
        v2 = _evaluate(f, args, w + GUARD_BITS)
        last = w >= MAX_PREC
        out = [_ziv_value(a, b, w, last, fmt) for a, b in zip(v1, v2)]
        if all(v is not None for v in out):
            return out
        w *= 2


# --- public evaluation --------------------------------------------------------------------

def values(f: Callable, args: tuple, fmt: Format | None = None) -> list[Value]:
    """The canonical triple, for rounding to fmt (and float64), of every component of
    f(ctx, *args) (flattened); args are floats or (nested) lists of floats, all exactly
    representable."""
    return values_many(f, [args], fmt)[0]


def values_many(f: Callable, args_list: list[tuple], fmt: Format | None = None) -> list[list[Value]]:
    """``values`` at each argument tuple: the ball engine for all, mpmath for what it left."""
    out = _ball_values(f, args_list, fmt) if _engine != "mpmath" else [None] * len(args_list)
    return [r if r is not None else _mpmath_values(f, a, fmt) for r, a in zip(out, args_list)]


def rounded(v: Value, fmt: Format) -> float:
    """RN_fmt(t) for one canonical triple."""
    return float(round_exact(np.array([v.hi]), np.array([v.lo]), np.array([v.sgn]), fmt)[0])


def evaluate(f: Callable, args: tuple[float, ...], fmt: Format) -> tuple[float, float, float]:
    """(hi, lo, cr) for f at exactly representable float args, cr correctly rounded to fmt."""
    (v,) = values(f, args, fmt)
    return v.hi, v.lo, rounded(v, fmt)


def evaluate_vector(f: Callable, args: tuple, fmt: Format) -> list[tuple[float, float, float]]:
    """(hi, lo, cr) for every component of f's (flattened) result; args are floats or
    (nested) lists of floats, all exactly representable."""
    return [(v.hi, v.lo, rounded(v, fmt)) for v in values(f, args, fmt)]


def approximate_vector(f: Callable, args: tuple) -> list[float]:
    """f's components correctly rounded to float64 (error *scales*: hi of the canonical triple)."""
    return [v.hi for v in values(f, args)]
