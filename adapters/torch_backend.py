"""The PyTorch backend: torch's own public ops, derivatives by torch's autograd.

Reverse mode is ``torch.autograd.grad`` (the path ``loss.backward()`` takes); forward
mode is ``torch.func.jvp`` (forward-mode AD with dual tensors).  Nothing here computes
a value itself: each op in the table is the library function a user would call, with
its default arguments, so what ffnspec measures is torch.

Conversions are exact for values representable in the target dtype: float64 ->
float16 / float32 through NumPy (a single exact cast), bfloat16 through a float32
tensor (exact for bfloat16 values), and back through float64.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ffnspec.adapters import OpTable, flush_conventions, snippet_function
from ffnspec.reference.floatformat import python_literal

TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16,
                "float32": torch.float32, "float64": torch.float64}
_NAMES = {v: k for k, v in TORCH_DTYPES.items()}

# op name -> (the library's public function, its name as a user writes it)
_OPS: dict[str, tuple[Callable, str]] = {
    "neg": (torch.neg, "torch.neg"),
    "exp": (torch.exp, "torch.exp"),
    "log1p": (torch.log1p, "torch.log1p"),
    "add": (torch.add, "torch.add"),
    "sub": (torch.sub, "torch.sub"),
    "mul": (torch.mul, "torch.mul"),
    "sigmoid": (torch.sigmoid, "torch.sigmoid"),
    "softplus": (F.softplus, "torch.nn.functional.softplus"),        # default beta=1, threshold=20
    "log_sigmoid": (F.logsigmoid, "torch.nn.functional.logsigmoid"),
    "tanh": (torch.tanh, "torch.tanh"),
    "silu": (F.silu, "torch.nn.functional.silu"),
    "logaddexp": (torch.logaddexp, "torch.logaddexp"),
}
_ARITY = {"add": 2, "sub": 2, "mul": 2, "logaddexp": 2}


# ---- the hid family (hidden units, §6.3) ---------------------------------------------------
# torch's own functions, the slope passed as their negative_slope / weight.  Maxout and radial
# basis units have no torch op: they are composed here from torch's public primitives (say so
# in any report): maxout = amax over blocks of k (amax splits a tie evenly), RBF = the book's
# formula exp(-||x - W_i||^2 / sigma_i^2).  The in-place variants are torch's own (relu_, ...).
def _maxout(z, k):
    """composed: torch.amax over consecutive blocks of k along the last axis."""
    return torch.amax(z.unflatten(-1, (z.shape[-1] // k, k)), dim=-1)


def _rbf(x, W, sigma):
    """composed: torch.exp(-((x[:, None, :] - W) ** 2).sum(-1) / sigma ** 2), written with mul."""
    d = x.unsqueeze(-2) - W
    return torch.exp(-(torch.sum(d * d, dim=-1) / (sigma * sigma)))


_OPS.update({
    "relu": (torch.relu, "torch.relu"),
    "leaky_relu": (lambda z, alpha=0.01: F.leaky_relu(z, alpha), "torch.nn.functional.leaky_relu"),
    "abs": (torch.abs, "torch.abs"),
    "hardtanh": (F.hardtanh, "torch.nn.functional.hardtanh"),
    "prelu": (lambda z, alpha: F.prelu(z, alpha.reshape(-1)), "torch.nn.functional.prelu"),  # weight: 1-D
    "maxout": (_maxout, "torch.amax"),
    "rbf": (_rbf, "torch.exp"),
    "lowrank": (lambda x, V, U: F.linear(F.linear(x, U), V), "torch.nn.functional.linear"),
    "copy": (torch.clone, "torch.clone"),
    "relu_": (torch.relu_, "torch.relu_"),
    "leaky_relu_": (lambda z, alpha=0.01: F.leaky_relu_(z, alpha), "torch.nn.functional.leaky_relu_"),
    "hardtanh_": (F.hardtanh_, "torch.nn.functional.hardtanh_"),
    "abs_": (torch.abs_, "torch.abs_"),
})
# kink and tie conventions (spec/20_hid.toml [hid.conventions]), from torch's derivative formulas:
# threshold_backward (x <= 0 -> 0), leaky_relu_backward (x > 0 ? g : g slope), prelu backward
# (x > 0 ? g : w g; forward mode differs at 0, declared in torch.toml), abs: g sgn(x),
# hardtanh_backward (x <= min or x >= max -> 0), amax (ties split evenly); relu(-0) = clamp_min(-0, 0) = -0.
HID_CONVENTIONS = {"relu_grad_at_0": "0", "relu_at_minus_0": "-0", "leaky_relu_grad_at_0": "alpha",
                   "prelu_grad_at_0": "alpha", "abs_grad_at_0": "0", "hardtanh_grad_at_1": "0",
                   "hardtanh_grad_at_minus_1": "0", "maxout_ties": "even"}



# ---- the out family (output units and losses, §6.2) ----------------------------------------
# torch's own functions: softmax and friends over the last axis, losses with reduction="none"
# (one value per row or element) unless the op is a named reduction.  Composed from torch's
# public functions only where torch has none (said here and in any report): kl_div from logits is
# F.kl_div of F.log_softmax summed over the row (F.kl_div is elementwise); the heteroscedastic
# Gaussian with a predicted precision is F.gaussian_nll_loss with var = torch.reciprocal(beta)
# (torch parametrises by the variance); the mixture density NLL is -torch.logsumexp of
# F.log_softmax(w) + log N.  The linear-Gaussian 1/2 (y - yhat)^2 is F.gaussian_nll_loss at unit
# variance.  Class labels are int64 tensors (asindex).
def _mdn_nll(w, mu, beta, y):
    """composed: -torch.logsumexp(F.log_softmax(w, -1) + log(beta)/2 - beta (y - mu)^2 / 2, -1)."""
    d = y.unsqueeze(-1) - mu
    return -torch.logsumexp(F.log_softmax(w, -1) + 0.5 * torch.log(beta) - 0.5 * beta * d * d, -1)


_OPS.update({
    "softmax": (lambda z: torch.softmax(z, -1), "torch.softmax"),
    "log_softmax": (lambda z: torch.log_softmax(z, -1), "torch.log_softmax"),
    "logsumexp": (lambda z: torch.logsumexp(z, -1), "torch.logsumexp"),
    "cross_entropy": (lambda z, y: F.cross_entropy(z, y, reduction="none"), "torch.nn.functional.cross_entropy"),
    "cross_entropy_sum": (lambda z, y: F.cross_entropy(z, y, reduction="sum"), "torch.nn.functional.cross_entropy"),
    "cross_entropy_mean": (lambda z, y: F.cross_entropy(z, y), "torch.nn.functional.cross_entropy"),
    "nll": (lambda lp, y: F.nll_loss(lp, y, reduction="none"), "torch.nn.functional.nll_loss"),
    "cross_entropy_soft": (lambda z, p: F.cross_entropy(z, p, reduction="none"), "torch.nn.functional.cross_entropy"),
    "kl_div": (lambda z, p: F.kl_div(F.log_softmax(z, -1), p, reduction="none").sum(-1), "torch.nn.functional.kl_div"),
    "bce": (lambda z, y: F.binary_cross_entropy_with_logits(z, y, reduction="none"),
            "torch.nn.functional.binary_cross_entropy_with_logits"),
    "bce_pos_weight": (lambda z, y, w: F.binary_cross_entropy_with_logits(z, y, reduction="none", pos_weight=w),
                       "torch.nn.functional.binary_cross_entropy_with_logits"),
    "bce_prob": (lambda a, y: F.binary_cross_entropy(a, y, reduction="none"), "torch.nn.functional.binary_cross_entropy"),
    "half_sq_error": (lambda yh, y: F.gaussian_nll_loss(yh, y, torch.ones_like(yh), reduction="none"),
                      "torch.nn.functional.gaussian_nll_loss"),
    "mse": (F.mse_loss, "torch.nn.functional.mse_loss"),
    "mae": (F.l1_loss, "torch.nn.functional.l1_loss"),
    # beta + 0.0: the precision -0 is the precision 0 (variance +inf), not a negative variance
    "gaussian_nll": (lambda mu, y, beta: F.gaussian_nll_loss(mu, y, torch.reciprocal(beta + 0.0), reduction="none"),
                     "torch.nn.functional.gaussian_nll_loss"),
    "mdn_nll": (_mdn_nll, "torch.logsumexp"),
    "cov_from_factor": (lambda b: torch.matmul(b, b.mT), "torch.matmul"),
})
# softmax of a fully masked row: exp(-inf - (-inf)) = NaN, the preferred convention (spec/30_out.toml)
OUT_CONVENTIONS = {"softmax_all_masked": "nan"}


# ---- the bp family (whole programs, §6.5) ---------------------------------------------------
# torch's own functions; sum/mean take torch's dim.  custom_relu is the seeds' MyReLU (002), a
# torch.autograd.Function with its own backward (reverse mode only: it defines no jvp).
class MyReLU(torch.autograd.Function):
    """The seeds' custom ReLU: forward input.clamp(min=0); backward zeroes grad where input < 0."""

    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return input.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_output):
        input, = ctx.saved_tensors
        grad_input = grad_output.clone()
        grad_input[input < 0] = 0
        return grad_input


