"""Error measures shared by every check that is not in plain ULPs (docs/measure.md).

The mixed bound with an accumulation term:

    |y_hat - y| <= k (u (|y| + S) + eta) + u_acc A

u is the unit roundoff of the storage format; S the first-order sensitivity of the result to
the errors the clause's algorithm class is allowed; A the error a sum may add, in units of
u_acc (gamma_{n-1} times the magnitude of the summed terms, Higham 2002 §4.2); k is derived in
the clause.  eta = 2^(emin-p) per underflowing operation (Higham §2.1), 2^emin with declared
flush-to-zero.  Accumulation policy: sums over a row or a batch of 16-bit data accumulate in
float32 (u_acc = 2^-24), wider formats in their own precision.  A non-finite exact value must
be returned exactly.

Also here: exact values of structured problems (nested lists of floats, one correct
rounding), and bitwise comparison with NaN matching NaN.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ffnspec import spec
from ffnspec.conformance.machinery.harness import Target
from ffnspec.reference import precision, tables
from ffnspec.reference.floatformat import Format, get_format, ulp_distance, ulp_error

ACCUMULATE_IN = {"float16": "float32", "bfloat16": "float32"}  # 16-bit storage accumulates in float32


def u_acc(fmt: Format) -> float:
    """Unit roundoff of the accumulation format (the accumulation policy above)."""
    return get_format(ACCUMULATE_IN.get(fmt.name, fmt.name)).unit_roundoff


def eta(target: Target) -> float:
    """eta = 2^(emin-p) per underflowing operation; 2^emin with declared flush-to-zero.  In
    float64 2^-1075 is not a float64 and rounds to 0: bounds are formed doubled (``two_eta``),
    and allowances use the subnormal spacing itself, which is 2 eta."""
    return target.fmt.min_normal if target.ftz else target.fmt.min_subnormal


def two_eta(target: Target) -> float:
    """2 eta: twice the absolute error one underflowing operation may add (Higham §2.1):
    eta = 2^(emin-p) with gradual underflow (doubled because 2^-1075 is not a float64),
    eta = 2^emin with flush-to-zero, which may lose a whole subnormal."""
    return 2 * target.fmt.min_normal if target.ftz else target.fmt.min_subnormal


def exact_sum(values) -> float:
    """The exactly rounded sum of finite terms (math.fsum); with an infinity or a NaN among the
    backend's results, the IEEE sum (inf, or NaN for inf - inf), never an exception."""
    v = np.asarray(values, dtype=np.float64).ravel()
    return math.fsum(v.tolist()) if np.all(np.isfinite(v)) else float(np.sum(v))


def accuracy_error(clause: spec.Clause, target: Target, z: np.ndarray, got: np.ndarray,
                   ex: precision.Exact) -> np.ndarray:
    """The error of an elementwise result in the unit of the clause's accuracy criterion:
    ULPs of the exact value (subnormal ULPs below the smallest normal), or, with an
    ``accuracy_scale`` S_acc, k of |g - t| <= k u (|t| + S_acc) + eta (1 + c).  With declared
    flush-to-zero a result flushed to 0 where the exact value is subnormal is the declared
    convention, not a finding."""
    fmt, tol = target.fmt, clause.tolerance
    if tol.accuracy_scale is None:
        err = ulp_error(got, ex.hi, ex.lo, fmt)
    else:
        s_acc = tables.approximate(tol.accuracy_scale, (z,))
        floor = two_eta(target) * (1 + (tables.approximate(tol.underflow, (z,)) if tol.underflow else 0.0))
        err = _mixed_units(target, got, ex, s_acc, floor)
    return _accuracy_conventions(target, got, ex, err)


def accuracy_error_items(clause: spec.Clause, target: Target, args: tuple[np.ndarray, ...], got: np.ndarray,
                         ex: precision.Exact, *, underflow: str | None = None) -> np.ndarray:
    """The error of each component of a reduction (or of its derivative) in units of its accuracy
    criterion: ULPs of the exact value without an ``accuracy_scale``, else k of
    |g - t| <= k u (|t| + S_acc) + eta (1 + c), S_acc (and the underflow factor c) from the
    reference; a non-finite exact value must be met exactly, an exact value beyond the range by
    its rounding, inf."""
    scale = clause.tolerance.accuracy_scale
    if scale is None:
        err = ulp_error(got, ex.hi, ex.lo, target.fmt)
    else:
        s_acc = tables.approximate_items(scale, args)
        floor = two_eta(target) * (1 + (tables.approximate_items(underflow, args) if underflow else 0.0))
        err = _mixed_units(target, got, ex, s_acc, floor)
    err = np.where(np.isfinite(ex.hi), err, np.where(got == ex.hi, 0.0, np.inf))
    err = np.where(np.isinf(ex.cr) & (got == ex.cr), 0.0, err)
    return _accuracy_conventions(target, got, ex, err)


