"""A fast, rigorous, correctly rounded float32 reference for the act family (exhaustive sweeps).

For an input x (a float32 value held in float64) a float64 kernel gives two descriptions of
the exact value t = f(x), each with a proven error bound (docs/measure.md, "Fast float32
reference", has the proofs):

  plain   t ~ y, |y - t| <= e_y;
  pinned  t = b + c exactly for a float64 b (1, 1/2, 1/4, x, x/2, 0, ...), c ~ c_hat with
          |c_hat - c| <= e_c, and the sign of c known from the formula (``side``).

Let H be the half grid of float32 around t: every float32 value and every midpoint between
float32 neighbours (spacing h = ulp32/2; the finer spacing of the lower binade at a power of
two).  RN32(t) and the ULP measure of any float32 result against t depend only on where t lies
relative to H.  So:

  * plain is accepted when the nearest point of H is farther from y than MARGIN * e_y;
  * pinned is accepted when b is a point of H, side != 0 and |c_hat| + MARGIN * e_c + ABS
    < h / 4: t then lies strictly between b and b + side h/4, where no point of H lies;
  * a result below 2^-1000 in magnitude with a known sign (float64 underflow territory) is
    accepted as it is: t is then below 2^-999, and RN32(t) = +-0 and every ULP measure follow;
  * everything else goes to the exact path (``precision.values_many``: ball engine / mpmath).

MARGIN is 8: the filter uses eight times the proven bound.  The bounds rest on one stated
assumption, that NumPy's float64 exp, log1p and tanh have relative error at most EPS_LIBM =
2^-46 (64 ulps; docs/measure.md gives the sources and ``benchmarks/fastref_validate.py``
measures them).

The result is ``Fast``: (hi, lo) for ``floatformat.ulp_error`` (hi + lo is t itself on the exact
path, a value on the same side of every point of H as t elsewhere), cr = RN32(t), ``bound`` (an
absolute bound on |hi + lo - t|; 0 on the exact path), ``exact`` (the mask of the exact path)
and ``pinned``.  A pinned (hi, lo) = (b, c_hat) keeps the part of t beyond 106 bits that the
exact path's canonical lo rounds away (``precision.py``: lo lives on the grid 2^(e-106)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ffnspec.reference import function, precision
from ffnspec.reference.floatformat import FORMATS, Format, round_array, round_exact

F32 = FORMATS["float32"]
EPS_LIBM = 2.0 ** -46          # assumed relative error of NumPy's float64 exp, log1p, tanh
CLAIM = 2.0 ** -43             # proven relative bound of every kernel below (<= 3 EPS_LIBM + 7 u)
MARGIN = 8.0                   # the filter uses MARGIN times the proven bound
ABS = 2.0 ** -1070             # absolute allowance of a pinned correction (float64 underflow)
TINY = 2.0 ** -1000            # results below this with a known sign are accepted (float64 underflow)
STAND_IN = 2.0 ** -1074        # the nonzero lo standing in for an underflowed correction


@dataclass
class Approx:
    """A kernel's two descriptions of t (module docstring); base is NaN where there is no pin."""
    y: np.ndarray
    e_y: np.ndarray
    base: np.ndarray
    c: np.ndarray
    e_c: np.ndarray
    side: np.ndarray
    sign: np.ndarray   # sign of t where the formula decides it, else 0


@dataclass
class Fast:
    hi: np.ndarray
    lo: np.ndarray
    cr: np.ndarray
    bound: np.ndarray
    exact: np.ndarray
    pinned: np.ndarray


# --- kernels (x: float64 array of float32 values, all finite) ------------------------------

def _sig_parts(x: np.ndarray):
    """a = e^-|x|, sigma(|x|) = 1/(1+a), sigma(-|x|) = a/(1+a); each within EPS_LIBM + 2u."""
    a = np.exp(-np.abs(x))
    d = 1 + a
    return a, 1 / d, a / d


def _nan(x):
    return np.full_like(x, np.nan)