def _reduction(f):
    return lambda z, axis=None: f(z) if axis is None else f(z, dim=axis)


_OPS.update({
    "div": (torch.div, "torch.div"),
    "log": (torch.log, "torch.log"),
    "sin": (torch.sin, "torch.sin"),
    "cos": (torch.cos, "torch.cos"),
    "maximum": (torch.maximum, "torch.maximum"),
    "where": (lambda c, a, b: torch.where(c != 0, a, b), "torch.where"),
    "matmul": (torch.matmul, "torch.matmul"),
    "sum": (_reduction(torch.sum), "torch.sum"),
    "mean": (_reduction(torch.mean), "torch.mean"),
    "custom_relu": (MyReLU.apply, "MyReLU.apply"),
})
_ARITY.update({"div": 2, "maximum": 2, "where": 3, "matmul": 2})
# ---- the xor, opt and init families (§6.1, §6.4.1; seeds 002, 003) ------------------------
# The dense layer is torch.nn.Linear's forward, F.linear(x, W^T, b) (Linear stores the weight as
# (out, in)); least squares is torch.linalg.lstsq.  The optimizer steps run torch.optim's own
# SGD, Adam and AdamW (step() on a Parameter whose .grad and optimizer state are set from the state
# array: theta, then the buffers), the schedule is torch.optim.lr_scheduler.ExponentialLR, the
# initialisers are torch.nn.init's with a seeded torch.Generator.  LAPACK has no 16-bit QR or
# least squares: those two run in float32 and are rounded once (composed here, say so in reports).
def _wide(f):
    def op(*xs, **kw):
        dt = xs[0].dtype
        if dt in (torch.float16, torch.bfloat16):
            return f(*[x.float() for x in xs], **kw).to(dt)
        return f(*xs, **kw)
    return op


