"""Deliberately broken backends for the out family (softmax, logsumexp, losses): the NumPy
backend with exactly one defect each, under the conventions of tests/mutants.py (``catches``,
``spares``, ``dtypes_run``, ``clauses``, ``says``, ``replace``, ``partials``), plus ``rules``
(and ``vjp_rules``/``jvp_rules``) replacing entries of backprop.RULES, the (vjp, jvp) table of
the non-elementwise primitives.  Load one as ``--ffnspec-backend=tests.mutants_out:NaiveSoftmax``.
"""
from __future__ import annotations

import contextlib
from unittest import mock

import numpy as np

from ffnspec.adapters import OpTable, backprop
from ffnspec.adapters.numpy_backend import (_OUT_OPS, _cross_entropy, _log_softmax, _logsumexp, _shifted, _softmax,
                                            _softplus, _take)
from tests.mutants import Mutant, _up


class OutMutant(Mutant):
    """Base: also patches backprop.RULES (a (vjp, jvp) pair per non-elementwise primitive)."""
    rules: dict = {}
    vjp_rules: dict = {}     # op -> broken vjp only (the jvp stays right)
    jvp_rules: dict = {}     # op -> broken jvp only

    @staticmethod
    @contextlib.contextmanager
    def _patched(table: dict, which: int | None):
        new = {}
        for op, rule in table.items():
            if which is None:
                new[op] = rule
            else:
                pair = list(backprop.RULES[op])
                pair[which] = rule
                new[op] = tuple(pair)
        with mock.patch.dict(backprop.RULES, new):
            yield

    def vjp(self, fn, primals, cotangent):
        with self._patched(self.rules, None), self._patched(self.vjp_rules, 0):
            return super().vjp(fn, primals, cotangent)

    def jvp(self, fn, primals, tangents):
        with self._patched(self.rules, None), self._patched(self.jvp_rules, 1):
            return super().jvp(fn, primals, tangents)


def _s(a):
    return np.sum(a, axis=-1, keepdims=True)


# ------------------------------------------------------------------ softmax ----
class NaiveSoftmax(OutMutant):
    defect = "unshifted exp(z) / sum exp(z): inf/inf = NaN once exp overflows, 0/0 once every term underflows"
    catches = ("out.softmax", "out.softmax.finite", "out.softmax.sigmoid", "out.softmax.shift",
               "out.softmax.overparam", "out.softmax.sum")
    replace = {"softmax": lambda z: np.exp(z) / _s(np.exp(z))}


class SoftmaxNotNormalised(OutMutant):
    defect = "returns e^(z - max z), forgetting to divide by the sum"
    catches = ("out.softmax", "out.softmax.sum")
    replace = {"softmax": lambda z: np.exp(z - np.max(z, axis=-1, keepdims=True))}


class SoftmaxAboveOne(OutMutant):
    defect = "entries that round to 1 come back one step above 1 (2u: within the value bound, not in [0, 1])"
    catches = ("out.softmax.range",)
    replace = {"softmax": lambda z: (lambda a: np.where(a == 1, _up(a), a))(_softmax(z))}


class SoftmaxMaskLeak(OutMutant):
    defect = "masked (-inf) classes get the smallest subnormal instead of 0 (within k eta of the value bound)"
    catches = ("out.softmax.masked",)
    replace = {"softmax": lambda z: np.where(np.isneginf(z), np.finfo(z.dtype).smallest_subnormal, _softmax(z))}


class SoftmaxAllMaskedUniform(OutMutant):
    defect = "a fully masked row gives the uniform 1/n without declaring the convention"
    catches = ("out.softmax.all_masked",)
    replace = {"softmax": lambda z: np.where(np.isneginf(z).all(axis=-1, keepdims=True), 1.0 / z.shape[-1],
                                             _softmax(z))}


class SoftmaxAllMaskedUniformDeclared(SoftmaxAllMaskedUniform):
    """Not a defect: the same convention, declared: a deviation, never a pass (tests/test_mutants.py)."""
    catches = ()
    conventions = {"flush_to_zero": "no", "softmax_all_masked": "uniform"}


class SoftmaxJacobianDiagonal(OutMutant):
    defect = "softmax Jacobian without its off-diagonal terms: a (1 - a) v"
    catches = ("out.softmax.jacobian/vjp", "out.softmax.jacobian/jvp")
    rules = {"softmax": (lambda xp, ops, ans, g, z: (ans * (1 - ans) * g,),
                         lambda xp, ops, ans, ts, z: ans * (1 - ans) * ts[0])}


