"""Deliberately broken back-propagation for the bp family: the NumPy backend whose engine
(adapters/backprop.py) has exactly one defect each, under the conventions of tests/mutants.py
(``catches``, ``spares``, ``dtypes_run``, ``says``, ``partials``) and tests/mutants_out.py
(``rules``, ``vjp_rules``, ``jvp_rules``), plus ``second`` (entries of backprop.SECOND) and
``engine`` (attributes of the engine module, e.g. its grad_table accumulation) replaced while
the backend differentiates, in every mode including the Hessian-vector product.
Load one as ``--ffnspec-backend=tests.mutants_bp:FanOutOverwritten``.
"""
from __future__ import annotations

import contextlib
from unittest import mock

import numpy as np

from ffnspec.adapters import backprop
from tests.mutants_out import OutMutant

_MATMUL_VJP, _MATMUL_JVP = backprop.RULES["matmul"]
_SUM_TO = backprop._sum_to


class BpMutant(OutMutant):
    second: dict = {}
    engine: dict = {}

    @contextlib.contextmanager
    def _broken(self):
        with mock.patch.dict(backprop.SECOND, self.second), contextlib.ExitStack() as stack:
            for name, value in self.engine.items():
                stack.enter_context(mock.patch.object(backprop, name, value))
            yield

    def vjp(self, fn, primals, cotangent):
        with self._broken():
            return super().vjp(fn, primals, cotangent)

    def jvp(self, fn, primals, tangents):
        with self._broken():
            return super().jvp(fn, primals, tangents)

    def hvp(self, fn, primals, tangents):
        with self._broken(), self._rules(self.partials, self.vjp_partials), self._patched(self.rules, None), \
                self._patched(self.vjp_rules, 0):
            return super().hvp(fn, primals, tangents)

    def count_jacobian(self, fn, primals, mode):
        with self._broken(), self._rules(self.partials, self.vjp_partials), self._patched(self.rules, None), \
                self._patched(self.vjp_rules, 0), self._patched(self.jvp_rules, 1):
            return super().count_jacobian(fn, primals, mode)


# ----------------------------------------------------------- the chain ----
class DetachedTanh(BpMutant):
    defect = "tanh's output is detached from the graph (its partial is 0, as after .detach())"
    catches = ("bp.chain", "bp.mlp")
    partials = {"tanh": lambda xp, ops, ans, z: (xp.zeros_like(z),)}


class TransposedWeightGrad(BpMutant):
    defect = "matmul's reverse mode returns the weight gradient transposed, (a^T g)^T"
    catches = ("bp.dense.grad_w",)
    vjp_rules = {"matmul": lambda xp, ops, ans, g, a, b: (g @ b.T, (a.T @ g).T)}


class InputGradUntransposed(BpMutant):
    defect = "matmul's reverse mode forms g W instead of g W^T for the input gradient"
    catches = ("bp.dense.grad_h",)
    vjp_rules = {"matmul": lambda xp, ops, ans, g, a, b: (g @ b, a.T @ g)}


def _mean_to(xp, a, shape):
    """The broadcast contribution averaged, not summed, back to the parameter's shape."""
    lead = a.ndim - len(shape)
    a = xp.mean(a, axis=tuple(range(lead))) if lead > 0 else a
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and a.shape[i] != 1)
    return xp.mean(a, axis=axes, keepdims=True) if axes else a


class BiasGradMean(BpMutant):
    defect = "the bias gradient is the mean of delta over the batch instead of its sum"
    catches = ("bp.dense.grad_b",)
    engine = {"_sum_to": _mean_to}


class GradZUsesValue(BpMutant):
    defect = "the units' partials are their values g(z) instead of g'(z)"
    catches = ("bp.dense.grad_z",)
    partials = {"tanh": lambda xp, ops, ans, z: (ans,), "sigmoid": lambda xp, ops, ans, z: (ans,)}


