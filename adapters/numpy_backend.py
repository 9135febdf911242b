"""The NumPy backend: stable formulas in NumPy, derivatives by ffnspec's own
back-propagation (``ffnspec.adapters.backprop``).  16-bit inputs are computed in
float32 and rounded once to the storage type; bfloat16 needs ml_dtypes."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ffnspec.adapters import OpTable, backprop, quiet

try:
    import ml_dtypes
    _BF16 = {"bfloat16": np.dtype(ml_dtypes.bfloat16)}
except ImportError:  # bfloat16 is then simply not offered
    _BF16 = {}

NP_DTYPES = {"float16": np.dtype(np.float16), "float32": np.dtype(np.float32),
             "float64": np.dtype(np.float64), **_BF16}
_NARROW = {"float16", "bfloat16"}


def _compute_wide(f: Callable) -> Callable:
    """Evaluate 16-bit inputs in float32 and round the result once."""
    def op(*args, **params):  # params: keyword parameters (hid: alpha, k), passed through
        floating = [a for a in args if np.asarray(a).dtype.kind not in "iu"]  # class labels stay integers
        dtype = np.result_type(*floating)
        if dtype.name in _NARROW:
            args = [a if np.asarray(a).dtype.kind in "iu" else np.asarray(a, dtype=np.float32) for a in args]
            with np.errstate(over="ignore"):  # beyond the format's range the rounding is +-inf
                return np.asarray(f(*args, **params)).astype(dtype)
        return np.asarray(f(*args, **params))
    op.__name__ = f.__name__
    return op


_TAIL = 40.0  # below -40, 1 + e^z rounds to 1 in every format, so sigma(z) = e^z


def _sigmoid(z):
    """1/(1+e^-z), a composition of monotone roundings (so monotone on the grid);
    e^z in the far-negative tail, where e^-z would overflow.  float32 is evaluated in
    float64 and rounded once: NumPy's SIMD float32 exp is not monotone (27 decreasing
    adjacent pairs in act.sigmoid.monotone's 10^6), its float64 exp is."""
    if z.dtype == np.float32:
        return _sigmoid(z.astype(np.float64)).astype(np.float32)
    return np.where(z >= -_TAIL, 1 / (1 + np.exp(-z)), np.exp(z))


def _softplus(z):
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def _log_sigmoid(z):
    return np.minimum(z, 0) - np.log1p(np.exp(-np.abs(z)))


def _silu(z):
    return np.where(np.isneginf(z), -0.0, z * _sigmoid(z)).astype(z.dtype)


