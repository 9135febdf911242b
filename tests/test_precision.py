"""Independent validation of reference/precision.py: correct rounding of the act references
against python-flint's arb ball arithmetic, Ziv's escalation, and exact outcomes.

arb (Johansson, "Arb: efficient arbitrary-precision midpoint-radius interval arithmetic",
IEEE Trans. Comput. 2017) returns a ball certified to contain the exact value; when both
endpoints round to the same format value, that value is the correct rounding.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from ffnspec.reference import act, precision
from ffnspec.reference.floatformat import FORMATS, all_values, from_ordinal, ordinal, round_array, round_mpf
from ffnspec.reference.precision import GUARD_BITS, evaluate

flint = pytest.importorskip("flint")
arb = flint.arb

F16, BF16, F32, F64 = (FORMATS[n] for n in ("float16", "bfloat16", "float32", "float64"))
ALL = [F16, BF16, F32, F64]
MAX_ARB_PREC = 1 << 15


@pytest.fixture(autouse=True)
def _flint_prec():
    """flint's precision is process-global state: restore it after each test."""
    old = flint.ctx.prec
    yield
    flint.ctx.prec = old


def _sig(z):
    return 1 / (1 + (-z).exp())


def _dsig(z):
    return (z / 2).sech() ** 2 / 4  # sigma'(z) = 1 / (4 cosh^2(z/2))


# Formulas deliberately different from reference/act.py where arb allows; ball arithmetic
# makes any formula rigorous, the precision loop below makes it tight.
ARB = {
    "sigmoid": _sig,
    "softplus": lambda z: z.exp().log1p(),
    "log_sigmoid": lambda z: -(-z).exp().log1p(),
    "tanh": lambda z: z.tanh(),
    "silu": lambda z: z / (1 + (-z).exp()),
    "sigmoid_grad": _dsig,
    "softplus_grad": _sig,
    "log_sigmoid_grad": lambda z: 1 / (1 + z.exp()),
    "tanh_grad": lambda z: z.sech() ** 2,
    "silu_grad": lambda z: _sig(z) + z * _dsig(z),
}

_EXACT = mpmath.MPContext()


def _to_mpf(b):
    """An exact arb (a ball endpoint) as an mpf, no rounding."""
    man, exp = b.man_exp()
    return _EXACT.make_mpf(mpmath.libmp.from_man_exp(int(man), int(exp)))


def _arb_round(name: str, z: float, fmt):
    """(RN_fmt of the exact value, the certifying ball) or None if arb could not decide."""
    prec = 2 * fmt.p + 64
    while prec <= MAX_ARB_PREC:
        flint.ctx.prec = prec
        b = ARB[name](arb(z))
        if b.is_finite():
            lo, hi = round_mpf(_to_mpf(b.lower()), fmt), round_mpf(_to_mpf(b.upper()), fmt)
            if lo == hi and math.copysign(1, lo) == math.copysign(1, hi):
                return lo, b
        prec *= 2
    return None


def _around(fmt, centres, k: int) -> np.ndarray:
    """The grid points within k positions of each centre (thresholds where code switches branches)."""
    c = ordinal(round_array(np.asarray(centres, dtype=np.float64), fmt), fmt)
    idx = (c[:, None] + np.arange(-k, k + 1)[None, :]).ravel()
    top = int(ordinal(np.array([fmt.max_finite]), fmt)[0])
    return from_ordinal(np.clip(idx, -top, top), fmt)


SILU_GRAD_ROOT = -1.2784645427610738  # silu'(z) = 0 (z = -1 - W(e^-1)), refined in a test below


