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


def _logaddexp_partials(xp, ops, x, y):
    """(sigma(x - y), sigma(y - x)), the softmax of [x, y], not e^(x - ans): that is only as accurate
    as the rounded ans, wrong in its leading digits once u|ans| is not small ([out.logaddexp.grad]
    accuracy; x = y >= 2^24 in float32 gives 1 for the exact 1/2)."""
    with _quiet(xp):
        d = x - y
    return ops.sigmoid(d), ops.sigmoid(-d)


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
    "logaddexp":   lambda xp, ops, ans, x, y: _logaddexp_partials(xp, ops, x, y),
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


# ---- the bp family (whole programs, §6.5): arithmetic, elementary functions, routing, matmul,
# reductions along an axis.  Broadcasting: a binary op's partials are broadcast against the
# cotangent, and each contribution is summed back to its argument's shape once (_accumulate:
# "unbroadcast", as autograd does).  maximum routes to the larger argument and splits a tie
# evenly (the sum of the routed cotangents is the upstream one); where(c, a, b) routes the
# cotangent to the branch taken and an exact 0 to the other, whatever that branch holds.
def _mask(xp, c, like):
    return _astype(xp, xp.asarray(c) != 0, like.dtype)


def _route(xp, x, y):
    """d max(x, y) / dx: 1 where x > y, 1/2 at a tie, 0 below."""
    return _astype(xp, x > y, x.dtype) + 0.5 * _astype(xp, x == y, x.dtype)


PARTIALS.update({
    "div":     lambda xp, ops, ans, x, y: (1 / y, -ans / y),
    "log":     lambda xp, ops, ans, z: (1 / z,),
    "sin":     lambda xp, ops, ans, z: (xp.cos(z),),
    "cos":     lambda xp, ops, ans, z: (-xp.sin(z),),
    "maximum": lambda xp, ops, ans, x, y: (_route(xp, x, y), _route(xp, y, x)),
    "where":   lambda xp, ops, ans, c, a, b: (xp.zeros_like(ans), _mask(xp, c, ans), 1 - _mask(xp, c, ans)),
})


def _expand(xp, g, z, axis):
    """A reduced cotangent broadcast back over the reduced axis (axis None: every axis)."""
    g = xp.asarray(g)
    if axis is not None:
        g = xp.expand_dims(g, axis)
    return xp.broadcast_to(g, z.shape)


def _count(z, axis) -> int:
    return z.size if axis is None else z.shape[axis]


def _matmul_jvp(xp, ops, ans, ts, a, b):
    """t_a b + a t_b, a term only where its operand carries a tangent (a constant forms none)."""
    terms = [t @ b for t in ts[:1] if t is not None] + [a @ t for t in ts[1:] if t is not None]
    return sum(terms[1:], terms[0])


RULES.update({
    # matmul's cotangents are thunks: the engine forms one only where its operand is traced, so a
    # constant factor of a Jacobian chain (bp.bracketing) costs nothing in reverse mode
    "matmul": (lambda xp, ops, ans, g, a, b: (lambda: g @ _mT(xp, b), lambda: _mT(xp, a) @ g),
               _matmul_jvp),
    "sum":    (lambda xp, ops, ans, g, z, axis=None: (_expand(xp, g, z, axis),),
               lambda xp, ops, ans, ts, z, axis=None: xp.sum(ts[0], axis=axis)),
    "mean":   (lambda xp, ops, ans, g, z, axis=None: (_expand(xp, g, z, axis) / _count(z, axis),),
               lambda xp, ops, ans, ts, z, axis=None: xp.mean(ts[0], axis=axis)),
})
PARAMETRISED = {"sum", "mean"}  # RULES whose rules take the op's keyword parameters

# Scalar multiply-adds of one derivative application (bp.bracketing), counted by the sweeps when
# their ``stats`` ask for "madds": an elementwise partial applied to a cotangent or a tangent costs
# one per entry of the product it forms; a RULES primitive has one line (vjp, jvp), given the
# node's output, the argument values, the argument's position i and the array formed for it.
MADDS: dict[str, tuple[Callable, Callable]] = {
    "matmul": (lambda ans, vals, i, c: c.size * (vals[1].shape[-1] if i == 0 else vals[0].shape[-2]),
               lambda ans, vals, i, c: ans.size * vals[0].shape[-1]),
}


