"""Binary floating-point formats, single correct rounding, and the ULP measure.

Every format is described by (p, emin, emax): p significand bits including the
implicit one, normal exponents emin..emax.  Values of every format used here are
exactly representable in float64, so float64 arrays carry them across the code.

ULP measure (Muller, INRIA RR-5504, 2005; Zimmermann et al. accuracy tables):
    u(t) = 2^(max(floor(log2|t|), emin) - p + 1)      -- ulp of the *exact* value t
    err  = |y_hat - t| / u(t)
Exact powers of two take the binade above.  Overflow is measured with +-inf read
as +-2^(emax+1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Format:
    name: str
    p: int
    emin: int
    emax: int

    @property
    def unit_roundoff(self) -> float:
        """u = 2^-p, the bound on relative rounding error."""
        return math.ldexp(1.0, -self.p)

    @property
    def max_finite(self) -> float:
        return math.ldexp(2.0 - math.ldexp(1.0, 1 - self.p), self.emax)

    @property
    def min_normal(self) -> float:
        return math.ldexp(1.0, self.emin)

    @property
    def min_subnormal(self) -> float:
        return math.ldexp(1.0, self.emin - self.p + 1)

    @property
    def overflow_value(self) -> float:
        """2^(emax+1): what an infinite result counts as when the exact value is finite
        (inf for float64, whose 2^1024 is not a float64; ``ulp_error`` scales instead)."""
        return math.ldexp(1.0, self.emax + 1) if self.emax < 1023 else math.inf


FORMATS: dict[str, Format] = {
    "float16": Format("float16", 11, -14, 15),
    "bfloat16": Format("bfloat16", 8, -126, 127),
    "float32": Format("float32", 24, -126, 127),
    "float64": Format("float64", 53, -1022, 1023),
}


def get_format(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unsupported dtype {name!r}; ffnspec knows {', '.join(FORMATS)}") from None


def round_mpf(x, fmt: Format) -> float:
    """Round an mpmath mpf (any precision) to fmt once, to nearest, ties to even (``round_dyadic``).
    Zero, inf and NaN are returned as they are."""
    sign, man, exp, bc = x._mpf_
    if not man:  # zero, inf or nan: mpmath encodes them with man == 0
        return float(x)
    return round_dyadic(-man if sign else man, exp, fmt)


def round_dyadic(man: int, exp: int, fmt: Format) -> float:
    """Round the exact value man * 2^exp (man a nonzero integer) to fmt once, to nearest, ties
    to even.

    Handles subnormals (lsb clamped at emin-p+1), overflow (to +-inf after rounding with
    unbounded exponent, as IEEE 754 specifies) and underflow to a zero of the value's sign.
    The result is returned as a Python float holding the fmt value exactly.
    """
    sign = man < 0
    man = -man if sign else man
    bc = man.bit_length()
    e_lsb = max(exp + bc - 1, fmt.emin) - fmt.p + 1
    if exp + bc < e_lsb:  # |x| < 2^(e_lsb-1), half the smallest subnormal: rounds to zero
        return -0.0 if sign else 0.0
    if exp < e_lsb:
        shift = e_lsb - exp
        q, r = divmod(man, 1 << shift)
        half = 1 << (shift - 1)
        if r > half or (r == half and q & 1):
            q += 1
        man, exp = q, e_lsb
    if man == 0:
        return -0.0 if sign else 0.0
    if exp + man.bit_length() - 1 > fmt.emax:
        return -math.inf if sign else math.inf
    v = math.ldexp(man, exp)
    return -v if sign else v


def round_array(a: np.ndarray, fmt: Format) -> np.ndarray:
    """Correctly round float64 values to fmt (a single rounding: float64 inputs are exact)."""
    a = np.asarray(a, dtype=np.float64)
    if fmt.name == "float64":
        return a.copy()
    with np.errstate(invalid="ignore", over="ignore"):
        _, e = np.frexp(a)
        e_lsb = np.maximum(e - 1, fmt.emin) - fmt.p + 1
        q = np.rint(np.ldexp(a, -e_lsb))
        out = np.ldexp(q, e_lsb)
        out = np.where(np.abs(out) > fmt.max_finite, np.copysign(np.inf, a), out)
        return np.where(np.isfinite(a), out, a)


def round_exact(hi: np.ndarray, lo: np.ndarray, sgn: np.ndarray, fmt: Format) -> np.ndarray:
    """RN_fmt(t), correctly rounded, for exact values given canonically (``precision.py``):
    hi = RN_float64(t), lo = RN_float64(t - hi), sgn = sign(t - hi).

    Every rounding boundary of fmt (a midpoint, or the overflow threshold max + ulp/2) is a
    float64, and no float64 lies strictly between t and RN_float64(t): so RN_fmt(t) =
    RN_fmt(hi) unless hi is itself a boundary, where sgn decides (0: a tie, to even)."""
    hi = np.asarray(hi, dtype=np.float64)
    r = round_array(hi, fmt)
    if fmt.name == "float64":
        return r
    sgn = np.broadcast_to(np.asarray(sgn), hi.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        _, e = np.frexp(hi)
        e_lsb = np.maximum(e - 1, fmt.emin) - fmt.p + 1
        q = np.ldexp(hi, -e_lsb)
        fl = np.floor(q)
        boundary = np.isfinite(hi) & (q - fl == 0.5) & (sgn != 0)
        if not boundary.any():
            return r
        moved = np.ldexp(np.where(sgn > 0, np.ceil(q), fl), e_lsb)
        moved = np.where(np.abs(moved) > fmt.max_finite, np.copysign(np.inf, hi), moved)
    return np.where(boundary, moved, r)


def is_representable(a: np.ndarray, fmt: Format) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    r = round_array(a, fmt)
    return (r == a) | np.isnan(a)


def ulp(hi: np.ndarray, lo: np.ndarray, fmt: Format) -> np.ndarray:
    """u(t) for the exact value t = hi + lo (a double-double), subnormal-aware."""
    hi = np.asarray(hi, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    m, e = np.frexp(hi)
    e = e - 1  # floor(log2|hi|)
    # hi an exact power of two while |t| < |hi|: t lies in the binade below.
    below = (np.abs(m) == 0.5) & (lo != 0) & (np.sign(lo) != np.sign(hi))
    e = np.where(below, e - 1, e)
    e = np.maximum(np.where(hi == 0, fmt.emin, e), fmt.emin)
    return np.ldexp(1.0, e - fmt.p + 1)


def ulp_error(y: np.ndarray, hi: np.ndarray, lo: np.ndarray, fmt: Format) -> np.ndarray:
    """|y - t| / u(t); infinite y counts as +-2^(emax+1) when t is finite; NaN y gives inf."""
    y = np.asarray(y, dtype=np.float64)
    over = np.isinf(y) & np.isfinite(hi)
    u = ulp(hi, lo, fmt)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs((y - hi) - lo) / u
        # (+-2^(emax+1) - t) / u from halved terms each divided by u first, so that neither
        # float64's 2^1024 nor 2^1023 + |t|/2 (y and t of opposite signs) overflows
        top = np.copysign(math.ldexp(1.0, fmt.emax), y)
        half = 2 * np.abs(top / u - (hi / 2) / u - (lo / 2) / u)
    err = np.where(over, half, err)
    err = np.where(np.isinf(hi) & (y == hi), 0.0, err)  # an infinite exact value met exactly
    return np.where(np.isnan(err), np.inf, err)


def ordinal(a: np.ndarray, fmt: Format) -> np.ndarray:
    """Signed position of each fmt value on the fmt grid (0 at +-0; adjacent values differ by 1)."""
    a = np.asarray(a, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        mag = np.where(np.isinf(a), fmt.max_finite, np.abs(a))
        _, e = np.frexp(mag)
        e = np.maximum(np.where(mag == 0, fmt.emin, e - 1), fmt.emin)  # frexp(0) gives e = 0
        m = np.ldexp(mag, -(e - fmt.p + 1))  # integer significand, < 2^p
        m = np.where(np.isnan(m), 0, m).astype(np.int64)
        idx = (e.astype(np.int64) - fmt.emin) * (1 << (fmt.p - 1)) + m + np.isinf(a)  # inf: one past max
        return np.where(np.signbit(a) & (idx != 0), -idx, idx)


def ulp_distance(y: np.ndarray, cr: np.ndarray, fmt: Format) -> np.ndarray:
    """Integer distance on the fmt grid between y and the correctly rounded value."""
    a, b = ordinal(y, fmt), ordinal(cr, fmt)
    # |a - b| in uint64 (float64 positions of opposite signs overflow int64), saturated to int64
    d = np.where((a < 0) != (b < 0), np.abs(a).astype(np.uint64) + np.abs(b).astype(np.uint64),
                 np.abs(a - b).astype(np.uint64))
    return np.minimum(d, np.uint64(np.iinfo(np.int64).max)).astype(np.int64)


def from_ordinal(idx: np.ndarray, fmt: Format) -> np.ndarray:
    """Inverse of ordinal for finite values: the fmt value at each signed grid position."""
    idx = np.asarray(idx, dtype=np.int64)
    mag = np.abs(idx)
    half = 1 << (fmt.p - 1)
    b = np.maximum(mag // half, 1)  # binade index; 0 and 1 share the subnormal lsb
    e = fmt.emin + b - 1
    m = mag - (b - 1) * half
    v = np.ldexp(m.astype(np.float64), (e - fmt.p + 1).astype(np.int64))
    return np.sign(idx) * v


def value_at(i: int, fmt: Format) -> float:
    """``from_ordinal`` of one position, in Python integers (hypothesis draws one at a time)."""
    mag, half = abs(i), 1 << (fmt.p - 1)
    b = max(mag // half, 1)
    v = math.ldexp(mag - (b - 1) * half, fmt.emin + b - fmt.p)
    return -v if i < 0 else v


def all_values(fmt: Format) -> np.ndarray:
    """Every finite value of a 16-bit format (both zeros included), as float64."""
    bits = np.arange(1 << 16, dtype=np.uint32)
    if fmt.name == "float16":
        v = bits.astype(np.uint16).view(np.float16).astype(np.float64)
    elif fmt.name == "bfloat16":
        with np.errstate(invalid="ignore"):
            v = (bits << 16).view(np.float32).astype(np.float64)
    else:
        raise ValueError(f"exhaustive enumeration is for 16-bit formats, not {fmt.name}")
    return v[np.isfinite(v)]


def python_literal(v: float) -> str:
    """A float as exact Python source: repr for finite values, float('inf') etc otherwise."""
    if math.isnan(v):
        return "float('nan')"
    if math.isinf(v):
        return "float('inf')" if v > 0 else "-float('inf')"
    return repr(float(v))