def sigmoid(x: np.ndarray) -> Approx:
    """sigma(x); pins 1/2 + tanh(x/2)/2 for |x| < 1 and 1 - sigma(-x) for x >= 1."""
    _, sp, sn = _sig_parts(x)
    y = np.where(x >= 0, sp, sn)
    near0 = np.abs(x) < 1
    base = np.where(near0, 0.5, np.where(x >= 1, 1.0, np.nan))
    c = np.where(near0, np.tanh(x / 2) / 2, -sn)
    return Approx(y, CLAIM * y, base, c, CLAIM * np.abs(c), np.where(near0, np.sign(x), -1.0), np.ones_like(x))


def _softplus(x: np.ndarray) -> Approx:
    """zeta(x) = max(x, 0) + log1p(e^-|x|); pins x + log1p(e^-x) for x > 0."""
    l = np.log1p(np.exp(-np.abs(x)))
    y = np.maximum(x, 0) + l
    base = np.where(x > 0, x, np.nan)
    return Approx(y, CLAIM * y, base, l, CLAIM * l, np.ones_like(x), np.ones_like(x))


def softplus(x: np.ndarray) -> Approx:
    return _softplus(x)


def log_sigmoid(x: np.ndarray) -> Approx:
    """log sigma(x) = -zeta(-x): the softplus kernel at -x, negated (exact operations)."""
    a = _softplus(-x)
    return Approx(-a.y, a.e_y, -a.base, -a.c, a.e_c, -a.side, -a.sign)


def tanh(x: np.ndarray) -> Approx:
    """tanh(x) (libm); pins x - x^3/3 for |x| < 2^-8 (Lagrange remainder <= 2|x|^5/15, since
    |tanh^(5)| <= 16) and sign(x) (1 - 2a/(1+a)), a = e^-2|x|, for |x| >= 1."""
    y = np.tanh(x)
    ax = np.abs(x)
    small, big = ax < 2.0 ** -8, ax >= 1
    a = np.exp(-2 * ax)
    tail = 2 * a / (1 + a)
    cubic = -(x * x * x) / 3
    base = np.where(small, x, np.where(big, np.sign(x), np.nan))
    c = np.where(small, cubic, -np.sign(x) * tail)
    e_c = np.where(small, CLAIM * np.abs(cubic) + (2 / 15) * ax ** 5, CLAIM * tail)
    return Approx(y, CLAIM * np.abs(y), base, c, e_c, -np.sign(x), np.sign(x))


def silu(x: np.ndarray) -> Approx:
    """x sigma(x); pins x/2 + x tanh(x/2)/2 for |x| < 1 and x - x sigma(-x) for x >= 1."""
    _, sp, sn = _sig_parts(x)
    y = x * np.where(x >= 0, sp, sn)
    near0 = np.abs(x) < 1
    base = np.where(near0, x / 2, np.where(x >= 1, x, np.nan))
    c = np.where(near0, x * np.tanh(x / 2) / 2, -x * sn)
    side = np.where(near0, np.sign(np.abs(x)), -1.0)
    return Approx(y, CLAIM * np.abs(y), base, c, CLAIM * np.abs(c), side, np.sign(x))


def sigmoid_grad(x: np.ndarray) -> Approx:
    """sigma'(x) = sigma(|x|) sigma(-|x|); pins 1/4 - tanh(x/2)^2/4 for |x| < 1."""
    _, sp, sn = _sig_parts(x)
    y = sp * sn
    near0 = np.abs(x) < 1
    c = -np.tanh(x / 2) ** 2 / 4
    return Approx(y, CLAIM * y, np.where(near0, 0.25, np.nan), c, CLAIM * np.abs(c),
                  -np.sign(np.abs(x)), np.ones_like(x))


def softplus_grad(x: np.ndarray) -> Approx:
    """zeta'(x) = sigma(x)."""
    return sigmoid(x)


