"""Deliberately broken backends: each is the NumPy backend with exactly one defect.

They prove that every conformance check can fail (the array-api-tests lesson: a
``logaddexp = max + 5`` passed unnoticed once a refactor disabled its check).
Load one as ``--ffnspec-backend=tests.mutants:NaiveSigmoid`` from the repository root.

Each class declares what must catch it, as ``clause[/mode][@dtype]``: the records
named in ``catches`` must end "fail" or "error" with the clause id (and ``says``) in
the message; those in ``spares`` must pass, which pins the defect to one mode or
dtype.  ``dtypes_run`` and ``clauses`` narrow the run that proves it
(tests/test_mutants.py); classes without ``catches`` are well-behaved variants used
by tests/test_plugin.py.
"""
from __future__ import annotations

import contextlib
from typing import Callable
from unittest import mock

import numpy as np

from ffnspec.adapters import OpTable, backprop
from ffnspec.adapters.numpy_backend import NumpyBackend, _compute_wide, _log_sigmoid, _sigmoid, _silu, _softplus


def _up(y, n=1):
    """n grid steps towards +inf, in y's own dtype."""
    for _ in range(n):
        y = np.nextafter(y, np.asarray(np.inf, y.dtype))
    return y


class Mutant(NumpyBackend):
    catches: tuple[str, ...] = ()
    spares: tuple[str, ...] = ()
    dtypes_run: tuple[str, ...] = ("float32",)
    profile = "ci"                         # the run's profile (thorough: the 16-bit limit rows too)
    clauses: tuple[str, ...] = ()          # globs for --ffnspec-clauses; default: the clauses named above
    says = ""                              # text every caught clause's message must contain
    finds: tuple[str, ...] = ()            # clauses with accuracy findings (the verdict stays pass)
    defect = ""
    replace: dict[str, Callable] = {}      # op -> broken implementation (wrapped like NumpyBackend's)
    partials: dict[str, Callable] = {}     # op -> broken derivative rule (both modes unless overridden)
    vjp_partials: dict[str, Callable] = {}
    jvp_partials: dict[str, Callable] = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        cls.name = f"mutant-{cls.__name__}"

    def __init__(self) -> None:
        super().__init__()
        ops = dict(self.ops)
        for op, f in self.replace.items():
            ops[op] = _compute_wide(self._quiet(f))
        self.ops = OpTable(ops)

    @staticmethod
    @contextlib.contextmanager
    def _rules(*tables: dict):
        with mock.patch.dict(backprop.PARTIALS, {k: v for t in tables for k, v in t.items()}):
            yield

    def vjp(self, fn, primals, cotangent):
        with self._rules(self.partials, self.vjp_partials):
            return super().vjp(fn, primals, cotangent)

    def jvp(self, fn, primals, tangents):
        with self._rules(self.partials, self.jvp_partials):
            return super().jvp(fn, primals, tangents)


# ------------------------------------------------------------------ sigmoid ----
class NaiveSigmoid(Mutant):
    defect = "1/(1+exp(-z)) in the dtype: 0 where exp(-z) overflows but sigma(z) is subnormal"
    catches = ("act.sigmoid",)
    replace = {"sigmoid": lambda z: 1 / (1 + np.exp(-z))}


class TanhSigmoid(Mutant):
    defect = "0.5 + 0.5 tanh(z/2): absolute, not relative, accuracy for z << 0"
    catches = ("act.sigmoid",)
    replace = {"sigmoid": lambda z: 0.5 + 0.5 * np.tanh(z / 2)}


class SigmoidHalfOff(Mutant):
    defect = "sigma(0) one step below 1/2 (within 5 ULP: only the special-value table sees it)"
    catches = ("act.sigmoid",)
    replace = {"sigmoid": lambda z: np.where(z == 0, np.nextafter(z.dtype.type(0.5), z.dtype.type(0)), _sigmoid(z))}


