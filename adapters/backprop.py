"""General back-propagation (Goodfellow et al. §6.5.6, Algorithm 6.2/6.6) over an
array namespace, for backends without autodiff (NumPy, SciPy, CuPy, Array API libraries).

Reverse mode records a tape of primitive calls, then walks it backwards building
the grad table: grad[x] += partial(node w.r.t. x) * grad[node].  Forward mode
carries (value, tangent) pairs through the same partials.  Both modes read one
flat table of partial derivatives, one line per elementwise primitive, as in
autograd's numpy_vjps.py.  Each rule is ``(xp, ops, ans, *args) -> partials``:
xp is the array namespace, ops the backend's own (untraced) primitives.

Primitives that are not elementwise (row-wise maps such as softmax, reductions such as
logsumexp and the losses) cannot be written as partials multiplied elementwise; they
have one line each in ``RULES``: a (vjp, jvp) pair that applies the Jacobian to a
cotangent or a tangent directly (e.g. softmax: a * (g - sum(g a))).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ffnspec.adapters import OpTable

# The kink and tie conventions of spec/20_hid.toml [hid.conventions] that the rules below
# implement: all the preferred ones.  An adapter differentiating with this engine declares them.
CONVENTIONS = {"relu_grad_at_0": "0", "relu_at_minus_0": "+0", "leaky_relu_grad_at_0": "alpha",
               "prelu_grad_at_0": "alpha", "abs_grad_at_0": "0", "hardtanh_grad_at_1": "0",
               "hardtanh_grad_at_minus_1": "0", "maxout_ties": "even"}


# ---- the namespace: NumPy-like (NumPy, CuPy: array methods, errstate) or the Array API
# standard (array-api-strict: functions only, no errstate) ----------------------------------
def _astype(xp, a, dtype):
    """a in dtype: the array's own method where it has one, else the standard's xp.astype."""
    return a.astype(dtype) if hasattr(a, "astype") else xp.astype(a, dtype)


def _reshape(xp, a, shape):
    return a.reshape(shape) if hasattr(a, "reshape") else xp.reshape(a, shape)


def _mT(xp, a):
    """The last two axes swapped."""
    return xp.swapaxes(a, -1, -2) if hasattr(xp, "swapaxes") else xp.matrix_transpose(a)


def _spread(xp, g, z):
    """A scalar cotangent g over the rows of z."""
    return xp.broadcast_to(xp.asarray(g), z.shape[:-1])


def _quiet(xp):
    """Floating-point warnings off: the namespace's errstate, else NumPy's (CuPy and the
    standard have none; array-api-strict computes with NumPy underneath)."""
    errstate = getattr(xp, "errstate", np.errstate)
    return errstate(all="ignore") if callable(errstate) else contextlib.nullcontext()



def _silu_partial(xp, ops, ans, z):
    s = ops.sigmoid(z)
    g = s * (1 + z * ops.sigmoid(-z))
    return (xp.where(xp.isinf(z), _astype(xp, z > 0, g.dtype), g),)  # limits 0 and 1


def _sigmoid_partial(xp, ops, z):
    """sigma'(z) = sigma(z) sigma(-z), not ans (1 - ans), which is 0 once sigma rounds to 1
    ([act.sigmoid.grad] accuracy); clamped to the exact bound 1/4 ([act.sigmoid.grad.bound]),
    which the rounded product may pass by an ULP near z = 0."""
    return xp.minimum(ops.sigmoid(z) * ops.sigmoid(-z), 0.25)


def _sech2(xp, ops, ans, z):
    """tanh'(z) = sech^2 z = 4 sigma(2z) sigma(-2z), relatively accurate where 1 - tanh^2 z
    cancels (|z| large: [act.tanh.grad] accuracy); 2z overflows only where sech^2 z underflows."""
    if "sigmoid" not in ops:
        return (1 - ans * ans,)
    with _quiet(xp):
        two_z = z + z
    return (xp.minimum(4 * (ops.sigmoid(two_z) * ops.sigmoid(-two_z)), 1),)  # rounding may pass sech^2 <= 1


PARTIALS: dict[str, Callable[..., tuple]] = {
    "neg":         lambda xp, ops, ans, z: (-xp.ones_like(z),),
    "exp":         lambda xp, ops, ans, z: (ans,),
    "log1p":       lambda xp, ops, ans, z: (1 / (1 + z),),
    "add":         lambda xp, ops, ans, x, y: (xp.ones_like(x), xp.ones_like(y)),
    "sub":         lambda xp, ops, ans, x, y: (xp.ones_like(x), -xp.ones_like(y)),
    "mul":         lambda xp, ops, ans, x, y: (y, x),
    "sigmoid":     lambda xp, ops, ans, z: (_sigmoid_partial(xp, ops, z),),
    "softplus":    lambda xp, ops, ans, z: (ops.sigmoid(z),),
    "log_sigmoid": lambda xp, ops, ans, z: (ops.sigmoid(-z),),
    "tanh":        _sech2,
    "silu":        _silu_partial,
    "logaddexp":   lambda xp, ops, ans, x, y: (xp.exp(x - ans), xp.exp(y - ans)),
}


# ---- the out family's elementwise losses (several arguments; labels/targets get partials too)
def _bce_dz(ops, z, y, w):
    """d/dz [w y zeta(-z) + (1-y) zeta(z)] = (1-y) sigma(z) - w y sigma(-z): one term vanishes for y in {0, 1}."""
    return (1 - y) * ops.sigmoid(z) - w * y * ops.sigmoid(-z)


PARTIALS.update({
    "bce":            lambda xp, ops, ans, z, y: (_bce_dz(ops, z, y, 1), -z),
    "bce_pos_weight": lambda xp, ops, ans, z, y, w: (_bce_dz(ops, z, y, w), w * ops.softplus(-z) - ops.softplus(z),
                                                     y * ops.softplus(-z)),
    "bce_prob":       lambda xp, ops, ans, a, y: ((1 - y) / (1 - a) - y / a, xp.log1p(-a) - xp.log(a)),
    "half_sq_error":  lambda xp, ops, ans, yh, y: (yh - y, y - yh),
    "gaussian_nll":   lambda xp, ops, ans, mu, y, b: (b * (mu - y), b * (y - mu), 0.5 * (y - mu) ** 2 - 0.5 / b),
})


# ---- non-elementwise primitives (the out family: row-wise maps over the last axis,
# reductions, losses).  One (vjp, jvp) pair per primitive:
#   vjp(xp, ops, ans, g, *args)  -> one cotangent per arg (None: not differentiable, e.g. labels)
#   jvp(xp, ops, ans, ts, *args) -> the output tangent; ts[i] is None where arg i carries none
# For 16-bit arrays the engine evaluates these in float32 and rounds once (the accumulation
# policy of docs/measure.md: sums over a row accumulate in float32).
def _s(xp, a):
    """Sum over the last axis, keeping it (a row reduction broadcast back over the row)."""
    return xp.sum(a, axis=-1, keepdims=True)


def _t(t, like):
    """A missing tangent is a zero tangent."""
    return t if t is not None else like * 0


def _onehot(xp, y, n, dtype):
    return _astype(xp, xp.arange(n) == xp.asarray(y)[..., None], dtype)


def _take(xp, a, y):
    return xp.take_along_axis(a, xp.asarray(y)[..., None], axis=-1)[..., 0]


def _ce_vjp(xp, ops, ans, g, z, y, scale=1.0):
    return (xp.asarray(g)[..., None] * scale * (ops.softmax(z) - _onehot(xp, y, z.shape[-1], z.dtype)), None)


def _ce_jvp(xp, ops, z, y, tz):
    return xp.sum(ops.softmax(z) * tz, axis=-1) - _take(xp, tz, y)


def _mdn_parts(xp, ops, w, mu, beta, y):
    """pi = softmax(w); gamma = responsibilities softmax(log pi + log N(y; mu, 1/beta))."""
    d = xp.asarray(y)[..., None] - mu
    r = ops.log_softmax(w) + 0.5 * xp.log(beta) - 0.5 * beta * d * d
    return ops.softmax(w), ops.softmax(r), d


def _mdn_vjp(xp, ops, ans, g, w, mu, beta, y):
    pi, gam, d = _mdn_parts(xp, ops, w, mu, beta, y)
    g = xp.asarray(g)[..., None]
    return g * (pi - gam), -g * gam * beta * d, g * gam * (0.5 * d * d - 0.5 / beta), xp.sum(g * gam * beta * d, axis=-1)


def _mdn_jvp(xp, ops, ans, ts, w, mu, beta, y):
    pi, gam, d = _mdn_parts(xp, ops, w, mu, beta, y)
    tw, tm, tb = (_t(t, w) for t in ts[:3])
    ty = _t(ts[3], xp.asarray(y))
    return xp.sum((pi - gam) * tw - gam * beta * d * tm + gam * (0.5 * d * d - 0.5 / beta) * tb
                  + gam * beta * d * ty[..., None], axis=-1)


RULES: dict[str, tuple[Callable, Callable]] = {
    "softmax":       (lambda xp, ops, ans, g, z: (ans * (g - _s(xp, g * ans)),),
                      lambda xp, ops, ans, ts, z: ans * (ts[0] - _s(xp, ts[0] * ans))),
    "log_softmax":   (lambda xp, ops, ans, g, z: (g - xp.exp(ans) * _s(xp, g),),
                      lambda xp, ops, ans, ts, z: ts[0] - _s(xp, xp.exp(ans) * ts[0])),
    "logsumexp":     (lambda xp, ops, ans, g, z: (xp.asarray(g)[..., None] * ops.softmax(z),),
                      lambda xp, ops, ans, ts, z: xp.sum(ops.softmax(z) * ts[0], axis=-1)),
    "cross_entropy": (lambda xp, ops, ans, g, z, y: _ce_vjp(xp, ops, ans, g, z, y),
                      lambda xp, ops, ans, ts, z, y: _ce_jvp(xp, ops, z, y, ts[0])),
    "cross_entropy_sum":  (lambda xp, ops, ans, g, z, y: _ce_vjp(xp, ops, ans, _spread(xp, g, z), z, y),
                           lambda xp, ops, ans, ts, z, y: xp.sum(_ce_jvp(xp, ops, z, y, ts[0]))),
    "cross_entropy_mean": (lambda xp, ops, ans, g, z, y: _ce_vjp(xp, ops, ans, _spread(xp, g, z), z, y,
                                                                 1.0 / z[..., 0].size),
                           lambda xp, ops, ans, ts, z, y: xp.mean(_ce_jvp(xp, ops, z, y, ts[0]))),
    "nll":           (lambda xp, ops, ans, g, lp, y: (-xp.asarray(g)[..., None] * _onehot(xp, y, lp.shape[-1], lp.dtype),
                                                      None),
                      lambda xp, ops, ans, ts, lp, y: -_take(xp, ts[0], y)),
    "cross_entropy_soft": (lambda xp, ops, ans, g, z, p: (xp.asarray(g)[..., None] * (ops.softmax(z) * _s(xp, p) - p),
                                                          -xp.asarray(g)[..., None] * ops.log_softmax(z)),
                           lambda xp, ops, ans, ts, z, p: xp.sum((ops.softmax(z) * _s(xp, p) - p) * _t(ts[0], z)
                                                                 - ops.log_softmax(z) * _t(ts[1], p), axis=-1)),
    "kl_div":        (lambda xp, ops, ans, g, z, p: (xp.asarray(g)[..., None] * (ops.softmax(z) * _s(xp, p) - p), None),
                      lambda xp, ops, ans, ts, z, p: xp.sum((ops.softmax(z) * _s(xp, p) - p) * _t(ts[0], z), axis=-1)),
    "mse":           (lambda xp, ops, ans, g, yh, y: (g * 2 * (yh - y) / yh.size, g * 2 * (y - yh) / yh.size),
                      lambda xp, ops, ans, ts, yh, y: xp.sum(2 * (yh - y) * (_t(ts[0], yh) - _t(ts[1], y))) / yh.size),
    "mae":           (lambda xp, ops, ans, g, yh, y: (g * xp.sign(yh - y) / yh.size, -g * xp.sign(yh - y) / yh.size),
                      lambda xp, ops, ans, ts, yh, y: xp.sum(xp.sign(yh - y) * (_t(ts[0], yh) - _t(ts[1], y))) / yh.size),
    "mdn_nll":       (_mdn_vjp, _mdn_jvp),
    "cov_from_factor": (lambda xp, ops, ans, g, b: ((g + _mT(xp, g)) @ b,),
                        lambda xp, ops, ans, ts, b: ts[0] @ _mT(xp, b) + b @ _mT(xp, ts[0])),
}


# ---- the hid family (hidden units, §6.3).  Elementwise partials: a slope alpha is the value
# of the array's format (alpha_hat); at a kink the partial is the backend's declared
# convention (CONVENTIONS above: relu'(0) = 0, leaky'(0) = alpha, |z|'(0) = 0,
# hardtanh'(+-1) = 0).  In-place variants (name_) read only ans: their argument is overwritten.
def _slope(xp, alpha, like):
    return _astype(xp, xp.asarray(alpha), like.dtype)


PARTIALS.update({
    "relu":        lambda xp, ops, ans, z: (_astype(xp, z > 0, z.dtype),),
    "leaky_relu":  lambda xp, ops, ans, z, alpha=0.01: (xp.where(z > 0, xp.ones_like(z), _slope(xp, alpha, z)),),
    "abs":         lambda xp, ops, ans, z: (xp.sign(z),),
    "hardtanh":    lambda xp, ops, ans, z: (_astype(xp, xp.abs(z) < 1, z.dtype),),
    "copy":        lambda xp, ops, ans, z: (xp.ones_like(z),),
    "relu_":       lambda xp, ops, ans, z: (_astype(xp, ans > 0, ans.dtype),),
    "leaky_relu_": lambda xp, ops, ans, z, alpha=0.01: (xp.where(ans > 0, xp.ones_like(ans), _slope(xp, alpha, ans)),),
    "hardtanh_":   lambda xp, ops, ans, z: (_astype(xp, xp.abs(ans) < 1, ans.dtype),),
})


def _sum_to(xp, a, shape):
    """Sum a broadcast contribution back to the shape of a shared parameter (§6.5.6)."""
    lead = a.ndim - len(shape)
    a = xp.sum(a, axis=tuple(range(lead))) if lead > 0 else a
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and a.shape[i] != 1)
    return xp.sum(a, axis=axes, keepdims=True) if axes else a


def _zt(xp, t, like):
    return xp.zeros_like(like) if t is None else t


def _groups(xp, ans, z):
    """maxout: z as (..., m/k, k), the tied-maximum mask and the tie count t."""
    zg = _reshape(xp, z, ans.shape + (z.shape[-1] // ans.shape[-1],))
    mask = zg == ans[..., None]
    return zg, mask, xp.sum(_astype(xp, mask, xp.float64), axis=-1, keepdims=True)  # as NumPy's int count promotes


def _rbf_parts(xp, x, W, sigma):
    d = x[:, None, :] - W[None, :, :]                     # (N, n, d)
    s2 = sigma * sigma
    return d, s2, xp.sum(d * d, axis=-1) / s2             # q (N, n)


def _rbf_vjp(xp, ops, ans, g, x, W, sigma):
    d, s2, q = _rbf_parts(xp, x, W, sigma)
    gh = (g * ans)[..., None] * 2 * d / s2[None, :, None]  # (N, n, d)
    return -xp.sum(gh, axis=1), xp.sum(gh, axis=0), xp.sum(g * ans * 2 * q / sigma, axis=0)


def _rbf_jvp(xp, ops, ans, ts, x, W, sigma):
    d, s2, q = _rbf_parts(xp, x, W, sigma)
    tx, tW, ts_ = _zt(xp, ts[0], x), _zt(xp, ts[1], W), _zt(xp, ts[2], sigma)
    dd = tx[:, None, :] - tW[None, :, :]
    return ans * (-2 * xp.sum(d * dd, axis=-1) / s2 + 2 * q / sigma * ts_)


RULES.update({
    # PReLU: the slope alpha broadcasts over z (one per channel or one for all); its gradient
    # min(0, z) g is summed over every use.  At z = 0 the z-partial is alpha (prelu_grad_at_0).
    "prelu":   (lambda xp, ops, ans, g, z, a: (xp.where(z > 0, g, g * a), _sum_to(xp, g * xp.minimum(z, 0), a.shape)),
                lambda xp, ops, ans, ts, z, a: xp.where(z > 0, _zt(xp, ts[0], z), a * _zt(xp, ts[0], z))
                + xp.minimum(z, 0) * _zt(xp, ts[1], a)),
    # maxout: ties split evenly (maxout_ties = "even"): each tied maximum gets g / t.
    "maxout":  (lambda xp, ops, ans, g, z: (_reshape(xp, xp.where(_groups(xp, ans, z)[1], (g[..., None] / _groups(xp, ans, z)[2]),
                                                                0), z.shape),),
                lambda xp, ops, ans, ts, z: xp.sum(xp.where(_groups(xp, ans, z)[1], _reshape(
                    xp, ts[0], _groups(xp, ans, z)[0].shape), 0), axis=-1) / _groups(xp, ans, z)[2][..., 0]),
    "rbf":     (_rbf_vjp, _rbf_jvp),
    "lowrank": (lambda xp, ops, ans, g, x, V, U: ((g @ V) @ U, g.T @ (x @ U.T), (g @ V).T @ x),
                lambda xp, ops, ans, ts, x, V, U: (_zt(xp, ts[0], x) @ U.T @ V.T + x @ _zt(xp, ts[2], U).T @ V.T
                                                   + x @ U.T @ _zt(xp, ts[1], V).T)),
})


# The dense layer of the xor, opt and init families: y = x W + b (x (N, d), W (d, m), b (m,)):
# g W^T, x^T g, and g summed over the batch (seed 003's rules); forward mode t_x W + x t_W + t_b.
RULES.update({
    "linear": (lambda xp, ops, ans, g, x, W, b: (g @ _mT(xp, W), _mT(xp, x) @ g, xp.sum(g, axis=0)),
               lambda xp, ops, ans, ts, x, W, b: _zt(xp, ts[0], x) @ W + x @ _zt(xp, ts[1], W) + _zt(xp, ts[2], b)),
})


class _Node:
    __slots__ = ("value", "parents", "rule")

    def __init__(self, value, parents, rule=None):
        self.value = value
        self.parents = parents  # [(parent node, partial array)]; partial None under a RULES rule
        self.rule = rule        # (name, argument values, traced flags) for RULES primitives


def _traced_ops(xp, ops: OpTable, tape: list) -> OpTable:
    def wrap(name: str, f: Callable) -> Callable:
        rule = PARTIALS[name]

        def op(*args, **params):  # params: an op's keyword parameters (e.g. a slope alpha)
            vals = [a.value if isinstance(a, _Node) else a for a in args]
            ans = f(*vals, **params)
            with _quiet(xp):
                partials = rule(xp, ops, ans, *vals, **params)
            parents = [(a, p) for a, p in zip(args, partials) if isinstance(a, _Node)]
            node = _Node(ans, parents)
            tape.append(node)
            return node
        return op

    def wrap_rule(name: str, f: Callable) -> Callable:
        def op(*args, **params):  # RULES read keyword parameters from the shapes (e.g. maxout's k)
            vals = [a.value if isinstance(a, _Node) else a for a in args]
            node = _Node(f(*vals, **params), [], rule=(name, vals, [a if isinstance(a, _Node) else None for a in args]))
            tape.append(node)
            return node
        return op
    return OpTable({n: wrap_rule(n, f) if n in RULES else wrap(n, f) for n, f in ops.items()
                    if n in PARTIALS or n in RULES})


def _apply_rule(xp, ops: OpTable, f: Callable, ans, first, vals):
    """A RULES rule; 16-bit arrays are widened to float32 first (accumulation policy)."""
    if getattr(getattr(ans, "dtype", None), "itemsize", 8) < 4:
        narrow = ans.dtype

        def w(a):
            return _astype(xp, a, xp.float32) if getattr(a, "dtype", None) == narrow else a
        ans, vals = w(ans), [w(v) for v in vals]
        first = [w(t) for t in first] if isinstance(first, list) else w(first)
    return f(xp, ops, ans, first, *vals)


def vjp(xp, ops: OpTable, fn: Callable, primals: Sequence[Any], cotangent: Any) -> tuple[Any, tuple]:
    """Reverse mode: (fn(ops, *primals), grad of <cotangent, fn> w.r.t. each primal)."""
    tape: list[_Node] = []
    inputs = [_Node(p, []) for p in primals]
    out = fn(_traced_ops(xp, ops, tape), *inputs)
    grad = {id(out): cotangent}
    with _quiet(xp):
        for node in reversed(tape):
            g = grad.pop(id(node), None)
            if g is None:
                continue
            if node.rule is not None:  # a RULES primitive: its vjp gives one cotangent per argument
                name, vals, nodes = node.rule
                for parent, c in zip(nodes, _apply_rule(xp, ops, RULES[name][0], node.value, g, vals)):
                    if parent is not None and c is not None:
                        c = _astype(xp, xp.asarray(c), parent.value.dtype)
                        grad[id(parent)] = grad[id(parent)] + c if id(parent) in grad else c
                continue
            for parent, partial in node.parents:
                contribution = _astype(xp, g * partial, g.dtype) if hasattr(g, "dtype") else g * partial
                grad[id(parent)] = grad[id(parent)] + contribution if id(parent) in grad else contribution
    zeros = [xp.zeros_like(p) for p in primals]
    return out.value, tuple(grad.get(id(n), z) for n, z in zip(inputs, zeros))


def jvp(xp, ops: OpTable, fn: Callable, primals: Sequence[Any], tangents: Sequence[Any]) -> tuple[Any, Any]:
    """Forward mode: (fn(ops, *primals), sum_i partial_i * tangent_i propagated)."""
    tape: list[_Node] = []
    inputs = [_Node(p, []) for p in primals]
    out = fn(_traced_ops(xp, ops, tape), *inputs)
    tangent = {id(n): t for n, t in zip(inputs, tangents)}
    with _quiet(xp):
        for node in tape:
            if node.rule is not None:  # a RULES primitive: its jvp maps the argument tangents
                name, vals, nodes = node.rule
                ts = [tangent.get(id(p)) if p is not None else None for p in nodes]
                if any(t is not None for t in ts):
                    t = _apply_rule(xp, ops, RULES[name][1], node.value, ts, vals)
                    tangent[id(node)] = _astype(xp, xp.asarray(t), node.value.dtype)
                continue
            acc = None
            for parent, partial in node.parents:
                if id(parent) in tangent:
                    term = tangent[id(parent)] * partial
                    acc = term if acc is None else acc + term
            if acc is not None:
                tangent[id(node)] = _astype(xp, acc, node.value.dtype) if hasattr(acc, "dtype") else acc
    t = tangent.get(id(out), xp.zeros_like(out.value))
    return out.value, t


def supported(ops: Mapping[str, Callable]) -> set[str]:
    return set(ops) & (set(PARTIALS) | set(RULES))