def log_sigmoid_grad(x: np.ndarray) -> Approx:
    """(log sigma)'(x) = sigma(-x)."""
    return sigmoid(-x)


def tanh_grad(x: np.ndarray) -> Approx:
    """sech^2 x = 4a/(1+a)^2, a = e^-2|x|; pins 1 - tanh(x)^2 for |x| < 1."""
    a = np.exp(-2 * np.abs(x))
    d = 1 + a
    y = (4 * a / d) / d
    c = -np.tanh(x) ** 2
    return Approx(y, CLAIM * y, np.where(np.abs(x) < 1, 1.0, np.nan), c, CLAIM * np.abs(c),
                  -np.sign(np.abs(x)), np.ones_like(x))


def silu_grad(x: np.ndarray) -> Approx:
    """sigma(x) (1 + x sigma(-x)), error CLAIM sigma(x) (1 + |x| sigma(-x)) (the summed terms);
    pins 1/2 + tanh(x/2)/2 + x sigma'(x) for |x| < 1 and 1 + sigma(-x) (x sigma(x) - 1) for x >= 4."""
    _, sp, sn = _sig_parts(x)
    s, sm = np.where(x >= 0, sp, sn), np.where(x >= 0, sn, sp)  # sigma(x), sigma(-x)
    y = s * (1 + x * sm)
    scale = s * (1 + np.abs(x) * sm)
    near0, big = np.abs(x) < 1, x >= 4
    c = np.where(near0, np.tanh(x / 2) / 2 + x * (sp * sn), sn * (x * sp - 1))
    e_c = np.where(near0, CLAIM * np.abs(c), CLAIM * sn * (x * sp + 1))
    base = np.where(near0, 0.5, np.where(big, 1.0, np.nan))
    side = np.where(near0, np.sign(x), 1.0)
    sign = np.where(x > -1, 1.0, np.where(x < -2, -1.0, 0.0))
    return Approx(y, CLAIM * scale, base, c, e_c, side, sign)


KERNELS: dict[str, Callable[[np.ndarray], Approx]] = {
    "act.sigmoid": sigmoid, "act.softplus": softplus, "act.log_sigmoid": log_sigmoid, "act.tanh": tanh,
    "act.silu": silu, "act.sigmoid_grad": sigmoid_grad, "act.softplus_grad": softplus_grad,
    "act.log_sigmoid_grad": log_sigmoid_grad, "act.tanh_grad": tanh_grad, "act.silu_grad": silu_grad,
}


# --- the half grid H, by bit operations (frexp/ldexp cost several passes) --------------------

def _exponent(a: np.ndarray) -> np.ndarray:
    """floor(log2|a|) for normal float64 a (-1023 for 0 and float64 subnormals)."""
    return ((a.view(np.int64) >> 52) & 0x7FF) - 1023


def _pow2(e: np.ndarray) -> np.ndarray:
    """2^e for integer e in [-1022, 1023]."""
    return ((e + 1023) << 52).view(np.float64)


def half_spacing(mag: np.ndarray, fmt: Format = F32) -> np.ndarray:
    """h = ulp_fmt/2 of the binade of mag >= 0 (subnormal-aware; mag = 0 gives the subnormal h)."""
    return _pow2(np.maximum(_exponent(mag), fmt.emin) - fmt.p)