class SigmoidNanToZero(Mutant):
    defect = "sigma(NaN) = 0 instead of NaN"
    catches = ("act.sigmoid",)
    replace = {"sigmoid": lambda z: np.where(np.isnan(z), z.dtype.type(0), _sigmoid(z))}


class SigmoidBiased(Mutant):
    defect = "every finite result 8 grid steps high"
    catches = ("act.sigmoid", "act.sigmoid.complement", "act.bernoulli")
    replace = {"sigmoid": lambda z: np.where(np.isfinite(z), _up(_sigmoid(z), 8), _sigmoid(z))}


class SigmoidAboveOne(Mutant):
    defect = "finite z whose sigma rounds to 1 return the float above 1 (2 ULP: accuracy passes)"
    catches = ("act.sigmoid.range",)
    replace = {"sigmoid": lambda z: np.where(np.isfinite(z) & (_sigmoid(z) == 1), _up(_sigmoid(z)), _sigmoid(z))}


def _nonmonotone(z):
    y = _sigmoid(z)
    odd = (z.view(np.uint32 if z.dtype == np.float32 else np.uint64) & 1).astype(bool)
    return np.where(odd, np.nextafter(y, y.dtype.type(0)), y)


class NonMonotoneSigmoid(Mutant):
    defect = "inputs with an odd last significand bit get one step less (1 ULP: accuracy passes)"
    catches = ("act.sigmoid.monotone",)
    replace = {"sigmoid": _nonmonotone}


# ----------------------------------------------------------------- softplus ----
class NaiveSoftplus(Mutant):
    defect = "log(1+exp(z)): overflows for large z, loses the tail e^z for z << 0"
    catches = ("act.softplus", "act.softplus.reflection", "act.softplus.logsigmoid")
    replace = {"softplus": lambda z: np.log(1 + np.exp(z))}


class SoftplusThreshold20(Mutant):
    defect = "softplus(z) = z for z > 20: ~6e5 ULP wrong beside the threshold in float64, harmless in float32"
    catches = ("act.softplus@float64",)
    spares = ("act.softplus@float32",)
    dtypes_run = ("float32", "float64")
    replace = {"softplus": lambda z: np.where(z > 20, z, _softplus(z))}


class SoftplusAboveLog2(Mutant):
    defect = "softplus(0) = log 2 + 8 ULP"
    catches = ("act.softplus", "act.softplus.bound")
    replace = {"softplus": lambda z: np.where(z == 0, _up(_softplus(z), 8), _softplus(z))}


class SoftplusBelowRelu(Mutant):
    defect = "softplus(z) one step below z for z > 40 (1 ULP: accuracy passes, zeta >= max(0, z) does not)"
    catches = ("act.softplus.bound",)
    replace = {"softplus": lambda z: np.where(np.isfinite(z) & (z > 40), np.nextafter(z, z.dtype.type(0)),
                                              _softplus(z))}


class LogaddexpMaxPlus5(Mutant):
    defect = "logaddexp(x, y) = max(x, y) + 5 (the array-api-tests cautionary tale)"
    catches = ("act.softplus.lse",)
    replace = {"logaddexp": lambda x, y: np.maximum(x, y) + x.dtype.type(5)}


# -------------------------------------------------------------- log-sigmoid ----
class LogOfSigmoid(Mutant):
    defect = "log_sigmoid = log(sigmoid(z)): -inf once sigma underflows, 0 once it rounds to 1"
    catches = ("act.log_sigmoid", "act.softplus.logsigmoid")
    replace = {"log_sigmoid": lambda z: np.log(_sigmoid(z))}


# --------------------------------------------------------------------- tanh ----
class TanhViaSigmoid(Mutant):
    defect = "tanh = 2 sigmoid(2z) - 1: cancellation near 0, tanh(-0) = +0"
    catches = ("act.tanh",)
    replace = {"tanh": lambda z: 2 * _sigmoid(2 * z) - 1}