class SoftmaxJacobianVjpOnly(OutMutant):
    defect = "reverse mode uses a (v - sum v) (the sum unweighted by a); forward mode is right"
    catches = ("out.softmax.jacobian/vjp",)
    spares = ("out.softmax.jacobian/jvp",)
    vjp_rules = {"softmax": lambda xp, ops, ans, g, z: (ans * (g - _s(g)),)}


# ---------------------------------------------------------------- logsumexp ----
class LogsumexpInfMinusInf(OutMutant):
    defect = "max + log sum exp(z - max) without guarding an infinite max: inf - inf = NaN for a +inf entry"
    catches = ("out.logsumexp",)
    says = "special value"
    replace = {"logsumexp": lambda z: (lambda m: m[..., 0] + np.log(np.sum(np.exp(z - m), axis=-1)))(
        np.max(z, axis=-1, keepdims=True))}


class NaiveLogsumexp(OutMutant):
    defect = "log(sum(exp(z))): overflows for large z, log 0 = -inf once every term underflows"
    catches = ("out.logsumexp", "out.logsumexp.softplus")
    replace = {"logsumexp": lambda z: np.log(np.sum(np.exp(z), axis=-1))}


class LogsumexpBelowMax(OutMutant):
    defect = "logsumexp one step below max z where it rounds to max z (within the value bound, below the max)"
    catches = ("out.logsumexp.bounds",)
    replace = {"logsumexp": lambda z: (lambda y, m: np.where(y == m, np.nextafter(y, y.dtype.type(-np.inf)), y))(
        _logsumexp(z), np.max(z, axis=-1))}


class LogaddexpDrifts(OutMutant):
    defect = "logaddexp(x, y) (1 + 2^-10): disagrees with logsumexp([x, y])"
    catches = ("out.logaddexp.lse",)
    replace = {"logaddexp": lambda x, y: np.logaddexp(x, y) * (1 + 2.0 ** -10)}


def _logaddexp_unguarded(a, b):
    """max + log1p(exp(-|a - b|)) with no care for infinities: a - b = inf - inf = NaN."""
    with np.errstate(invalid="ignore"):
        return np.maximum(a, b) + np.log1p(np.exp(-np.abs(a - b)))


class LogaddexpNaive(OutMutant):
    defect = "log(exp(a) + exp(b)): inf once max(a, b) > log(max_finite), -inf once both exponentials underflow"
    catches = ("out.logaddexp",)
    replace = {"logaddexp": lambda a, b: np.log(np.exp(a) + np.exp(b))}


class LogaddexpUnguarded(OutMutant):
    defect = "max + log1p(exp(-|a - b|)) without the infinities' limits: logaddexp(-inf, -inf) = NaN"
    catches = ("out.logaddexp",)
    says = "special value"
    replace = {"logaddexp": _logaddexp_unguarded}


class LogaddexpGradSwapped(OutMutant):
    defect = "logaddexp partials swapped: sigma(b - a) for a, sigma(a - b) for b"
    catches = ("out.logaddexp.grad/vjp", "out.logaddexp.grad/jvp")
    partials = {"logaddexp": lambda xp, ops, ans, x, y: (ops.sigmoid(y - x), ops.sigmoid(x - y))}


def _exponent_partials(xp, ops, ans, x, y):
    """e^(x - ans), e^(y - ans) where ans is finite; the sigmoid form (the limits) elsewhere."""
    with np.errstate(invalid="ignore", over="ignore"):
        ea, eb, d = xp.exp(x - ans), xp.exp(y - ans), x - y
    fin = np.isfinite(ans)
    return xp.where(fin, ea, ops.sigmoid(d)), xp.where(fin, eb, ops.sigmoid(-d))


class LogaddexpGradExponent(OutMutant):
    defect = "logaddexp partials e^(x - ans) from the rounded ans (JAX's form): 1 each for a = b >= 2^24 (float32)"
    finds = ("out.logaddexp.grad",)
    partials = {"logaddexp": _exponent_partials}


def _replace_inf(x):
    return np.where(np.isinf(x), np.zeros_like(x), x)