def _inputs(fmt, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = fmt.p
    thresholds = [(p + 1) * math.log(2), -(p + 1) * math.log(2),  # sigma(z) rounds to 1
                  math.log(fmt.max_finite), -math.log(fmt.max_finite),  # exp overflows
                  -math.log(fmt.min_subnormal), math.log(fmt.min_subnormal),
                  15.0, 20.0, 33.0, -15.0, -20.0, -33.0, SILU_GRAD_ROOT, 0.0]
    parts = [_around(fmt, thresholds, 24)]
    if fmt in (F16, BF16):
        v = all_values(fmt)
        parts.append(v[rng.permutation(v.size)[:6000]])  # a random tenth of the 16-bit grid
    else:
        dt = np.float32 if fmt is F32 else np.float64
        nbits = 32 if fmt is F32 else 64
        raw = rng.integers(0, 2 ** nbits, size=2000, dtype=np.uint64).astype(np.uint32 if nbits == 32 else np.uint64)
        with np.errstate(invalid="ignore"):
            v = raw.view(dt).astype(np.float64)
        parts.append(v[np.isfinite(v)])  # whole range: huge, tiny, subnormal magnitudes
        for s in (1.0, 10.0, 100.0):
            parts.append(round_array(rng.standard_normal(500) * s, fmt))
    z = np.unique(np.concatenate(parts))
    return z[z != 0].tolist() + [0.0]  # -0 is the special-value table's business


@pytest.mark.parametrize("name", sorted(ARB))
@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_evaluate_is_correctly_rounded_against_arb(fmt, name):
    f = getattr(act, name)
    undecided, wrong = [], []
    for z in _inputs(fmt, seed=sum(map(ord, name))):
        hi, lo, cr = evaluate(f, (z,), fmt)
        r = _arb_round(name, z, fmt)
        if r is None:
            undecided.append(z)
            continue
        want, ball = r
        if not (cr == want and math.copysign(1, cr) == math.copysign(1, want)):
            wrong.append((z, cr, want))
            continue
        # hi + lo carries the exact value far beyond fmt's precision (at least p + GUARD_BITS
        # bits), so that the ULP measure |y - (hi + lo)| / u is exact to ~2^-GUARD_BITS ulp.
        flint.ctx.prec = max(flint.ctx.prec, 2200)
        err = (arb(hi) + arb(lo) - ball).abs_upper()
        bound = arb(ball.abs_upper()) * arb(2) ** -(fmt.p + GUARD_BITS) + arb(2) ** -1074 + arb(ball.rad()) * 2
        assert err <= bound, (z, hi, lo)
    assert not wrong, f"{fmt.name} {name}: reference differs from arb's certified rounding at {wrong[:5]}"
    assert not undecided, f"{fmt.name} {name}: arb could not decide at {undecided[:5]}"


# ------------------------------------------------------------------- Ziv's strategy ---
def _recording(f):
    """f, plus the list of precisions it was evaluated at."""
    precs = []

    def g(ctx, *args):
        precs.append(ctx.prec)
        return f(ctx, *args)
    return g, precs


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
@pytest.mark.parametrize("side", [1, -1])
def test_ziv_escalates_near_a_midpoint(fmt, side):
    # A value 2^-(p+150) away from the midpoint 1 + 2^-p looks like an exact tie at p+32 and
    # p+64 bits; only more precision decides the side (Ziv, ACM TOMS 17(3), 1991).
    def f(ctx, z):
        return 1 + ctx.ldexp(1, -fmt.p) + side * ctx.ldexp(1, -(fmt.p + 150))

    g, precs = _recording(f)
    hi, lo, cr = evaluate(g, (0.0,), fmt)
    want = 1 + math.ldexp(1.0, 1 - fmt.p) if side > 0 else 1.0
    assert cr == want
    single = round_mpf(f(precision.context(fmt.p + GUARD_BITS), None), fmt)
    assert single == 1.0  # one evaluation at p+32 bits sees the tie and rounds to even: wrong for side=+1
    assert max(precs) > fmt.p + 150  # the loop went as far as needed


def _silu_grad_root() -> float:
    ctx = mpmath.MPContext()
    ctx.prec = 200
    r = ctx.findroot(lambda z: act.silu_grad(ctx, z), SILU_GRAD_ROOT)
    assert abs(r - SILU_GRAD_ROOT) < 1e-15
    return float(r)


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_ziv_at_silu_grad_zero(fmt):
    # sigma(z)(1 + z sigma(-z)) cancels ~p bits next to its zero: the two-precision comparison
    # must see the lost bits and raise the precision where they matter (float64 loses more than
    # GUARD_BITS), yet converge long before MAX_PREC, and agree with arb.
    zs = _around(fmt, [_silu_grad_root()], 3)
    used = []
    for z in zs.tolist():
        g, precs = _recording(act.silu_grad)
        hi, lo, cr = evaluate(g, (z,), fmt)
        used.append(max(precs))  # g reads ctx.prec, which only mpmath has: this is the Ziv loop
        want, _ = _arb_round("silu_grad", z, fmt)
        assert cr == want == evaluate(act.silu_grad, (z,), fmt)[2], z  # and the ball engine agrees
    assert max(used) <= 4 * precision.WORKING_BITS, used
    if fmt is F64:
        assert min(used) > precision.WORKING_BITS + GUARD_BITS, used


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_computed_zero_needs_agreement(fmt):
    # True value t = 3 * 2^-12, computed with relative error 2^-prec except at the higher of
    # the first two precisions, where it cancels to exactly 0 (as a subtraction of nearly
    # equal terms can).  A zero seen at one precision only is not an exact zero: the values
    # must agree at two precisions before the loop stops (Ziv, ACM TOMS 17(3), 1991).
    first_hi = precision.WORKING_BITS + GUARD_BITS  # the higher of mpmath's first two precisions

    def f(ctx, z):
        t = ctx.ldexp(3, -12)
        return t - t if ctx.prec == first_hi else t * (1 + ctx.ldexp(1, -ctx.prec))

    hi, lo, cr = evaluate(f, (0.0,), fmt)
    assert cr == 3 * 2.0 ** -12 and hi == 3 * 2.0 ** -12


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_exact_values_are_exact(fmt):
    # sigma(0) = 1/2, sigma'(0) = 1/4, tanh(0) = 0, tanh'(0) = 1, silu'(0) = 1/2 (GBC §6.3):
    # exact results need no escalation and come back with lo = 0.
    cases = [(act.sigmoid, 0.5), (act.sigmoid_grad, 0.25), (act.tanh, 0.0), (act.silu, 0.0),
             (act.tanh_grad, 1.0), (act.silu_grad, 0.5), (act.softplus_grad, 0.5),
             (act.log_sigmoid_grad, 0.5), (act.bernoulli_p1, 0.5), (act.bernoulli_p0, 0.5)]
    for f, want in cases:
        g, precs = _recording(f)
        assert evaluate(g, (0.0,), fmt) == (want, 0.0, want), f.__name__
        # the mpmath engine's first pair of precisions (these recording functions read ctx.prec,
        # which only mpmath has, so the ball engine hands them to mpmath)
        assert sorted(set(precs)) == [precision.WORKING_BITS, precision.WORKING_BITS + GUARD_BITS], f.__name__


def test_exact_midpoint_terminates_with_ties_to_even():
    # A rational result exactly on a midpoint never separates from it: the loop stops at
    # MAX_PREC and ties go to even (IEEE 754-2019 §4.3.1).
    g, precs = _recording(lambda ctx, z: 1 + ctx.ldexp(1, -11))
    assert evaluate(g, (0.0,), F16) == (1 + 2.0 ** -11, 0.0, 1.0)
    assert max(precs) >= precision.MAX_PREC
    g, _ = _recording(lambda ctx, z: 1 + 3 * ctx.ldexp(1, -11))
    assert evaluate(g, (0.0,), F16)[2] == 1 + 2.0 ** -9


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_special_inputs(fmt):
    # Limits at +-inf (GBC §3.10): sigma(inf) = 1, sigma(-inf) = 0, softplus(inf) = inf; NaN propagates.
    assert evaluate(act.sigmoid, (math.inf,), fmt) == (1.0, 0.0, 1.0)
    assert evaluate(act.sigmoid, (-math.inf,), fmt) == (0.0, 0.0, 0.0)
    assert evaluate(act.softplus, (math.inf,), fmt) == (math.inf, 0.0, math.inf)
    assert all(math.isnan(v) for v in evaluate(act.sigmoid, (math.nan,), fmt)[::2])