def _mixed_units(target: Target, got, ex: precision.Exact, scale, floor) -> np.ndarray:
    """2 |g - t| / (2 u (|t| + S) + 2 eta'): the error in units of a mixed bound (k <= 1 passes)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return 2 * np.abs((got - ex.hi) - ex.lo) / (2 * target.fmt.unit_roundoff * (np.abs(ex.hi) + scale) + floor)


def _accuracy_conventions(target: Target, got, ex: precision.Exact, err: np.ndarray) -> np.ndarray:
    if target.ftz:
        err = np.where((np.abs(ex.hi) < target.fmt.min_normal) & (got == 0), 0.0, err)
    return np.where(np.isnan(err), np.inf, err)


def k_terms(clause: spec.Clause, n) -> np.ndarray:
    """k = must + per_term n, for a result summing n terms."""
    t = clause.tolerance
    return t.must + (t.per_term or 0) * np.asarray(n, dtype=np.float64)


def mixed_error(target: Target, got: np.ndarray, ex: precision.Exact, scale: np.ndarray, k: np.ndarray,
                underflow: np.ndarray | float = 0.0) -> np.ndarray:
    """|g - t| / (u (|t| + S) + eta (1 + c)) / k: <= 1 passes.  eta = 2^(emin-p) (2^emin with
    FTZ), kept doubled; an infinite t met exactly is no error."""
    fmt = target.fmt
    with np.errstate(invalid="ignore", over="ignore"):
        err = 2 * np.abs((got - ex.hi) - ex.lo) / (2 * fmt.unit_roundoff * (np.abs(ex.hi) + scale)
                                                  + two_eta(target) * (1 + underflow))
    err = np.where(np.isinf(ex.hi) & (got == ex.hi), 0.0, err)
    return np.where(np.isnan(err), np.inf, err) / k


def mixed_criterion(tol: spec.Tolerance) -> str:
    """The mixed bound of a tolerance, as text for failure messages."""
    eta = "eta (1 + C)" if tol.underflow else "eta"
    return (f"|y - f(x)| <= {tol.must:g} (u (|f(x)| + S) + {eta})" + (" + u_acc A" if tol.accumulation else "")
            + f"  (error in units of u (|f| + S) + {eta}" + (" + u_acc A / k)" if tol.accumulation else ")"))


# ------------------------------------------------------- bounds over items ----
@dataclass
class Bound:
    """The exact values of a group and its MUST limits (items, k)."""
    exact: object          # precision.Exact
    limit: np.ndarray      # k (u (|t| + S) + eta) + u_acc A ; inf where t is not finite
    unit2: np.ndarray      # 2 limit / k: twice the criterion unit (2 eta is a float64, eta is not)
    k: float
    s: np.ndarray | float = 0.0   # the scale S, accumulation term A and underflow factor c it was formed from
    a: np.ndarray | float = 0.0
    c: np.ndarray | float = 0.0


def bound(tol: spec.Tolerance, reference: str, target: Target, args: tuple[np.ndarray, ...]) -> Bound:
    """The mixed bound of ``tol`` at a group's items, S, A and c from the reference."""
    fmt = target.fmt
    ex = tables.exact_items(reference, args, fmt)
    t = ex.hi + ex.lo
    s = tables.approximate_items(tol.scale, args) if tol.scale else np.zeros_like(t)
    a = tables.approximate_items(tol.accumulation, args) if tol.accumulation else np.zeros_like(t)
    c = tables.approximate_items(tol.underflow, args) if tol.underflow else np.zeros_like(t)
    with np.errstate(invalid="ignore", over="ignore"):
        unit2 = 2 * fmt.unit_roundoff * (np.abs(t) + s) + two_eta(target) * (1 + c) + 2 * u_acc(fmt) * a / tol.must
    unit2 = np.where(np.isfinite(t), unit2, np.inf)
    if np.isnan(unit2).any():
        raise ValueError(f"error scale of {reference} is NaN at some input: a reference defect")
    return Bound(ex, tol.must * unit2 / 2, unit2, tol.must, s, a, c)