class LogaddexpGradReplaceInf(OutMutant):
    defect = "logaddexp partials e^(x - ans) with +-inf replaced by 0 (jax's _logaddexp_jvp): d/db (+inf, 1) = e"
    catches = ("out.logaddexp.grad/vjp", "out.logaddexp.grad/jvp")
    says = "special value"
    partials = {"logaddexp": lambda xp, ops, ans, x, y: (xp.exp(_replace_inf(x) - _replace_inf(ans)),
                                                         xp.exp(_replace_inf(y) - _replace_inf(ans)))}


class LogsumexpKeepsDims(OutMutant):
    defect = "logsumexp keeps the reduced axis: shape (m, 1) instead of (m,)"
    catches = ("num.shape",)
    clauses = ("num.shape",)
    replace = {"logsumexp": lambda z: _logsumexp(z)[..., None]}


class SoftmaxInPlace(OutMutant):
    defect = "softmax writes its result into its input"
    catches = ("num.no_mutation",)
    clauses = ("num.no_mutation",)

    @staticmethod
    def _inplace(z):
        a = _softmax(z)
        z[...] = a
        return a

    def __init__(self) -> None:
        super().__init__()
        from ffnspec.adapters import OpTable
        self.ops = OpTable({**self.ops, "softmax": self._quiet(self._inplace)})


# -------------------------------------------------------------- log-softmax ----
class LogOfSoftmax(OutMutant):
    defect = "log_softmax = log(softmax(z)): -inf once a softmax entry underflows"
    catches = ("out.log_softmax",)
    replace = {"log_softmax": lambda z: np.log(_softmax(z))}


class LogSoftmaxGradNoSum(OutMutant):
    defect = "log-softmax Jacobian applied without the sum: v - a v, t - a t"
    catches = ("out.log_softmax.grad/vjp", "out.log_softmax.grad/jvp")
    rules = {"log_softmax": (lambda xp, ops, ans, g, z: (g - xp.exp(ans) * g,),
                             lambda xp, ops, ans, ts, z: ts[0] - xp.exp(ans) * ts[0])}


# ------------------------------------------------------------ cross-entropy ----
class CrossEntropyLogOfSoftmax(OutMutant):
    defect = "-log(softmax(z)_y): inf once softmax(z)_y underflows"
    catches = ("out.ce",)
    replace = {"cross_entropy": lambda z, y: -np.log(_take(_softmax(z), y))}


class CrossEntropyGradWrongSign(OutMutant):
    defect = "cross-entropy gradient onehot(y) - softmax(z)"
    catches = ("out.ce.grad/vjp", "out.ce.grad/jvp")
    rules = {"cross_entropy": (lambda xp, ops, ans, g, z, y: (
        xp.asarray(g)[..., None] * (backprop._onehot(xp, y, z.shape[-1], z.dtype) - ops.softmax(z)), None),
        lambda xp, ops, ans, ts, z, y: -backprop._ce_jvp(xp, ops, z, y, ts[0]))}


class CrossEntropyGradMissingSoftmax(OutMutant):
    defect = "cross-entropy gradient -onehot(y): the softmax term is missing"
    catches = ("out.ce.grad/vjp", "out.ce.grad/jvp")
    rules = {"cross_entropy": (lambda xp, ops, ans, g, z, y: (
        -xp.asarray(g)[..., None] * backprop._onehot(xp, y, z.shape[-1], z.dtype), None),
        lambda xp, ops, ans, ts, z, y: -backprop._take(xp, ts[0], y))}


class CrossEntropyMeanOverMMinus1(OutMutant):
    defect = "reduction='mean' divides the sum by m - 1"
    catches = ("out.ce.mean", "out.ce.reduction")
    replace = {"cross_entropy_mean": lambda z, y: np.sum(_cross_entropy(z, y)) / (z.shape[0] - 1)}


class CrossEntropySumDropsLastRow(OutMutant):
    defect = "reduction='sum' leaves out the last row of the batch"
    catches = ("out.ce.reduction",)
    spares = ("out.ce", "out.ce.mean")
    replace = {"cross_entropy_sum": lambda z, y: np.sum(_cross_entropy(z, y)[:-1])}


class NLLPicksTheNextClass(OutMutant):
    defect = "nll(lp, y) reads lp[(y + 1) mod n]"
    catches = ("out.nll",)
    replace = {"nll": lambda lp, y: -_take(lp, (np.asarray(y) + 1) % lp.shape[-1])}


