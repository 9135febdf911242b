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

import re
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ffnspec.adapters import OpTable

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


# dtype -> (a subnormal x, a normal a and b whose product is subnormal)
_SUBNORMAL_PROBES = {"float16": (2.0 ** -20, 2.0 ** -10, 2.0 ** -10),
                     "bfloat16": (2.0 ** -130, 2.0 ** -100, 2.0 ** -30),
                     "float32": (2.0 ** -140, 2.0 ** -100, 2.0 ** -30),
                     "float64": (2.0 ** -1070, 2.0 ** -1000, 2.0 ** -30)}


def _flushes_subnormals(device: str, dtype: str) -> bool:
    """Whether arithmetic in dtype on the device flushes subnormal results (FTZ) or reads
    subnormal inputs as zero (DAZ).  Probed with the library's own mul, not assumed."""
    x, a, b = (torch.tensor([v], dtype=TORCH_DTYPES[dtype], device=device) for v in _SUBNORMAL_PROBES[dtype])
    two = torch.tensor([2.0], dtype=TORCH_DTYPES[dtype], device=device)
    return torch.mul(x, two).item() == 0.0 or torch.mul(a, b).item() == 0.0


def _literal(v: float) -> str:
    if np.isnan(v):
        return "float('nan')"
    if np.isinf(v):
        return "float('inf')" if v > 0 else "-float('inf')"
    return repr(float(v))


class TorchBackend:
    name = "torch"
    deviations = "torch.toml"

    def __init__(self) -> None:
        self.dtypes = frozenset(TORCH_DTYPES)
        self.devices = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
        flushing = [t for t in TORCH_DTYPES if any(_flushes_subnormals(d, t) for d in self.devices)]
        # one flag for the harness; which dtypes flush, for the record
        self.conventions = {"flush_to_zero": "yes" if flushing else "no",
                            "flush_to_zero_dtypes": ",".join(flushing) or "none"}
        self.version = torch.__version__
        self.ops = OpTable({name: f for name, (f, _) in _OPS.items()})

    # -- conversions -------------------------------------------------------------
    def asarray(self, a: np.ndarray, dtype: str, device: str = "cpu") -> Any:
        a = np.asarray(a, dtype=np.float64)
        if dtype == "bfloat16":
            t = torch.from_numpy(np.array(a, dtype=np.float32)).to(torch.bfloat16)
        else:
            t = torch.from_numpy(np.array(a, dtype=np.dtype(dtype)))  # a fresh, owned copy
        return t.to(device)

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
        """A one-line torch reproducer for ``op_call`` (as written by conformance.checks)."""
        m = re.search(r"ops\.(\w+)\(", op_call)
        if m is None or m.group(1) not in _OPS:
            raise ValueError(f"no op in {op_call!r}")
        op = m.group(1)
        n = _ARITY.get(op, 1)
        if len(inputs) != n:
            raise ValueError(f"{op} takes {n} argument(s), {len(inputs)} given")
        fname = _OPS[op][1]
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
