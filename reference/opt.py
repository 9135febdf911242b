"""Reference functions of the ``opt`` family: gradient-based learning (§6.2, §8.3 as the seeds
use it; seeds 002 and 003): gradient descent, SGD minibatches, momentum (the form of seed 003
and the framework form), Nesterov, exponential learning-rate decay, the L2 penalty, Adam and
AdamW, and the XOR network's gradient.

Each function is f(ctx, *args) on an mpmath context; a state is the list of its parts
(theta, buffer, ...), each a list of exactly representable floats, and the functions return
the exact next state (a list the precision policy rounds componentwise) or its error scale.
"""
from __future__ import annotations


def _m(ctx, v):
    return [ctx.mpf(x) for x in v]


# ---------------------------------------------------------------- SGD, momentum ----
def sgd_parts(ctx, theta, buf, g, lr, momentum, nesterov, wd):
    """The framework form (torch.optim.SGD, optax.sgd): g' = g + wd theta (the coupled L2
    penalty), buf' = mu buf + g', d = g' + mu buf' (Nesterov) or buf' (mu > 0) or g' (mu = 0),
    theta' = theta - lr d.  Returns (theta', buf', magnitudes A = |g| + |wd theta|,
    B = mu |buf| + A, D = A + mu B or B or A)."""
    theta, buf, g = _m(ctx, theta), _m(ctx, buf), _m(ctx, g)
    g1 = [gi + wd * t for gi, t in zip(g, theta)]
    A = [abs(gi) + abs(wd * t) for gi, t in zip(g, theta)]
    if momentum:
        b1 = [momentum * b + gi for b, gi in zip(buf, g1)]
        B = [abs(momentum * b) + a for b, a in zip(buf, A)]
        d = [gi + momentum * b for gi, b in zip(g1, b1)] if nesterov else b1
        D = [a + momentum * b for a, b in zip(A, B)] if nesterov else B
    else:
        b1, B, d, D = buf, [abs(b) for b in buf], g1, A
    return [t - lr * di for t, di in zip(theta, d)], b1, A, B, D


def sgd_step(ctx, theta, buf, g, lr, momentum, nesterov, wd):
    """[theta', buf'] of one framework-form step (flattened: theta' then buf')."""
    t1, b1, *_ = sgd_parts(ctx, theta, buf, g, lr, momentum, nesterov, wd)
    return t1 + b1


def sgd_step_scale(ctx, theta, buf, g, lr, momentum, nesterov, wd):
    """S of the mixed bound: lr (A + B + D) for theta', A + B for buf' (spec/60_opt.toml)."""
    _, _, A, B, D = sgd_parts(ctx, theta, buf, g, lr, momentum, nesterov, wd)
    return [lr * (a + b + d) for a, b, d in zip(A, B, D)] + [a + b for a, b in zip(A, B)]


def momentum_003(ctx, theta, m, g, eta, gamma):
    """Seed 003's form: m' = gamma m + eta g, theta' = theta - m'.  Returns theta' + m'."""
    m1 = [gamma * ctx.mpf(a) + eta * ctx.mpf(b) for a, b in zip(m, g)]
    return [ctx.mpf(t) - a for t, a in zip(theta, m1)] + m1


def momentum_003_scale(ctx, theta, m, g, eta, gamma):
    """S: gamma |m| + eta |g| (the magnitudes summed into m'), for theta' and m' alike."""
    M = [gamma * abs(ctx.mpf(a)) + eta * abs(ctx.mpf(b)) for a, b in zip(m, g)]
    return M + M


def nesterov_003(ctx, theta, m, grad, eta, gamma):
    """Seed 003's Nesterov step: the gradient at the look-ahead point theta - gamma m:
    m' = gamma m + eta grad(theta - gamma m), theta' = theta - m'.  ``grad`` is a function of the
    point (a list).  Returns theta' + m'."""
    look = [ctx.mpf(t) - gamma * ctx.mpf(a) for t, a in zip(theta, m)]
    return momentum_003(ctx, theta, m, grad(look), eta, gamma)


def exp_lr(ctx, lr0, gamma, t):
    """eta_t = gamma^t eta_0 (exponential learning-rate decay)."""
    return ctx.mpf(lr0) * ctx.mpf(gamma) ** int(t)


# ------------------------------------------------------------------- Adam, AdamW ----
def adam_parts(ctx, theta, m, v, g, t, lr, b1, b2, eps, wd, decoupled):
    """Adam (Kingma & Ba 2015, Alg. 1) as torch.optim.Adam/AdamW and optax write it:
    decoupled (AdamW): theta <- theta (1 - lr wd); coupled (Adam + L2): g <- g + wd theta;
    m' = b1 m + (1 - b1) g, v' = b2 v + (1 - b2) g^2, mhat = m' / (1 - b1^t), vhat = v' / (1 - b2^t),
    theta' = theta - lr mhat / (sqrt(vhat) + eps).  Returns (theta', m', v', scales)."""
    theta, m, v, g = _m(ctx, theta), _m(ctx, m), _m(ctx, v), _m(ctx, g)
    t = int(t)
    if decoupled:
        th = [x * (1 - lr * wd) for x in theta]
    else:
        th = theta
        g = [gi + wd * x for gi, x in zip(g, theta)]
    m1 = [b1 * a + (1 - b1) * gi for a, gi in zip(m, g)]
    v1 = [b2 * a + (1 - b2) * gi * gi for a, gi in zip(v, g)]
    M = [b1 * abs(a) + (1 - b1) * abs(gi) for a, gi in zip(m, g)]
    bc1, bc2 = 1 - ctx.mpf(b1) ** t, 1 - ctx.mpf(b2) ** t
    den = [ctx.sqrt(a / bc2) + eps for a in v1]
    step = [lr * a / bc1 / d for a, d in zip(m1, den)]
    out = [x - s for x, s in zip(th, step)]
    s_theta = [abs(x) + abs(y) + lr * mm / bc1 / d + abs(s) + abs(wd * y)
               for x, y, mm, d, s in zip(out, theta, M, den, step)]
    return out, m1, v1, (s_theta, M, v1)


