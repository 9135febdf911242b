"""Independent validation of reference/act.py: derivatives against numerical differentiation,
identities at high precision, and the sign of the error scales.

Everything runs in private mpmath contexts (never the global ``mp``).
"""
from __future__ import annotations

import inspect

import mpmath
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ffnspec.reference import act

PREC = 300          # identities: reference functions evaluated at this precision
SLACK = 20          # residuals below 2^-(PREC - SLACK) of the terms' magnitude
SETTINGS = settings(deadline=None, derandomize=True, database=None, max_examples=150)

FUNCS = {n: f for n, f in inspect.getmembers(act, inspect.isfunction) if f.__module__ == act.__name__}
GRADS = sorted(n for n in FUNCS if n.endswith("_grad"))
SCALES = sorted(n for n in FUNCS if n.endswith("_scale"))

_rng = np.random.default_rng(20240607)
POINTS = sorted({0.0, 5e-324, 1e-300, 1e-20, 0.1, 0.5, 1.0, 1.2784645427610738, 2.0, 5.0,
                 15.5, 20.0, 33.0, 40.0, 50.0, 100.0, 300.0, 700.0, 1500.0, 1e4, 1e6, 1e15,
                 1e300, 1.7976931348623157e308}
                | {float(v) for v in _rng.standard_normal(25) * 30})
POINTS = sorted(set(POINTS) | {-z for z in POINTS})


def _ctx(prec: int):
    c = mpmath.MPContext()
    c.prec = prec
    return c


# ====================================================================== derivatives ===
def test_every_grad_has_a_primitive():
    assert GRADS, "no *_grad reference functions found"
    for g in GRADS:
        assert g[: -len("_grad")] in FUNCS, g


@pytest.mark.parametrize("gname", GRADS)
def test_grad_matches_numerical_derivative(gname):
    # A closed-form derivative must equal the limit of the central difference of its primitive
    # (mpmath.diff, Richardson-free central difference with error O(h^2); Fornberg 1988).
    f, g = FUNCS[gname[: -len("_grad")]], FUNCS[gname]
    checked = 0
    for z in POINTS:
        probe = _ctx(400)
        fz, gz = f(probe, probe.mpf(z)), g(probe, probe.mpf(z))
        # A difference quotient loses log2|f/f'| bits, and z + h needs log2|z| more.
        extra = max(0, int(probe.mag(fz)) - int(probe.mag(gz))) if fz and gz else 0
        if extra > 4000:  # e.g. sigma'(2000) = e^-2000 next to sigma = 1: too costly, skipped
            continue
        prec = 200 + extra + (max(0, int(probe.mag(z))) if z else 0)
        ctx = _ctx(prec)
        num = ctx.diff(lambda t: f(ctx, t), ctx.mpf(z), h=ctx.ldexp(1, -210))
        ref = g(ctx, ctx.mpf(z))
        assert abs(num - ref) <= ctx.ldexp(abs(ref), -150), (gname, z, ref, num)
        checked += 1
    assert checked >= 0.8 * len(POINTS)


@pytest.mark.parametrize("sname", SCALES)
def test_error_scales_are_non_negative(sname):
    # Error scales S(z) enter bounds k u (|g| + S): a negative S would tighten them (design:
    # "Tolerances come from analysis").
    s = FUNCS[sname]
    ctx = _ctx(200)
    for z in POINTS:
        v = s(ctx, ctx.mpf(z))
        assert v >= 0 and ctx.isfinite(v), (sname, z, v)