def policy_error(target: Target, got: np.ndarray, b: Bound) -> np.ndarray:
    """16-bit data: the error of a reduction in units of what the accumulation policy gives,
    the clause's algorithm evaluated in float32 and rounded once to the storage format:
        |g - t| <= u |t| + eta + (1 + u) (k (u32 (|t| + S) + eta32 (1 + c)) + u32 A)
    (the final rounding, then the float32 algorithm's MUST error, itself rounded).  > 1: the
    result errs like an evaluation or accumulation in the 16-bit format (docs/measure.md)."""
    fmt, wide = target.fmt, get_format(ACCUMULATE_IN[target.fmt.name])
    t = b.exact.hi + b.exact.lo
    u, u32 = fmt.unit_roundoff, wide.unit_roundoff
    with np.errstate(invalid="ignore", over="ignore"):
        lim = (u * np.abs(t) + two_eta(target) / 2
               + (1 + u) * (b.k * (u32 * (np.abs(t) + b.s) + wide.min_subnormal * (1 + b.c)) + u32 * b.a))
        err = np.abs((got - b.exact.hi) - b.exact.lo) / lim
    err = np.where(np.isfinite(b.exact.cr), err, 0.0)  # non-finite values (or beyond the range): the MUST check's
    return np.where(np.isnan(err), np.inf, err)


def limits(clause_id: str, target: Target, args: tuple[np.ndarray, ...]) -> Bound:
    """The MUST limits of value clause ``clause_id`` at args (for relations between ops)."""
    c = spec.clause(clause_id)
    return bound(c.tolerance, c.reference, target, args)


def against(y: np.ndarray, b: Bound, fmt: Format, target: Target):
    """(error in criterion units (<= k passes), ULP error, grid distance, bad mask) of y against b."""
    ex = b.exact
    finite = np.isfinite(ex.hi)
    with np.errstate(invalid="ignore", over="ignore"):
        err = 2 * np.abs((y - ex.hi) - ex.lo) / b.unit2
    same = (y == ex.hi) | (np.isnan(y) & np.isnan(ex.hi))
    err = np.where(finite, err, np.where(same, 0.0, np.inf))
    err = np.where(np.isinf(ex.cr) & (y == ex.cr), 0.0, err)  # an exact value beyond the range: inf is its rounding
    err = np.where(np.isnan(err), np.inf, err)
    finite &= np.isfinite(ex.cr)
    same |= np.isinf(ex.cr) & (y == ex.cr)
    safe_hi, safe_lo = np.where(finite, ex.hi, 0.0), np.where(finite, ex.lo, 0.0)
    ulps = np.where(finite, ulp_error(np.where(finite, y, 0.0), safe_hi, safe_lo, fmt), np.where(same, 0.0, np.inf))
    dist = np.where(finite, ulp_distance(np.where(finite, y, 0.0), np.where(finite, ex.cr, 0.0), fmt), 0)
    if target.ftz:  # declared flush-to-zero: a subnormal exact value may come back as 0 (docs/measure.md)
        flushed = finite & (np.abs(ex.cr) < fmt.min_normal) & (y == 0)
        ulps, dist = np.where(flushed, 0.0, ulps), np.where(flushed, 0, dist)
    ulps = np.where(np.isnan(ulps), np.inf, ulps)
    return err, ulps, dist.astype(np.float64), ~(err <= b.k)


def same_exact(got: np.ndarray, want: np.ndarray, any_zero_sign: bool = True) -> np.ndarray:
    """Bitwise equality, NaN matching NaN, and (with ``any_zero_sign``) either sign of zero."""
    with np.errstate(invalid="ignore"):
        eq = (got == want) & (any_zero_sign | (want != 0) | (np.signbit(got) == np.signbit(want)))
    return eq | (np.isnan(got) & np.isnan(want))


# ------------------------------------------------------ structured problems ----
def exact(f: Callable, problems: list[tuple], fmt: Format) -> precision.Exact:
    """(hi, lo, cr) of reference f(ctx, *args) for each problem: args are floats, arrays, nested
    lists/tuples of them, and ints or strs passed as they are; one correct rounding, cached by
    the problems' bytes (``tables.exact_problems``)."""
    ex = tables.exact_problems(f, problems, fmt)
    return precision.Exact(ex.hi[:, 0], ex.lo[:, 0], ex.cr[:, 0])


def approx(f: Callable, problems: list[tuple]) -> np.ndarray:
    """f correctly rounded to float64 (error scales S, underflow factors c) for each problem."""
    return tables.approximate_problems(f, problems)[:, 0]