def adam_step(ctx, theta, m, v, g, t, lr, b1, b2, eps, wd, decoupled):
    """[theta', m', v'] of one Adam (decoupled = 0) or AdamW (decoupled = 1) step, flattened."""
    out, m1, v1, _ = adam_parts(ctx, theta, m, v, g, t, lr, b1, b2, eps, wd, decoupled)
    return out + m1 + v1


def adam_step_scale(ctx, theta, m, v, g, t, lr, b1, b2, eps, wd, decoupled):
    """S: |theta'| + |theta| + lr M / (bc1 den) + |step| + |wd theta| for theta', M for m', v' for v'."""
    *_, (s_theta, M, V) = adam_parts(ctx, theta, m, v, g, t, lr, b1, b2, eps, wd, decoupled)
    return s_theta + M + V


# --------------------------------------------------------------- losses, gradients ----
def quadratic(ctx, a, theta):
    """J(theta) = 1/2 sum_i a_i theta_i^2: L-smooth with L = max a_i."""
    return ctx.fsum(ctx.mpf(ai) * ctx.mpf(t) ** 2 for ai, t in zip(a, theta)) / 2


def quadratic_grad(ctx, a, theta):
    """grad J = [a_i theta_i]."""
    return [ctx.mpf(ai) * ctx.mpf(t) for ai, t in zip(a, theta)]


def _net(ctx, X, W1, b1, W2, b2):
    """The 2-2-1 ReLU network: Z = X W1 + b1, H = max(0, Z), y = H W2 + b2 (W2 a column)."""
    Z = [[ctx.fsum(ctx.mpf(x[i]) * W1[i][j] for i in range(len(x))) + b1[j] for j in range(len(b1))] for x in X]
    H = [[z if z > 0 else ctx.zero for z in row] for row in Z]
    y = [ctx.fsum(h * w[0] for h, w in zip(row, W2)) + b2[0] for row in H]
    return Z, H, y


def mlp_mse(ctx, X, Y, W1, b1, W2, b2):
    """J = 1/m sum (f(x) - y)^2 of the network."""
    _, _, y = _net(ctx, X, W1, b1, W2, b2)
    return ctx.fsum((a - b) ** 2 for a, b in zip(y, Y)) / len(Y)


def mlp_grad(ctx, X, Y, W1, b1, W2, b2, absolute=0):
    """[dJ/dW1 (row-major), dJ/db1, dJ/dW2, dJ/db2] by the chain rule written out (seed 003's dense
    layer rules: delta = 2 (y - t) / m; dW2 = H^T delta, db2 = sum delta, dH = delta W2^T,
    dZ = dH [Z > 0], dW1 = X^T dZ, db1 = sum dZ).  With ``absolute`` = 1, the same computation on
    absolute values (the magnitudes the backend sums: the scale S of the gradient's bound)."""
    Z, H, y = _net(ctx, X, W1, b1, W2, b2)
    ab = abs if absolute else (lambda q: q)
    m = len(Y)
    d = [ab(2 * (a - b) / m) for a, b in zip(y, Y)]
    if absolute:
        d = [2 * (abs(a) + abs(b)) / m for a, b in zip(y, Y)]
    n_in, n_h = len(W1), len(b1)
    dW2 = [ctx.fsum(ab(H[r][j]) * d[r] for r in range(m)) for j in range(n_h)]
    db2 = [ctx.fsum(d)]
    dZ = [[d[r] * ab(W2[j][0]) if Z[r][j] > 0 else ctx.zero for j in range(n_h)] for r in range(m)]
    dW1 = [ctx.fsum(ab(ctx.mpf(X[r][i])) * dZ[r][j] for r in range(m)) for i in range(n_in) for j in range(n_h)]
    db1 = [ctx.fsum(dZ[r][j] for r in range(m)) for j in range(n_h)]
    return dW1 + db1 + dW2 + db2


def mlp_grad_scale(ctx, X, Y, W1, b1, W2, b2):
    """S of the gradient's mixed bound: the gradient computed on absolute values."""
    return mlp_grad(ctx, X, Y, W1, b1, W2, b2, absolute=1)


def linear_mse_grad(ctx, X, Y, w, b):
    """d/d[w, b] of 1/m sum (x^T w + b - y)^2: [2/m sum r_i x_i, 2/m sum r_i] (a linear model)."""
    r = [ctx.fsum(ctx.mpf(x) * wi for x, wi in zip(row, w)) + b - y for row, y in zip(X, Y)]
    m = len(Y)
    return [2 * ctx.fsum(ri * row[j] for ri, row in zip(r, X)) / m for j in range(len(w))] + [2 * ctx.fsum(r) / m]


def linear_mse_grad_scale(ctx, X, Y, w, b):
    """S: the same gradient on absolute values, |r_i| replaced by sum |x_ij w_j| + |b| + |y|."""
    r = [ctx.fsum(abs(ctx.mpf(x) * wi) for x, wi in zip(row, w)) + abs(b) + abs(y) for row, y in zip(X, Y)]
    m = len(Y)
    return [2 * ctx.fsum(ri * abs(row[j]) for ri, row in zip(r, X)) / m for j in range(len(w))] + [2 * ctx.fsum(r) / m]