class NaiveTanh(Mutant):
    defect = "(e^z - e^-z)/(e^z + e^-z): inf/inf = NaN for large |z|"
    catches = ("act.tanh", "act.tanh.range", "act.tanh.odd", "act.tanh.sigmoid")
    replace = {"tanh": lambda z: (np.exp(z) - np.exp(-z)) / (np.exp(z) + np.exp(-z))}


class TanhNotSaturating(Mutant):
    defect = "finite z return sign(z) nextafter(1, 0) instead of +-1 (1 ULP: accuracy passes)"
    catches = ("act.tanh.range",)
    replace = {"tanh": lambda z: np.where(np.isfinite(z) & (np.abs(np.tanh(z)) == 1),
                                          np.sign(z) * np.nextafter(z.dtype.type(1), z.dtype.type(0)), np.tanh(z))}


# --------------------------------------------------------------------- SiLU ----
class SiluNanAtNegInf(Mutant):
    defect = "z sigma(z) without the -inf case: -inf * 0 = NaN"
    catches = ("act.silu",)
    replace = {"silu": lambda z: z * _sigmoid(z)}


class SiluDivision(Mutant):
    defect = "z / (1 + exp(-z)): -0 once exp(-z) overflows although silu(z) is a normal number"
    catches = ("act.silu",)
    replace = {"silu": lambda z: np.where(np.isneginf(z), -0.0, z / (1 + np.exp(-z))).astype(z.dtype)}


# ----------------------------------------------------------- special values ----
def _nan_at_inf(f):
    return lambda z: np.where(np.isinf(z), np.asarray(np.nan, z.dtype), f(z))


class InfinityGivesNaN(Mutant):
    defect = "every activation returns NaN at +-inf (finite inputs are right: only the special-value tables see it)"
    catches = ("act.sigmoid", "act.softplus", "act.log_sigmoid", "act.tanh", "act.silu")
    says = "special value"
    replace = {op: _nan_at_inf(f) for op, f in (("sigmoid", _sigmoid), ("softplus", _softplus),
                                                ("log_sigmoid", _log_sigmoid), ("tanh", np.tanh), ("silu", _silu))}


def _nan_partial_at_inf(op):
    rule = backprop.PARTIALS[op]
    return lambda xp, ops, ans, z: tuple(xp.where(xp.isinf(z), xp.asarray(xp.nan, p.dtype), p)
                                         for p in rule(xp, ops, ans, z))


class GradientGivesNaNAtInfinity(Mutant):
    defect = "every derivative rule returns NaN at +-inf instead of its limit (0 or 1)"
    catches = tuple(f"act.{op}.grad/{m}" for op in ("sigmoid", "softplus", "log_sigmoid", "tanh", "silu")
                    for m in ("vjp", "jvp"))
    says = "special value"
    clauses = ("act.*.grad",)
    partials = {op: _nan_partial_at_inf(op) for op in ("sigmoid", "softplus", "log_sigmoid", "tanh", "silu")}


class SigmoidGradNaNAtInfinityJvpOnly(Mutant):
    defect = "forward mode returns NaN for sigma'(+-inf); reverse mode is right"
    catches = ("act.sigmoid.grad/jvp",)
    spares = ("act.sigmoid.grad/vjp",)
    says = "special value"
    jvp_partials = {"sigmoid": _nan_partial_at_inf("sigmoid")}


# -------------------------------------------------------------- derivatives ----
class SigmoidGradPlus(Mutant):
    defect = "sigma' = ans (1 + ans)"
    catches = ("act.sigmoid.grad/vjp", "act.sigmoid.grad/jvp", "act.sigmoid.grad.bound", "act.sigmoid.vanishing")
    clauses = ("act.sigmoid.*",)
    partials = {"sigmoid": lambda xp, ops, ans, z: (ans * (1 + ans),)}


class SigmoidGradOneStepHigh(Mutant):
    defect = ("sigma' one step high except at 0 and +-inf: 1/4 + ulp for tiny z "
              "(1 ULP: the mixed bound passes, sigma' <= 1/4 does not)")
    catches = ("act.sigmoid.grad.bound",)
    spares = ("act.sigmoid.grad/vjp", "act.sigmoid.grad/jvp")
    clauses = ("act.sigmoid.grad*",)
    partials = {"sigmoid": lambda xp, ops, ans, z: (
        xp.where(xp.isfinite(z) & (z != 0), _up(ans * (1 - ans)), ans * (1 - ans)),)}