class DeltaWithoutNormaliser(BpMutant):
    defect = "log_softmax's reverse mode uses g - softmax * g (the row sum of g forgotten)"
    catches = ("bp.dense.delta",)
    vjp_rules = {"log_softmax": lambda xp, ops, ans, g, z: (g - xp.exp(ans) * g,)}


# --------------------------------------------------- the general algorithm ----
def _overwrite(xp, grad, parent, c):
    shape = getattr(parent.value, "shape", ())
    grad[id(parent)] = _SUM_TO(xp, c, shape) if getattr(c, "shape", ()) != shape else c


class FanOutOverwritten(BpMutant):
    defect = "grad_table entries are overwritten by each consumer's contribution instead of summed"
    catches = ("bp.fanout",)
    engine = {"_accumulate": _overwrite}


def _no_unbroadcast(xp, grad, parent, c):
    grad[id(parent)] = grad[id(parent)] + c if id(parent) in grad else c


class MissingUnbroadcast(BpMutant):
    defect = "a broadcast operand's gradient keeps the broadcast shape (no sum over the broadcast axes)"
    catches = ("bp.broadcast",)
    says = "num.shape"
    engine = {"_accumulate": _no_unbroadcast}


class MaxRoutesToAllTies(BpMutant):
    defect = "maximum routes the whole cotangent to every tied input (2 g in all)"
    catches = ("bp.patterns",)
    partials = {"maximum": lambda xp, ops, ans, x, y: ((x >= y).astype(x.dtype), (y >= x).astype(x.dtype))}


class WhereLeaksNaN(BpMutant):
    defect = "where's partials carry 0 * (branch value), so a NaN or inf in the branch not taken leaks"
    catches = ("bp.where",)
    partials = {"where": lambda xp, ops, ans, c, a, b: (xp.zeros_like(ans), (c != 0).astype(ans.dtype) + 0 * a,
                                                        (c == 0).astype(ans.dtype) + 0 * b)}


class MulPartialsSwapped(BpMutant):
    defect = "mul's partials are swapped: d(xy)/dx taken as x"
    catches = ("bp.patterns",)
    partials = {"mul": lambda xp, ops, ans, x, y: (x, y)}


class IgnoresCotangent(BpMutant):
    defect = "the reverse sweep starts from ones instead of the given cotangent (backward() without its gradient)"
    catches = ("bp.graph", "bp.chain")

    def vjp(self, fn, primals, cotangent):
        return super().vjp(fn, primals, np.ones_like(cotangent))


# ---------------------------------------------------------- worked graphs ----
class SinDerivativeSign(BpMutant):
    defect = "sin's partial is -cos"
    catches = ("bp.worked.f",)
    partials = {"sin": lambda xp, ops, ans, z: (-xp.cos(z),)}


class LogSigmoidWrongSide(BpMutant):
    defect = "log_sigmoid's partial is sigma(z) instead of sigma(-z)"
    catches = ("bp.worked.logreg",)
    partials = {"log_sigmoid": lambda xp, ops, ans, z: (ops.sigmoid(z),)}


# --------------------------------------------------------- forward = reverse ----
class MatmulJvpHalf(BpMutant):
    defect = "matmul's forward mode drops the second argument's tangent (t_a b only)"
    catches = ("bp.adjoint",)
    jvp_rules = {"matmul": lambda xp, ops, ans, ts, a, b: backprop._zt(xp, ts[0], a) @ b}


# ------------------------------------------------------------- second order ----
class HvpNoSecondOrder(BpMutant):
    defect = "the Hessian-vector product forgets the second-order term g d(partial) (Gauss-Newton-like)"
    catches = ("bp.hvp", "bp.second", "bp.graph.hvp")
    second = {op: (lambda n: (lambda xp, ops, ans, *args: [[None] * n for _ in range(n)]))(n)
              for op, n in (("sigmoid", 1), ("tanh", 1), ("softplus", 1), ("log_sigmoid", 1), ("exp", 1),
                            ("log", 1), ("sin", 1), ("cos", 1), ("mul", 2), ("div", 2))}