def define(name: str, vjp_rule: Callable, jvp_rule: Callable, hvp_rule: Callable | None = None) -> None:
    """A user-defined primitive with its own derivative rules (the engine's counterpart of
    torch.autograd.Function and jax.custom_vjp): the op ``name`` of an OpTable is then
    differentiated by these rules, never traced through."""
    RULES[name] = (vjp_rule, jvp_rule)
    if hvp_rule is not None:
        HVP_RULES[name] = hvp_rule


def _accumulate(xp, grad: dict, parent, c) -> None:
    """grad_table[parent] += c (§6.5.6, several paths are summed), c first summed back to the
    parent's shape where it was broadcast."""
    shape = getattr(parent.value, "shape", ())
    if getattr(c, "shape", ()) != shape:
        c = _sum_to(xp, c, shape)
    grad[id(parent)] = grad[id(parent)] + c if id(parent) in grad else c


# ---- second order: the Hessian-vector product by forward mode over reverse mode -------------
# Each elementwise rule's partials p_i(x) are differentiated once more: SECOND[op] gives the
# matrix d p_i / d x_j (None: zero), so the tangent of a contribution g p_i is
# g_dot p_i + g sum_j (d p_i / d x_j) x_dot_j.  Non-elementwise primitives have one line each in
# HVP_RULES: the tangents of their cotangents, from (g, g_dot) and the argument tangents.
def _dsig(ops, z):
    return ops.sigmoid(z) * ops.sigmoid(-z)


SECOND: dict[str, Callable] = {
    "neg":         lambda xp, ops, ans, z: [[None]],
    "exp":         lambda xp, ops, ans, z: [[ans]],
    "log":         lambda xp, ops, ans, z: [[-1 / (z * z)]],
    "log1p":       lambda xp, ops, ans, z: [[-1 / ((1 + z) * (1 + z))]],
    "sin":         lambda xp, ops, ans, z: [[-xp.sin(z)]],
    "cos":         lambda xp, ops, ans, z: [[-xp.cos(z)]],
    "sigmoid":     lambda xp, ops, ans, z: [[_dsig(ops, z) * (1 - 2 * ops.sigmoid(z))]],
    "tanh":        lambda xp, ops, ans, z: [[-2 * ans * _sech2(xp, ops, ans, z)[0]]],
    "softplus":    lambda xp, ops, ans, z: [[_dsig(ops, z)]],
    "log_sigmoid": lambda xp, ops, ans, z: [[-_dsig(ops, z)]],
    "relu":        lambda xp, ops, ans, z: [[None]],
    "add":         lambda xp, ops, ans, x, y: [[None, None], [None, None]],
    "sub":         lambda xp, ops, ans, x, y: [[None, None], [None, None]],
    "mul":         lambda xp, ops, ans, x, y: [[None, xp.ones_like(x)], [xp.ones_like(y), None]],
    "div":         lambda xp, ops, ans, x, y: [[None, -1 / (y * y)], [-1 / (y * y), 2 * ans / (y * y)]],
    "maximum":     lambda xp, ops, ans, x, y: [[None, None], [None, None]],
    "where":       lambda xp, ops, ans, c, a, b: [[None] * 3 for _ in range(3)],
}


def _softmax_dot(xp, a, t):
    """The softmax tangent a (t - sum(a t)) along a row tangent t."""
    return a * (t - _s(xp, a * t))


def _lse_hvp(xp, ops, ans, g, gd, vals, ts):
    a = ops.softmax(vals[0])
    return [xp.asarray(gd)[..., None] * a + xp.asarray(g)[..., None] * _softmax_dot(xp, a, ts[0])]


def _log_softmax_hvp(xp, ops, ans, g, gd, vals, ts):
    a = xp.exp(ans)
    return [gd - a * _s(xp, gd) - _softmax_dot(xp, a, ts[0]) * _s(xp, g)]


def _softmax_hvp(xp, ops, ans, g, gd, vals, ts):
    ad = _softmax_dot(xp, ans, ts[0])
    return [ad * (g - _s(xp, g * ans)) + ans * (gd - _s(xp, gd * ans + g * ad))]


