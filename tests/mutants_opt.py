"""Deliberately broken backends for the opt family: the NumPy backend with one defect each, under
the conventions of tests/mutants.py (``rules`` patch backprop.RULES as in tests/mutants_out.py).
Load one as ``--ffnspec-backend=tests.mutants_opt:MomentumOffByOne``."""
from __future__ import annotations

import numpy as np

from ffnspec.adapters.numpy_backend import _adam_step, _lr_exponential, _sgd_step
from tests.mutants_out import OutMutant


class OptMutant(OutMutant):
    pass


def _off_by_one(state, g, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    theta, buf = state[0], state[1]
    return np.stack([theta - lr * buf if momentum else theta - lr * g, momentum * buf + g if momentum else buf])


class MomentumOffByOne(OptMutant):
    defect = "momentum applied one step late: theta moves by the old buffer, then the buffer is updated"
    catches = ("opt.momentum.step", "opt.momentum.forms")
    spares = ("opt.gd.step",)
    replace = {"sgd_step": _off_by_one}


class NesterovAtTheta(OptMutant):
    defect = "Nesterov requested but the gradient step taken at theta (plain momentum)"
    catches = ("opt.nesterov.step",)
    spares = ("opt.momentum.step",)
    replace = {"sgd_step": lambda s, g, lr, momentum=0.0, nesterov=False, weight_decay=0.0:
               _sgd_step(s, g, lr, momentum, False, weight_decay)}


class DoubledLr(OptMutant):
    defect = "the learning rate applied twice (alpha > 2/L on the descent quadratic)"
    catches = ("opt.gd.step", "opt.descent", "opt.l2", "opt.xor.trajectory")
    replace = {"sgd_step": lambda s, g, lr, momentum=0.0, nesterov=False, weight_decay=0.0:
               _sgd_step(s, g, 2 * lr, momentum, nesterov, weight_decay)}


class HalfWeightDecay(OptMutant):
    defect = "weight decay wd/2 (the gradient of (wd/4)||theta||^2, not 2 lambda theta)"
    catches = ("opt.l2",)
    spares = ("opt.gd.step",)
    replace = {"sgd_step": lambda s, g, lr, momentum=0.0, nesterov=False, weight_decay=0.0:
               _sgd_step(s, g, lr, momentum, nesterov, weight_decay / 2)}


def _form_003(state, g, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    theta, m = state[0], state[1]
    if not momentum:
        return _sgd_step(state, g, lr, momentum, nesterov, weight_decay)
    m = momentum * m + lr * g
    return np.stack([theta - m, m])


class Form003DeclaredFramework(OptMutant):
    defect = "seed 003's momentum form m = gamma m + eta g implemented while the framework form is declared"
    catches = ("opt.momentum.forms",)
    replace = {"sgd_step": _form_003}


class CoupledAdamW(OptMutant):
    defect = "AdamW's weight decay coupled into the gradient (Adam + L2) where decoupled is declared"
    catches = ("opt.adamw.step",)
    spares = ("opt.adam.step",)
    replace = {"adam_step": lambda s, g, step, lr, beta1, beta2, eps, weight_decay=0.0, decoupled=False:
               _adam_step(s, g, step, lr, beta1, beta2, eps, weight_decay, False)}


def _no_bias_correction(s, g, step, lr, beta1, beta2, eps, weight_decay=0.0, decoupled=False):
    """Adam at a step count so large that beta^t underflows to 0: both corrections 1 - beta^t = 1."""
    return _adam_step(s, g, 10 ** 6, lr, beta1, beta2, eps, weight_decay, decoupled)


class AdamNoBiasCorrection(OptMutant):
    defect = "Adam without the bias corrections 1 - beta^t"
    catches = ("opt.adam.step", "opt.adamw.step")
    replace = {"adam_step": _no_bias_correction}


class LrScheduleOffByOne(OptMutant):
    defect = "the exponential schedule one step ahead: eta_t = beta^(t+1) eta_0"
    catches = ("opt.lr.exponential",)
    replace = {"lr_exponential": lambda lr0, gamma, steps: _lr_exponential(lr0 * gamma, gamma, steps)}


class SummedMse(OptMutant):
    defect = "the reverse mode of mse sums the squared errors instead of averaging (no 1/B)"
    catches = ("opt.sgd.minibatch", "opt.xor.trajectory")
    rules = {"mse": (lambda xp, ops, ans, g, yh, y: (g * 2 * (yh - y), g * 2 * (y - yh)),
                     lambda xp, ops, ans, ts, yh, y: 2 * xp.sum((yh - y) * ts[0]))}


MUTANTS = [c for c in OptMutant.__subclasses__() if c.catches]