class SigmoidGradJvpOnly(Mutant):
    defect = "forward mode uses sigma' = ans (1 + ans); reverse mode is right"
    catches = ("act.sigmoid.grad/jvp",)
    spares = ("act.sigmoid.grad/vjp",)
    jvp_partials = SigmoidGradPlus.partials


class SigmoidGradVjpOnly(Mutant):
    defect = "reverse mode uses sigma' = ans (1 + ans); forward mode is right"
    catches = ("act.sigmoid.grad/vjp",)
    spares = ("act.sigmoid.grad/jvp",)
    vjp_partials = SigmoidGradPlus.partials


class SoftplusGradOneMinus(Mutant):
    defect = "zeta' = 1 - sigma(z)"
    catches = ("act.softplus.grad/vjp", "act.softplus.grad/jvp")
    partials = {"softplus": lambda xp, ops, ans, z: (1 - ops.sigmoid(z),)}


class LogSigmoidGradSign(Mutant):
    defect = "(log sigma)' = sigma(z) instead of sigma(-z)"
    catches = ("act.log_sigmoid.grad/vjp", "act.log_sigmoid.grad/jvp")
    partials = {"log_sigmoid": lambda xp, ops, ans, z: (ops.sigmoid(z),)}


class TanhGradOneMinusAns(Mutant):
    defect = "tanh' = 1 - ans"
    catches = ("act.tanh.grad/vjp", "act.tanh.grad/jvp")
    partials = {"tanh": lambda xp, ops, ans, z: (1 - ans,)}


class SiluGradMissingTerm(Mutant):
    defect = "silu' = sigma(z), missing z sigma(z) (1 - sigma(z))"
    catches = ("act.silu.grad/vjp", "act.silu.grad/jvp")
    partials = {"silu": lambda xp, ops, ans, z: (ops.sigmoid(z),)}


class ChainRuleDropped(Mutant):
    defect = "reverse mode forgets to multiply by the upstream gradient: single ops are right, compositions not"
    catches = ("act.sigmoid.vanishing",)
    spares = ("act.sigmoid.grad/vjp",)
    clauses = ("act.sigmoid.vanishing", "act.sigmoid.grad")

    def vjp(self, fn, primals, cotangent):
        tape: list = []
        inputs = [backprop._Node(p, []) for p in primals]
        out = fn(backprop._traced_ops(np, self.ops, tape), *inputs)
        grad = {id(out): cotangent}
        with np.errstate(all="ignore"):
            for node in reversed(tape):
                g = grad.pop(id(node), None)
                if g is not None:
                    for parent, partial in node.parents:
                        grad[id(parent)] = (cotangent * partial).astype(g.dtype)  # the defect: not g * partial
        return out.value, tuple(grad.get(id(n), np.zeros_like(p)) for n, p in zip(inputs, primals))


class NarrowSigmoid(Mutant):
    defect = "1/(1+exp(-z)) evaluated in the 16-bit storage format itself: exp(-z) overflows early"
    catches = ("act.sigmoid@float16", "act.sigmoid@bfloat16")
    dtypes_run = ("float16", "bfloat16")

    def __init__(self) -> None:
        super().__init__()
        self.ops = OpTable({**self.ops, "sigmoid": self._quiet(lambda z: 1 / (1 + np.exp(-z)))})


def _flush(f):
    return lambda z: (lambda y: np.where(np.abs(y) < np.finfo(y.dtype).tiny, y * 0, y))(f(z))


class FlushesSubnormals(Mutant):
    defect = "sigmoid and silu flush subnormal results to zero without declaring flush_to_zero"
    catches = ("act.sigmoid", "act.silu")
    replace = {"sigmoid": _flush(_sigmoid), "silu": _flush(_silu)}