HVP_RULES: dict[str, Callable] = {
    # (xp, ops, ans, g, g_dot, argument values, argument tangents, **params) -> cotangent tangents
    "matmul":      lambda xp, ops, ans, g, gd, v, t: [gd @ _mT(xp, v[1]) + g @ _mT(xp, t[1]),
                                                      _mT(xp, v[0]) @ gd + _mT(xp, t[0]) @ g],
    "sum":         lambda xp, ops, ans, g, gd, v, t, axis=None: [_expand(xp, gd, v[0], axis)],
    "mean":        lambda xp, ops, ans, g, gd, v, t, axis=None: [_expand(xp, gd, v[0], axis) / _count(v[0], axis)],
    "logsumexp":   _lse_hvp,
    "log_softmax": _log_softmax_hvp,
    "softmax":     _softmax_hvp,
}


def _plus(a, b):
    return b if a is None else a if b is None else a + b


def hvp(xp, ops: OpTable, fn: Callable, primals: Sequence[Any], tangents: Sequence[Any]) -> tuple[Any, tuple]:
    """Forward over reverse: (fn(ops, *primals), (d^2 fn / d primals^2) tangents, one per primal),
    for a scalar fn.  A primitive without a second-order rule raises NotImplementedError."""
    tape: list[_Node] = []
    inputs = [_Node(p, []) for p in primals]
    out = fn(_traced_ops(xp, ops, tape), *inputs)
    tan = _tangents(xp, ops, tape, inputs, tangents)
    with _quiet(xp):
        grad, gdot = {id(out): xp.ones_like(out.value)}, {}
        for node in reversed(tape):  # reverse mode carrying (g, g_dot)
            g = grad.pop(id(node), None)
            if g is None:
                continue
            gd = gdot.pop(id(node), None)
            gd = xp.zeros_like(g) if gd is None else gd
            if node.rule is not None:
                name, vals, nodes, params = node.rule
                if name not in HVP_RULES:
                    raise NotImplementedError(f"the engine has no second-order rule for {name!r}")
                ts = [_zt(xp, tan.get(id(p)) if p is not None else None, v) for p, v in zip(nodes, vals)]
                cs = _apply_rule(xp, ops, RULES[name][0], node.value, g, vals, params)
                cds = HVP_RULES[name](xp, ops, node.value, g, gd, vals, ts, **params)
                for parent, c, cd in zip(nodes, cs, cds):
                    if parent is not None and c is not None:
                        dt = parent.value.dtype
                        _accumulate(xp, grad, parent, _astype(xp, xp.asarray(_formed(c)), dt))
                        _accumulate(xp, gdot, parent, _astype(xp, xp.asarray(cd), dt))
                continue
            name = node.name
            if name not in SECOND:
                raise NotImplementedError(f"the engine has no second-order rule for {name!r}")
            second = SECOND[name](xp, ops, node.value, *node.args)
            argt = [tan.get(id(a)) if isinstance(a, _Node) else None for a in node.raw]
            for i, (parent, partial) in enumerate(node.parents):
                k = node.index[i]
                pdot = None
                for j, t in enumerate(argt):
                    if t is not None and second[k][j] is not None:
                        pdot = _plus(pdot, second[k][j] * t)
                cd = gd * partial if pdot is None else gd * partial + g * pdot
                dt = parent.value.dtype
                _accumulate(xp, grad, parent, _astype(xp, g * partial, dt))
                _accumulate(xp, gdot, parent, _astype(xp, cd, dt))
    return out.value, tuple(gdot.get(id(n), xp.zeros_like(p)) for n, p in zip(inputs, primals))
# The dense layer of the xor, opt and init families: y = x W + b (x (N, d), W (d, m), b (m,)):
# g W^T, x^T g, and g summed over the batch (seed 003's rules); forward mode t_x W + x t_W + t_b.
RULES.update({
    "linear": (lambda xp, ops, ans, g, x, W, b: (g @ _mT(xp, W), _mT(xp, x) @ g, xp.sum(g, axis=0)),
               lambda xp, ops, ans, ts, x, W, b: _zt(xp, ts[0], x) @ W + x @ _zt(xp, ts[1], W) + _zt(xp, ts[2], b)),
})


