"""Independent validation of reference/floatformat.py: single correct rounding and the ULP measure.

Oracles are independent of the code under test: numpy's float64->float16/float32 casts
(one hardware/libm-free correct rounding), an integer round-to-nearest-even on float32 bit
patterns for bfloat16, the IEEE bit patterns themselves for grid positions, exact rationals
(fractions.Fraction) for error measures, and which side of a midpoint a point lies on.
"""
from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ffnspec.reference.floatformat import (
    FORMATS, all_values, from_ordinal, ordinal, round_array, round_mpf, ulp, ulp_distance, ulp_error,
)

F16, BF16, F32, F64 = (FORMATS[n] for n in ("float16", "bfloat16", "float32", "float64"))
SETTINGS = settings(deadline=None, derandomize=True, database=None, max_examples=300)

CTX = mpmath.MPContext()
CTX.prec = 4000  # wide enough that every test point below is built exactly
TINY_REL = CTX.ldexp(1, -70)  # an offset below float64 resolution: points with > 53 significant bits


def _bits(a) -> np.ndarray:
    """float64 bit patterns: comparing them distinguishes -0 from +0 and matches inf exactly."""
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64)).view(np.int64)


def _round_all(xs, fmt) -> np.ndarray:
    return np.array([round_mpf(x, fmt) for x in xs], dtype=np.float64)


def _mpfs(a: np.ndarray) -> list:
    return [CTX.mpf(float(v)) for v in a]