class SoftCrossEntropyUnnormalised(OutMutant):
    defect = "soft-target cross-entropy -sum p z: the log-normaliser is missing"
    catches = ("out.ce.soft",)
    replace = {"cross_entropy_soft": lambda z, p: -np.sum(p * z, axis=-1)}


class KLWithoutEntropy(OutMutant):
    defect = "kl_div returns H(p, q), forgetting -H(p)"
    catches = ("out.kl", "out.kl.decomposition")
    replace = {"kl_div": _OUT_OPS["cross_entropy_soft"]}


# -------------------------------------------------------------------- BCE ----
class BCEProbabilityForm(OutMutant):
    defect = "BCE through sigmoid then log: log(1 - 1) = -inf once sigma(z) rounds to 1"
    catches = ("out.bce",)
    replace = {"bce": lambda z, y: -(y * np.log(1 / (1 + np.exp(-z))) + (1 - y) * np.log(1 - 1 / (1 + np.exp(-z))))}


class BCENaNAtInfinity(OutMutant):
    defect = "(1 - y) z + zeta(-z): 0 * inf = NaN at z = +inf, y = 1 (finite inputs are right)"
    catches = ("out.bce",)
    says = "special value"
    replace = {"bce": lambda z, y: (1 - y) * z + _softplus(-z)}


class BCEGradWrongSign(OutMutant):
    defect = "BCE gradient y - sigma(z)"
    catches = ("out.bce.grad/vjp", "out.bce.grad/jvp")
    partials = {"bce": lambda xp, ops, ans, z, y: (y - ops.sigmoid(z), -z)}


class BCEGradNaNAtInfinity(OutMutant):
    defect = "BCE gradient (sigma(z) - y) (1 + z - z): NaN at z = +-inf, where the limits are 1 - y and -y"
    catches = ("out.bce.grad/vjp", "out.bce.grad/jvp")
    says = "special value"
    partials = {"bce": lambda xp, ops, ans, z, y: ((ops.sigmoid(z) - y) * (1 + (z - z)), -z)}


class BCEGradMissingTarget(OutMutant):
    defect = "BCE gradient sigma(z): the -y term is missing"
    catches = ("out.bce.grad/vjp", "out.bce.grad/jvp")
    partials = {"bce": lambda xp, ops, ans, z, y: (ops.sigmoid(z), -z)}


class BCEGradSaturates(OutMutant):
    defect = "BCE gradient (sigma - y) 4 sigma (1 - sigma): vanishes for a confidently wrong answer"
    catches = ("out.bce.grad/vjp", "out.bce.asymptotics")
    clauses = ("out.bce.grad", "out.bce.asymptotics")
    partials = {"bce": lambda xp, ops, ans, z, y: ((ops.sigmoid(z) - y) * 4 * ops.sigmoid(z) * ops.sigmoid(-z), -z)}


class BCEProbClampsLog(OutMutant):
    defect = "probability-form BCE clamps log at -100 (a loss capped at 100)"
    catches = ("out.bce.prob",)
    replace = {"bce_prob": lambda a, y: -(y * np.maximum(np.log(a), -100) + (1 - y) * np.maximum(np.log1p(-a), -100))}


class SigmoidGradConstant(OutMutant):
    defect = "sigmoid derivative 1/4 everywhere: MSE-on-sigmoid no longer vanishes when wrong"
    catches = ("out.bce.mse_contrast",)
    partials = {"sigmoid": lambda xp, ops, ans, z: (xp.full_like(ans, 0.25),)}


class PosWeightOtherPath(OutMutant):
    defect = "bce_pos_weight takes another formula, (1-y) z + (1 + (w-1) y) zeta(-z): pos_weight = 1 changes bits"
    catches = ("out.bce.pos_weight",)
    replace = {"bce_pos_weight": lambda z, y, w: (1 - y) * z + (1 + (w - 1) * y) * _softplus(-z)}


# ------------------------------------------------------------- regression ----
class HalfSquaredErrorWithoutHalf(OutMutant):
    defect = "linear-Gaussian loss (y - yhat)^2, not 1/2 (y - yhat)^2"
    catches = ("out.gaussian",)
    replace = {"half_sq_error": lambda yh, y: np.square(yh - y)}