class _Node:
    __slots__ = ("value", "parents", "rule", "name", "args", "raw", "index")

    def __init__(self, value, parents, rule=None):
        self.value = value
        self.parents = parents  # [(parent node, partial array)]; partial None under a RULES rule
        self.rule = rule        # (name, argument values, traced flags, params) for RULES primitives
        self.name, self.args, self.raw, self.index = None, (), (), ()  # elementwise: for SECOND


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
            node.name, node.args, node.raw = name, tuple(vals), tuple(args)
            node.index = tuple(i for i, a in enumerate(args) if isinstance(a, _Node))
            tape.append(node)
            return node
        return op

    def wrap_rule(name: str, f: Callable) -> Callable:
        def op(*args, **params):  # RULES read keyword parameters from the shapes (e.g. maxout's k),
            vals = [a.value if isinstance(a, _Node) else a for a in args]  # those in PARAMETRISED get them
            kept = params if name in PARAMETRISED else {}
            node = _Node(f(*vals, **params), [], rule=(name, vals, [a if isinstance(a, _Node) else None for a in args],
                                                       kept))
            tape.append(node)
            return node
        return op
    return OpTable({n: wrap_rule(n, f) if n in RULES else wrap(n, f) for n, f in ops.items()
                    if n in PARTIALS or n in RULES})


def _apply_rule(xp, ops: OpTable, f: Callable, ans, first, vals, params=None):
    """A RULES rule; 16-bit arrays are widened to float32 first (accumulation policy)."""
    if getattr(getattr(ans, "dtype", None), "itemsize", 8) < 4:
        narrow = ans.dtype

        def w(a):
            return _astype(xp, a, xp.float32) if getattr(a, "dtype", None) == narrow else a
        ans, vals = w(ans), [w(v) for v in vals]
        first = [w(t) for t in first] if isinstance(first, list) else w(first)
    return f(xp, ops, ans, first, *vals, **(params or {}))


def vjp(xp, ops: OpTable, fn: Callable, primals: Sequence[Any], cotangent: Any,
        stats: dict | None = None) -> tuple[Any, tuple]:
    """Reverse mode: (fn(ops, *primals), grad of <cotangent, fn> w.r.t. each primal).  With
    ``stats``, counts the edges of the tape (``edges``) and the derivative applications of the
    sweep (``applications``: one per edge whose contribution is formed): grad_table memoises
    each node's gradient, so every edge is visited once (§6.5.6)."""
    tape: list[_Node] = []
    inputs = [_Node(p, []) for p in primals]
    out = fn(_traced_ops(xp, ops, tape), *inputs)
    if stats is not None:
        stats["edges"] = sum(len(n.parents) if n.rule is None else sum(p is not None for p in n.rule[2]) for n in tape)
    grad = {id(out): cotangent}
    with _quiet(xp):
        for node in reversed(tape):
            g = grad.pop(id(node), None)
            if g is None:
                continue
            if node.rule is not None:  # a RULES primitive: its vjp gives one cotangent per argument
                name, vals, nodes, params = node.rule
                cs = _apply_rule(xp, ops, RULES[name][0], node.value, g, vals, params)
                for i, (parent, c) in enumerate(zip(nodes, cs)):
                    if parent is not None and c is not None:
                        c = _astype(xp, xp.asarray(_formed(c)), parent.value.dtype)
                        _accumulate(xp, grad, parent, c)
                        _tally(stats, "applications")
                        _charge(stats, name, 0, node.value, vals, i, c)
                continue
            for parent, partial in node.parents:
                contribution = _astype(xp, g * partial, g.dtype) if hasattr(g, "dtype") else g * partial
                _accumulate(xp, grad, parent, contribution)
                _tally(stats, "applications")
                _charge(stats, None, 0, node.value, (), 0, contribution)
    zeros = [xp.zeros_like(p) for p in primals]
    return out.value, tuple(grad.get(id(n), z) for n, z in zip(inputs, zeros))


def _tally(stats: dict | None, key: str) -> None:
    if stats is not None:
        stats[key] = stats.get(key, 0) + 1