# ======================================================================= identities ===
class Id:
    """Reference functions at PREC bits; residuals summed exactly enough in a wider context."""

    def __init__(self):
        self.c = _ctx(PREC)
        self.wide = _ctx(4 * PREC)

    def __getattr__(self, name):
        f = FUNCS[name]
        return lambda *a: f(self.c, *[self.c.mpf(x) for x in a])

    def zero(self, *terms, extra=0):
        """sum(terms) == 0 up to 2^-(PREC-SLACK) (sum |terms| + extra); extra covers a term's
        conditioning (e.g. log near 1)."""
        w = self.wide
        r = abs(w.fsum([w.mpf(t) for t in terms]))
        scale = w.fsum([abs(w.mpf(t)) for t in terms]) + extra
        return r <= w.ldexp(scale, SLACK - PREC), (r, scale)


finite = st.floats(allow_nan=False, allow_infinity=False)


def _identities(z: float):
    R = Id()
    c = R.c
    zz = c.mpf(z)
    s, sm = R.sigmoid(z), R.sigmoid(-z)
    yield "1 - sigma(z) = sigma(-z)  (GBC eq. 3.33 ff.)", R.zero(1, -s, -sm)
    yield "sigma' = sigma(z) sigma(-z)", R.zero(R.sigmoid_grad(z), -s * sm)
    yield "sigma' = sigma (1 - sigma)", R.zero(R.sigmoid_grad(z), -s, s * s)
    yield "zeta(z) - zeta(-z) = z  (GBC eq. 3.41)", R.zero(R.softplus(z), -R.softplus(-z), -zz)
    yield "log sigma(z) = -zeta(-z)  (GBC eq. 3.40 ff.)", R.zero(c.log(s), R.softplus(-z), extra=1)
    yield "log_sigmoid(z) = -zeta(-z)", R.zero(R.log_sigmoid(z), R.softplus(-z))
    yield "zeta(z) = logaddexp(0, z)", R.zero(R.softplus(z), -R.logaddexp(0.0, z))
    d = R.wide.mpf(R.softplus(z)) - max(R.wide.mpf(z), 0)
    yield "0 <= zeta(z) - max(0, z)", (d >= 0, d)
    yield "zeta(z) - max(0, z) <= log 2", (d <= R.wide.ln2 * (1 + R.wide.ldexp(1, SLACK - PREC)), d)
    if abs(z) <= 8e307:  # 2z stays finite
        yield "tanh(z) = 2 sigma(2z) - 1", R.zero(R.tanh(z), -2 * R.sigmoid(2 * z), 1)
    t = R.tanh(z)
    yield "tanh' = 1 - tanh^2", R.zero(R.tanh_grad(z), -1, t * t)
    p1, p0 = R.bernoulli_p1(z), R.bernoulli_p0(z)
    yield "P(y=1|z) = sigma(z)  (GBC eq. 6.23)", R.zero(p1, -s)
    yield "P(y=0|z) = sigma(-z)", R.zero(p0, -sm)
    yield "P(y=0) + P(y=1) = 1", R.zero(p0, p1, -1)
    yield "sigma' <= 1/4", (R.sigmoid_grad(z) <= c.mpf(0.25) * (1 + c.ldexp(1, SLACK - PREC)), None)
    yield "silu(z) = z sigma(z)", R.zero(R.silu(z), -zz * s)


@pytest.mark.parametrize("z", POINTS)
def test_identities_at_points(z):
    for name, (ok, info) in _identities(z):
        assert ok, (name, z, info)


@SETTINGS
@given(finite)
@example(0.0)
@example(-0.0)
def test_identities_hypothesis(z):
    for name, (ok, info) in _identities(z):
        assert ok, (name, z, info)


def test_sigmoid_grad_quarter_at_zero():
    # sigma'(0) = sigma(0)^2 = 1/4 exactly (GBC §6.2.2.2); sigma'(z) < 1/4 elsewhere.
    for prec in (24, 53, 300):
        c = _ctx(prec)
        assert act.sigmoid_grad(c, c.mpf(0)) == c.mpf(0.25)
    c = _ctx(PREC)
    for z in POINTS:
        if z != 0 and abs(z) > 1e-50:
            assert act.sigmoid_grad(c, c.mpf(z)) < 0.25, z