class SigmoidSecondAsFirst(BpMutant):
    defect = "sigma'' is taken as sigma' in the second-order rules"
    catches = ("bp.second",)
    second = {"sigmoid": lambda xp, ops, ans, z: [[ops.sigmoid(z) * ops.sigmoid(-z)]]}


# --------------------------------------------------------- custom primitive ----
class CustomReluNoZero(BpMutant):
    defect = "the custom ReLU's own backward passes the cotangent everywhere (forgets grad[x < 0] = 0)"
    catches = ("bp.custom_relu",)
    vjp_rules = {"custom_relu": lambda xp, ops, ans, g, z: (g,)}


# --------------------------------------------------------------- vanishing ----
class SigmoidGradQuarter(BpMutant):
    defect = "sigma' is taken as its bound 1/4 (the gradient through sigma^l never vanishes below 4^-l)"
    catches = ("bp.vanishing",)
    partials = {"sigmoid": lambda xp, ops, ans, z: (xp.full_like(z, 0.25),)}


MUTANTS = [DetachedTanh, TransposedWeightGrad, InputGradUntransposed, BiasGradMean, GradZUsesValue,
           DeltaWithoutNormaliser, FanOutOverwritten, MissingUnbroadcast, MaxRoutesToAllTies, WhereLeaksNaN,
           MulPartialsSwapped, IgnoresCotangent, SinDerivativeSign, LogSigmoidWrongSide, MatmulJvpHalf, HvpNoSecondOrder,
           SigmoidSecondAsFirst, CustomReluNoZero, SigmoidGradQuarter]


# -------------------------------------------------------------- memoisation ----
class NoMemoisation(BpMutant):
    defect = "the chain rule applied recursively without a grad_table: every path is recomputed"
    catches = ("bp.memo",)

    def count_vjp(self, fn, primals, cotangent):
        tape: list = []
        inputs = [backprop._Node(p, []) for p in primals]
        out = fn(backprop._traced_ops(np, self.ops, tape), *inputs)
        consumers: dict[int, list] = {}
        for n in tape:
            for parent, _ in n.parents:
                consumers.setdefault(id(parent), []).append(n)
        count = [0]

        def applications(node) -> None:  # d out / d node, recomputed along every path
            for c in consumers.get(id(node), []):
                count[0] += 1
                applications(c)
        for x in inputs:
            applications(x)
        return {"applications": count[0], "edges": sum(len(n.parents) for n in tape)}


MUTANTS.append(NoMemoisation)


# --------------------------------------------------------------- bracketing ----
class ReverseJacobianByForwardSweeps(BpMutant):
    defect = "the Jacobian by reverse mode runs one forward sweep per input (the output-side bracketing ignored)"
    catches = ("bp.bracketing",)

    def count_jacobian(self, fn, primals, mode):
        return super().count_jacobian(fn, primals, "jvp")


def _per_call(stats, name, which, ans, vals, i, formed):
    if stats is not None and "madds" in stats:
        stats["madds"] += 1


class CountsCallsNotMadds(BpMutant):
    defect = "the sweeps' counter charges each derivative application 1, whatever its size (calls, not multiply-adds)"
    catches = ("bp.bracketing",)
    engine = {"_charge": _per_call}


class ReverseTracesConstants(BpMutant):
    defect = "the Jacobian by reverse mode differentiates the constant factors too (their cotangents g x^T formed)"
    catches = ("bp.bracketing",)

    def count_jacobian(self, fn, primals, mode):
        if mode != "vjp":
            return super().count_jacobian(fn, primals, mode)
        out = fn(self.ops, *primals)
        stats = {"madds": 0}
        for k in range(out.size):
            unit = np.eye(out.size, dtype=out.dtype)[k].reshape(out.shape)
            backprop.vjp(np, self.ops, fn, primals, unit, stats=stats)
        return {"sweeps": int(out.size), "madds": stats["madds"]}


MUTANTS += [ReverseJacobianByForwardSweeps, CountsCallsNotMadds, ReverseTracesConstants]
