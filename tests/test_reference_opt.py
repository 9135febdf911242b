"""Independent validation of reference/opt.py at 300 bits: the momentum forms' equivalence at a
constant rate and difference when it changes, Nesterov's look-ahead identity, Adam versus AdamW at
g = 0, and the network gradient against mpmath.diff."""
from __future__ import annotations

import mpmath
import numpy as np

from ffnspec.reference import opt

PREC = 300


def _ctx():
    c = mpmath.MPContext()
    c.prec = PREC
    return c


G = [[0.5, -1.0, 0.25], [0.75, 0.5, -0.5], [-0.25, 1.5, 1.0], [1.0, -0.75, 0.5]]


def _run_forms(lrs, mu=0.875):
    ctx = _ctx()
    th_f, v = [ctx.mpf(1)] * 3, [ctx.zero] * 3
    th_3, m = [ctx.mpf(1)] * 3, [ctx.zero] * 3
    for lr, g in zip(lrs, G):
        out = opt.sgd_step(ctx, th_f, v, g, lr, mu, 0, 0)
        th_f, v = out[:3], out[3:]
        out = opt.momentum_003(ctx, th_3, m, g, lr, mu)
        th_3, m = out[:3], out[3:]
    return ctx, th_f, th_3


def test_momentum_forms_agree_for_a_constant_rate():
    # m = lr v: the 003 form and the framework form are one sequence.  [opt.momentum.forms]
    ctx, a, b = _run_forms([0.125] * 4)
    assert all(abs(x - y) < ctx.mpf(2) ** -290 for x, y in zip(a, b))


def test_momentum_forms_differ_when_the_rate_changes():
    # They differ by mu (lr_t - lr_{t-1}) v.  [opt.momentum.forms]
    ctx, a, b = _run_forms([0.125, 0.0625, 0.25, 0.125])
    assert max(abs(x - y) for x, y in zip(a, b)) > 0.01


def test_nesterov_framework_form_is_the_lookahead_point():
    # phi = theta - gamma m follows the framework Nesterov step with the gradient at phi.  [opt.nesterov.step]
    ctx = _ctx()
    a = [1.0, 2.0, 7.0]
    grad = lambda p: [ai * pi for ai, pi in zip(a, p)]  # noqa: E731
    eta, gamma = 0.0625, 0.875
    th, m = [ctx.mpf(1.5), ctx.mpf(-2), ctx.mpf(0.75)], [ctx.zero] * 3
    phi, v = list(th), [ctx.zero] * 3
    for _ in range(6):
        out = opt.nesterov_003(ctx, th, m, grad, eta, gamma)
        th, m = out[:3], out[3:]
        out = opt.sgd_step(ctx, phi, v, grad(phi), eta, gamma, 1, 0)
        phi, v = out[:3], out[3:]
        assert all(abs(p - (t - gamma * mm)) < ctx.mpf(2) ** -280 for p, t, mm in zip(phi, th, m))


def test_adamw_is_not_adam_with_l2():
    # At g = 0 from m = v = 0 AdamW shrinks theta by (1 - lr wd); Adam + L2 moves it by about lr sign(theta).  [opt.adamw.step]
    ctx = _ctx()
    th = [1.5, -2.0]
    w = opt.adam_step(ctx, th, [0, 0], [0, 0], [0, 0], 1, 0.0625, 0.875, 0.9921875, 2.0 ** -10, 0.25, 1)
    c = opt.adam_step(ctx, th, [0, 0], [0, 0], [0, 0], 1, 0.0625, 0.875, 0.9921875, 2.0 ** -10, 0.25, 0)
    assert [w[0], w[1]] == [ctx.mpf(1.5) * (1 - 0.0625 * 0.25), ctx.mpf(-2) * (1 - 0.0625 * 0.25)]
    assert abs(c[0] - (1.5 - 0.0625)) < 1e-3 and abs(c[1] - (-2 + 0.0625)) < 1e-3


def test_exp_lr():
    # eta_t = beta^t eta_0.  [opt.lr.exponential]
    assert opt.exp_lr(_ctx(), 0.5, 0.5, 3) == 0.0625


def test_mlp_grad_against_mpmath_diff():
    # The written-out chain rule equals numerical differentiation of the MSE.  [opt.xor.trajectory]
    ctx = _ctx()
    X = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    Y = [0.0, 1.0, 1.0, 0.0]
    W1, b1, W2, b2 = [[0.5, -0.375], [0.625, 0.75]], [0.125, -0.0625], [[0.75], [-0.5]], [0.25]
    flat = [v for r in W1 for v in r] + b1 + [r[0] for r in W2] + b2
    g = opt.mlp_grad(ctx, X, Y, W1, b1, W2, b2)

    def J(*p):
        return opt.mlp_mse(ctx, X, Y, [[p[0], p[1]], [p[2], p[3]]], [p[4], p[5]], [[p[6]], [p[7]]], [p[8]])
    for i in range(len(flat)):
        d = ctx.diff(lambda t: J(*[t if j == i else flat[j] for j in range(len(flat))]), flat[i])
        assert abs(d - g[i]) < ctx.mpf(2) ** -200


def test_linear_mse_grad_against_numpy():
    # 2/m sum r x, 2/m sum r.  [opt.sgd.minibatch]
    ctx = _ctx()
    rng = np.random.default_rng(2)
    X, Y, w = rng.normal(size=(5, 3)), rng.normal(size=5), rng.normal(size=3)
    r = X @ w + 0.5 - Y
    want = np.concatenate([2 * X.T @ r / 5, [2 * r.sum() / 5]])
    got = [float(v) for v in opt.linear_mse_grad(ctx, X.tolist(), Y.tolist(), w.tolist(), 0.5)]
    assert np.allclose(got, want, rtol=1e-13, atol=0)