class HalfSquaredErrorGradSign(OutMutant):
    defect = "linear-Gaussian gradient y - yhat"
    catches = ("out.gaussian.grad/vjp", "out.gaussian.grad/jvp")
    partials = {"half_sq_error": lambda xp, ops, ans, yh, y: (y - yh, yh - y)}


class MSESumNotMean(OutMutant):
    defect = "MSE sums instead of averaging"
    catches = ("out.mse",)
    replace = {"mse": lambda yh, y: np.sum(np.square(yh - y))}


class MSEGradMissingTwo(OutMutant):
    defect = "MSE gradient (yhat - y) / m: the factor 2 is missing"
    catches = ("out.mse.grad/vjp", "out.mse.grad/jvp")
    rules = {"mse": (lambda xp, ops, ans, g, yh, y: (g * (yh - y) / yh.size, g * (y - yh) / yh.size),
                     lambda xp, ops, ans, ts, yh, y: xp.sum((yh - y) * backprop._t(ts[0], yh)) / yh.size)}


class MSEOffset(OutMutant):
    defect = "MSE of (yhat - y - 1): its best constant is mean + 1"
    catches = ("out.mse.mean",)
    clauses = ("out.mse.mean",)
    replace = {"mse": lambda yh, y: np.mean(np.square(yh - y - 1))}
    rules = {"mse": (lambda xp, ops, ans, g, yh, y: (g * 2 * (yh - y - 1) / yh.size, None),
                     lambda xp, ops, ans, ts, yh, y: xp.sum(2 * (yh - y - 1) * backprop._t(ts[0], yh)) / yh.size)}


class MAERootMeanSquare(OutMutant):
    defect = "MAE computed as sqrt(mean((yhat - y)^2))"
    catches = ("out.mae",)
    replace = {"mae": lambda yh, y: np.sqrt(np.mean(np.square(yh - y)))}


class MAEGradWithoutMean(OutMutant):
    defect = "MAE gradient sign(yhat - y): the 1/m is missing"
    catches = ("out.mae.grad/vjp", "out.mae.grad/jvp")
    rules = {"mae": (lambda xp, ops, ans, g, yh, y: (g * xp.sign(yh - y), None),
                     lambda xp, ops, ans, ts, yh, y: xp.sum(xp.sign(yh - y) * backprop._t(ts[0], yh)))}


class MAEOffset(OutMutant):
    defect = "MAE of (yhat - y - 1): its best constant is median + 1"
    catches = ("out.mae.median",)
    clauses = ("out.mae.median",)
    rules = {"mae": (lambda xp, ops, ans, g, yh, y: (g * xp.sign(yh - y - 1) / yh.size, None),
                     lambda xp, ops, ans, ts, yh, y: xp.sum(xp.sign(yh - y - 1) * backprop._t(ts[0], yh)) / yh.size)}


class GaussianNLLWholeLog(OutMutant):
    defect = "heteroscedastic NLL 1/2 beta d^2 - log beta: the 1/2 on the log is missing"
    catches = ("out.gaussian_nll",)
    replace = {"gaussian_nll": lambda mu, y, beta: 0.5 * beta * np.square(y - mu) - np.log(beta)}


class GaussianNLLPrecisionGradSign(OutMutant):
    defect = "d/dbeta = 1/(2 beta) - d^2/2 (sign flipped)"
    catches = ("out.gaussian_nll.grad/vjp", "out.gaussian_nll.grad/jvp")
    partials = {"gaussian_nll": lambda xp, ops, ans, mu, y, b: (b * (mu - y), b * (y - mu), 0.5 / b - 0.5 * (y - mu) ** 2)}


class CovarianceWithoutTranspose(OutMutant):
    defect = "Sigma = B B instead of B B^T: neither symmetric nor positive semi-definite"
    catches = ("out.gaussian.cov_psd",)
    replace = {"cov_from_factor": lambda b: b @ b}


class MixtureProductOfDensities(OutMutant):
    defect = "mixture NLL -log sum exp(r) unshifted: log 0 = inf once every component's density underflows"
    catches = ("out.mdn_nll",)

    @staticmethod
    def _mdn(w, mu, beta, y):
        d = np.asarray(y)[..., None] - mu
        return -np.log(np.sum(np.exp(_log_softmax(w) + 0.5 * np.log(beta) - 0.5 * beta * d * d), axis=-1))

    replace = {"mdn_nll": _mdn}


