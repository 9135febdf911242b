"""The bp reference checked independently: the symbol-to-symbol derivatives of reference/bp.py
against mpmath.diff and closed forms, the recursive (grad_table) form against the explicit sum
over paths, and the running error bound against measured errors of float64 evaluations."""
from __future__ import annotations

import mpmath
import numpy as np
import pytest

from ffnspec.conformance import bp as programs
from ffnspec.reference import bp, precision

CTX = precision.context(200)


def _f(spec, *inputs):
    return [float(v) for v in bp.program(CTX, spec, "value", *inputs)]


# The worked graph's gradient is the closed form (1/x1 + x2, x1 - cos x2) and mpmath.diff's.  [bp.worked.f]
@pytest.mark.parametrize("x1,x2", [(0.5, -1.25), (3.0, 2.0), (1.0, 0.0)])
def test_worked_f_gradient(x1, x2):
    spec = programs.spec_of([(), ()], [("log", (0,)), ("mul", (0, 1)), ("sin", (1,)), ("add", (2, 3)), ("sub", (5, 4))])
    g = bp.program(CTX, spec, "vjp", x1, x2, 1.0)
    closed = bp.worked_f_grad(CTX, CTX.mpf(x1), CTX.mpf(x2))
    with mpmath.workdps(50):
        f = lambda a, b: mpmath.log(a) + a * b - mpmath.sin(b)  # noqa: E731
        d = [mpmath.diff(f, (x1, x2), (1, 0)), mpmath.diff(f, (x1, x2), (0, 1))]
    for a, b, c in zip(g, closed, d):
        assert abs(a - b) < 1e-50 and abs(a - c) < 1e-40


# The logistic-regression gradient w - lam y sigma(-y w.x) x, also by mpmath.diff.  [bp.worked.logreg]
def test_logreg_gradient():
    w, x, y, lam = [0.5, -1.0, 0.25, 2.0], [1.0, 0.5, -2.0, 0.125], -1.0, 0.75
    spec = programs.logreg_spec(4)
    g = bp.program(CTX, spec, "vjp", np.array(w), np.array(x), np.array(y), np.array(lam), np.array(0.5), 1.0)[:4]
    closed = bp.logreg_grad(CTX, [CTX.mpf(v) for v in w], [CTX.mpf(v) for v in x], CTX.mpf(y), CTX.mpf(lam))
    with mpmath.workdps(50):
        def L(*ws):
            s = sum(a * b for a, b in zip(ws, x))
            return sum(a * a for a in ws) / 2 - lam * mpmath.log(1 / (1 + mpmath.exp(-y * s)))
        for i in range(4):
            d = mpmath.diff(L, tuple(w), tuple(int(j == i) for j in range(4)))
            assert abs(g[i] - d) < 1e-40 and abs(g[i] - closed[i]) < 1e-50


# Dense-layer rules: the graph engine gives delta^T h, sum delta, delta W^T.  [bp.dense.grad_w] [bp.dense.grad_b] [bp.dense.grad_h]
def test_dense_rules_closed_form():
    for (N, d, m), spec, (h, W, b), delta in programs._dense_problems():
        g = bp.program(CTX, spec, "vjp", h, W, b, delta)
        dW, db, dh = bp.dense_grads(CTX, h.tolist(), W.T.tolist(), b.tolist(), delta.tolist())
        want = [v for row in dh for v in row] + [v for row in np.array(dW, dtype=object).T.tolist() for v in row] + db
        assert all(abs(a - c) == 0 for a, c in zip(g, want))


# sigma'', tanh'', softplus'' from the hvp graph equal the closed forms and mpmath.diff.  [bp.second]
@pytest.mark.parametrize("f,closed,mp", [("sigmoid", bp.sigmoid_second, lambda z: 1 / (1 + mpmath.exp(-z))),
                                         ("tanh", bp.tanh_second, mpmath.tanh),
                                         ("softplus", bp.softplus_second, lambda z: mpmath.log(1 + mpmath.exp(z)))])
def test_second_derivatives(f, closed, mp):
    z = np.array([-6.0, -0.5, 0.0, 0.75, 9.0])
    spec = programs.spec_of([z.shape], [(f, (0,)), ("sum", (1,), {"axis": None})])
    h = bp.program(CTX, spec, "hvp", z, np.ones_like(z))
    with mpmath.workdps(60):
        for zi, hi in zip(z, h):
            assert abs(hi - closed(CTX, CTX.mpf(zi))) < 1e-50
            assert abs(hi - mpmath.diff(mp, zi, 2)) < 1e-40


# The vanishing gradient is the product of the sigma' factors, at most 4^-l.  [bp.vanishing]
@pytest.mark.parametrize("depth", [1, 5, 64])
def test_vanishing_product(depth):
    x = np.array([0.0, 2.0, -4.0])
    g = bp.program(CTX, programs.sigmoid_chain(depth, 3), "vjp", x, np.ones(3))
    for xi, gi in zip(x, g):
        assert abs(gi - bp.sigmoid_chain_grad(CTX, CTX.mpf(xi), depth)) <= 1e-50 * abs(gi)
        assert gi <= CTX.mpf(4) ** -depth


def _paths(nodes, src, dst):
    """Every path src -> dst in the scalar graph (edges parent -> node)."""
    kids = {}
    for n in nodes:
        for p in {a.id: a for a in n.args}.values():  # a repeated argument: one edge, partials summed
            kids.setdefault(p.id, []).append(n)
    def walk(i):
        if i == dst:
            yield [i]
            return
        for k in kids.get(i, []):
            for rest in walk(k.id):
                yield [i] + rest
    yield from walk(src)