def _bf16_rne(x: np.ndarray) -> np.ndarray:
    """RN-even to bfloat16 of values that are exactly float32, by integer arithmetic on the bits:
    add 0x7FFF plus the kept lsb, then truncate (a carry into the exponent gives the next
    binade or inf, as IEEE 754-2019 §4.3.1 requires)."""
    b = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    return (b.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def _f16_cast(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.asarray(x, dtype=np.float64).astype(np.float16).astype(np.float64)


def _f32_cast(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.asarray(x, dtype=np.float64).astype(np.float32).astype(np.float64)


def _grid(fmt):
    """Non-negative finite grid a_0 = 0 < a_1 < ... < max, and the next point above each
    (the top pair is (max, 2^(emax+1)), whose upper end is the overflow value)."""
    pos = np.unique(np.abs(all_values(fmt)))
    return pos, np.append(pos[1:], math.ldexp(1.0, fmt.emax + 1))


def _even_last_bit(v: np.ndarray, fmt) -> np.ndarray:
    """The significand's last bit is 0 (bit patterns are the grid positions, see ordinal tests)."""
    if fmt is F16:
        return (np.asarray(v).astype(np.float16).view(np.uint16) & 1) == 0
    return ((np.asarray(v).astype(np.float32).view(np.uint32) >> 16) & 1) == 0


# ===================================================================== rounding ===
@pytest.mark.parametrize("fmt", [F16, BF16], ids=lambda f: f.name)
def test_16bit_exhaustive_rounding(fmt):
    a, b = _grid(fmt)
    mid = (a + b) / 2  # exact in float64: one bit below the 16-bit grid
    cast = _f16_cast if fmt is F16 else _bf16_rne
    if fmt is F16:
        # float64 neighbours of each midpoint: just below / just above, exactly float64
        below, above = np.nextafter(mid, -np.inf), np.nextafter(mid, np.inf)
    else:
        # float32 neighbours, so that the bit-pattern oracle applies to them
        m32 = mid.astype(np.float32)
        below = np.nextafter(m32, np.float32(-np.inf)).astype(np.float64)
        above = np.nextafter(m32, np.float32(np.inf)).astype(np.float64)
    for sign in (1.0, -1.0):
        for pts in (a, mid, below, above):
            want = cast(sign * pts)
            got = _round_all(_mpfs(sign * pts), fmt)
            nz = pts != 0  # an mpf has no signed zero, so the input -0 itself is out of reach
            np.testing.assert_array_equal(_bits(got[nz]), _bits(want[nz]))
            # Vectorised rounding is the same function: it must agree bit for bit.
            np.testing.assert_array_equal(_bits(round_array(sign * pts, fmt)), _bits(want))
        # Points off the float64 grid (mid -+ 2^-70 relative) fall on the side they lie on.
        lo_side = _round_all([CTX.mpf(sign * m) * (1 - TINY_REL) for m in mid], fmt)
        hi_side = _round_all([CTX.mpf(sign * m) * (1 + TINY_REL) for m in mid], fmt)
        np.testing.assert_array_equal(_bits(lo_side), _bits(sign * a))
        want_hi = np.where(b > fmt.max_finite, np.inf, b)
        np.testing.assert_array_equal(_bits(hi_side), _bits(sign * want_hi))
    # Ties go to the neighbour with an even significand: IEEE 754-2019 §4.3.1 roundTiesToEven.
    tied = _round_all(_mpfs(mid), fmt)
    even_a = _even_last_bit(a, fmt)
    np.testing.assert_array_equal(tied, np.where(even_a, a, np.where(b > fmt.max_finite, np.inf, b)))


@pytest.mark.parametrize("fmt", [F16, BF16, F32, F64], ids=lambda f: f.name)
def test_overflow_underflow_and_specials(fmt):
    top = CTX.mpf(fmt.max_finite)
    half_ulp_top = CTX.ldexp(1, fmt.emax - fmt.p)
    thresh = top + half_ulp_top  # midpoint between max finite and 2^(emax+1)
    # Overflow happens after rounding with unbounded exponent: IEEE 754-2019 §7.4;
    # the threshold itself is a tie whose even neighbour is 2^(emax+1), i.e. inf.
    assert round_mpf(thresh, fmt) == math.inf
    assert round_mpf(-thresh, fmt) == -math.inf
    assert round_mpf(thresh * (1 - TINY_REL), fmt) == fmt.max_finite
    assert round_mpf(-thresh * (1 - TINY_REL), fmt) == -fmt.max_finite
    assert round_mpf(CTX.ldexp(1, 10 ** 6), fmt) == math.inf
    # Underflow to zero keeps the sign: IEEE 754-2019 §6.3 (sign of a rounded result).
    half_sub = CTX.ldexp(1, fmt.emin - fmt.p)  # half the smallest subnormal: a tie with 0 (even)
    for x, want in [(half_sub, 0.0), (-half_sub, -0.0), (CTX.ldexp(1, -10 ** 6), 0.0),
                    (-CTX.ldexp(1, -10 ** 6), -0.0), (half_sub * (1 + TINY_REL), fmt.min_subnormal),
                    (-half_sub * (1 + TINY_REL), -fmt.min_subnormal),
                    (3 * half_sub, 2 * fmt.min_subnormal),  # tie 1.5 -> 2 (even) subnormal lsbs
                    (CTX.inf, math.inf), (CTX.ninf, -math.inf)]:
        got = round_mpf(x, fmt)
        assert got == want and math.copysign(1, got) == math.copysign(1, want), (x, got, want)
    assert math.isnan(round_mpf(CTX.nan, fmt))
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0])
    r = round_array(special, fmt)
    assert np.isnan(r[0]) and _bits(r[1:]).tolist() == _bits(special[1:]).tolist()


def test_format_constants_match_numpy_and_ml_dtypes():
    # The (p, emin, emax) triples are IEEE 754-2019 Table 3.5 (binary16/32/64) and bfloat16's.
    ml_dtypes = pytest.importorskip("ml_dtypes")
    for fmt, dt in [(F16, np.float16), (BF16, ml_dtypes.bfloat16), (F32, np.float32), (F64, np.float64)]:
        fi = ml_dtypes.finfo(dt) if fmt is BF16 else np.finfo(dt)
        assert fmt.p == fi.nmant + 1 and fmt.emin == fi.minexp and fmt.emax == fi.maxexp - 1
        assert fmt.max_finite == float(fi.max)
        assert fmt.min_normal == float(fi.smallest_normal)
        assert fmt.min_subnormal == float(fi.smallest_subnormal)


def test_bfloat16_rounded_once_not_through_float32():
    # Why the reference never casts through float32: float64 -> float32 -> bfloat16 rounds
    # twice (Boldo & Melquiond, "When double rounding is odd", 2005).  x lies just above the
    # bfloat16 midpoint 1 + 2^-8, so RN(x) = 1 + 2^-7; float32 first lands on the midpoint,
    # which then ties to even, 1.  The double-rounded path is built from ffnspec's own
    # oracles (numpy's float32 cast, then integer RNE on the bits), not from a library's
    # conversion, whose behaviour changes between releases (ml_dtypes >= 0.5 rounds once).
    x = 1 + 2.0 ** -8 + 2.0 ** -40
    assert round_mpf(CTX.mpf(x), BF16) == 1 + 2.0 ** -7
    assert float(round_array(np.array([x]), BF16)[0]) == 1 + 2.0 ** -7
    assert float(_bf16_rne(np.float32(x))) == 1.0  # the double-rounded value differs


def test_adapter_conversions_never_round():
    # Adapters convert only values already representable in the target format, so no
    # library's float64 -> bfloat16 conversion (single or double rounding) can change an
    # input: every bfloat16 value survives the NumPy backend's round trip bit for bit.
    pytest.importorskip("ml_dtypes")
    from ffnspec.adapters.numpy_backend import NumpyBackend
    b = NumpyBackend()
    v = all_values(BF16)
    np.testing.assert_array_equal(_bits(b.to_numpy(b.asarray(v, "bfloat16"))), _bits(v))


def test_16bit_double_rounding_points_rounded_once():
    # Every float64 just off a bfloat16 midpoint (not a float32) rounds to its own side.
    a, b = _grid(BF16)
    mid = (a + b) / 2
    for pts, want in [(np.nextafter(mid, -np.inf), a), (np.nextafter(mid, np.inf), np.where(b > BF16.max_finite, np.inf, b))]:
        np.testing.assert_array_equal(round_array(pts, BF16), want)
        np.testing.assert_array_equal(_round_all(_mpfs(pts[::7]), BF16), want[::7])


def _random_floats(dtype, n, seed):
    rng = np.random.default_rng(seed)
    nbits = np.dtype(dtype).itemsize * 8
    raw = rng.integers(0, 2 ** nbits, size=n, dtype=np.uint64 if nbits == 64 else np.uint32)
    v = raw.astype(np.uint64 if nbits == 64 else np.uint32).view(dtype)
    return v[np.isfinite(v)].astype(np.float64)


def test_float32_random_rounding():
    x = _random_floats(np.float32, 20000, 1)
    up = np.nextafter(x.astype(np.float32), np.float32(np.inf)).astype(np.float64)
    ok = np.isfinite(up)
    x, up = x[ok], up[ok]
    mid = (x + up) / 2
    wide = _random_floats(np.float64, 20000, 2)  # overflow / underflow / subnormal outcomes
    for pts in (x, mid, np.nextafter(mid, -np.inf), np.nextafter(mid, np.inf), wide):
        want = _f32_cast(pts)
        np.testing.assert_array_equal(_bits(_round_all(_mpfs(pts), F32)), _bits(want))
        np.testing.assert_array_equal(_bits(round_array(pts, F32)), _bits(want))
    # > 53-bit points at 2^-70 relative from each midpoint: the side decides.
    lo = np.minimum(x, up)
    hi = np.maximum(x, up)
    below = _round_all([CTX.mpf(m) - abs(CTX.mpf(m)) * TINY_REL for m in mid], F32)
    above = _round_all([CTX.mpf(m) + abs(CTX.mpf(m)) * TINY_REL for m in mid], F32)
    np.testing.assert_array_equal(_bits(below), _bits(lo))
    np.testing.assert_array_equal(_bits(above), _bits(hi))


def _nearest_ok(x, r: float, dtype) -> bool:
    """r is a nearest dtype value to x (x not a midpoint): no neighbour of r is strictly closer;
    an infinite r needs |x| >= the overflow threshold, IEEE 754-2019 §7.4."""
    fi = np.finfo(dtype)
    if math.isinf(r):
        thresh = CTX.mpf(float(fi.max)) + CTX.ldexp(1, fi.maxexp - 1 - fi.nmant - 1)
        return abs(x) >= thresh and (r > 0) == (x > 0)
    d = abs(x - CTX.mpf(r))
    for nb in (np.nextafter(dtype(r), dtype(np.inf)), np.nextafter(dtype(r), dtype(-np.inf))):
        if np.isfinite(nb) and abs(x - CTX.mpf(float(nb))) < d:
            return False
    return True


@pytest.mark.parametrize("fmt,dtype", [(F32, np.float32), (F64, np.float64)], ids=["float32", "float64"])
def test_random_long_significands_round_to_nearest(fmt, dtype):
    # 100-bit significands across the whole exponent range incl. subnormal and overflow:
    # the result must be a nearest value (IEEE 754-2019 §4.3.1).
    rng = np.random.default_rng(3)
    lo_e, hi_e = fmt.emin - fmt.p - 3, fmt.emax + 2
    for _ in range(3000):
        man = int(rng.integers(1 << 62, dtype=np.uint64)) << 38 | int(rng.integers(1 << 38, dtype=np.uint64))
        man |= 1 << 99
        x = CTX.mpf((man if rng.random() < 0.5 else -man, int(rng.integers(lo_e, hi_e)) - 99))
        r = round_mpf(x, fmt)
        assert _nearest_ok(x, r, dtype), (x, r)
        assert r == 0 or math.copysign(1, r) == (1 if x > 0 else -1)


def test_float64_identity_ties_and_subnormals():
    rng = np.random.default_rng(4)
    x = _random_floats(np.float64, 20000, 5)
    sub = (rng.integers(1, 1 << 52, size=2000, dtype=np.uint64)).view(np.float64)  # biased exponent 0
    x = np.concatenate([x, sub, -sub, [F64.max_finite, -F64.max_finite, F64.min_normal]])
    x = x[x != 0]
    # Representable values are returned unchanged (exact conversion, IEEE 754-2019 §5.4.2).
    np.testing.assert_array_equal(_bits(_round_all(_mpfs(x), F64)), _bits(x))
    np.testing.assert_array_equal(_bits(round_array(x, F64)), _bits(x))
    with np.errstate(over="ignore"):
        up = np.nextafter(x, np.inf)
    ok = np.isfinite(up)
    x, up = x[ok], up[ok]
    mids = [(CTX.mpf(a) + CTX.mpf(b)) / 2 for a, b in zip(x, up)]  # 54 bits: not float64
    lo, hi = np.minimum(x, up), np.maximum(x, up)
    got = _round_all(mids, F64)
    even_lo = (lo.view(np.int64) & 1) == 0
    even_lo = np.where(lo == 0, True, even_lo)  # 0 has an even (zero) significand
    # Ties to even: IEEE 754-2019 §4.3.1.
    np.testing.assert_array_equal(got, np.where(even_lo, lo, hi))
    below = _round_all([m - abs(m) * TINY_REL for m in mids], F64)
    above = _round_all([m + abs(m) * TINY_REL for m in mids], F64)
    np.testing.assert_array_equal(below, lo)
    np.testing.assert_array_equal(above, hi)


# ====================================================================== ULP measure ===
def _gap_above(v: np.ndarray, fmt) -> np.ndarray:
    """Spacing of the fmt grid just above |v| (v on the grid, below max)."""
    a, b = _grid(fmt)
    i = np.searchsorted(a, np.abs(v))
    assert np.all(a[i] == np.abs(v))
    return b[i] - a[i]


@pytest.mark.parametrize("fmt", [F16, BF16], ids=lambda f: f.name)
def test_ulp_is_the_local_grid_spacing_exhaustive(fmt):
    # u(t) = 2^(max(floor(log2|t|), emin) - p + 1) is the gap of the binade holding t, the
    # binade above at an exact power of two (Muller, INRIA RR-5504, 2005, def. "ulp").
    a, b = _grid(fmt)
    inner = a[:-1]  # grid values below max: the gap above lies in their binade
    for s in (1.0, -1.0):
        np.testing.assert_array_equal(ulp(s * inner, 0 * inner, fmt), b[:-1] - a[:-1])
        mid = (a + b) / 2  # strictly inside (a, b): the binade of a
        np.testing.assert_array_equal(ulp(s * mid[:-1], 0 * mid[:-1], fmt), b[:-1] - a[:-1])
    np.testing.assert_array_equal(ulp(np.array([fmt.max_finite]), np.zeros(1), fmt),
                                  [fmt.max_finite - a[-2]])
    # t just below a power of two 2^k, as the double-double (2^k, -tiny): binade below.
    pw = a[(a > 0) & (np.frexp(a)[0] == 0.5)]
    prev = a[np.searchsorted(a, pw) - 1]
    nxt = b[np.searchsorted(a, pw)]
    for s in (1.0, -1.0):
        np.testing.assert_array_equal(ulp(s * pw, -s * pw * 2.0 ** -60, fmt), pw - prev)
        np.testing.assert_array_equal(ulp(s * pw, s * pw * 2.0 ** -60, fmt), nxt - pw)
    assert ulp(np.array(0.0), np.array(0.0), fmt) == fmt.min_subnormal


@pytest.mark.parametrize("fmt,dtype", [(F32, np.float32), (F64, np.float64)], ids=["float32", "float64"])
def test_ulp_random_matches_spacing(fmt, dtype):
    x = _random_floats(dtype, 20000, 6)
    x = x[np.abs(x) < fmt.max_finite]
    gap = (np.nextafter(np.abs(x).astype(dtype), dtype(np.inf)) - np.abs(x).astype(dtype)).astype(np.float64)
    np.testing.assert_array_equal(ulp(x, 0 * x, fmt), gap)


def _exact_ulp(t: Fraction, fmt) -> Fraction:
    """2^(max(floor(log2|t|), emin) - p + 1) by integer arithmetic."""
    if t == 0:
        e = fmt.emin
    else:
        n, d = abs(t.numerator), t.denominator
        e = n.bit_length() - d.bit_length()
        if Fraction(n, d) < Fraction(2) ** e:
            e -= 1
        e = max(e, fmt.emin)
    return Fraction(2) ** (e - fmt.p + 1)


def _dd(fmt):
    """A normalised double-double (hi, lo), |lo| <= ulp64(hi)/2, over fmt's range and beyond."""
    @st.composite
    def dd(draw):
        e = draw(st.integers(fmt.emin - fmt.p - 2, fmt.emax))
        m = draw(st.integers(1 << 52, (1 << 53) - 1)) if draw(st.booleans()) else 1 << 52  # powers of two often
        hi = math.ldexp(m, e - 52) * draw(st.sampled_from([1.0, -1.0]))
        j = draw(st.integers(54, 90))
        lo = draw(st.sampled_from([0.0, 1.0, -1.0])) * math.ldexp(abs(hi), -j) * draw(st.sampled_from([1.0, 1.5]))
        return hi, lo
    return dd()


@pytest.mark.parametrize("fmt", [F16, BF16, F32, F64], ids=lambda f: f.name)
def test_ulp_and_ulp_error_by_definition(fmt):
    @SETTINGS
    @given(_dd(fmt), st.integers(-3, 3))
    def check(dd, k):
        hi, lo = dd
        t = Fraction(hi) + Fraction(lo)
        u = _exact_ulp(t, fmt)
        assert Fraction(float(ulp(np.array(hi), np.array(lo), fmt))) == u
        # a grid value near t: k steps from the (float64) approximation hi
        y = float(from_ordinal(ordinal(round_array(np.array([hi]), fmt), fmt) + k, fmt)[0])
        if abs(y) > fmt.max_finite:
            y = math.copysign(math.inf, y)
        yy = Fraction(y) if math.isfinite(y) else Fraction(2) ** (fmt.emax + 1) * (1 if y > 0 else -1)
        want = abs(yy - t) / u
        got = float(ulp_error(np.array(y), np.array(hi), np.array(lo), fmt))
        assert abs(Fraction(got) - want) <= want * Fraction(1, 2 ** 48) + Fraction(1, 2 ** 60), (y, hi, lo, got, float(want))
    check()


@pytest.mark.parametrize("fmt", [F16, BF16, F32, F64], ids=lambda f: f.name)
def test_ulp_error_overflow_and_nan(fmt):
    # inf counts as 2^(emax+1) when the exact value is finite (Zimmermann et al., accuracy of
    # mathematical functions, 2021-2024 editions, §2) -- float64 included, whose 2^1024 overflows.
    mx = fmt.max_finite
    u_top = math.ldexp(1.0, fmt.emax - fmt.p + 1)
    cases = [
        (math.inf, mx, 0.0, 1.0),
        (-math.inf, -mx, 0.0, 1.0),
        (math.inf, mx, u_top / 4, 0.75),          # t = max + u/4 (still rounds to max)
        (math.inf, -mx, 0.0, float((Fraction(2) ** (fmt.emax + 1) + Fraction(mx)) / Fraction(u_top))),
        (mx, mx, u_top / 4, 0.25),
        (math.nan, 1.0, 0.0, math.inf),
        (math.inf, math.inf, 0.0, 0.0),           # infinite exact value met exactly
        (1.0, math.inf, 0.0, math.inf),
    ]
    for y, hi, lo, want in cases:
        got = float(ulp_error(np.array(y), np.array(hi), np.array(lo), fmt))
        assert got == want, (fmt.name, y, hi, lo, got, want)
    # subnormal exact values are measured in the subnormal ulp 2^(emin-p+1)
    s = fmt.min_subnormal
    assert float(ulp_error(np.array(4 * s), np.array(3 * s), np.array(0.0), fmt)) == 1.0
    assert float(ulp_error(np.array(0.0), np.array(3 * s), np.array(0.0), fmt)) == 3.0
    if fmt is not F64:  # s/8 is below float64's range
        assert float(ulp_error(np.array(0.0), np.array(s / 8), np.array(0.0), fmt)) == 0.125


# ========================================================================== ordinal ===
def _bit_ordinal(v: np.ndarray, fmt) -> np.ndarray:
    """For IEEE binary formats the sign-magnitude bit pattern is the grid position
    (IEEE 754-2019 §3.4: biased exponent then trailing significand, inf just after max)."""
    v = np.asarray(v, dtype=np.float64)
    if fmt is F16:
        m = v.astype(np.float16).view(np.uint16).astype(np.int64) & 0x7FFF
    elif fmt is BF16:
        m = (v.astype(np.float32).view(np.uint32).astype(np.int64) >> 16) & 0x7FFF
    elif fmt is F32:
        m = v.astype(np.float32).view(np.uint32).astype(np.int64) & 0x7FFFFFFF
    else:
        m = v.view(np.int64) & 0x7FFFFFFFFFFFFFFF
    return np.where(np.signbit(v), -m, m)


@pytest.mark.parametrize("fmt", [F16, BF16], ids=lambda f: f.name)
def test_ordinal_exhaustive(fmt):
    v = np.sort(all_values(fmt))
    v = np.concatenate([[-np.inf], v, [np.inf]])
    o = ordinal(v, fmt)
    np.testing.assert_array_equal(o, _bit_ordinal(v, fmt))
    # monotone, adjacent values differ by exactly 1 (the two zeros share 0)
    d = np.diff(o)
    zero_pair = (v[:-1] == 0) & (v[1:] == 0)
    assert np.all(d[~zero_pair] == 1) and np.all(d[zero_pair] == 0)
    fin = v[np.isfinite(v)]
    np.testing.assert_array_equal(from_ordinal(ordinal(fin, fmt), fmt), fin)  # -0 -> 0 compares equal
    k = np.arange(-int(o[-2]), int(o[-2]) + 1)
    np.testing.assert_array_equal(ordinal(from_ordinal(k, fmt), fmt), k)


@pytest.mark.parametrize("fmt,dtype", [(F32, np.float32), (F64, np.float64)], ids=["float32", "float64"])
def test_ordinal_random(fmt, dtype):
    x = _random_floats(dtype, 20000, 7)
    x = np.concatenate([x, [0.0, fmt.min_subnormal, -fmt.min_subnormal, fmt.max_finite, np.inf, -np.inf]])
    o = ordinal(x, fmt)
    np.testing.assert_array_equal(o, _bit_ordinal(x, fmt))
    fin = np.isfinite(x)
    np.testing.assert_array_equal(from_ordinal(o[fin], fmt), x[fin])
    with np.errstate(over="ignore"):
        nx = np.nextafter(x[fin].astype(dtype), dtype(np.inf)).astype(np.float64)
    step = ordinal(nx, fmt) - o[fin]
    assert np.all(step[x[fin] != 0] == 1)  # nextafter(-0) skips +0, so exclude zeros
    # distances are differences of positions, across zero and up to inf
    assert ulp_distance(np.array([-fmt.min_subnormal]), np.array([fmt.min_subnormal]), fmt)[0] == 2
    assert ulp_distance(np.array([np.inf]), np.array([fmt.max_finite]), fmt)[0] == 1
    assert ulp_distance(np.array([-0.0]), np.array([0.0]), fmt)[0] == 0
    y = x[fin][::-1]
    want = [min(abs(int(a) - int(b)), 2 ** 63 - 1)  # Python ints: no int64 wrap-around
            for a, b in zip(_bit_ordinal(x[fin], fmt), _bit_ordinal(y, fmt))]
    assert ulp_distance(x[fin], y, fmt).tolist() == want


# hypothesis maps each drawn grid position with the scalar form: it must be from_ordinal's value (docs/measure.md, ULP grid).
@pytest.mark.parametrize("name", ["float16", "bfloat16", "float32", "float64"])
def test_value_at_is_from_ordinal(name):
    from ffnspec.reference.floatformat import from_ordinal, ordinal, value_at
    fmt = FORMATS[name]
    top = int(ordinal(np.array([fmt.max_finite]), fmt)[0])
    idx = np.unique(np.concatenate([np.arange(-3000, 3001), [top, -top],
                                    np.random.default_rng(7).integers(-top, top + 1, 5000)]))
    got = np.array([value_at(int(i), fmt) for i in idx])
    assert np.array_equal(got, from_ordinal(idx, fmt))