class FlushesSubnormalsDeclared(FlushesSubnormals):
    """Not a defect: the same flushing, declared; judged by the FTZ policy it passes (tests/test_plugin.py)."""
    catches = ()
    conventions = {"flush_to_zero": "yes"}


# ----------------------------------------------------------- ground rules ----
class PromotesToFloat64(Mutant):
    defect = "sigmoid returns float64 for float32 input"
    catches = ("num.dtype",)
    replace = {"sigmoid": lambda z: _sigmoid(z.astype(np.float64))}


class FlattensOutput(Mutant):
    defect = "tanh returns a 1-d array whatever the input shape"
    catches = ("num.shape",)
    replace = {"tanh": lambda z: np.tanh(z).reshape(-1)}


def _negate_input(z):
    y = _softplus(z)
    np.negative(z, out=z)
    return y


class MutatesInput(Mutant):
    defect = "softplus negates its input array in place"
    catches = ("num.no_mutation",)
    replace = {"softplus": _negate_input}


class VjpMutatesInput(Mutant):
    defect = "reverse mode negates its primal in place after differentiating"
    catches = ("act.sigmoid.grad/vjp", "num.no_mutation", "act.sigmoid.vanishing")
    says = "[num.no_mutation]"

    def vjp(self, fn, primals, cotangent):
        out = super().vjp(fn, primals, cotangent)
        np.negative(primals[0], out=primals[0])
        return out


class LongArraysDiffer(Mutant):
    defect = "arrays longer than 16 take another sigmoid path (in the storage dtype, not float64): results depend on batch size"
    catches = ("num.length_invariance",)
    replace = {"sigmoid": lambda z: (np.where(z >= -40, 1 / (1 + np.exp(-z)), np.exp(z)).astype(z.dtype)
                                     if z.size > 16 else _sigmoid(z))}


class ScalarsDiffer(Mutant):
    defect = "0-d inputs take another silu path, one step high (1 ULP: accuracy passes)"
    catches = ("num.length_invariance",)
    replace = {"silu": lambda z: _up(_silu(z)) if z.ndim == 0 else _silu(z)}


def _raise(z):
    raise RuntimeError("kernel launch failed")


class RaisingSoftplus(Mutant):
    defect = "softplus raises"
    catches = ("act.softplus", "act.softplus.grad/vjp")
    spares = ("num.dtype",)  # a raise fails the clauses that call the op, not the dtype rule
    clauses = ("num.dtype", "act.softplus", "act.softplus.grad")
    replace = {"softplus": _raise}


class SigmoidRaisesTanhFloat64(Mutant):
    defect = "sigmoid raises and tanh returns float64: [num.dtype] must cite tanh, not the raise"
    catches = ("num.dtype",)
    says = "tanh"
    clauses = ("num.dtype",)
    replace = {"sigmoid": _raise, "tanh": lambda z: np.tanh(z.astype(np.float64))}


class TanhFlattens2D(Mutant):
    defect = "tanh flattens 2-D input: [num.shape] at the shape that shows it"
    catches = ("num.shape",)
    says = "(2, 2)"
    clauses = ("num.shape",)
    replace = {"tanh": lambda z: np.tanh(z).reshape(-1) if z.ndim == 2 else np.tanh(z)}


class SigmoidNaN(Mutant):
    defect = "sigmoid is NaN everywhere: NaN compares false, so an ordering check must not pass it"
    catches = ("act.sigmoid.monotone", "act.sigmoid.range")
    replace = {"sigmoid": lambda z: np.full_like(z, np.nan)}


class GaussianNllSwapped(Mutant):
    """Not a defect of the library but of an adapter: the formula's order (mu, beta, y) for ffnspec's (mu, y, beta)."""
    defect = "gaussian_nll written in the formula's argument order"
    replace = {"gaussian_nll": lambda mu, beta, y: 0.5 * beta * np.square(y - mu) - 0.5 * np.log(beta)}


