"""The xor family (spec/40_xor.toml, reference/xor.py): learning XOR, linear models and
universal approximation (§6.1, §6.4.1), as composite checks of fixed constructions
(checks/composites.py): least squares on the four XOR points through the backend's solver,
the composition of dense layers, the ReLU solution with its intermediates, the neuron and the
softmax examples of seed 003, and the ReLU interpolant of sin through the backend's forward pass.
"""
from __future__ import annotations

import math

import numpy as np

from ffnspec.conformance.checks.composites import register
from ffnspec.conformance.machinery import measure
from ffnspec.conformance.machinery.harness import Target
from ffnspec.conformance.machinery.measure import same_exact, two_eta
from ffnspec.conformance.machinery.records import conclude
from ffnspec.conformance.machinery.reproduce import named
from ffnspec.reference import function, tables
from ffnspec.reference import xor as ref
from ffnspec.reference.floatformat import round_array

_A = np.array([[x1, x2, 1.0] for x1, x2 in ref.XOR_X])
_Y = np.array(ref.XOR_Y)
_X = np.array(ref.XOR_X)


def _exact(name: str, problems: list[tuple], fmt):
    return tables.exact_problems(function(name), problems, fmt)


def dense(target: Target, x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The backend's dense layer x W + b (op linear), supervised."""
    return target.apply("linear", x, W, b, shape=(x.shape[0], W.shape[1]))


# ------------------------------------------------------------------ least squares ----
@register("xor_lstsq", fixed=True)
def xor_lstsq(clause, target, record, z):
    fmt = target.fmt
    theta = target.apply("lstsq", _A, _Y, shape=(3,))
    ex = _exact("xor.lstsq", [(_A, _Y)], fmt)
    t = (ex.hi + ex.lo)[0]
    s = np.linalg.svd(_A, compute_uv=False)
    kappa, normA = s[0] / s[-1], s[0]
    r = np.linalg.norm(_A @ t - _Y)
    m, n = _A.shape
    u = fmt.unit_roundoff
    eps = math.sqrt(n) * m * n * u / (1 - m * n * u)
    beta = kappa * eps / (1 - kappa * eps) * (2 * np.linalg.norm(t) + (kappa + 1) * r / normA) + u * np.linalg.norm(t)
    dist = float(np.linalg.norm(theta - t))
    mse = float(_exact("xor.mse_at", [(_A, _Y, theta)], fmt).hi[0, 0])
    ok_mse = 0.25 <= mse <= 0.25 + normA ** 2 * beta ** 2 / m
    err = np.array([dist / beta if ok_mse else max(1.0, dist / beta) + 1])
    record.notes.append(f"lstsq: w = {theta[:2].tolist()}, b = {theta[2]!r}; ||theta - (0, 0, 1/2)|| = {dist:.3g} "
                        f"<= {beta:.3g} (kappa_2(A) = {kappa:.4g}); MSE(theta_hat) = {mse!r}")
    conclude(record, clause, target, err > 1, err, what="the backend's least-squares solution of the XOR problem is not "
             "w = 0, b = 1/2 within the conditioning bound, or its MSE is not 1/4 within it",
             criterion="||theta_hat - (0,0,1/2)||_2 <= kappa eps/(1 - kappa eps)(2||theta|| + (kappa+1)||r||/||A||) + u||theta||",
             reproducer=lambda i: named(target, {"A": _A, "y": _Y}, "b.to_numpy(b.ops.lstsq(A, y)).tolist()"),
             inputs=[np.array([kappa])], got=np.array([dist]), want=np.array([0.0]))


# ------------------------------------------------------------- linear compositions ----
def _int_problems(count: int, seed: int = 11):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        d, h, o = rng.integers(1, 4), rng.integers(1, 5), rng.integers(1, 3)
        yield (rng.integers(-2, 3, (5, d)).astype(float), rng.integers(-2, 3, (d, h)).astype(float),
               rng.integers(-2, 3, h).astype(float), rng.integers(-2, 3, (h, o)).astype(float),
               rng.integers(-2, 3, o).astype(float))


@register("affine_compose", fixed=True)
def affine_compose(clause, target, record, z):
    for x, W1, b1, W2, b2 in _int_problems(12):
        two = dense(target, dense(target, x, W1, b1), W2, b2)
        one = dense(target, x, W1 @ W2, b1 @ W2 + b2)
        want = (x @ W1 + b1) @ W2 + b2   # small integers: exact in float64 and in every format
        ok = same_exact(two, want) & same_exact(one, want)
        conclude(record, clause, target, ~ok, np.where(ok, 0.0, 1.0),
                 what="two dense layers are not bitwise the one layer x (W1 W2) + (b1 W2 + b2) on small integers",
                 criterion="exact on small integers",
                 reproducer=lambda i, x=x, W1=W1, b1=b1, W2=W2, b2=b2: named(
                     target, {"x": x, "W1": W1, "b1": b1, "W2": W2, "b2": b2},
                     "b.to_numpy(b.ops.linear(b.ops.linear(x, W1, b1), W2, b2)).tolist()"),
                 inputs=[np.arange(want.size, dtype=float)], got=two, want=want)


# ------------------------------------------------------------------- the ReLU solution ----
@register("xor_relu_net", fixed=True)
def xor_relu_net(clause, target, record, z):
    fmt = target.fmt
    W, c = np.array(ref.XOR_W), np.array(ref.XOR_C)
    w, b = np.array(ref.XOR_V).reshape(2, 1), np.array([ref.XOR_B])
    Z = dense(target, _X, W, c)
    H = target.apply("relu", Z, shape=Z.shape)
    y = dense(target, H, w, b)
    wantZ = _exact("xor.dense", [(x, W, c) for x in _X], fmt).cr
    wantH = np.maximum(wantZ, 0.0)
    wanty = _exact("xor.relu_net", [(x, W, c, ref.XOR_V, ref.XOR_B) for x in _X], fmt).cr
    got, want = np.concatenate([Z.ravel(), H.ravel(), y.ravel()]), np.concatenate([wantZ.ravel(), wantH.ravel(), wanty.ravel()])
    ok = same_exact(got, want)
    conclude(record, clause, target, ~ok, np.where(ok, 0.0, 1.0),
             what="the XOR network's XW + 1c, its ReLU or its output [0, 1, 1, 0] is not bitwise exact",
             criterion="exact: XW + 1c = [[0,-1],[1,0],[1,0],[2,1]], ReLU, output [0,1,1,0]",
             reproducer=lambda i: named(target, {"X": _X, "W": W, "c": c, "w": w, "b": b},
                                        "b.to_numpy(b.ops.linear(b.ops.relu(b.ops.linear(X, W, c)), w, b)).tolist()"),
             inputs=[np.arange(got.size, dtype=float)], got=got, want=want)


@register("neuron", fixed=True)
def neuron(clause, target, record, z):
    fmt = target.fmt
    g = np.arange(-3.0, 4.0)
    X = np.array([[a, b] for a in g for b in g])
    W, b = np.array([[3.0], [-2.0]]), np.array([1.0])
    y = target.apply("relu", dense(target, X, W, b), shape=(X.shape[0], 1))
    want = _exact("xor.neuron", [(a, b_) for a, b_ in X], fmt).cr
    ok = same_exact(y, want)
    conclude(record, clause, target, ~ok, np.where(ok, 0.0, 1.0),
             what="the neuron max(0, 3 x1 - 2 x2 + 1) is not bitwise exact on the integer grid",
             criterion="exact on small integers", inputs=[X[:, 0], X[:, 1]], got=y, want=want,
             reproducer=lambda i: named(target, {"X": X[i:i + 1], "W": W, "b": b},
                                        "b.to_numpy(b.ops.relu(b.ops.linear(X, W, b))).tolist()"))


@register("softmax_example", fixed=True)
def softmax_example(clause, target, record, z):
    fmt = target.fmt
    row = np.array([[1.0, 2.0, 3.0]])
    y = target.call_reduction("softmax", row)
    bd = measure.limits("out.softmax", target, (row,))
    err, _, _, bad = measure.against(y.reshape(1, -1), bd, fmt, target)
    book = np.array([0.0900, 0.2447, 0.6652])
    exact = (bd.exact.hi + bd.exact.lo).ravel()
    # where the allowance is below the distance of the exact value to the nearest 4-decimal
    # rounding boundary, the backend's value must round to the book's digits too
    margin = np.abs(np.abs(exact * 1e4 - np.floor(exact * 1e4)) - 0.5) * 1e-4
    tight = bd.limit.ravel() < margin
    digits = np.round(y.ravel(), 4) == book
    bad = bad.ravel() | (tight & ~digits)
    conclude(record, clause, target, bad, np.where(bad, np.maximum(err.ravel() / bd.k, 1.0), err.ravel() / bd.k),
             what="softmax([1, 2, 3]) is not [0.0900, 0.2447, 0.6652] within the out.softmax bound",
             criterion="out.softmax's mixed bound; 4-decimal rounding where the bound separates it",
             reproducer=lambda i: named(target, {"z": row}, "b.to_numpy(b.ops.softmax(z)).tolist()"),
             inputs=[row.ravel()], got=y.ravel(), want=exact)


# ---------------------------------------------------------- universal approximation ----
UAT_UNITS = (4, 16, 64, 256)


def _pi_below(fmt) -> float:
    p = float(round_array(np.array(math.pi), fmt))
    return p if p <= math.pi else float(round_array(np.array(math.pi - math.pi * fmt.unit_roundoff), fmt))


@register("uat_interpolant", fixed=True)
def uat_interpolant(clause, target, record, z):
    fmt = target.fmt
    end = _pi_below(fmt)
    rng = np.random.default_rng(6)
    for n in UAT_UNITS:
        bias_ex, c_ex, b0 = (np.array(v, dtype=float) for v in _net_parameters(n, end))
        bias, c = round_array(bias_ex, fmt), round_array(c_ex, fmt)
        b0 = float(round_array(np.array(b0), fmt))
        h = end / n
        x = np.concatenate([(np.arange(n) + 0.5) * h, rng.uniform(0, end, 2 * n)])
        x = np.clip(round_array(x, fmt), 0.0, end)
        H = target.apply("relu", dense(target, x[:, None], np.ones((1, n)), bias), shape=(x.size, n))
        y = dense(target, H, c[:, None], np.array([b0])).ravel()
        probs = [(float(v),) for v in x]
        f = tables.approximate_problems(function("xor.sin_at"), probs)[:, 0]
        interp = tables.approximate_problems(function("xor.interpolant"),
                                             [(float(v), n, 0.0, end) for v in x])[:, 0]
        net = tables.exact_problems(function("xor.net_value"), [(float(v), bias, c, b0) for v in x], fmt)
        S = tables.approximate_problems(function("xor.net_scale"), [(float(v), bias, c, b0) for v in x])[:, 0]
        netv = (net.hi + net.lo)[:, 0]
        k = clause.tolerance.must + clause.tolerance.per_term * n
        interp_bound = float(tables.approximate_problems(function("xor.interpolation_bound"), [(n, 0.0, end)])[0, 0])
        # the float64 evaluation of the bound's own terms errs by a few u_64 of |f| + |I|: added
        slack = 8 * 2.0 ** -53 * (np.abs(f) + np.abs(interp) + np.abs(netv))
        bound = (interp_bound + np.abs(interp - netv) + k * (fmt.unit_roundoff * (np.abs(netv) + S)
                                                             + two_eta(target) * (n + 2)) + slack)
        e = np.abs(y - f)
        err = e / bound
        record.notes.append(f"uat n = {n}: max |f_hat - sin| = {e.max():.3g} (h^2/8 = {interp_bound:.3g}, "
                            f"bound {bound.max():.3g})")
        conclude(record, clause, target, ~(err <= 1), err,
                 what=f"the ReLU network interpolating sin with n = {n} units misses the interpolation plus rounding bound",
                 criterion="|f_hat(x) - sin x| <= h^2/8 max|f''| + |I_n(x) - net(x)| + (3 + n)(u (|net(x)| + S) + eta (n + 2))",
                 reproducer=lambda i, x=x, n=n, bias=bias, c=c, b0=b0: named(
                     target, {"x": x[i:i + 1, None], "W": np.ones((1, n)), "bias": bias, "c": c[:, None],
                              "b0": np.array([b0])},
                     "b.to_numpy(b.ops.linear(b.ops.relu(b.ops.linear(x, W, bias)), c, b0)).tolist()"),
                 inputs=[x, np.full(x.size, float(n))], got=y, want=f)


def _net_parameters(n: int, end: float):
    """(hidden biases -t_k, output weights c_k, output bias) of the interpolant network, in float64
    (RN64 of the exact values; they are rounded once more to the format by the caller)."""
    ex = tables.approximate_problems(function("xor.interpolant_parameters"), [(n, 0.0, end)])[0]
    return ex[:n], ex[n:2 * n], ex[2 * n]
