"""Independent validation of reference/xor.py at 300 bits: the XOR least-squares solution against
the closed form (0, 0, 1/2) and the SVD pseudo-inverse, the ReLU solution's values, the softmax
example's digits, and the universal-approximation network equal to the interpolant."""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from ffnspec.reference import xor

PREC = 300


def _ctx():
    c = mpmath.MPContext()
    c.prec = PREC
    return c


A = [[x1, x2, 1.0] for x1, x2 in xor.XOR_X]


def test_lstsq_is_the_closed_form():
    # The normal equations of XOR give w = 0, b = 1/2 exactly, MSE 1/4 (§6.1, eq. 6.1-6.2).  [xor.lstsq]
    ctx = _ctx()
    theta = xor.lstsq(ctx, A, xor.XOR_Y)
    assert [abs(t - v) < ctx.mpf(2) ** -290 for t, v in zip(theta, (0, 0, 0.5))] == [True] * 3
    assert abs(xor.mse_at(ctx, A, xor.XOR_Y, theta) - ctx.mpf(1) / 4) < ctx.mpf(2) ** -290
    # and an independent engine: the pseudo-inverse by SVD in float64
    assert np.allclose(np.linalg.pinv(np.array(A)) @ np.array(xor.XOR_Y), [0, 0, 0.5], atol=1e-15, rtol=0)


def test_lstsq_solves_a_random_problem():
    # The elimination is correct beyond the one instance: A^T (A theta - y) = 0.  [xor.lstsq]
    ctx = _ctx()
    rng = np.random.default_rng(1)
    M, y = rng.normal(size=(7, 3)).tolist(), rng.normal(size=7).tolist()
    theta = xor.lstsq(ctx, M, y)
    r = [ctx.fsum(ctx.mpf(a) * t for a, t in zip(row, theta)) - yi for row, yi in zip(M, y)]
    assert all(abs(ctx.fsum(ctx.mpf(row[j]) * ri for row, ri in zip(M, r))) < ctx.mpf(2) ** -280 for j in range(3))


def test_relu_solution_values():
    # The book's network gives [0, 1, 1, 0] and the intermediates of eq. 6.5-6.8.  [xor.relu_net]
    ctx = _ctx()
    assert [xor.relu_net(ctx, x, xor.XOR_W, xor.XOR_C, xor.XOR_V, xor.XOR_B) for x in xor.XOR_X] == [0, 1, 1, 0]
    assert [xor.dense(ctx, x, xor.XOR_W, xor.XOR_C) for x in xor.XOR_X] == [[0, -1], [1, 0], [1, 0], [2, 1]]
    assert xor.neuron(ctx, 1, 0) == 4 and xor.neuron(ctx, 0, 1) == 0  # max(0, 3 - 0 + 1), max(0, -2 + 1)


def test_softmax_example_digits():
    # Seed 003's [1, 2, 3] -> [0.0900, 0.2447, 0.6652].  [xor.softmax_example]
    from ffnspec.reference import out
    a = out.softmax(_ctx(), [1.0, 2.0, 3.0])
    assert [round(float(v), 4) for v in a] == [0.0900, 0.2447, 0.6652]


@pytest.mark.parametrize("n", [4, 16, 64])
def test_network_is_the_interpolant(n):
    # The ReLU network with knots at t_k equals the piecewise-linear interpolant exactly, and the
    # interpolant meets h^2/8 max|f''| (§6.4.1).  [xor.uat]
    ctx = _ctx()
    b = 3.0
    bias, c, b0 = xor.interpolant_net(ctx, n, 0.0, b)
    for x in np.linspace(0, b, 4 * n + 3).tolist():
        net = xor.net_value(ctx, x, bias, c, b0)
        assert abs(net - xor.interpolant(ctx, x, n, 0.0, b)) < ctx.mpf(2) ** -280
        assert abs(net - ctx.sin(x)) <= xor.interpolation_bound(ctx, n, 0.0, b)


def test_interpolation_error_falls_as_h_squared():
    # The error at the midpoints falls by 16 when n grows by 4 (h^2).  [xor.uat]
    ctx = _ctx()
    errs = []
    for n in (4, 16, 64, 256):
        bias, c, b0 = xor.interpolant_net(ctx, n, 0.0, math.pi)
        x = (n // 2 + 0.5) * math.pi / n
        errs.append(float(abs(xor.net_value(ctx, x, bias, c, b0) - ctx.sin(x))))
    assert all(12 < errs[i] / errs[i + 1] < 20 for i in range(3)), errs