class MixtureGradMuSign(OutMutant):
    defect = "mixture NLL gradient in the means gamma beta (y - mu): sign flipped"
    catches = ("out.mdn_nll.grad/vjp", "out.mdn_nll.grad/jvp")

    @staticmethod
    def _vjp(xp, ops, ans, g, w, mu, beta, y):
        gw, gm, gb, gy = backprop._mdn_vjp(xp, ops, ans, g, w, mu, beta, y)
        return gw, -gm, gb, gy

    @staticmethod
    def _jvp(xp, ops, ans, ts, w, mu, beta, y):
        return backprop._mdn_jvp(xp, ops, ans, [ts[0], None if ts[1] is None else -ts[1], ts[2], ts[3]],
                                 w, mu, beta, y)

    rules = {"mdn_nll": (_vjp, _jvp)}




class SoftmaxAccumulatesIn16Bit(OutMutant):
    defect = ("16-bit softmax and logsumexp computed in the storage format, the row sum accumulated term by term "
              "in it (logsumexp stays within its MUST bound, whose log n terms absorb it: its accumulation grade "
              "says 'not faithful', tests/test_out.py)")
    catches = ("out.softmax@float16",)
    dtypes_run = ("float16",)

    @staticmethod
    def _sum16(e):
        return np.cumsum(e, axis=-1, dtype=e.dtype)[..., -1:]  # recursive summation, each partial sum rounded

    def __init__(self) -> None:
        super().__init__()
        from ffnspec.adapters import OpTable

        def softmax(z):
            e = np.exp(z - np.max(z, axis=-1, keepdims=True))
            return e / self._sum16(e)

        def logsumexp(z):
            m = np.max(z, axis=-1, keepdims=True)
            m = np.where(np.isfinite(m), m, z.dtype.type(0))
            return (m + np.log(self._sum16(np.exp(z - m))))[..., 0]
        self.ops = OpTable({**self.ops, "softmax": self._quiet(softmax), "logsumexp": self._quiet(logsumexp)})


class LogsumexpGradUnnormalised(OutMutant):
    defect = "d lse / dz = exp(z) (the normalisation by sum e^z forgotten) in both AD modes"
    catches = ("out.logsumexp.grad/vjp", "out.logsumexp.grad/jvp")
    rules = {"logsumexp": (lambda xp, ops, ans, g, z: (xp.asarray(g)[..., None] * xp.exp(z),),
                           lambda xp, ops, ans, ts, z: xp.sum(xp.exp(z) * ts[0], axis=-1))}



class CeMeanGradSum(OutMutant):
    defect = "the batch-mean cross-entropy differentiated as the sum: the gradient not divided by m"
    catches = ("out.ce.mean.grad/vjp", "out.ce.mean.grad/jvp")
    rules = {"cross_entropy_mean": (lambda xp, ops, ans, g, z, y: backprop._ce_vjp(xp, ops, ans, backprop._spread(xp, g, z), z, y),
                                    lambda xp, ops, ans, ts, z, y: xp.sum(backprop._ce_jvp(xp, ops, z, y, ts[0])))}


class CeSoftGradSign(OutMutant):
    defect = "soft-target cross-entropy gradient p - a (the sign flipped) in the logits"
    catches = ("out.ce.soft.grad/vjp", "out.ce.soft.grad/jvp")
    rules = {"cross_entropy_soft": (
        lambda xp, ops, ans, g, z, p: (xp.asarray(g)[..., None] * (p - ops.softmax(z) * _s(p)),
                                       -xp.asarray(g)[..., None] * ops.log_softmax(z)),
        lambda xp, ops, ans, ts, z, p: xp.sum((p - ops.softmax(z) * _s(p)) * backprop._t(ts[0], z) - ops.log_softmax(z) * backprop._t(ts[1], p),
                                       axis=-1))}


class KlGradUnnormalised(OutMutant):
    defect = "KL gradient exp(z) sum(p) - p: the softmax's normalisation forgotten"
    catches = ("out.kl.grad/vjp", "out.kl.grad/jvp")
    rules = {"kl_div": (lambda xp, ops, ans, g, z, p: (xp.asarray(g)[..., None] * (xp.exp(z) * _s(p) - p), None),
                        lambda xp, ops, ans, ts, z, p: xp.sum((xp.exp(z) * _s(p) - p) * backprop._t(ts[0], z), axis=-1))}

