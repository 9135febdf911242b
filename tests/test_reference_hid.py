"""The hid reference (ffnspec.reference.hid) is right: derivatives against mpmath.diff away from
kinks, values against python-flint's arb where it applies, exact structure (2^l pieces, routing
weights summing to 1, PReLU slope gradients as sums), and the correct rounding of a slope."""
from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from ffnspec.reference import hid, precision
from ffnspec.reference.floatformat import FORMATS, round_array

CTX = precision.context(200)
POINTS = [-3.5, -1.25, -0.75, -1e-3, 2e-3, 0.5, 0.999, 1.001, 2.5, 40.0]
ALPHAS = [-1.0, 0.0, 0.01, -0.3, 3.7]


def _diff(f, z):
    return CTX.diff(f, CTX.mpf(z))


# Away from kinks each closed-form derivative is the derivative.  [hid.relu.grad] [hid.leaky.grad]
# [hid.rectifier.grad] [hid.abs.grad] [hid.hardtanh.grad]
@pytest.mark.parametrize("z", POINTS)
def test_piecewise_derivatives_match_mpmath_diff(z):
    assert _diff(lambda t: hid.relu(CTX, t), z) == pytest.approx(float(hid.relu_grad(CTX, CTX.mpf(z))), abs=1e-40)
    assert _diff(lambda t: hid.absolute(CTX, t), z) == pytest.approx(float(hid.absolute_grad(CTX, CTX.mpf(z))), abs=1e-40)
    assert _diff(lambda t: hid.hardtanh(CTX, t), z) == pytest.approx(float(hid.hardtanh_grad(CTX, CTX.mpf(z))), abs=1e-40)
    for a in ALPHAS:
        a = CTX.mpf(a)
        got = _diff(lambda t: hid.rectifier(CTX, t, a), z)
        assert abs(got - hid.rectifier_grad(CTX, CTX.mpf(z), a)) < CTX.mpf(2) ** -150


# g(z, alpha) is the book's max(0,z) + alpha min(0,z): alpha = -1 is |z|, alpha = 0 is the ReLU,
# also in the limit z = -inf (0, not 0 * -inf = NaN).  [hid.rectifier] [hid.abs] [hid.relu]
def test_rectifier_special_cases():
    for z in POINTS + [0.0]:
        m = CTX.mpf(z)
        assert hid.rectifier(CTX, m, CTX.mpf(-1)) == abs(m) == hid.absolute(CTX, m)
        assert hid.rectifier(CTX, m, CTX.mpf(0)) == hid.relu(CTX, m)
    assert hid.rectifier(CTX, CTX.mpf("-inf"), CTX.mpf(0)) == 0
    assert hid.rectifier(CTX, CTX.mpf("-inf"), CTX.mpf(-0.5)) == CTX.inf
    assert hid.hardtanh(CTX, CTX.inf) == 1 and hid.hardtanh(CTX, -CTX.inf) == -1


# The slope of a format is alpha rounded once; alpha_hat z then rounds once more, to the correctly
# rounded product (exact in float64 for 16-bit operands).  [hid.leaky] [hid.rectifier]
@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
def test_slope_product_rounds_once(fmt):
    f = FORMATS[fmt]
    ah = float(round_array(np.array([0.01]), f)[0])
    z = np.array([-3.0, -1.5e-3, -250.0, -f.min_subnormal * 7])
    for zi in z:
        _, _, cr = precision.evaluate(hid.rectifier, (zi, ah), f)
        assert cr == float(round_array(np.array([zi * ah]), f)[0])  # zi * ah is exact in float64