# The recursive (grad_table) form equals the path-sum form, d u_n / d u_j = sum over paths of
# products of partials (002), on the fan-out programs.  [bp.fanout]
@pytest.mark.parametrize("k", range(3))
def test_recursive_equals_path_sum(k):
    spec, make, _ = programs._FANOUT[k]
    inputs = make()
    ctx = precision.context(113)
    g, ins, out = bp.trace(ctx, spec, inputs)
    f = [float(n.value) for n in g.nodes]
    y = out.ravel()[0]
    grad = bp.program(ctx, spec, "vjp", *inputs, np.eye(1, out.size).reshape(out.shape))
    byid = {n.id: n for n in g.nodes}
    for x, gx in zip(ins[0].ravel(), grad):
        total = 0.0
        for path in _paths(g.nodes, x.id, y.id):
            prod = 1.0
            for a, b in zip(path, path[1:]):
                node = byid[b]
                prod *= sum(d for p, d in zip(node.args, bp._partials(node, f)) if p.id == a)
            total += prod
        assert total == pytest.approx(float(gx), rel=1e-12, abs=1e-300)


# The running error bound holds for float64 and float32 evaluations of the graph's own
# recursion (NumPy's engine), with room: measured errors are below the first-order bound.  [bp.graph]
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_running_bound_covers_the_engine(dtype):
    from ffnspec.adapters.numpy_backend import NumpyBackend
    from ffnspec.reference.floatformat import get_format
    b = NumpyBackend()
    u = get_format(dtype).unit_roundoff
    dims = (4, 3, 4, 3)
    inputs = programs.mlp_inputs(120, *dims)
    spec = programs.mlp_spec(*dims)
    _, grads = b.vjp(programs.GraphProgram(spec), [np.asarray(a, dtype=dtype) for a in inputs], np.asarray(1.0, dtype))
    got = np.concatenate([np.ravel(g) for g in grads]).astype(np.float64)
    exact = np.array([float(v) for v in bp.program(CTX, spec, "vjp", *inputs, np.array(1.0))])
    B = bp.program_bound(precision.context(113), spec, "vjp", *inputs, np.array(1.0))
    assert np.all(np.abs(got - exact) <= u * B["S_u"] + 2.0 ** -1074 * B["S_eta"])


# The bound is derived, not tuned: a program of one correctly rounded op has S_u = |value|.  [bp.graph]
def test_bound_of_one_rounding():
    spec = programs.spec_of([(2,), (2,)], [("mul", (0, 1))])
    B = bp.program_bound(precision.context(113), spec, "value", np.array([1.5, -3.0]), np.array([0.1, 7.0]))
    assert np.allclose(B["S_u"], [0.15, 21.0]) and np.allclose(B["S_eta"], [1.0, 1.0])


# The matrix-chain cost formula against multiply-adds counted one by one, multiplying the chain
# from either end; and the exact chain Jacobian against NumPy's integer product.  [bp.bracketing]
@pytest.mark.parametrize("dims", [(1, 1), (3, 1, 4), (2, 5, 3, 1), (6, 2, 4, 4, 1), (1, 6, 6, 6, 6)])
def test_chain_cost_counts_scalar_products(dims):
    rng = np.random.default_rng(len(dims))
    mats = [rng.integers(-1, 2, size=(dims[i], dims[i + 1])) for i in range(len(dims) - 1)]

    def product(a, b, count):
        out = [[0] * len(b[0]) for _ in a]
        for i in range(len(a)):
            for j in range(len(b[0])):
                for k in range(len(b)):
                    out[i][j] += a[i][k] * b[k][j]
                    count[0] += 1
        return out
    for order in ("left", "right"):
        count, ms = [0], [m.tolist() for m in mats]
        acc = ms[0] if order == "left" else ms[-1]
        for m in (ms[1:] if order == "left" else ms[-2::-1]):
            acc = product(acc, m, count) if order == "left" else product(m, acc, count)
        assert count[0] == bp.chain_cost(dims, order)
        assert np.array_equal(np.array(acc), np.linalg.multi_dot(mats) if len(mats) > 1 else mats[0])
    J = bp.chain_jacobian(CTX, *mats[::-1])  # the factors A_1 = last, ..., A_L = first
    assert np.array_equal(np.array(J, dtype=float), np.linalg.multi_dot(mats) if len(mats) > 1 else mats[0])


# The engine's counts of a Jacobian through elementwise stages too: every sweep charges each
# factor d_i d_(i-1) and each tanh stage d_i (one per entry of the partial's product), so the
# m reverse and n forward sweeps cost m c and n c with the same c; constants are never traced.  [bp.bracketing]
def test_engine_counts_the_sweeps_of_a_chain_with_units():
    from ffnspec.adapters import backprop, load_backend
    b = load_backend("numpy")
    dims = (5, 3, 4, 2)
    rng = np.random.default_rng(0)
    mats = [rng.integers(-1, 2, size=(dims[i + 1], dims[i])).astype(float) for i in range(3)]

    def fn(ops, x, *ms):
        for A in ms:
            x = ops.tanh(ops.matmul(A, x))
        return x
    c = sum(dims[i] * dims[i + 1] + dims[i + 1] for i in range(3))
    x = rng.standard_normal((dims[0], 1))
    assert backprop.count_jacobian(np, b.ops, fn, [x, *mats], "vjp") == {"sweeps": 2, "madds": 2 * c}
    assert backprop.count_jacobian(np, b.ops, fn, [x, *mats], "jvp") == {"sweeps": 5, "madds": 5 * c}
