"""Deliberately broken backends for the hid family: the NumPy backend with exactly one defect
each (conventions of tests/mutants.py: ``catches``, ``spares``, ``dtypes_run``, ``clauses``,
``says``).  Load one as ``--ffnspec-backend=tests.mutants_hid:LeakySlopeWrongSide``.

Besides ``replace`` (wrapped like NumpyBackend's ops) and ``partials`` (elementwise derivative
rules), a hid mutant may set ``native`` (ops used as written, e.g. in-place variants that must
write into their argument), ``rules`` (structured (vjp, jvp) rules of backprop.RULES) and
``conventions`` (the declared kink/tie conventions).
"""
from __future__ import annotations

import contextlib
from typing import Callable
from unittest import mock

import numpy as np

from ffnspec.adapters import OpTable, backprop
from ffnspec.adapters.numpy_backend import HID_CONVENTIONS, _hardtanh, _inplace, _leaky_relu, _prelu, _relu
from tests.mutants import Mutant

_PRELU_VJP, _PRELU_JVP = backprop.RULES["prelu"]
_MAXOUT_VJP, _MAXOUT_JVP = backprop.RULES["maxout"]
_RBF_VJP, _RBF_JVP = backprop.RULES["rbf"]


class HidMutant(Mutant):
    native: dict[str, Callable] = {}
    rules: dict[str, tuple[Callable, Callable]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.ops = OpTable({**self.ops, **{op: self._quiet(f) for op, f in self.native.items()}})

    @contextlib.contextmanager
    def _structured(self):
        with mock.patch.dict(backprop.RULES, self.rules):
            yield

    def vjp(self, fn, primals, cotangent):
        with self._structured():
            return super().vjp(fn, primals, cotangent)

    def jvp(self, fn, primals, tangents):
        with self._structured():
            return super().jvp(fn, primals, tangents)


def _a(alpha, z):
    return np.asarray(alpha).astype(z.dtype)


# --------------------------------------------------------------- rectifiers ----
class ReluNotExactAt0(HidMutant):
    defect = "relu(+-0) returns the smallest subnormal instead of 0"
    catches = ("hid.relu",)
    replace = {"relu": lambda z: np.where(z == 0, np.finfo(z.dtype).smallest_subnormal, _relu(z))}


class ReluOverflows(HidMutant):
    defect = "relu(z) = (z + |z|) / 2: z + |z| overflows for z > max/2 (inf instead of z)"
    catches = ("hid.relu",)
    native = {"relu": lambda z: (z + np.abs(z)) / z.dtype.type(2)}


class ReluFlushesSubnormals(HidMutant):
    defect = "relu reads subnormal inputs as 0 (DAZ) without declaring flush_to_zero"
    catches = ("hid.relu",)
    native = {"relu": lambda z: _relu(np.where(np.abs(z) < np.finfo(z.dtype).tiny, z * 0, z))}


class LeakySlopeWrongSide(HidMutant):
    defect = "leaky_relu applies the slope to z > 0 and passes z < 0 through"
    catches = ("hid.leaky", "hid.rectifier")
    native = {"leaky_relu": lambda z, alpha=0.01: np.where(z < 0, z, _a(alpha, z) * z)}


class LeakyGradWrongSide(HidMutant):
    defect = "the leaky_relu derivative is alpha for z > 0 and 1 for z < 0"
    catches = ("hid.leaky.grad/vjp", "hid.leaky.grad/jvp", "hid.rectifier.grad/vjp", "hid.rectifier.grad/jvp")
    partials = {"leaky_relu": lambda xp, ops, ans, z, alpha=0.01: (xp.where(z > 0, _a(alpha, z), xp.ones_like(z)),)}


class LeakyDoubleRounding(HidMutant):
    defect = "16-bit leaky_relu multiplies by alpha in float32 and rounds twice (as torch does)"
    catches = ("hid.leaky@float16",)
    spares = ("hid.leaky@float32",)
    dtypes_run = ("float16", "float32")
    native = {"leaky_relu": lambda z, alpha=0.01: np.where(
        z > 0, z, (np.float32(alpha) * z.astype(np.float32)).astype(z.dtype))}


class RectifierClampsNegativeAlpha(HidMutant):
    defect = "a negative slope is treated as 0 (the non-monotone rectifiers are wrong; alpha = 0.01 is right)"
    catches = ("hid.rectifier",)
    spares = ("hid.leaky",)
    native = {"leaky_relu": lambda z, alpha=0.01: _leaky_relu(z, max(alpha, 0.0))}


class RectifierZeroSlopeNaN(HidMutant):
    defect = "alpha = 0 gives 0 * (-inf) = NaN at z = -inf instead of the limit 0 (as torch and jax do)"
    catches = ("hid.rectifier",)
    spares = ("hid.leaky",)
    native = {"leaky_relu": lambda z, alpha=0.01: np.where(z > 0, z, _a(alpha, z) * z)}


class AbsIsRelu(HidMutant):
    defect = "abs returns max(0, z): no fold, so T^l has fewer than 2^l pieces"
    catches = ("hid.abs", "hid.folding")
    native = {"abs": _relu}


class AbsGradOne(HidMutant):
    defect = "the derivative of |z| is 1 everywhere"
    catches = ("hid.abs.grad/vjp", "hid.abs.grad/jvp", "hid.folding")
    partials = {"abs": lambda xp, ops, ans, z: (xp.ones_like(z),)}


class HardtanhDropsNaN(HidMutant):
    defect = "hardtanh clamps with fmin/fmax, which drop NaN (NaN -> -1)"
    catches = ("hid.hardtanh",)
    native = {"hardtanh": lambda z: np.fmin(np.fmax(z, z.dtype.type(-1)), z.dtype.type(1))}


class HardtanhGradOutside(HidMutant):
    defect = "the hard tanh derivative is 1 outside [-1, 1] too (a gradient leaking from saturated units)"
    catches = ("hid.hardtanh.grad/vjp", "hid.hardtanh.grad/jvp", "hid.conventions")
    partials = {"hardtanh": lambda xp, ops, ans, z: (xp.ones_like(z),)}


# ------------------------------------------------------------------ PReLU ----
class PreluSharesFirstSlope(HidMutant):
    defect = "prelu uses the first channel's slope for every channel"
    catches = ("hid.prelu",)
    replace = {"prelu": lambda z, a: np.where(z > 0, z, np.where(np.isinf(z) & (a.ravel()[0] == 0), 0, a.ravel()[0] * z))}


class PreluGradZAtZero(HidMutant):
    defect = "the prelu z-derivative at 0 is 1 while the backend declares prelu_grad_at_0 = alpha"
    catches = ("hid.prelu.grad/vjp", "hid.prelu.grad/jvp", "hid.conventions")
    rules = {"prelu": (lambda xp, ops, ans, g, z, a: (xp.where(z >= 0, g, g * a), _PRELU_VJP(xp, ops, ans, g, z, a)[1]),
                       lambda xp, ops, ans, ts, z, a: xp.where(z >= 0, ts[0], a * ts[0]) + xp.minimum(z, 0) * ts[1])}


class PreluAlphaGradMissing(HidMutant):
    defect = "prelu has no derivative with respect to alpha (0 in both modes)"
    catches = ("hid.prelu.grad_alpha/vjp", "hid.prelu.grad_alpha/jvp")
    rules = {"prelu": (lambda xp, ops, ans, g, z, a: (_PRELU_VJP(xp, ops, ans, g, z, a)[0], xp.zeros_like(a)),
                       lambda xp, ops, ans, ts, z, a: xp.where(z > 0, ts[0], a * ts[0]))}


class PreluAlphaGradUnsummed(HidMutant):
    defect = "the shared slope's gradient takes one use (the first batch row) instead of summing all uses"
    catches = ("hid.prelu.grad_alpha/vjp",)
    spares = ("hid.prelu.grad_alpha/jvp",)
    rules = {"prelu": (lambda xp, ops, ans, g, z, a: (_PRELU_VJP(xp, ops, ans, g, z, a)[0],
                                                      backprop._sum_to(xp, (g * xp.minimum(z, 0))[:1], a.shape)),
                       _PRELU_JVP)}


# ----------------------------------------------------------------- maxout ----
class MaxoutStridedGroups(HidMutant):
    defect = "maxout groups are strided (j, j + m/k, ...) instead of consecutive blocks of k"
    catches = ("hid.maxout",)
    replace = {"maxout": lambda z, k: np.max(z.reshape(z.shape[:-1] + (k, z.shape[-1] // k)), axis=-2)}


class MaxoutDropsNaN(HidMutant):
    defect = "maxout ignores NaN (fmax reduction), as jnp.max does on large float32 arrays"
    catches = ("hid.maxout",)
    replace = {"maxout": lambda z, k: np.fmax.reduce(z.reshape(z.shape[:-1] + (z.shape[-1] // k, k)), axis=-1)}


def _dup_vjp(xp, ops, ans, g, z):
    zg, mask, _ = backprop._groups(xp, ans, z)
    return (xp.where(mask, g[..., None], 0).reshape(z.shape),)


def _dup_jvp(xp, ops, ans, ts, z):
    zg, mask, _ = backprop._groups(xp, ans, z)
    return xp.sum(xp.where(mask, ts[0].reshape(zg.shape), 0), axis=-1)


class MaxoutTiesDuplicate(HidMutant):
    defect = "maxout copies the upstream gradient to every tied maximum (the sum is t g)"
    catches = ("hid.maxout.grad/vjp", "hid.maxout.grad/jvp", "hid.conventions")
    rules = {"maxout": (_dup_vjp, _dup_jvp)}


def _first_vjp(xp, ops, ans, g, z):
    zg, mask, _ = backprop._groups(xp, ans, z)
    first = xp.cumsum(mask, axis=-1) == 1
    return (xp.where(mask & first, g[..., None], 0).reshape(z.shape),)


class MaxoutTiesFirstDeclaredEven(HidMutant):
    defect = "reverse mode routes a tie to the first maximum while the backend declares maxout_ties = even"
    catches = ("hid.maxout.grad/vjp", "hid.conventions")
    spares = ("hid.maxout.grad/jvp",)
    rules = {"maxout": (_first_vjp, _MAXOUT_JVP)}


class MaxoutTiesFirstDeclared(HidMutant):
    """Not a defect: routing ties to the first maximum, declared; conforms with declared deviations."""
    catches = ()
    conventions = {**HID_CONVENTIONS, "flush_to_zero": "no", "maxout_ties": "first"}
    rules = {"maxout": (_first_vjp, lambda xp, ops, ans, ts, z: xp.sum(xp.where(
        backprop._groups(xp, ans, z)[1] & (xp.cumsum(backprop._groups(xp, ans, z)[1], axis=-1) == 1),
        ts[0].reshape(backprop._groups(xp, ans, z)[0].shape), 0), axis=-1))}


# ------------------------------------------------------------- conventions ----
class UndeclaredConvention(HidMutant):
    defect = "relu_grad_at_0 is not declared (the behaviour, 0, is allowed: only [hid.conventions] fails)"
    catches = ("hid.conventions",)
    spares = ("hid.relu.grad/vjp", "hid.relu.grad/jvp")
    conventions = {"flush_to_zero": "no", **{k: v for k, v in HID_CONVENTIONS.items() if k != "relu_grad_at_0"}}


class DisallowedConvention(HidMutant):
    defect = "relu_grad_at_0 declared 0.5 (a value between the one-sided derivatives) and behaving so"
    catches = ("hid.conventions", "hid.relu.grad/vjp", "hid.relu.grad/jvp")
    conventions = {"flush_to_zero": "no", **HID_CONVENTIONS, "relu_grad_at_0": "0.5"}
    partials = {"relu": lambda xp, ops, ans, z: (xp.where(z == 0, 0.5, (z > 0)).astype(z.dtype),)}


class ReluGradConventionMismatch(HidMutant):
    defect = "relu'(0) is 1 while the backend declares relu_grad_at_0 = 0"
    catches = ("hid.relu.grad/vjp", "hid.relu.grad/jvp", "hid.conventions")
    partials = {"relu": lambda xp, ops, ans, z: ((z >= 0).astype(z.dtype),)}


class ReluGradModesDisagree(HidMutant):
    defect = "forward mode gives relu'(0) = 1, reverse mode 0 (as torch's prelu does at 0)"
    catches = ("hid.relu.grad/jvp", "hid.conventions")
    spares = ("hid.relu.grad/vjp",)
    jvp_partials = {"relu": lambda xp, ops, ans, z: ((z >= 0).astype(z.dtype),)}


class ReluGradOneDeclared(HidMutant):
    """Not a defect: relu'(0) = 1, declared (the right derivative, as the custom ReLU of seed 002);
    conforms with declared deviations (tests/test_hid.py)."""
    catches = ()
    conventions = {"flush_to_zero": "no", **HID_CONVENTIONS, "relu_grad_at_0": "1"}
    partials = {"relu": lambda xp, ops, ans, z: ((z >= 0).astype(z.dtype),)}


# ------------------------------------------------------------------ variants ----
def _copy_of(f):
    def op(z, **params):
        return f(z.copy(), **params)
    return op


class InplaceNotInPlace(HidMutant):
    defect = "relu_ returns the result in a new array and leaves its argument unchanged"
    catches = ("hid.inplace",)
    native = {"relu_": _copy_of(_inplace(_relu))}


class InplaceValueDiffers(HidMutant):
    defect = "leaky_relu_ multiplies by alpha in float64 and rounds twice: values differ from leaky_relu"
    catches = ("hid.inplace",)
    native = {"leaky_relu_": _inplace(lambda z, alpha=0.01: np.where(z > 0, z, (alpha * z.astype(np.float64)).astype(z.dtype)))}


class InplaceGradDiffers(HidMutant):
    defect = "the in-place hardtanh_ derivative is 1 at +-1 (it tests |ans| <= 1), the out-of-place one 0"
    catches = ("hid.inplace",)
    partials = {"hardtanh_": lambda xp, ops, ans, z: ((xp.abs(ans) <= 1).astype(ans.dtype),)}


class ScalarDiffers(HidMutant):
    defect = "0-d inputs of hardtanh take another path that maps -0 to +0 and 1 to the float below 1"
    catches = ("hid.scalar",)
    native = {"hardtanh": lambda z: (np.where(z >= 1, np.nextafter(z.dtype.type(1), z.dtype.type(0)), _hardtanh(z)) + 0
                                     if z.ndim == 0 else _hardtanh(z)).astype(z.dtype)}


class ScalarGradDiffers(HidMutant):
    defect = "the leaky_relu derivative of a 0-d input at 0 is 1 (arrays: alpha)"
    catches = ("hid.scalar",)
    partials = {"leaky_relu": lambda xp, ops, ans, z, alpha=0.01: (
        xp.where((z > 0) | ((z == 0) & (z.ndim == 0)), xp.ones_like(z), _a(alpha, z)),)}


# ------------------------------------------------------------ radial basis ----
def _rbf_expanded(x, W, sigma):
    q = (np.sum(x * x, -1)[:, None] - 2 * x @ W.T + np.sum(W * W, -1)[None, :]) / (sigma * sigma)
    return np.exp(-q)


class RbfExpandedSquare(HidMutant):
    defect = "||x - W||^2 as ||x||^2 - 2 x.W + ||W||^2: cancellation where x is near W"
    catches = ("hid.rbf",)
    replace = {"rbf": _rbf_expanded}


class RbfGradSigmaHalf(HidMutant):
    defect = "the derivative with respect to sigma misses the factor 2 (h q / sigma)"
    catches = ("hid.rbf.grad/vjp", "hid.rbf.grad/jvp")
    rules = {"rbf": (lambda xp, ops, ans, g, x, W, s: _RBF_VJP(xp, ops, ans, g, x, W, s)[:2]
                     + (_RBF_VJP(xp, ops, ans, g, x, W, s)[2] / 2,),
                     lambda xp, ops, ans, ts, x, W, s: _RBF_JVP(xp, ops, ans, [ts[0], ts[1], None], x, W, s)
                     + _RBF_JVP(xp, ops, ans, [None, None, ts[2]], x, W, s) / 2)}


# ---------------------------------------------------------------- low rank ----
class LowrankBias(HidMutant):
    defect = "the low-rank layer adds 1/16: affine, not linear"
    catches = ("hid.lowrank", "hid.lowrank.linear")
    replace = {"lowrank": lambda x, V, U: (x @ U.T) @ V.T + x.dtype.type(0.0625)}


class PreluNanSlopeZero(HidMutant):
    # generated special-value table (docs/measure.md "Special values")
    defect = "a NaN slope is read as 0 (the second argument's NaN is not propagated): prelu(-1, nan) = 0"
    catches = ("hid.prelu",)
    says = "generated table"
    replace = {"prelu": lambda z, alpha: _prelu(z, np.where(np.isnan(alpha), 0, alpha))}


MUTANTS = [c for c in HidMutant.__subclasses__() if c.catches]


class NoInplaceVariants(HidMutant):
    """Not a defect: a backend without in-place variants (optional ops): [hid.inplace] is skipped."""
    catches = ()

    def __init__(self) -> None:
        super().__init__()
        self.ops = OpTable({k: v for k, v in self.ops.items() if not k.endswith("_")})