def ulp32(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """``floatformat.ulp(hi, lo, float32)`` by bit operations (the sweep's hot path; tests
    check the two agree)."""
    e = _exponent(hi)
    below = ((hi.view(np.int64) & ((1 << 52) - 1)) == 0) & (lo != 0) & (np.signbit(lo) != np.signbit(hi))
    return _pow2(np.maximum(e - below, F32.emin) - F32.p + 1)


def round32(a: np.ndarray) -> np.ndarray:
    """RN32 of float64 values: the IEEE conversion (to nearest, ties to even, subnormals, overflow
    to inf), checked by ``conversion_ok`` (a process with flush-to-zero set would break it)."""
    return a.astype(np.float32).astype(np.float64)


def conversion_ok() -> bool:
    """Whether float64 -> float32 conversion rounds subnormals and ties correctly here."""
    probe = np.array([2.0 ** -150, 3 * 2.0 ** -150, 1.5 * 2.0 ** -149, 1 + 2.0 ** -24, 1 + 3 * 2.0 ** -24, 2.0 ** 128])
    want = np.array([0.0, 2.0 ** -148, 2.0 ** -148, 1.0, 1 + 2.0 ** -22, np.inf])
    with np.errstate(over="ignore"):
        return bool(np.array_equal(round32(probe), want))


def _on_half_grid(b: np.ndarray, h: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(b) & (np.rint(b / h) * h == b)


def classify(x: np.ndarray, ap: Approx, fmt: Format = F32):
    """(mode, hi, lo, cr, bound) with mode 0 exact path, 1 plain accepted, 2 pinned, 3 tiny."""
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        ay = np.abs(ap.y)
        h = half_spacing(ay * (1 - 2.0 ** -30), fmt)  # a power of two: the finer grid below
        d = np.abs(ap.y - np.rint(ap.y / h) * h)      # distance to the nearest point of H (exact)
        plain_ok = (d > MARGIN * ap.e_y) & np.isfinite(ap.y)
        ab = np.abs(ap.base)
        toward0 = np.sign(ap.side) != np.sign(ap.base)  # t on the zero side of b: its grid may be finer
        fin = np.isfinite(ab)
        ab0 = np.where(fin, ab, 0.0)
        hb = half_spacing(np.where(toward0, ab0 * (1 - 2.0 ** -30), ab0), fmt)
        pin_ok = (fin & (ap.side != 0) & (np.rint(ap.base / hb) * hb == ap.base)
                  & (np.abs(ap.c) + MARGIN * ap.e_c + ABS < hb / 4))
        tiny = (ay < TINY) & (ap.sign != 0)
    mode = np.where(pin_ok, 2, np.where(tiny, 3, np.where(plain_ok, 1, 0))).astype(np.int8)
    hi = np.where(mode == 3, np.where(ap.y != 0, ap.y, ap.sign * STAND_IN), ap.y)
    lo = np.zeros_like(hi)
    cr = round32(hi) if fmt.name == "float32" else round_array(hi, fmt)
    bound = np.where(mode == 3, 2 * TINY, ap.e_y)
    pinned = np.flatnonzero(mode == 2)
    if pinned.size:
        c, side = ap.c[pinned], ap.side[pinned]
        stand = np.where((np.sign(c) == side) & (c != 0), c, side * STAND_IN)
        hi[pinned], lo[pinned] = ap.base[pinned], stand
        cr[pinned] = round_exact(hi[pinned], stand, side, fmt)
        bound[pinned] = np.where(stand == c, 0.0, np.abs(c)) + ap.e_c[pinned] + ABS
    ex = mode == 0
    hi[ex], lo[ex], bound[ex] = 0.0, 0.0, 0.0
    return mode, hi, lo, cr, bound


def exact_values(name: str, x: np.ndarray, fmt: Format = F32):
    """(hi, lo, cr) of reference ``name`` at x by ffnspec's own exact path (one rounding)."""
    f = function(name)
    vals = precision.values_many(f, [(float(v),) for v in x], fmt)
    hi = np.array([v[0].hi for v in vals], dtype=np.float64)
    lo = np.array([v[0].lo for v in vals], dtype=np.float64)
    sgn = np.array([v[0].sgn for v in vals], dtype=np.float64)
    return hi, lo, round_exact(hi, lo, sgn, fmt)


# --- closed-form regions -------------------------------------------------------------------
# Where the classification of ``classify`` is known in advance (docs/measure.md, "Closed-form
# regions", derives each threshold), only the few passes the result needs are evaluated, with
# the kernel's own formulas (so every value is bit for bit the kernel's).  Each element's
# criterion is still checked (the pin's |c| + MARGIN e_c + ABS < h/4, the zero region's
# |y| < 2^-151): an element that fails it goes to the general path, so a threshold decides only
# speed, never a value.

ZERO_BELOW = 2.0 ** -151       # |t| below this: RN32(t) = +-0 and the nearest point of H is 0


@dataclass(frozen=True)
class Region:
    """Inputs lo <= x <= hi (float32 values of one sign) of one kernel.

    kind "pin": t = base + c with |c| < h/4 (mode 2), base a float32 (None: base = x), side
    the sign of c; ``part(x)`` returns (c, e_c).  A base of None is ``scale`` x.  kind "zero": |t| < 2^-151 (mode 1, or 3
    below TINY) with sign ``side``; ``part(x)`` returns (y, e_y)."""
    lo: float
    hi: float
    kind: str
    part: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    base: float | None = None
    side: float = 1.0
    negate: bool = False       # part and base are of -x (log_sigmoid' = sigma(-x))
    scale: float = 1.0


def _mirror(r: Region) -> Region:
    return Region(-r.hi, -r.lo, r.kind, r.part, r.base, r.side, not r.negate, r.scale)


def _sig_tanh_half(x):
    c = np.tanh(x / 2) / 2
    return c, CLAIM * np.abs(c)


def _sig_minus_sn(x):
    _, _, sn = _sig_parts(x)
    c = -sn
    return c, CLAIM * np.abs(c)


def _sig_sn(x):
    _, _, sn = _sig_parts(x)
    return sn, CLAIM * sn


def _softplus_l(x):
    l = np.log1p(np.exp(-np.abs(x)))
    return l, CLAIM * l


def _log_sigmoid_minus_l(x):
    l, e = _softplus_l(x)
    return -l, e


def _tanh_cubic(x):
    cubic = -(x * x * x) / 3
    return cubic, CLAIM * np.abs(cubic) + (2 / 15) * np.abs(x) ** 5


def _tanh_tail(x):
    a = np.exp(-2 * np.abs(x))
    tail = 2 * a / (1 + a)
    return -np.sign(x) * tail, CLAIM * tail


def _tanh_grad_sq(x):
    c = -np.tanh(x) ** 2
    return c, CLAIM * np.abs(c)


def _tanh_grad_y(x):
    a = np.exp(-2 * np.abs(x))
    d = 1 + a
    y = (4 * a / d) / d
    return y, CLAIM * y


def _sig_grad_sq(x):
    c = -np.tanh(x / 2) ** 2 / 4
    return c, CLAIM * np.abs(c)


def _sig_grad_y(x):
    _, sp, sn = _sig_parts(x)
    y = sp * sn
    return y, CLAIM * y


def _silu_near0(x):
    c = x * np.tanh(x / 2) / 2
    return c, CLAIM * np.abs(c)


def _silu_big(x):
    _, _, sn = _sig_parts(x)
    c = -x * sn
    return c, CLAIM * np.abs(c)


def _silu_y(x):
    _, _, sn = _sig_parts(x)
    y = x * sn
    return y, CLAIM * np.abs(y)


def _silu_grad_near0(x):
    _, sp, sn = _sig_parts(x)
    c = np.tanh(x / 2) / 2 + x * (sp * sn)
    return c, CLAIM * np.abs(c)


def _silu_grad_big(x):
    _, sp, sn = _sig_parts(x)
    return sn * (x * sp - 1), CLAIM * sn * (x * sp + 1)


def _silu_grad_y(x):
    _, sp, sn = _sig_parts(x)     # x < 0: sigma(x) = sn, sigma(-x) = sp
    return sn * (1 + x * sp), CLAIM * (sn * (1 + np.abs(x) * sp))


_MAX = float(np.finfo(np.float32).max)
_SUB = 2.0 ** -149             # the least positive float32
_SIGMOID = (Region(_SUB, 2.0 ** -27, "pin", _sig_tanh_half, 0.5, 1.0),
            Region(-2.0 ** -27, -_SUB, "pin", _sig_tanh_half, 0.5, -1.0),
            Region(19.0, _MAX, "pin", _sig_minus_sn, 1.0, -1.0),
            Region(-_MAX, -106.0, "zero", _sig_sn))
REGIONS: dict[str, tuple[Region, ...]] = {
    "act.sigmoid": _SIGMOID,
    "act.softplus_grad": _SIGMOID,
    "act.log_sigmoid_grad": tuple(_mirror(r) for r in _SIGMOID),
    "act.tanh": (Region(_SUB, 2.0 ** -14, "pin", _tanh_cubic, None, -1.0),
                 Region(-2.0 ** -14, -_SUB, "pin", _tanh_cubic, None, 1.0),
                 Region(10.0, _MAX, "pin", _tanh_tail, 1.0, -1.0),
                 Region(-_MAX, -10.0, "pin", _tanh_tail, -1.0, 1.0)),
    "act.tanh_grad": (Region(_SUB, 2.0 ** -14, "pin", _tanh_grad_sq, 1.0, -1.0),
                      Region(-2.0 ** -14, -_SUB, "pin", _tanh_grad_sq, 1.0, -1.0),
                      Region(54.0, _MAX, "zero", _tanh_grad_y),
                      Region(-_MAX, -54.0, "zero", _tanh_grad_y)),
    "act.sigmoid_grad": (Region(_SUB, 2.0 ** -13, "pin", _sig_grad_sq, 0.25, -1.0),
                         Region(-2.0 ** -13, -_SUB, "pin", _sig_grad_sq, 0.25, -1.0),
                         Region(106.0, _MAX, "zero", _sig_grad_y),
                         Region(-_MAX, -106.0, "zero", _sig_grad_y)),
    "act.softplus": (Region(16.0, _MAX, "pin", _softplus_l, None, 1.0),
                     Region(-_MAX, -106.0, "zero", _softplus_l)),
    "act.log_sigmoid": (Region(-_MAX, -16.0, "pin", _log_sigmoid_minus_l, None, -1.0),
                        Region(106.0, _MAX, "zero", _log_sigmoid_minus_l, side=-1.0)),
    # x/2 is a float32 only for |x| >= 2^-125: the subnormal x take the general path
    "act.silu": (Region(2.0 ** -125, 2.0 ** -28, "pin", _silu_near0, None, 1.0, scale=0.5),
                 Region(-2.0 ** -28, -2.0 ** -125, "pin", _silu_near0, None, 1.0, scale=0.5),
                 Region(20.0, _MAX, "pin", _silu_big, None, -1.0),
                 Region(-_MAX, -112.0, "zero", _silu_y, side=-1.0)),
    "act.silu_grad": (Region(_SUB, 2.0 ** -30, "pin", _silu_grad_near0, 0.5, 1.0),
                      Region(-2.0 ** -30, -_SUB, "pin", _silu_grad_near0, 0.5, -1.0),
                      Region(24.0, _MAX, "pin", _silu_grad_big, 1.0, 1.0),
                      Region(-_MAX, -112.0, "zero", _silu_grad_y, side=-1.0)),
}


def _select(x: np.ndarray, lo: float, hi: float):
    """The elements of x in [lo, hi]: a slice when they are consecutive (a sweep chunk), else
    an index array; None when there are none."""
    idx = np.flatnonzero((x >= lo) & (x <= hi))
    if not idx.size:
        return None
    if idx[-1] - idx[0] + 1 == idx.size:
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


def _fill(r: Region, xs: np.ndarray, out: dict, at, todo: np.ndarray) -> None:
    """Write region r's results for inputs xs at positions ``at``; clear todo where its
    criterion holds (the others stay for the general path)."""
    arg = -xs if r.negate else xs
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        v, e = r.part(arg)
        if r.kind == "pin":
            b = r.scale * arg if r.base is None else np.full_like(xs, r.base)
            if r.negate and r.base is None:
                raise ValueError("a mirrored pin needs a constant base")
            ab = np.abs(b)
            toward0 = np.sign(r.side) != np.sign(b)
            hb = half_spacing(np.where(toward0, ab * (1 - 2.0 ** -30), ab))
            ok = np.abs(v) + MARGIN * e + ABS < hb / 4
            stand = np.where((np.sign(v) == r.side) & (v != 0), v, r.side * STAND_IN)
            vals = (b, stand, b, np.where(stand == v, 0.0, np.abs(v)) + e + ABS, b, True)
        else:
            av = np.abs(v)
            tiny = av < TINY
            ok = (av < ZERO_BELOW) & (tiny | (av > MARGIN * e))
            hi = np.where(v != 0, v, r.side * STAND_IN)
            cr = round32(hi)
            vals = (hi, 0.0, cr, np.where(tiny, 2 * TINY, e), cr, False)
    if not ok.all():
        keep = np.flatnonzero(ok)
        at = np.arange(todo.size)[at][keep]
        vals = tuple(a[keep] if isinstance(a, np.ndarray) else a for a in vals)
    for key, a in zip(("hi", "lo", "cr", "bound", "cast", "pinned"), vals):
        out[key][at] = a
    todo[at] = False


def reference(name: str, x: np.ndarray, fmt: Format = F32, closed: bool = True) -> tuple[Fast, np.ndarray]:
    """The fast reference of ``name`` (an act reference) at float32 values x, and the plain
    kernel value cast to float32 (what a float64-then-cast reference would say; where a
    closed-form region answers, the cast is equal as a number, signed zeros aside).  closed=False:
    the general path at every input (the tests compare the two)."""
    if fmt.name != "float32":
        raise ValueError("the fast reference is for float32; float64 sweeps use the exact path")
    if not conversion_ok():
        raise RuntimeError("float64 -> float32 conversion does not round subnormals correctly in this "
                           "process (flush-to-zero set?): the fast reference cannot be used")
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    out = {"hi": np.empty(n), "lo": np.zeros(n), "cr": np.empty(n), "bound": np.empty(n), "cast": np.empty(n),
           "pinned": np.zeros(n, bool)}
    todo = np.ones(n, bool)
    for r in REGIONS.get(name, ()) if closed else ():
        at = _select(x, r.lo, r.hi)
        if at is not None:
            _fill(r, x[at], out, at, todo)
    exact = np.zeros(n, bool)
    rest = np.flatnonzero(todo)
    if rest.size:
        at = slice(None) if rest.size == n else rest
        xr = x[at]
        ap = KERNELS[name](xr)
        mode, hi, lo, cr, bound = classify(xr, ap, fmt)
        ex = mode == 0
        if ex.any():
            hi[ex], lo[ex], cr[ex] = exact_values(name, xr[ex], fmt)
        with np.errstate(invalid="ignore", over="ignore"):
            cast = round32(ap.y)
        for key, a in zip(("hi", "lo", "cr", "bound", "cast", "pinned"), (hi, lo, cr, bound, cast, mode == 2)):
            out[key][at] = a
        exact[at] = ex
    return Fast(out["hi"], out["lo"], out["cr"], out["bound"], exact, out["pinned"]), out["cast"]


def assumption_error(fn: str, args: np.ndarray) -> float:
    """The largest relative error of NumPy's float64 ``fn`` (exp, log1p, tanh) at args against
    mpmath at 120 bits: the measured side of the EPS_LIBM assumption."""
    ctx = precision.context(120)
    f = {"exp": ctx.exp, "log1p": ctx.log1p, "tanh": ctx.tanh}[fn]
    got = getattr(np, fn)(args)
    worst = 0.0
    for a, g in zip(args.tolist(), got.tolist()):
        t = f(ctx.mpf(a))
        if t != 0 and math.isfinite(g):
            worst = max(worst, float(abs((ctx.mpf(g) - t) / t)))
    return worst