class KlInfinite(Mutant):
    defect = "kl_div returns +inf: the decomposition check must fail, not raise inside ffnspec"
    catches = ("out.kl.decomposition", "out.kl")
    replace = {"kl_div": lambda z, p: np.full(z.shape[:-1], np.inf, dtype=z.dtype)}


class TanhWithoutFloat16(Mutant):
    """Not a defect: an op declared unavailable in a dtype reads "not_implemented" there (tests/test_plugin.py)."""
    defect = "tanh offered in float32 and float64 only"
    op_dtypes = {"tanh": ("float32", "float64")}


class MissingLogSigmoid(Mutant):
    """Not a defect: an absent op must read "not_implemented", never "pass" (tests/test_plugin.py)."""
    defect = "log_sigmoid is absent"

    def __init__(self) -> None:
        super().__init__()
        self.ops = OpTable({k: v for k, v in self.ops.items() if k != "log_sigmoid"})


class NoForwardMode(Mutant):
    """Not a defect: a backend without jvp; its jvp cases read "not_implemented"."""
    defect = "no jvp"
    jvp = None


class Float64Only(Mutant):
    """Not a defect: a backend offering one dtype (tests/test_plugin.py)."""
    defect = "offers float64 only"

    def __init__(self) -> None:
        super().__init__()
        self.dtypes = frozenset({"float64"})


MUTANTS = [c for c in Mutant.__subclasses__() if c.catches]  # direct subclasses: FlushesSubnormalsDeclared is not


# ---- accuracy findings: each meets its clause's MUST bound but not its accuracy criterion --------
# (tests/test_mutants.py::test_finding_mutant; ``finds`` lists the clauses whose records must hold
# findings while their verdict stays pass, and fail under --strict.)
def _biased(rule: Callable, ulps: float, where: Callable | None = None) -> Callable:
    """A derivative rule whose result is scaled by (1 + ulps u), u the unit roundoff of the
    array's dtype (optionally only where ``where(z)``): a bias within MUST, above the accuracy bound."""
    def partial(xp, ops, ans, z):
        (g,) = rule(xp, ops, ans, z)
        u = np.finfo(g.dtype).eps / 2
        inside = (np.abs(g) < 1) & (z != 0) & (True if where is None else where(z))  # special values stay exact
        return ((g + np.where(inside, g * (ulps * u), 0)).astype(g.dtype),)
    return partial


class SigmoidGradStoredOutput(Mutant):
    defect = "sigma' = y (1 - y) from the stored output: 0 once sigma rounds to 1 (torch's sigmoid_backward)"
    finds = ("act.sigmoid.grad",)
    partials = {"sigmoid": lambda xp, ops, ans, z: (ans * (1 - ans),)}


class TanhGradStoredOutput(Mutant):
    defect = "tanh' = 1 - y^2 from the stored output: 0 once tanh rounds to 1 (torch's tanh_backward)"
    finds = ("act.tanh.grad",)
    partials = {"tanh": lambda xp, ops, ans, z: (1 - ans * ans,)}


class SoftplusGradBiased(Mutant):
    defect = "zeta'(z) = sigma(z) (1 + 12 u): 12 ULP off, within MUST (21) but not accuracy (5)"
    finds = ("act.softplus.grad",)
    partials = {"softplus": _biased(lambda xp, ops, ans, z: (ops.sigmoid(z),), 12)}


class LogSigmoidGradBiased(Mutant):
    defect = "(log sigma)'(z) = sigma(-z) (1 + 12 u): within MUST (21) but not accuracy (5)"
    finds = ("act.log_sigmoid.grad",)
    partials = {"log_sigmoid": _biased(lambda xp, ops, ans, z: (ops.sigmoid(-z),), 12)}


class SiluGradBiasedTail(Mutant):
    defect = "SiLU' 80 u off for z < -4, where MUST's scale |z g'(z)| is several times |g| and S_acc is not"
    finds = ("act.silu.grad",)
    partials = {"silu": _biased(backprop.PARTIALS["silu"], 80, where=lambda z: z < -4)}