# ---- the out family (output units and losses, §6.2): rows over the last axis ------------
# Shifted forms (softmax(z - max z), Blanchard, Higham & Higham 2020); 16-bit inputs are
# computed in float32 by _compute_wide, so sums over a row accumulate in float32.
def _shifted(z):
    """t = z - max z (NaN for an all -inf row: the declared fully-masked convention).  A +inf
    maximum takes the limit (docs/measure.md "Special values"): the finite entries get t = -inf
    (no mass), one +inf entry t = 0 (all of it), several +inf entries NaN (no limit), not inf - inf."""
    m = np.max(z, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        t = z - m
    top = np.isposinf(m)
    if top.any():
        inf = np.isposinf(z)
        one = np.sum(inf, axis=-1, keepdims=True) == 1
        t = np.where(top, np.where(inf, np.where(one, 0.0, np.nan), -np.inf), t).astype(z.dtype)
    return t


def _log_sum_exp_shifted(t):
    """log sum_j e^{t_j} for t = z - max z, as log1p of all terms but the first maximum (e^0 = 1):
    terms below u survive, where log(sum) would round 1 + r (out.logsumexp's accuracy).  Rows
    whose maximum is not 0 (all -inf, an inf, a NaN) take log(sum) and its IEEE special values."""
    e = np.exp(t)
    k = np.argmax(t, axis=-1)[..., None]
    rest = e.copy()
    np.put_along_axis(rest, k, 0.0, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.take_along_axis(t, k, axis=-1) == 0, np.log1p(np.sum(rest, axis=-1, keepdims=True)),
                        np.log(np.sum(e, axis=-1, keepdims=True)))


def _logsumexp(z):
    m = np.max(z, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)  # all -inf -> -inf; a +inf entry -> +inf (no inf - inf)
    return (m + _log_sum_exp_shifted(z - m))[..., 0]


def _softmax(z):
    t = _shifted(z)
    e = np.exp(t)
    with np.errstate(invalid="ignore"):
        return np.where(np.isneginf(t), 0, e / np.sum(e, axis=-1, keepdims=True)).astype(z.dtype)  # the limit 0 beside +infs


def _entropy_terms(z, p, kl: bool):
    """sum_i [p_i log p_i (kl)] - p_i log softmax(z)_i over p_i != 0: +inf where a weighted class
    has probability 0 (the terms are >= 0 and that one diverges), even beside +inf logits whose
    own terms have no limit."""
    ls = _log_softmax(z)
    with np.errstate(invalid="ignore"):
        v = np.sum((_xlogy(p, p) if kl else 0) - np.where(p == 0, 0, p * ls), axis=-1)
    return np.where(np.any((p > 0) & np.isneginf(ls), axis=-1), np.inf, v)


def _log_softmax(z):
    t = _shifted(z)
    with np.errstate(invalid="ignore"):
        return np.where(np.isneginf(t), t, t - _log_sum_exp_shifted(t))  # -inf beside several +infs


def _take(a, y):
    return np.take_along_axis(a, np.asarray(y)[..., None], axis=-1)[..., 0]


def _cross_entropy(z, y):
    return -_take(_log_softmax(z), y)


def _xlogy(x, y):
    return np.where(x == 0, 0, x * np.log(np.where(x == 0, 1, y)))


def _bce_weighted(z, y, w):
    """w y zeta(-z) + (1 - y) zeta(z) (= -[w y log sigma(z) + (1-y) log sigma(-z)]); exact cases y = 0, 1."""
    pos, neg = w * _softplus(-z), _softplus(z)
    return np.where(y == 1, pos, np.where(y == 0, neg, y * pos + (1 - y) * neg))


def _bce_prob(a, y):
    pos, neg = -np.log(a), -np.log1p(-a)
    return np.where(y == 1, pos, np.where(y == 0, neg, y * pos + (1 - y) * neg))


def _gaussian_nll(mu, y, beta):
    """beta (y - mu)^2 / 2 - log(beta) / 2, with the limits at beta = 0 (+inf whatever y - mu is)
    and beta = +inf (-inf where y = mu, else +inf) where IEEE products give 0 * inf = NaN."""
    d2 = np.square(y - mu)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = 0.5 * np.where(d2 == 0, 0, beta * d2) - 0.5 * np.log(beta)
        v = np.where(beta == 0, np.inf, np.where(np.isposinf(beta) & ~np.isnan(d2), np.where(d2 == 0, -np.inf, np.inf), v))
    return v.astype(np.result_type(mu, y, beta))


def _mdn_nll(w, mu, beta, y):
    d = np.asarray(y)[..., None] - mu
    return -_logsumexp(_log_softmax(w) + 0.5 * np.log(beta) - 0.5 * beta * d * d)


_OUT_OPS: dict[str, Callable] = {
    "softmax": _softmax, "log_softmax": _log_softmax, "logsumexp": _logsumexp,
    "cross_entropy": _cross_entropy,
    "cross_entropy_sum": lambda z, y: np.sum(_cross_entropy(z, y)),
    "cross_entropy_mean": lambda z, y: np.mean(_cross_entropy(z, y)),
    "nll": lambda lp, y: -_take(lp, y),
    "cross_entropy_soft": lambda z, p: _entropy_terms(z, p, False),
    "kl_div": lambda z, p: _entropy_terms(z, p, True),
    "bce": lambda z, y: _bce_weighted(z, y, 1),
    "bce_pos_weight": _bce_weighted,
    "bce_prob": _bce_prob,
    "half_sq_error": lambda yh, y: 0.5 * np.square(yh - y),
    "mse": lambda yh, y: np.mean(np.square(yh - y)),
    "mae": lambda yh, y: np.mean(np.abs(yh - y)),
    "gaussian_nll": _gaussian_nll,
    "mdn_nll": _mdn_nll,
    "cov_from_factor": lambda b: b @ np.swapaxes(b, -1, -2),
}


# ---- the hid family (hidden units, §6.3) --------------------------------------------------
# Piecewise-linear units are exact in the storage format (no widening); a slope alpha is
# rounded to the array's format first (alpha_hat; one rounding of alpha_hat z then follows).
# In-place variants (name_) write the out-of-place result into their argument; there is no
# abs_, whose derivative could not be recovered from the overwritten argument.
def _relu(z):
    return np.where(z > 0, z, np.where(np.isnan(z), z, z.dtype.type(0)))


def _leaky_relu(z, alpha=0.01):
    a = np.asarray(alpha).astype(z.dtype)
    return np.where(z > 0, z, np.where(np.isinf(z) & (a == 0), z.dtype.type(0), a * z))  # 0 (-inf) -> the limit 0


def _hardtanh(z):
    one = z.dtype.type(1)
    return np.where(z > one, one, np.where(z < -one, -one, z))


def _prelu(z, alpha):
    """z for z > 0, else alpha z; an exact zero times an infinity is the function's 0 (relu(-inf)
    for alpha = 0, prelu(0, +-inf) = 0), not IEEE's NaN."""
    return np.where(z > 0, z, np.where(np.isinf(z) & (alpha == 0), 0, np.where((z == 0) & np.isinf(alpha), z, alpha * z)))


def _maxout(z, k):
    return np.max(z.reshape(z.shape[:-1] + (z.shape[-1] // k, k)), axis=-1)


def _rbf(x, W, sigma):
    d = x[:, None, :] - W[None, :, :]
    return np.exp(-(np.sum(d * d, axis=-1) / (sigma * sigma)))


def _inplace(f):
    def op(z, **params):
        z[...] = f(z, **params)
        return z
    op.__name__ = f.__name__ + "_"
    return op


# op -> (function, computed in float32 for 16-bit inputs)
_HID_OPS: dict[str, tuple[Callable, bool]] = {
    "relu": (_relu, False), "leaky_relu": (_leaky_relu, False), "abs": (np.abs, False),
    "hardtanh": (_hardtanh, False), "prelu": (_prelu, True), "maxout": (_maxout, False),
    "rbf": (_rbf, True), "lowrank": (lambda x, V, U: (x @ U.T) @ V.T, True), "copy": (np.copy, False),
    "relu_": (_inplace(_relu), False), "leaky_relu_": (_inplace(_leaky_relu), False),
    "hardtanh_": (_inplace(_hardtanh), False),
}
# the kink and tie conventions of spec/20_hid.toml [hid.conventions]: the engine's, all preferred
HID_CONVENTIONS = backprop.CONVENTIONS


# ---- the bp family (whole programs, §6.5): the graph primitives, and a user-defined primitive
# (the seeds' custom ReLU, 002) registered with the engine's own mechanism, backprop.define: its
# backward zeroes the cotangent where the input is < 0 (and passes it at 0, as the seed's does).
def _reduce(f):
    def op(z, axis=None):
        return f(z, axis=axis)
    op.__name__ = f.__name__
    return op


def _custom_relu(z):
    return np.where(z > 0, z, np.where(np.isnan(z), z, z.dtype.type(0)))


backprop.define(
    "custom_relu",
    lambda xp, ops, ans, g, z: (xp.where(z < 0, xp.zeros_like(g), g),),
    lambda xp, ops, ans, ts, z: xp.where(z < 0, xp.zeros_like(ts[0]), ts[0]),
    lambda xp, ops, ans, g, gd, v, t: [xp.where(v[0] < 0, xp.zeros_like(gd), gd)])

_BP_OPS: dict[str, Callable] = {
    "div": np.divide, "log": np.log, "sin": np.sin, "cos": np.cos, "maximum": np.maximum,
    "where": lambda c, a, b: np.where(c != 0, a, b), "matmul": np.matmul,
    "sum": _reduce(np.sum), "mean": _reduce(np.mean), "custom_relu": _custom_relu,
}
# ---- the xor, opt and init families (§6.1, §6.4.1; seeds 002, 003) ------------------------
# ffnspec's own NumPy implementations: the dense layer x W + b (W of shape (d_in, d_out)), least
# squares by LAPACK (np.linalg.lstsq), the optimizer steps in the framework form (a state array
# (parts, n): theta, then the buffers), the exponential learning-rate schedule, and the
# initialisers on numpy.random.Generator(PCG64) seeded per call.  W of an initialiser has shape
# (fan_out, fan_in), as torch.nn.Linear.weight.
def _sgd_step(state, g, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """g' = g + wd theta; buf' = mu buf + g'; theta' = theta - lr (g' + mu buf' | buf' | g')."""
    theta, buf = state[0], state[1]
    g = g + weight_decay * theta if weight_decay else g
    if momentum:
        buf = momentum * buf + g
        d = g + momentum * buf if nesterov else buf
    else:
        d = g
    return np.stack([theta - lr * d, buf])


def _adam_step(state, g, step, lr, beta1, beta2, eps, weight_decay=0.0, decoupled=False):
    """Adam (coupled L2: g + wd theta) or AdamW (decoupled: theta (1 - lr wd)), bias-corrected."""
    theta, m, v = state[0], state[1], state[2]
    if decoupled:
        theta = theta * (1 - lr * weight_decay)
    elif weight_decay:
        g = g + weight_decay * theta
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    bc1, bc2 = 1 - beta1 ** step, 1 - beta2 ** step
    return np.stack([theta - (lr / bc1) * m / (np.sqrt(v) / bc2 ** 0.5 + eps), m, v])


def _lr_exponential(lr0, gamma, steps):
    """[eta_0, ..., eta_steps], eta_t = eta_{t-1} gamma in Python floats (torch's ExponentialLR)."""
    lrs = [float(lr0[0])]
    for _ in range(int(steps)):
        lrs.append(lrs[-1] * gamma)
    return np.array(lrs, dtype=np.float64).astype(lr0.dtype)


def _rng(seed):
    return np.random.Generator(np.random.PCG64(int(seed)))


def _init_uniform(w, bound, seed):
    return _rng(seed).uniform(-bound, bound, w.shape).astype(w.dtype)


def _init_normal(w, std, seed):
    return (std * _rng(seed).standard_normal(w.shape)).astype(w.dtype)


def _fan(w, mode):
    return w.shape[1] if mode == "fan_in" else w.shape[0]


def _init_orthogonal(w, gain=1.0, seed=0):
    """Q of the QR of a Gaussian matrix, columns signed by sign(diag R) (Haar; Mezzadri 2007)."""
    rows, cols = w.shape
    a = _rng(seed).standard_normal((rows, cols) if rows >= cols else (cols, rows))
    q, r = np.linalg.qr(a)
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
    return (gain * (q if rows >= cols else q.T)).astype(w.dtype)


_XOI_OPS: dict[str, Callable] = {
    "linear": lambda x, W, b: x @ W + b,
    "lstsq": lambda A, y: np.linalg.lstsq(A, y, rcond=None)[0],
    "sgd_step": _sgd_step, "adam_step": _adam_step, "lr_exponential": _lr_exponential,
    "init_xavier_uniform": lambda w, gain=1.0, seed=0: _init_uniform(
        w, gain * np.sqrt(6.0 / (w.shape[0] + w.shape[1])), seed),
    "init_xavier_normal": lambda w, gain=1.0, seed=0: _init_normal(
        w, gain * np.sqrt(2.0 / (w.shape[0] + w.shape[1])), seed),
    "init_kaiming_uniform": lambda w, gain=1.0, mode="fan_in", seed=0: _init_uniform(
        w, gain * np.sqrt(3.0 / _fan(w, mode)), seed),
    "init_kaiming_normal": lambda w, gain=1.0, mode="fan_in", seed=0: _init_normal(
        w, gain / np.sqrt(_fan(w, mode)), seed),
    "init_orthogonal": _init_orthogonal,
    "init_zeros": np.zeros_like,
}
# the momentum form the optimizer steps implement (spec/60_opt.toml [opt.momentum.forms])
OPT_CONVENTIONS = {"momentum_form": "framework", "init_normal_law": "normal"}


class NumpyArrays:
    """NumPy arrays on the CPU, differentiated by ffnspec's engine: the conversions and modes
    of every backend whose arrays are NumPy's (this one, SciPy)."""
    devices = ("cpu",)

    def asarray(self, a: np.ndarray, dtype: str, device: str = "cpu") -> Any:
        return np.array(a, dtype=NP_DTYPES[dtype])

    def asindex(self, a: np.ndarray, device: str = "cpu") -> Any:
        """Integer class labels (cross-entropy targets)."""
        return np.array(a, dtype=np.int64)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x).astype(np.float64)

    def dtype_of(self, x: Any) -> str:
        return np.asarray(x).dtype.name

    def vjp(self, fn: Callable, primals: Sequence[Any], cotangent: Any):
        return backprop.vjp(np, self.ops, fn, primals, cotangent)

    def jvp(self, fn: Callable, primals: Sequence[Any], tangents: Sequence[Any]):
        return backprop.jvp(np, self.ops, fn, primals, tangents)

    def count_vjp(self, fn: Callable, primals: Sequence[Any], cotangent: Any) -> dict[str, int]:
        """The engine's own counts for one reverse sweep: ``applications`` (derivative rules
        applied, one per contribution formed) and ``edges`` (of the traced graph)."""
        stats: dict[str, int] = {}
        backprop.vjp(np, self.ops, fn, primals, cotangent, stats=stats)
        return stats

    def count_jacobian(self, fn: Callable, primals: Sequence[Any], mode: str) -> dict[str, int]:
        """The engine's own counts for the full Jacobian of ``fn`` with respect to ``primals[0]``
        (the rest held constant) by ``mode``: ``sweeps`` (one reverse sweep per output for "vjp",
        one forward sweep per input for "jvp") and ``madds`` (scalar multiply-adds of the sweeps)."""
        return backprop.count_jacobian(np, self.ops, fn, primals, mode)

    def hvp(self, fn: Callable, primals: Sequence[Any], tangents: Sequence[Any]):
        """Hessian-vector product of a scalar program: forward mode over the engine's reverse mode."""
        return backprop.hvp(np, self.ops, fn, primals, tangents)


class NumpyBackend(NumpyArrays):
    name = "numpy"
    conventions = {"flush_to_zero": "no", **HID_CONVENTIONS, **OPT_CONVENTIONS}
    _quiet = staticmethod(quiet)  # for subclasses (tests' mutants) that wrap their own ops

    def __init__(self) -> None:
        self.dtypes = frozenset(NP_DTYPES)
        raw = {
            "neg": np.negative, "exp": np.exp, "log1p": np.log1p,
            "add": np.add, "sub": np.subtract, "mul": np.multiply,
            "sigmoid": _sigmoid, "softplus": _softplus, "log_sigmoid": _log_sigmoid,
            "tanh": np.tanh, "silu": _silu, "logaddexp": np.logaddexp,
        }
        raw.update(_OUT_OPS)  # the out family: softmax, logsumexp, losses
        raw.update(_BP_OPS)   # the bp family: graph primitives, a user-defined primitive
        self.ops = OpTable({n: _compute_wide(quiet(f)) for n, f in raw.items()})
        self.ops = OpTable({**self.ops, **{n: quiet(_compute_wide(f) if wide else f)
                                           for n, (f, wide) in _HID_OPS.items()}})  # the hid family
        self.ops = OpTable({**self.ops, **{n: _compute_wide(quiet(f)) for n, f in _XOI_OPS.items()}})  # xor, opt, init