# Maxout routes all of the upstream gradient: weights sum to 1 under every allowed tie rule;
# no tie gives the one-hot arg-max.  [hid.maxout.grad] [hid.maxout]
@pytest.mark.parametrize("group", [(1.0, 3.0, 2.0), (3.0, 3.0, 1.0), (2.0, 2.0, 2.0, 2.0), (-1.0, -1.0)])
def test_maxout_route_sums_to_one(group):
    g = [CTX.mpf(v) for v in group]
    assert hid.maxout(CTX, *g) == max(g)
    for rule in ("even", "first", "last"):
        w = hid.maxout_route(CTX, rule, *g)
        assert CTX.fsum(w) == 1 or abs(CTX.fsum(w) - 1) < CTX.mpf(2) ** -190
        assert all(wj == 0 for wj, v in zip(w, g) if v != max(g))
    if group.count(max(group)) == 1:
        assert hid.maxout_route(CTX, "even", *g) == hid.maxout_route(CTX, "first", *g)


# The shared slope's gradient is the sum of min(0, z) g over its uses, and its derivative
# (mpmath.diff in alpha, at fixed z) agrees.  [hid.prelu.grad_alpha]
def test_prelu_grad_alpha_is_the_derivative_of_the_sum():
    z = [CTX.mpf(v) for v in (-2.0, 0.5, -0.25, 3.0, -1.0)]
    g = [CTX.mpf(v) for v in (1.0, -0.5, 2.0, 1.5, -1.0)]

    def loss(a):
        return CTX.fsum(gi * hid.rectifier(CTX, zi, a) for gi, zi in zip(g, z))
    assert abs(CTX.diff(loss, CTX.mpf(0.3)) - hid.prelu_grad_alpha(CTX, g, z)) < CTX.mpf(2) ** -150
    assert hid.prelu_grad_alpha_scale(CTX, g, z) == CTX.fsum(abs(gi * min(zi, 0)) for gi, zi in zip(g, z))


def _rbf_problem():
    x = [[CTX.mpf(v) for v in r] for r in ((0.5, -1.0, 0.25), (1.5, 0.0, -0.5))]
    W = [[CTX.mpf(v) for v in r] for r in ((0.0, 1.0, 0.5), (1.0, -0.5, 0.0), (-0.25, 0.25, 1.0))]
    s = [CTX.mpf(v) for v in (1.0, 0.75, 2.0)]
    g = [[CTX.mpf(v) for v in r] for r in ((1.0, -0.5, 2.0), (0.25, 1.5, -1.0))]
    return x, W, s, g


def _loss(x, W, s, g):
    return CTX.fsum(g[a][i] * hid.rbf(CTX, x[a], W[i], s[i]) for a in range(len(x)) for i in range(len(W)))


# The RBF gradient terms are the derivatives of sum g h with respect to x, W and sigma, and the
# forward-mode terms the directional derivative.  [hid.rbf.grad] [hid.rbf]
def test_rbf_gradients_match_mpmath_diff():
    x, W, s, g = _rbf_problem()
    tol = CTX.mpf(2) ** -120
    for a, j in itertools.product(range(2), range(3)):
        def f(t, a=a, j=j):
            xx = [r[:] for r in x]
            xx[a][j] = t
            return _loss(xx, W, s, g)
        assert abs(CTX.diff(f, x[a][j]) - hid.rbf_grad(CTX, x, W, s, g, "vjp", "x", (a, j))) < tol
    for i, j in itertools.product(range(3), range(3)):
        def f(t, i=i, j=j):
            WW = [r[:] for r in W]
            WW[i][j] = t
            return _loss(x, WW, s, g)
        assert abs(CTX.diff(f, W[i][j]) - hid.rbf_grad(CTX, x, W, s, g, "vjp", "W", (i, j))) < tol
    for i in range(3):
        def f(t, i=i):
            ss = s[:]
            ss[i] = t
            return _loss(x, W, ss, g)
        assert abs(CTX.diff(f, s[i]) - hid.rbf_grad(CTX, x, W, s, g, "vjp", "sigma", (i,))) < tol
    xd = [[CTX.mpf(v) for v in r] for r in ((1.0, 0.5, -1.0), (0.0, 1.0, 0.25))]
    Wd = [[CTX.mpf(v) for v in r] for r in ((0.5, 0.0, 1.0), (-1.0, 0.5, 0.5), (0.25, 0.25, -0.5))]
    sd = [CTX.mpf(v) for v in (0.5, -1.0, 0.25)]
    for a, i in itertools.product(range(2), range(3)):
        def f(t, a=a, i=i):
            return hid.rbf(CTX, [xv + t * dv for xv, dv in zip(x[a], xd[a])],
                           [wv + t * dv for wv, dv in zip(W[i], Wd[i])], s[i] + t * sd[i])
        assert abs(CTX.diff(f, 0) - hid.rbf_grad(CTX, x, W, s, (xd, Wd, sd), "jvp", "h", (a, i))) < tol