def _sgd_step(state, g, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    p = torch.nn.Parameter(state[0].clone())
    opt = torch.optim.SGD([p], lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    p.grad = g.clone()
    if momentum:
        opt.state[p]["momentum_buffer"] = state[1].clone()
    opt.step()
    buf = opt.state[p]["momentum_buffer"] if momentum else state[1]
    return torch.stack([p.detach(), buf.detach()])


def _adam_step(state, g, step, lr, beta1, beta2, eps, weight_decay=0.0, decoupled=False):
    p = torch.nn.Parameter(state[0].clone())
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt = cls([p], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)
    p.grad = g.clone()
    opt.state[p] = {"step": torch.tensor(float(step - 1)), "exp_avg": state[1].clone(),
                    "exp_avg_sq": state[2].clone()}
    opt.step()
    st = opt.state[p]
    return torch.stack([p.detach(), st["exp_avg"].detach(), st["exp_avg_sq"].detach()])


def _lr_exponential(lr0, gamma, steps):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=float(lr0[0]))
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=gamma)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(int(steps)):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    return torch.tensor(lrs, dtype=torch.float64).to(lr0.dtype)


def _gen(seed):
    return torch.Generator().manual_seed(int(seed))


def _nonlinearity(gain):
    """torch.nn.init names gains by nonlinearity: 1 = 'linear', sqrt 2 = 'relu', else leaky_relu's a."""
    if gain == 1.0:
        return {"nonlinearity": "linear"}
    if abs(gain - 2 ** 0.5) < 1e-15:
        return {"nonlinearity": "relu"}
    return {"nonlinearity": "leaky_relu", "a": (2 / gain ** 2 - 1) ** 0.5}