class CrossEntropyLabelsUint16(OutMutant):
    defect = "class labels stored as 16-bit indices: only rows longer than 2^16 (profile thorough) show it"
    catches = ("out.ce@float16",)
    dtypes_run = ("float16",)
    profile = "thorough"
    replace = {"cross_entropy": lambda z, y: _cross_entropy(z, np.asarray(y).astype(np.uint16).astype(np.int64))}


def _softmax_sequential(z):
    """Softmax whose row sum runs left to right in the 16-bit storage format: 1 + 1 + ... stalls
    at 2^11 in float16, so a tied row of 2^16 + 1 entries gives 1/2048 for 1/65537."""
    z = np.asarray(z)
    t = _shifted(z)  # z - max z in the storage format, with the built-in backend's limits at +inf
    e = np.exp(t.astype(np.float32)).astype(z.dtype)
    s = np.cumsum(e, axis=-1, dtype=z.dtype)[..., -1:]
    return np.where(np.isneginf(t), 0, e.astype(np.float32) / s.astype(np.float32)).astype(z.dtype)


class SoftmaxSequentialSum(OutMutant):
    defect = "softmax's row summed sequentially in float16 (stalls at 2^11 = 2048; the 1000-entry rows already show it)"
    catches = ("out.softmax@float16",)
    dtypes_run = ("float16",)

    def __init__(self) -> None:
        super().__init__()
        self.ops = OpTable({**self.ops, "softmax": self._quiet(_softmax_sequential)})


def _logsumexp_storage_sum(z):
    """max z + log sum e^(z - max z) with the sum held in the 16-bit storage format (torch 2.13's
    CPU float16 logsumexp): a row whose terms sum past 65504 gives inf."""
    z = np.asarray(z)
    m = np.max(z, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)  # all -inf -> -inf, an inf entry -> inf (no inf - inf)
    e = np.exp((z - m).astype(np.float32)).astype(z.dtype)
    s = np.sum(e, axis=-1, dtype=z.dtype)
    return (m[..., 0].astype(np.float32) + np.log(s.astype(np.float32))).astype(z.dtype)


class LogsumexpStorageSum(OutMutant):
    defect = "logsumexp's sum of e^(z - max) kept in float16: inf once it passes 65504 (rows of 2^16 + 1, thorough)"
    catches = ("out.logsumexp@float16",)
    dtypes_run = ("float16",)
    profile = "thorough"

    def __init__(self) -> None:
        super().__init__()
        self.ops = OpTable({**self.ops, "logsumexp": self._quiet(_logsumexp_storage_sum)})


# ------------------------------------------------ generated special-value tables ----
# Defects only the generated tables see: a special value in the second argument, or at a row
# position other than the first (docs/measure.md "Special values").
class BceNanLabelDropped(OutMutant):
    defect = "a NaN label is read as 0 (the second argument's NaN is not propagated): bce(1, nan) = zeta(1)"
    catches = ("out.bce",)
    says = "generated table"
    replace = {"bce": lambda z, y: _OUT_OPS["bce"](z, np.where(np.isnan(y), 0, y))}


class MseInfTargetZero(OutMutant):
    defect = "terms with an infinite target are dropped: mse(1, inf) = 0 (a 'nan-safe' mask on the target)"
    catches = ("out.mse",)
    says = "generated table"
    replace = {"mse": lambda yh, y: np.mean(np.where(np.isinf(y), 0, np.square(yh - y)))}


def _softmax_nan_masked_after_first(z):
    """A NaN entry past the first is masked for the others (its own entry NaN): an off-by-one NaN check."""
    later = np.isnan(z) & (np.arange(z.shape[-1]) > 0)
    return np.where(later, np.nan, _softmax(np.where(later, -np.inf, z)))


class SoftmaxLaterNanMasked(OutMutant):
    defect = "a NaN entry at any position but the first leaves the other entries finite: softmax([1, nan]) = [1, nan]"
    catches = ("out.softmax",)
    says = "generated table"
    replace = {"softmax": _softmax_nan_masked_after_first}


