"""Deliberately broken backends for the init family: the NumPy backend with one defect each, under
the conventions of tests/mutants.py.  Load one as ``--ffnspec-backend=tests.mutants_init:HeFanOut``."""
from __future__ import annotations

import numpy as np

from ffnspec.adapters.numpy_backend import _init_normal, _init_uniform, _rng, _sgd_step
from tests.mutants_out import OutMutant


class InitMutant(OutMutant):
    pass


class GlorotFanSum(InitMutant):
    defect = "Glorot's fan_in + fan_out replaced by 2 fan_in"
    catches = ("init.xavier_uniform", "init.xavier_normal")
    replace = {"init_xavier_uniform": lambda w, gain=1.0, seed=0: _init_uniform(w, gain * np.sqrt(6.0 / (2 * w.shape[1])), seed),
               "init_xavier_normal": lambda w, gain=1.0, seed=0: _init_normal(w, gain * np.sqrt(2.0 / (2 * w.shape[1])), seed)}


def _other(w, mode):
    return w.shape[0] if mode == "fan_in" else w.shape[1]


class HeFanOut(InitMutant):
    defect = "He/Kaiming with the other fan (fan_out where fan_in is asked, and the reverse)"
    catches = ("init.kaiming_uniform", "init.kaiming_normal")
    replace = {"init_kaiming_uniform": lambda w, gain=1.0, mode="fan_in", seed=0: _init_uniform(
                   w, gain * np.sqrt(3.0 / _other(w, mode)), seed),
               "init_kaiming_normal": lambda w, gain=1.0, mode="fan_in", seed=0: _init_normal(
                   w, gain / np.sqrt(_other(w, mode)), seed)}


def _no_sign_fix(w, gain=1.0, seed=0):
    rows, cols = w.shape
    a = _rng(seed).standard_normal((rows, cols) if rows >= cols else (cols, rows))
    q, _ = np.linalg.qr(a)
    return (gain * (q if rows >= cols else q.T)).astype(w.dtype)


def _truncated(w, gain=1.0, seed=0):
    """N(0, s'^2) cut at +-2 s' (s' = s / 0.8796) by rejection: the variance is s^2, the law is not normal."""
    s = gain * np.sqrt(2.0 / (w.shape[0] + w.shape[1])) / 0.87962566103423978
    x = _rng(seed).standard_normal(4 * w.size)
    return (s * x[np.abs(x) < 2][:w.size].reshape(w.shape)).astype(w.dtype)


class TruncatedUndeclared(InitMutant):
    defect = "Glorot normal drawn from the truncated law (right variance) while the untruncated law is declared"
    catches = ("init.xavier_normal",)
    replace = {"init_xavier_normal": _truncated}


class OrthogonalNoSignFix(InitMutant):
    defect = "orthogonal init from QR without the sign fix q * sign(diag r): not Haar"
    catches = ("init.orthogonal",)
    replace = {"init_orthogonal": _no_sign_fix}


class ZerosNotZero(InitMutant):
    defect = "a bias initialiser returning 1e-3 instead of 0"
    catches = ("init.zeros",)
    replace = {"init_zeros": lambda w: np.full_like(w, 1e-3)}


class LinearGradLeak(InitMutant):
    defect = "the dense layer's reverse mode adds 2^-30 to the weight gradient"
    catches = ("init.zero_saddle",)
    rules = {"linear": (lambda xp, ops, ans, g, x, W, b: (g @ W.T, x.T @ g + W.dtype.type(2.0 ** -30), xp.sum(g, axis=0)),
                        lambda xp, ops, ans, ts, x, W, b: ts[0] @ W)}


def _index_nudge(s, g, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    out = _sgd_step(s, g, lr, momentum, nesterov, weight_decay)
    out[0] = out[0] - lr * g * np.arange(g.size, dtype=g.dtype) * g.dtype.type(2.0 ** -12)
    return out


class IndexDependentStep(InitMutant):
    defect = "an optimizer step that depends on the coordinate's index (breaks a constant initialisation's symmetry)"
    catches = ("init.symmetry",)
    replace = {"sgd_step": _index_nudge}


MUTANTS = [c for c in InitMutant.__subclasses__() if c.catches]