def _init(f):
    def op(w, seed=0, **kw):
        return f(torch.empty_like(w), generator=_gen(seed), **kw)
    return op


_OPS.update({
    "linear": (lambda x, W, b: F.linear(x, W.mT, b), "torch.nn.functional.linear"),
    "lstsq": (_wide(lambda A, y: torch.linalg.lstsq(A, y.unsqueeze(-1)).solution.squeeze(-1)), "torch.linalg.lstsq"),
    "sgd_step": (_sgd_step, "torch.optim.SGD"),
    "adam_step": (_adam_step, "torch.optim.Adam"),
    "lr_exponential": (_lr_exponential, "torch.optim.lr_scheduler.ExponentialLR"),
    "init_xavier_uniform": (_init(torch.nn.init.xavier_uniform_), "torch.nn.init.xavier_uniform_"),
    "init_xavier_normal": (_init(torch.nn.init.xavier_normal_), "torch.nn.init.xavier_normal_"),
    "init_kaiming_uniform": (lambda w, gain=1.0, mode="fan_in", seed=0: torch.nn.init.kaiming_uniform_(
        torch.empty_like(w), mode=mode, generator=_gen(seed), **_nonlinearity(gain)), "torch.nn.init.kaiming_uniform_"),
    "init_kaiming_normal": (lambda w, gain=1.0, mode="fan_in", seed=0: torch.nn.init.kaiming_normal_(
        torch.empty_like(w), mode=mode, generator=_gen(seed), **_nonlinearity(gain)), "torch.nn.init.kaiming_normal_"),
    "init_orthogonal": (_wide(lambda w, gain=1.0, seed=0: torch.nn.init.orthogonal_(
        torch.empty_like(w), gain=gain, generator=_gen(seed))), "torch.nn.init.orthogonal_"),
    "init_zeros": (lambda w: torch.nn.init.zeros_(torch.empty_like(w)), "torch.nn.init.zeros_"),
})
# torch.optim.SGD's momentum: v = mu v + g, theta -= lr v (spec/60_opt.toml [opt.momentum.forms])
OPT_CONVENTIONS = {"momentum_form": "framework", "init_normal_law": "normal"}


_literal = python_literal


