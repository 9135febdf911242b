"""The SciPy backend: scipy.special's own functions (expit, log_expit, softplus, softmax,
log_softmax, logsumexp), NumPy's public functions for the rest, derivatives by ffnspec's
back-propagation engine (``ffnspec.adapters.backprop``) over NumPy.

The op table is built by ``special_ops(xp, special)`` from a NumPy-like namespace and a
scipy.special-like one, so the CuPy backend (cupy + cupyx.scipy.special) shares it.  Ops that
neither library has are composed here in one line of the library's public functions (said
beside each); ops that would need more than that (leaky ReLU, PReLU, RBF, the BCE and KL
losses, the mixture density) are left out and reported *not implemented*.

Conversions: a float64 NumPy array of values exact in the dtype is cast once (exact); bfloat16
is not offered (scipy.special has no bfloat16 loops: expit computes it in float64,
logsumexp rejects ml_dtypes' type).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ffnspec.adapters import OpTable, backprop, flush_conventions, quiet, value_conventions
from ffnspec.adapters.numpy_backend import NumpyArrays

DTYPES = ("float16", "float32", "float64")

# scipy.special's ufuncs without a float16 loop: expit and log_expit have 'f->f', 'd->d'
# (and 'g->g'), so a float16 array is computed and returned in float64 (cupyx.scipy.special:
# 'e->d').  Declared with op_dtypes, not cast back: the library has no float16 version.
NO_FLOAT16 = ("sigmoid", "log_sigmoid")


def special_ops(xp: Any, special: Any) -> dict[str, tuple[Callable, str]]:
    """op -> (function, its public name) over a NumPy-like ``xp`` and a scipy.special-like
    ``special``; ``xp``/``special`` in the names stand for the modules (np/scipy.special, cupy/
    cupyx.scipy.special)."""
    def log_softmax(z):
        return special.log_softmax(z, axis=-1)

    def cross_entropy(z, y):
        """composed: -log_softmax(z)[y], the book's eq. 6.30 through the library's log_softmax."""
        return -xp.take_along_axis(log_softmax(z), y[..., None], axis=-1)[..., 0]

    ops: dict[str, tuple[Callable, str]] = {
        "neg": (xp.negative, "xp.negative"), "exp": (xp.exp, "xp.exp"), "log1p": (xp.log1p, "xp.log1p"),
        "add": (xp.add, "xp.add"), "sub": (xp.subtract, "xp.subtract"), "mul": (xp.multiply, "xp.multiply"),
        "tanh": (xp.tanh, "xp.tanh"), "logaddexp": (xp.logaddexp, "xp.logaddexp"),
        "abs": (xp.abs, "xp.abs"), "copy": (xp.copy, "xp.copy"),
        "sigmoid": (special.expit, "special.expit"),
        "log_sigmoid": (special.log_expit, "special.log_expit"),
        "softmax": (lambda z: special.softmax(z, axis=-1), "special.softmax"),
        "log_softmax": (log_softmax, "special.log_softmax"),
        "logsumexp": (lambda z: special.logsumexp(z, axis=-1), "special.logsumexp"),
        # hid: one public function each
        "relu": (lambda z: xp.maximum(z, 0), "xp.maximum"),                    # composed: maximum(z, 0)
        "hardtanh": (lambda z: xp.clip(z, -1, 1), "xp.clip"),                  # composed: clip(z, -1, 1)
        "maxout": (lambda z, k: xp.max(z.reshape(z.shape[:-1] + (z.shape[-1] // k, k)), axis=-1),
                   "xp.max"),                                                  # composed: max over blocks of k
        "lowrank": (lambda x, V, U: xp.matmul(xp.matmul(x, U.T), V.T), "xp.matmul"),
        "cov_from_factor": (lambda b: xp.matmul(b, xp.swapaxes(b, -1, -2)), "xp.matmul"),
        # out: losses composed from log_softmax and NumPy's arithmetic, as the book writes them
        "cross_entropy": (cross_entropy, "special.log_softmax"),
        "cross_entropy_sum": (lambda z, y: xp.sum(cross_entropy(z, y)), "special.log_softmax"),
        "cross_entropy_mean": (lambda z, y: xp.mean(cross_entropy(z, y)), "special.log_softmax"),
        "nll": (lambda lp, y: -xp.take_along_axis(lp, y[..., None], axis=-1)[..., 0], "xp.take_along_axis"),
        # (y - yhat)^2 / 2 as (d / 2) d: d / 2 is exact, and d^2 would overflow float16 for |d| > 256
        "half_sq_error": (lambda yh, y: (0.5 * (yh - y)) * (yh - y), "xp.multiply"),
        "mse": (lambda yh, y: xp.mean(xp.square(yh - y)), "xp.mean"),
        "mae": (lambda yh, y: xp.mean(xp.abs(yh - y)), "xp.mean"),
    }
    # bp: the graph primitives (looked up when called, so a namespace lacking one fails only there)
    # and the seeds' custom ReLU as a primitive of ffnspec's engine (backprop.define, numpy_backend)
    ops.update({
        "div": (lambda a, b: xp.divide(a, b), "xp.divide"), "log": (lambda z: xp.log(z), "xp.log"),
        "sin": (lambda z: xp.sin(z), "xp.sin"), "cos": (lambda z: xp.cos(z), "xp.cos"),
        "maximum": (lambda a, b: xp.maximum(a, b), "xp.maximum"),
        "where": (lambda c, a, b: xp.where(c != 0, a, b), "xp.where"),
        "matmul": (lambda a, b: xp.matmul(a, b), "xp.matmul"),
        "sum": (lambda z, axis=None: xp.sum(z, axis=axis), "xp.sum"),
        "mean": (lambda z, axis=None: xp.mean(z, axis=axis), "xp.mean"),
        "custom_relu": (lambda z: xp.where(z > 0, z, xp.zeros_like(z)), "backprop.define"),
    })
    if hasattr(special, "softplus"):  # scipy >= 1.15: np.logaddexp(0, x)
        ops["softplus"] = (special.softplus, "special.softplus")
    return ops


class ScipyBackend(NumpyArrays):
    name = "scipy"
    deviations = "scipy.toml"

    def __init__(self) -> None:
        import scipy
        import scipy.special
        self.version = f"scipy {scipy.__version__}, numpy {np.__version__}"
        self.dtypes = frozenset(DTYPES)
        table = special_ops(np, scipy.special)
        self.names = {op: n.replace("xp.", "np.").replace("special.", "scipy.special.") for op, (_, n) in table.items()}
        self.ops = OpTable({op: quiet(f) for op, (f, _) in table.items()})
        self.op_dtypes = {op: ["float32", "float64"] for op in NO_FLOAT16}
        # probed on the ops: subnormals (NumPy on the CPU keeps them), relu(-0), a masked softmax row;
        # the derivative conventions are the engine's
        self.conventions = {**flush_conventions(self), **backprop.CONVENTIONS, **value_conventions(self)}