class MaeZeroSignOfTarget(OutMutant):
    defect = "a zero |yhat - y| takes the sign of the target: mae(+0, -0) = -0 (exact +0)"
    catches = ("out.mae",)
    says = "generated table"
    replace = {"mae": lambda yh, y: (lambda v: -v if v == 0 and np.signbit(y).any() else v)(np.mean(np.abs(yh - y)))}


MUTANTS = [c for c in OutMutant.__subclasses__() if c.catches]


# ---- accuracy findings: within MUST, not within the accuracy criterion -------------------------
def _log_of_sum(t):
    """log(sum e^{t_j}): 1 + r rounded, every non-maximal term below u lost (torch's and JAX's form)."""
    return np.log(_s(np.exp(t)))


def _lse_log_of_sum(z):
    m = np.max(z, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return (m + _log_of_sum(z - m))[..., 0]


class LogsumexpLogOfSum(OutMutant):
    defect = "m + log(sum e^{z - m}): lse([0, -40]) = 0 where the exact 4.2e-18 is representable"
    finds = ("out.logsumexp",)
    replace = {"logsumexp": _lse_log_of_sum}


def _log_softmax_log_of_sum(z):
    t = _shifted(z)  # the built-in backend's limits at +inf logits: the defect is the finite tail
    with np.errstate(invalid="ignore"):
        return np.where(np.isneginf(t), t, t - _log_of_sum(t))


class LogSoftmaxLogOfSum(OutMutant):
    defect = "t - log(sum e^t): the dominant entry's log-probability -log1p(r) returned as 0; CE likewise"
    finds = ("out.log_softmax", "out.ce")
    replace = {"log_softmax": _log_softmax_log_of_sum,
               "cross_entropy": lambda z, y: -_take(_log_softmax_log_of_sum(z), np.asarray(y).astype(np.int64))}



def _torch_bce(z, y):
    """(1 - y) z - log sigma(z) with the special values patched to their limits (finite at z = +-inf)."""
    with np.errstate(invalid="ignore"):
        j = (1 - y) * np.where(np.isfinite(z), z, 0) + _softplus(-z)
    j = np.where(np.isinf(z), np.where(np.where(z > 0, y == 1, y == 0), 0.0, np.inf), j)  # the limits
    j = np.where(np.isnan(y), np.nan, j)  # a NaN label propagates (the generated special-value table)
    return j.astype(np.result_type(z, y))


class BCETorchForm(OutMutant):
    defect = "(1-y) z - log sigma(z): zeta(z) lost as z - z = 0 (y = 0, z < -15 in float32)"
    finds = ("out.bce",)
    replace = {"bce": _torch_bce}


class BCEGradDifference(OutMutant):
    defect = "sigma(z) - y: for y = 1, z > 17.3 sigma rounds to 1 and -sigma(-z) is returned as 0"
    finds = ("out.bce.grad",)
    partials = {"bce": lambda xp, ops, ans, z, y: (ops.sigmoid(z) - y, -z)}


def _softmax_in_storage(z):
    """Softmax with every operation rounded to the 16-bit storage format, the row summed
    pairwise in it (no float32 evaluation): about log2(n) u relative, within MUST."""
    z = np.asarray(z)
    t = _shifted(z)  # z - max z in the storage format, with the built-in backend's limits at +inf
    e = np.exp(t.astype(np.float32)).astype(z.dtype)
    s = e
    while s.shape[-1] > 1:
        if s.shape[-1] % 2:
            s = np.concatenate([s, np.zeros_like(s[..., :1])], axis=-1)
        s = (s[..., 0::2].astype(np.float32) + s[..., 1::2].astype(np.float32)).astype(z.dtype)
    return np.where(np.isneginf(t), 0, e.astype(np.float32) / s.astype(np.float32)).astype(z.dtype)


class SoftmaxStorageFormat(OutMutant):
    defect = "softmax evaluated and accumulated in bfloat16 itself: within MUST, not the float32 policy"
    finds = ("out.softmax",)
    dtypes_run = ("bfloat16",)

    def __init__(self) -> None:
        super().__init__()
        ops = dict(self.ops)
        ops["softmax"] = self._quiet(_softmax_in_storage)  # not evaluated in float32
        self.ops = OpTable(ops)


class SoftmaxStorageDeclared(SoftmaxStorageFormat):
    """The same, declaring it: the convention changed the results, a declared deviation."""
    finds = ()
    conventions = {**SoftmaxStorageFormat.conventions, "accumulation": "storage"}

