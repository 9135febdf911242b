"""Reference functions of the ``xor`` family: learning XOR, linear models and universal
approximation (§6.1, §6.4.1).

Each function is f(ctx, *args) on an mpmath context; arrays arrive as nested lists of
exactly representable floats.  Book: Goodfellow, Bengio & Courville, *Deep Learning*,
§6.1 (eq. 6.1-6.8), §6.4.1; seeds 001, 002, 003.
"""
from __future__ import annotations

# The four XOR points and their targets (§6.1): the design matrix of the linear model
# f(x) = x^T w + b has the rows [x1, x2, 1].
XOR_X = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0))
XOR_Y = (0.0, 1.0, 1.0, 0.0)
# The ReLU solution of §6.1 (eq. 6.3): W, c, w, b.
XOR_W = ((1.0, 1.0), (1.0, 1.0))
XOR_C = (0.0, -1.0)
XOR_V = (1.0, -2.0)
XOR_B = 0.0


def _solve(ctx, M, r):
    """M^{-1} r by Gaussian elimination with partial pivoting, in ctx arithmetic."""
    n = len(r)
    a = [[ctx.mpf(v) for v in row] + [ctx.mpf(r[i])] for i, row in enumerate(M)]
    for k in range(n):
        p = max(range(k, n), key=lambda i: abs(a[i][k]))
        a[k], a[p] = a[p], a[k]
        for i in range(k + 1, n):
            f = a[i][k] / a[k][k]
            a[i] = [x - f * y for x, y in zip(a[i], a[k])]
    x = [ctx.zero] * n
    for k in reversed(range(n)):
        x[k] = (a[k][n] - ctx.fsum(a[k][j] * x[j] for j in range(k + 1, n))) / a[k][k]
    return x


def lstsq(ctx, A, y):
    """argmin_theta ||A theta - y||^2 = (A^T A)^{-1} A^T y (A of full column rank): the normal
    equations solved exactly (eq. 6.1's least squares; for XOR w = 0, b = 1/2)."""
    n = len(A[0])
    ata = [[ctx.fsum(ctx.mpf(r[i]) * r[j] for r in A) for j in range(n)] for i in range(n)]
    aty = [ctx.fsum(ctx.mpf(r[i]) * t for r, t in zip(A, y)) for i in range(n)]
    return _solve(ctx, ata, aty)


def mse_at(ctx, A, y, theta):
    """J(theta) = 1/m sum_i (a_i^T theta - y_i)^2 (eq. 6.1), exactly."""
    return ctx.fsum((ctx.fsum(ctx.mpf(a) * t for a, t in zip(row, theta)) - yi) ** 2
                    for row, yi in zip(A, y)) / len(A)


def dense(ctx, x, W, b):
    """One row of the dense layer x W + b: [sum_i x_i W_ij + b_j]_j."""
    return [ctx.fsum(ctx.mpf(xi) * W[i][j] for i, xi in enumerate(x)) + b[j] for j in range(len(b))]


def relu_vec(ctx, z):
    """max{0, z} componentwise."""
    return [v if v > 0 else ctx.zero for v in z]


def relu_net(ctx, x, W, c, w, b):
    """f(x) = w^T max{0, W^T x + c} + b (eq. 6.3) for one input row x, with W as the (d, m)
    matrix of the dense layer x W + c."""
    h = relu_vec(ctx, dense(ctx, x, W, c))
    return ctx.fsum(hi * wi for hi, wi in zip(h, w)) + b


def neuron(ctx, x1, x2):
    """The neuron of seed 003: max{0, 3 x1 - 2 x2 + 1} (W = [3, -2], b = 1)."""
    v = 3 * ctx.mpf(x1) - 2 * ctx.mpf(x2) + 1
    return v if v > 0 else ctx.zero


# ---------------------------------------------------------- universal approximation ----
def knots(ctx, n, a, b):
    """n + 1 equally spaced knots t_k = a + k h, h = (b - a) / n."""
    h = (ctx.mpf(b) - a) / n
    return [a + k * h for k in range(n + 1)]


def interpolant(ctx, x, n, a, b):
    """The piecewise-linear interpolant of sin at n + 1 equally spaced knots on [a, b]."""
    n = int(n)
    t = knots(ctx, n, a, b)
    x = ctx.mpf(x)
    k = min(max(int((x - a) / (t[1] - t[0])), 0), n - 1)
    s = (x - t[k]) / (t[k + 1] - t[k])
    return ctx.sin(t[k]) * (1 - s) + ctx.sin(t[k + 1]) * s


def interpolant_net(ctx, n, a, b):
    """The one-hidden-layer ReLU network that is the interpolant exactly in real arithmetic:
    unit k has weight 1 and bias -t_k (k = 0 .. n - 1), output weight c_k = s_k - s_{k-1}
    (s_k the slope of piece k, s_{-1} = 0) and output bias sin(a).  Returns (bias, c)."""
    t = knots(ctx, n, a, b)
    s = [(ctx.sin(t[k + 1]) - ctx.sin(t[k])) / (t[k + 1] - t[k]) for k in range(n)]
    return [-v for v in t[:n]], [s[0]] + [s[k] - s[k - 1] for k in range(1, n)], ctx.sin(t[0])


def net_value(ctx, x, bias, c, b0):
    """sum_k c_k max{0, x + bias_k} + b0: the network with the given (stored) parameters."""
    x = ctx.mpf(x)
    return ctx.fsum(ck * max(x + bk, ctx.zero) for bk, ck in zip(bias, c)) + b0


def net_scale(ctx, x, bias, c, b0):
    """S = sum_k |c_k| |x + bias_k| + |b0|: the magnitudes of the pre-activations weighted by
    their output weights, which bound every product and partial sum of the forward pass."""
    x = ctx.mpf(x)
    return ctx.fsum(abs(ck) * abs(x + bk) for bk, ck in zip(bias, c)) + abs(b0)


def sin_at(ctx, x):
    """The target sin x."""
    return ctx.sin(ctx.mpf(x))


def interpolation_bound(ctx, n, a, b):
    """h^2 / 8 max |f''| for f = sin on [a, b] within [0, pi] (max |sin''| <= 1): the
    linear-interpolation error bound (e.g. Atkinson, An Introduction to Numerical Analysis, §3.2)."""
    h = (ctx.mpf(b) - a) / n
    return h * h / 8


def interpolant_parameters(ctx, n, a, b):
    """interpolant_net flattened: [-t_0 .. -t_{n-1}, c_0 .. c_{n-1}, sin(a)]."""
    bias, c, b0 = interpolant_net(ctx, int(n), a, b)
    return bias + c + [b0]
