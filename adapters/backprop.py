"""General back-propagation (Goodfellow et al. §6.5.6, Algorithm 6.2/6.6) over an
array namespace, for backends without autodiff (NumPy, CuPy).

Reverse mode records a tape of primitive calls, then walks it backwards building
the grad table: grad[x] += partial(node w.r.t. x) * grad[node].  Forward mode
carries (value, tangent) pairs through the same partials.  Both modes read one
flat table of partial derivatives, one line per elementwise primitive, as in
autograd's numpy_vjps.py.  Each rule is ``(xp, ops, ans, *args) -> partials``:
xp is the array namespace, ops the backend's own (untraced) primitives.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from ffnspec.adapters import OpTable


def _silu_partial(xp, ops, ans, z):
    s = ops.sigmoid(z)
    g = s * (1 + z * ops.sigmoid(-z))
    return (xp.where(xp.isinf(z), (z > 0).astype(g.dtype), g),)  # limits 0 and 1


PARTIALS: dict[str, Callable[..., tuple]] = {
    "neg":         lambda xp, ops, ans, z: (-xp.ones_like(z),),
    "exp":         lambda xp, ops, ans, z: (ans,),
    "log1p":       lambda xp, ops, ans, z: (1 / (1 + z),),
    "add":         lambda xp, ops, ans, x, y: (xp.ones_like(x), xp.ones_like(y)),
    "sub":         lambda xp, ops, ans, x, y: (xp.ones_like(x), -xp.ones_like(y)),
    "mul":         lambda xp, ops, ans, x, y: (y, x),
    "sigmoid":     lambda xp, ops, ans, z: (ans * (1 - ans),),
    "softplus":    lambda xp, ops, ans, z: (ops.sigmoid(z),),
    "log_sigmoid": lambda xp, ops, ans, z: (ops.sigmoid(-z),),
    "tanh":        lambda xp, ops, ans, z: (1 - ans * ans,),
    "silu":        _silu_partial,
    "logaddexp":   lambda xp, ops, ans, x, y: (xp.exp(x - ans), xp.exp(y - ans)),
}


class _Node:
    __slots__ = ("value", "parents")

    def __init__(self, value, parents):
        self.value = value
        self.parents = parents  # [(parent node, partial array)]


def _traced_ops(xp, ops: OpTable, tape: list) -> OpTable:
    def wrap(name: str, f: Callable) -> Callable:
        rule = PARTIALS[name]

        def op(*args):
            vals = [a.value if isinstance(a, _Node) else a for a in args]
            ans = f(*vals)
            with xp.errstate(all="ignore"):
                partials = rule(xp, ops, ans, *vals)
            parents = [(a, p) for a, p in zip(args, partials) if isinstance(a, _Node)]
            node = _Node(ans, parents)
            tape.append(node)
            return node
        return op
    return OpTable({n: wrap(n, f) for n, f in ops.items() if n in PARTIALS})


def vjp(xp, ops: OpTable, fn: Callable, primals: Sequence[Any], cotangent: Any) -> tuple[Any, tuple]:
    """Reverse mode: (fn(ops, *primals), grad of <cotangent, fn> w.r.t. each primal)."""
    tape: list[_Node] = []
    inputs = [_Node(p, []) for p in primals]
    out = fn(_traced_ops(xp, ops, tape), *inputs)
    grad = {id(out): cotangent}
    with xp.errstate(all="ignore"):
        for node in reversed(tape):
            g = grad.pop(id(node), None)
            if g is None:
                continue
            for parent, partial in node.parents:
                contribution = (g * partial).astype(g.dtype) if hasattr(g, "astype") else g * partial
                grad[id(parent)] = grad[id(parent)] + contribution if id(parent) in grad else contribution
    zeros = [xp.zeros_like(p) for p in primals]
    return out.value, tuple(grad.get(id(n), z) for n, z in zip(inputs, zeros))


def jvp(xp, ops: OpTable, fn: Callable, primals: Sequence[Any], tangents: Sequence[Any]) -> tuple[Any, Any]:
    """Forward mode: (fn(ops, *primals), sum_i partial_i * tangent_i propagated)."""
    tape: list[_Node] = []
    inputs = [_Node(p, []) for p in primals]
    out = fn(_traced_ops(xp, ops, tape), *inputs)
    tangent = {id(n): t for n, t in zip(inputs, tangents)}
    with xp.errstate(all="ignore"):
        for node in tape:
            acc = None
            for parent, partial in node.parents:
                if id(parent) in tangent:
                    term = tangent[id(parent)] * partial
                    acc = term if acc is None else acc + term
            if acc is not None:
                tangent[id(node)] = acc.astype(node.value.dtype) if hasattr(acc, "astype") else acc
    t = tangent.get(id(out), xp.zeros_like(out.value))
    return out.value, t


def supported(ops: Mapping[str, Callable]) -> set[str]:
    return set(ops) & set(PARTIALS)