def _formed(c):
    """A contribution a rule returned as a thunk (formed only where it is needed), formed."""
    return c() if callable(c) else c


def _charge(stats: dict | None, name: str | None, which: int, ans, vals, i: int, formed) -> None:
    """Add the multiply-adds of one derivative application to ``stats["madds"]`` where counted:
    an elementwise partial (name None) one per entry formed, a RULES primitive its MADDS line
    (``which``: 0 reverse, 1 forward); a primitive without one cannot be counted."""
    if stats is None or "madds" not in stats:
        return
    if name is None:
        stats["madds"] += int(getattr(formed, "size", 1))
    elif name in MADDS:
        stats["madds"] += int(MADDS[name][which](ans, vals, i, formed))
    else:
        raise NotImplementedError(f"the engine counts no multiply-adds for {name!r}")


def jvp(xp, ops: OpTable, fn: Callable, primals: Sequence[Any], tangents: Sequence[Any],
        stats: dict | None = None) -> tuple[Any, Any]:
    """Forward mode: (fn(ops, *primals), sum_i partial_i * tangent_i propagated); ``stats`` as vjp's."""
    tape: list[_Node] = []
    inputs = [_Node(p, []) for p in primals]
    out = fn(_traced_ops(xp, ops, tape), *inputs)
    tangent = _tangents(xp, ops, tape, inputs, tangents, stats)
    return out.value, tangent.get(id(out), xp.zeros_like(out.value))


def _tangents(xp, ops: OpTable, tape: list, inputs: list, tangents: Sequence[Any],
              stats: dict | None = None) -> dict:
    """Forward mode over a recorded tape: every node's tangent by id (zero tangents stay absent)."""
    tangent = {id(n): t for n, t in zip(inputs, tangents)}
    with _quiet(xp):
        for node in tape:
            if node.rule is not None:  # a RULES primitive: its jvp maps the argument tangents
                name, vals, nodes, params = node.rule
                ts = [tangent.get(id(p)) if p is not None else None for p in nodes]
                if any(t is not None for t in ts):
                    t = _apply_rule(xp, ops, RULES[name][1], node.value, ts, vals, params)
                    tangent[id(node)] = _astype(xp, xp.asarray(t), node.value.dtype)
                    for i in (i for i, t in enumerate(ts) if t is not None):
                        _charge(stats, name, 1, node.value, vals, i, t)
                continue
            acc = None
            for parent, partial in node.parents:
                if id(parent) in tangent:
                    term = tangent[id(parent)] * partial
                    acc = _plus(acc, term)
                    _charge(stats, None, 1, node.value, (), 0, term)
            if acc is not None:
                tangent[id(node)] = _astype(xp, acc, node.value.dtype) if hasattr(acc, "dtype") else acc
    return tangent


def count_jacobian(xp, ops: OpTable, fn: Callable, primals: Sequence[Any], mode: str) -> dict[str, int]:
    """The cost of the full Jacobian of fn(ops, x, *constants) with respect to x = primals[0] (the
    other primals held constant: never traced), of shape (m, n) for m outputs and n inputs:
    mode "vjp" runs one reverse sweep per output (unit cotangents), "jvp" one forward sweep per
    input (unit tangents).  Returns ``sweeps`` and ``madds``, the scalar multiply-adds of the
    derivative applications of all sweeps (MADDS; the forward evaluation is not counted)."""
    x, rest = primals[0], list(primals[1:])

    def f(o, v):
        return fn(o, v, *rest)
    like = fn(ops, *primals) if mode == "vjp" else x
    stats: dict[str, int] = {"madds": 0, "sweeps": 0}
    for k in range(int(np.prod(np.shape(like)))):
        unit = _reshape(xp, _astype(xp, xp.arange(int(np.prod(np.shape(like)))) == k, like.dtype), like.shape)
        if mode == "vjp":
            vjp(xp, ops, f, [x], unit, stats=stats)
        else:
            jvp(xp, ops, f, [x], [unit], stats=stats)
        stats["sweeps"] += 1
    return {"sweeps": stats["sweeps"], "madds": stats["madds"]}


def supported(ops: Mapping[str, Callable]) -> set[str]:
    return set(ops) & (set(PARTIALS) | set(RULES))