# RBF values against arb (an independent engine, certified balls).  [hid.rbf]
def test_rbf_against_arb():
    flint = pytest.importorskip("flint")
    x, W, s, _ = _rbf_problem()
    for a, i in itertools.product(range(2), range(3)):
        q = sum((flint.arb(float(xv)) - flint.arb(float(wv))) ** 2 for xv, wv in zip(x[a], W[i])) / flint.arb(float(s[i])) ** 2
        ball = (-q).exp()
        ref = hid.rbf(CTX, x[a], W[i], s[i])
        assert abs(float(ref) - float(ball.mid())) <= float(ball.rad()) + 1e-300 + abs(float(ref)) * 2.0 ** -100


# The low-rank layer V(Ux) is the product with W = VU (exact rationals).  [hid.lowrank] [hid.lowrank.linear]
def test_lowrank_is_the_product_with_vu():
    x = [Fraction(1, 2), Fraction(-3), Fraction(5, 4)]
    U = [[Fraction(1), Fraction(2), Fraction(-1)], [Fraction(0), Fraction(1, 2), Fraction(3)]]
    V = [[Fraction(2), Fraction(-1)], [Fraction(1, 4), Fraction(1)], [Fraction(-3), Fraction(0)]]
    Wm = [[sum(V[i][l] * U[l][j] for l in range(2)) for j in range(3)] for i in range(3)]
    for i in range(3):
        want = sum(Wm[i][j] * x[j] for j in range(3))
        got = hid.lowrank(CTX, [CTX.mpf(float(v)) for v in x], [[CTX.mpf(float(v)) for v in r] for r in V],
                          [[CTX.mpf(float(v)) for v in r] for r in U], i)
        assert got == CTX.mpf(want.numerator) / want.denominator


# T^l has exactly 2^l linear pieces on [0, 1] with slopes +-2^l (the folding of §6.4.1), and the
# closed-form slope is the derivative inside each piece.  [hid.folding]
@pytest.mark.parametrize("layers", [1, 2, 3, 5])
def test_tent_has_2_to_the_l_pieces(layers):
    n = 1 << (layers + 3)
    xs = [Fraction(j, n) for j in range(n + 1)]

    def tent(x):
        for _ in range(layers):
            x = 1 - abs(1 - 2 * x)
        return x
    ys = [tent(x) for x in xs]
    slopes = [(ys[j + 1] - ys[j]) * n for j in range(n)]
    pieces = 1 + sum(1 for a, b in zip(slopes, slopes[1:]) if a != b)
    assert pieces == 1 << layers and {abs(s) for s in slopes} == {1 << layers}
    for j in range(1, n, 8):
        x = Fraction(j, n) + Fraction(1, 4 * n)
        assert hid.tent(CTX, CTX.mpf(x.numerator) / x.denominator, layers) == CTX.mpf(tent(x).numerator) / tent(x).denominator
        d = _diff(lambda t: hid.tent(CTX, t, layers), float(x))
        assert abs(d - hid.tent_grad(CTX, CTX.mpf(float(x)), layers)) < CTX.mpf(2) ** -100
    assert math.isclose(float(hid.tent(CTX, CTX.mpf(0.5) ** layers, layers)), 1.0)