class TorchBackend:
    name = "torch"
    deviations = "torch.toml"

    def __init__(self) -> None:
        self.dtypes = frozenset(TORCH_DTYPES)
        self.devices = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
        # a device this build or machine lacks, and why (a run asking for it skips its records)
        self.absent_devices = {} if "cuda" in self.devices else {"cuda": (
            f"torch.cuda.is_available() is False (torch {torch.__version__}, CUDA "
            f"{torch.version.cuda or 'not built in'})")}
        self.version = torch.__version__
        self.ops = OpTable({name: f for name, (f, _) in _OPS.items()})
        # probed with torch.mul on every device: one flag for the harness, which dtypes and devices flush
        self.conventions = flush_conventions(self)
        self.conventions.update(HID_CONVENTIONS)  # the hid family's kinks and ties
        self.conventions.update(OUT_CONVENTIONS)  # the out family's fully masked softmax row
        self.conventions.update(OPT_CONVENTIONS)  # the opt family's momentum form

    # -- conversions -------------------------------------------------------------
    def asarray(self, a: np.ndarray, dtype: str, device: str = "cpu") -> Any:
        a = np.asarray(a, dtype=np.float64)
        if dtype == "bfloat16":
            t = torch.from_numpy(np.array(a, dtype=np.float32)).to(torch.bfloat16)
        else:
            t = torch.from_numpy(np.array(a, dtype=np.dtype(dtype)))  # a fresh, owned copy
        return t.to(device)

    def asindex(self, a: np.ndarray, device: str = "cpu") -> Any:
        """Class labels: int64 tensors (what F.cross_entropy and F.nll_loss take)."""
        return torch.from_numpy(np.array(a, dtype=np.int64)).to(device)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.array(x.detach().to(device="cpu", dtype=torch.float64).numpy(), dtype=np.float64, copy=True)

    def dtype_of(self, x: Any) -> str:
        return _NAMES.get(x.dtype, str(x.dtype).removeprefix("torch."))

    # -- derivatives ---------------------------------------------------------------
    def vjp(self, fn: Callable, primals: Sequence[Any], cotangent: Any):
        """Reverse mode through torch.autograd (what ``backward()`` runs)."""
        with torch.enable_grad():
            xs = [p.detach().requires_grad_(True) for p in primals]
            out = fn(self.ops, *xs)
            grads = torch.autograd.grad(out, xs, grad_outputs=cotangent, allow_unused=True)
        grads = tuple(torch.zeros_like(p) if g is None else g.detach() for p, g in zip(primals, grads))
        return out.detach(), grads

    def hvp(self, fn: Callable, primals: Sequence[Any], tangents: Sequence[Any]):
        """Hessian-vector product of a scalar program by double back-propagation: the gradient
        with create_graph=True, then the gradient of <gradient, tangents> (torch.autograd.grad)."""
        with torch.enable_grad():
            xs = [p.detach().requires_grad_(True) for p in primals]
            out = fn(self.ops, *xs)
            grads = torch.autograd.grad(out, xs, create_graph=True, allow_unused=True)
            dot = sum((g * t).sum() for g, t in zip(grads, tangents) if g is not None and g.requires_grad)
            hv = (torch.autograd.grad(dot, xs, allow_unused=True) if torch.is_tensor(dot) and dot.requires_grad
                  else [None] * len(xs))
        return out.detach(), tuple(torch.zeros_like(p) if h is None else h.detach() for p, h in zip(primals, hv))

    def jvp(self, fn: Callable, primals: Sequence[Any], tangents: Sequence[Any]):
        """Forward mode through torch.func.jvp (dual tensors)."""
        from torch.func import jvp
        with warnings.catch_warnings():  # torch's first jvp scripts its decompositions: not ours to report
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated",
                                    category=DeprecationWarning)
            out, tangent = jvp(lambda *xs: fn(self.ops, *xs), tuple(primals), tuple(tangents))
        return out, tangent

    # -- reproducers ---------------------------------------------------------------
    def snippet(self, op_call: str, inputs: Sequence[float], dtype: str, device: str) -> str:
        """A one-line torch reproducer for ``op_call`` (as written by conformance.machinery.reproduce)."""
        fname = snippet_function(op_call, {k: v[1] for k, v in _OPS.items()}, _ARITY, inputs)
        dev = "" if device == "cpu" else f", device={device!r}"
        kind = f"dtype=torch.{dtype}{dev}"
        if "vjp(" in op_call:
            return (f"(lambda x: torch.autograd.grad({fname}(x), x, torch.ones_like(x))[0])"
                    f"(torch.tensor([{_literal(inputs[0])}], {kind}, requires_grad=True))")
        if "jvp(" in op_call:
            return (f"(lambda x: torch.func.jvp({fname}, (x,), (torch.ones_like(x),))[1])"
                    f"(torch.tensor([{_literal(inputs[0])}], {kind}))")
        args = ", ".join(f"torch.tensor([{_literal(v)}], {kind})" for v in inputs)
        return f"{fname}({args})"
