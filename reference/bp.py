"""Reference of the ``bp`` family: back-propagation over whole programs (§6.5).

A program is data (a *graph spec*, JSON): its inputs' shapes and a list of array nodes
``[op, [argument indices], {params}]`` over the primitives every backend has (spec/ops.toml:
elementwise units, add/sub/mul/div with broadcasting, matmul, sum/mean along an axis,
softmax, log-softmax, logsumexp).  The backend runs the spec through its OpTable
(conformance/bp.py); the reference expands the same spec into a graph of *scalar* nodes whose
values are computed on an mpmath (or ball) context, and builds its derivatives symbol to
symbol (§6.5.5): reverse mode adds the nodes of the adjoint graph (grad_table: the
contributions to a node's adjoint are summed, §6.5.6, Algorithm 6.2), forward mode adds the
tangent nodes, and the Hessian-vector product is forward mode over the adjoint graph.  The
exact value, vector-Jacobian product, Jacobian-vector product and Hessian-vector product are
the values of those nodes (``program``), rounded once by ``ffnspec.reference.precision``.

The same graph gives the error bound (``program_bound``, docs/measure.md "Running error
bound"): each scalar node v may err by its clause's allowance eps_v = u cu_v + eta ce_v, and
to first order an output y errs by at most sum_v |dy/dv| eps_v, the derivatives dy/dv being
the exact adjoints of y over the whole (forward + adjoint + tangent) graph (Higham,
Accuracy and Stability, §3.3).  Branches (relu, maximum) are decided on the exact values at trace time; ``program_bound`` reports each decision's margin
so a check can set aside a program whose computed branch may differ.
Book: Goodfellow, Bengio & Courville, *Deep Learning*, §6.5.
"""
from __future__ import annotations

import json
import math
from typing import Any, Sequence

import numpy as np

# ---- scalar nodes ---------------------------------------------------------------------------


class Node:
    __slots__ = ("op", "args", "value", "aux", "id")

    def __init__(self, op: str, args: tuple, value, aux=None, id: int = 0):
        self.op, self.args, self.value, self.aux, self.id = op, args, value, aux, id


def _sig(ctx, a):
    return 1 / (1 + ctx.exp(-a))


# value of each scalar op on the context: (ctx, argument values, aux) -> value
_VALUE = {
    "add": lambda ctx, a, x: a[0] + a[1],
    "sub": lambda ctx, a, x: a[0] - a[1],
    "mul": lambda ctx, a, x: a[0] * a[1],
    "div": lambda ctx, a, x: a[0] / a[1],
    "neg": lambda ctx, a, x: -a[0],
    "half": lambda ctx, a, x: a[0] / 2,
    "scale": lambda ctx, a, x: a[0] / x,                      # a / n (a mean)
    "sum": lambda ctx, a, x: ctx.fsum(a),
    "tie": lambda ctx, a, x: a[0],                            # max(a, b) at a == b
    "pick": lambda ctx, a, x: a[0],                           # max(a, b) = a, a > b: routes to a
    "route": lambda ctx, a, x: a[0],                          # pick's tangent: a_dot (b_dot not taken)
    "blend": lambda ctx, a, x: (a[0] + a[1]) / 2,             # tie's tangent: (a_dot + b_dot) / 2
    "exp": lambda ctx, a, x: ctx.exp(a[0]),
    "log": lambda ctx, a, x: ctx.log(a[0]),
    "log1p": lambda ctx, a, x: ctx.log1p(a[0]),
    "sin": lambda ctx, a, x: ctx.sin(a[0]),
    "cos": lambda ctx, a, x: ctx.cos(a[0]),
    "tanh": lambda ctx, a, x: ctx.tanh(a[0]),
    "sigmoid": lambda ctx, a, x: _sig(ctx, a[0]),
    "softplus": lambda ctx, a, x: max(a[0], 0) + ctx.log1p(ctx.exp(-abs(a[0]))),
    "log_sigmoid": lambda ctx, a, x: min(a[0], 0) - ctx.log1p(ctx.exp(-abs(a[0]))),
    # derivative nodes: sigma', sigma'', tanh' = sech^2, tanh''
    "dsigmoid": lambda ctx, a, x: _sig(ctx, a[0]) * _sig(ctx, -a[0]),
    "ddsigmoid": lambda ctx, a, x: _sig(ctx, a[0]) * _sig(ctx, -a[0]) * (1 - 2 * _sig(ctx, a[0])),
    "dtanh": lambda ctx, a, x: ctx.sech(a[0]) ** 2,
    "ddtanh": lambda ctx, a, x: -2 * ctx.tanh(a[0]) * ctx.sech(a[0]) ** 2,
}

# allowance of a node as (cu, ce): |error| <= u cu + eta ce (docs/measure.md, spec/50_bp.toml)
ARITH = 1      # one correctly rounded IEEE operation
LIBM = 10      # an elementwise library function: 5 ULP of the exact value (the act MUST bound)
DERIV = 21     # a derivative unit: the act.*.grad MUST constant


def _allowance(n: Node, f: list[float]) -> tuple[float, float]:
    """(cu, ce) of node n; f holds the float values of all nodes."""
    op, v = n.op, abs(f[n.id])
    if op in ("in", "const", "neg", "tie", "pick"):
        return 0.0, 0.0
    if op in ("route", "blend"):  # also b_dot + [a > b] (a_dot - b_dot), torch's form: two roundings
        return v + abs(f[n.args[0].id] - f[n.args[1].id]), (1.0 if op == "blend" else 0.0)
    if op in ("add", "sub"):
        return v, 0.0                      # sums of floats never underflow inexactly
    if op in ("mul", "div"):
        return ARITH * v, ARITH
    if op == "half":
        return 0.0, 1.0
    if op == "scale":
        return 2 * v, 2.0                  # RN(1/n) and the product, or one division
    if op == "sum":
        return (len(n.args) - 1) * sum(abs(f[a.id]) for a in n.args), 0.0
    if op in ("dsigmoid", "ddsigmoid", "dtanh", "ddtanh"):
        z = f[n.args[0].id]
        # also computed from the stored output y = sigma(z) or tanh(z), LIBM allowance: the error
        # of y times |d(derivative)/dy|.  At z = -a (log_sigmoid's derivative sigma(-a)) the value
        # at hand may be sigma(a) = 1 - y instead (torch's log_sigmoid double backward (s - 1) s,
        # s = sigma(a)): the larger of the two is counted
        y = _fsig(z) if op in ("dsigmoid", "ddsigmoid") else math.tanh(z)
        dy = {"dsigmoid": abs(1 - 2 * y), "ddsigmoid": abs(1 - 6 * y + 6 * y * y),
              "dtanh": abs(2 * y), "ddtanh": abs(6 * y * y - 2)}[op]
        complement = op in ("dsigmoid", "ddsigmoid") and n.args[0].op == "neg"
        stored = max(y, 1 - y) if complement else abs(y)
        return DERIV * v + dy * LIBM * stored, DERIV + dy * LIBM
    return LIBM * v, LIBM                  # exp, log, log1p, sin, cos, tanh, sigmoid, softplus, log_sigmoid


def _fsig(z: float) -> float:
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


def _fsech2(z: float) -> float:
    return 0.0 if abs(z) > 350 else 1 / math.cosh(z) ** 2


def _partials(n: Node, f: list[float]) -> list[float]:
    """dn/d(argument) as floats, from the float values f."""
    op, a = n.op, [f[p.id] for p in n.args]
    v = f[n.id]
    if op in ("add", "sum"):
        return [1.0] * len(a)
    if op == "sub":
        return [1.0, -1.0]
    if op == "mul":
        return [a[1], a[0]]
    if op == "div":
        return [1 / a[1], -v / a[1]]
    if op == "neg":
        return [-1.0]
    if op == "half":
        return [0.5]
    if op == "scale":
        return [1 / n.aux]
    if op in ("tie", "blend"):
        return [0.5, 0.5]
    if op in ("pick", "route"):
        return [1.0, 0.0]
    z = a[0]
    s = _fsig(z)
    d1 = s * (1 - s)
    return [_UNARY_PARTIAL[op](z, v, s, d1)]


_UNARY_PARTIAL = {  # d op(z) / dz from (z, the value v, sigma(z), sigma'(z)), as floats
    "exp": lambda z, v, s, d1: v,
    "log": lambda z, v, s, d1: 1 / z if z else math.inf,
    "log1p": lambda z, v, s, d1: 1 / (1 + z) if z != -1 else math.inf,
    "sin": lambda z, v, s, d1: math.cos(z),
    "cos": lambda z, v, s, d1: -math.sin(z),
    "tanh": lambda z, v, s, d1: _fsech2(z),
    "sigmoid": lambda z, v, s, d1: d1,
    "softplus": lambda z, v, s, d1: s,
    "log_sigmoid": lambda z, v, s, d1: 1 - s,
    "dsigmoid": lambda z, v, s, d1: d1 * (1 - 2 * s),
    "ddsigmoid": lambda z, v, s, d1: d1 * (1 - 6 * s + 6 * s * s),
    "dtanh": lambda z, v, s, d1: -2 * math.tanh(z) * _fsech2(z),
    "ddtanh": lambda z, v, s, d1: _fsech2(z) * (4 * math.tanh(z) ** 2 - 2 * _fsech2(z)),
}


class Graph:
    """Scalar nodes in creation (topological) order, values on ``ctx``; symbolic derivatives."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.nodes: list[Node] = []
        self.decisions: list[tuple[Node, Node | None]] = []   # branch decided on a - b (or a - 0)
        self._zero = self.const(ctx.zero)

    def _add(self, op: str, args: tuple, value, aux=None) -> Node:
        n = Node(op, args, value, aux, len(self.nodes))
        self.nodes.append(n)
        return n

    def const(self, value) -> Node:
        return self._add("const", (), self.ctx.mpf(value))

    def leaf(self, value) -> Node:
        return self._add("in", (), value)

    def op(self, op: str, *args: Node, aux=None) -> Node:
        return self._add(op, args, _VALUE[op](self.ctx, [a.value for a in args], aux), aux)

    def total(self, terms: list[Node]) -> Node:
        """grad_table accumulation: the sum of a node's contributions (one term: itself)."""
        terms = [t for t in terms if t is not None]
        if not terms:
            return self._zero
        return terms[0] if len(terms) == 1 else self.op("sum", *terms)

    # routing ops, decided on the exact values (§6.5: max routes, relu gates)
    def relu(self, a: Node) -> Node:
        self.decisions.append((a, None))
        return a if a.value > 0 else self._zero

    def maximum(self, a: Node, b: Node) -> Node:
        self.decisions.append((a, b))
        if a.value > b.value:
            return self.op("pick", a, b)
        if b.value > a.value:
            return self.op("pick", b, a)
        return self.op("tie", a, b)

    # x (d n / d args[i]): linear in x, the same for a cotangent (reverse) or a tangent (forward)
    def contrib(self, n: Node, i: int, x: Node) -> Node | None:
        op, a = n.op, n.args
        if op in ("add", "sum"):
            return x
        if op in ("tie", "blend"):
            return self.op("half", x)
        if op in ("pick", "route"):
            return x if i == 0 else None
        if op == "sub":
            return x if i == 0 else self.op("neg", x)
        if op == "neg":
            return self.op("neg", x)
        if op == "half":
            return self.op("half", x)
        if op == "scale":
            return self.op("scale", x, aux=n.aux)
        if op == "mul":
            return self.op("mul", x, a[1 - i])
        if op == "div":
            return self.op("div", x, a[1]) if i == 0 else self.op("neg", self.op("div", self.op("mul", x, n), a[1]))
        if op == "exp":
            return self.op("mul", x, n)
        if op == "log":
            return self.op("div", x, a[0])
        if op == "log1p":
            return self.op("div", x, self.op("add", self.const(1), a[0]))
        if op == "sin":
            return self.op("mul", x, self.op("cos", a[0]))
        if op == "cos":
            return self.op("neg", self.op("mul", x, self.op("sin", a[0])))
        if op == "softplus":
            return self.op("mul", x, self.op("sigmoid", a[0]))
        if op == "log_sigmoid":
            return self.op("mul", x, self.op("sigmoid", self.op("neg", a[0])))
        deriv = {"tanh": "dtanh", "sigmoid": "dsigmoid", "dtanh": "ddtanh", "dsigmoid": "ddsigmoid"}
        if op in deriv:
            return self.op("mul", x, self.op(deriv[op], a[0]))
        raise ValueError(f"no derivative of scalar op {op!r} (third order is not needed)")

    def reverse(self, seeds: list[tuple[Node, Node]], upto: int) -> dict[int, Node]:
        """Adjoint nodes of nodes[:upto] for cotangents ``seeds`` (node, cotangent node)."""
        parts: dict[int, list[Node]] = {}
        for n, c in seeds:
            parts.setdefault(n.id, []).append(c)
        adj: dict[int, Node] = {}
        for n in reversed(self.nodes[:upto]):
            if n.id not in parts:
                continue
            g = adj[n.id] = self.total(parts.pop(n.id))
            for i, p in enumerate(n.args):
                c = self.contrib(n, i, g)
                if c is not None:
                    parts.setdefault(p.id, []).append(c)
        return adj

    def forward(self, tangents: dict[int, Node], upto: int) -> dict[int, Node]:
        """Tangent nodes of nodes[:upto] for input tangents (node id -> tangent node)."""
        tan = dict(tangents)
        for n in self.nodes[:upto]:
            if n.id in tan or not n.args:
                continue
            if n.op in ("pick", "tie"):  # a maximum's tangent: routed (or blended at a tie) as one node
                a, b = n.args
                if a.id in tan or b.id in tan:
                    tan[n.id] = self.op("route" if n.op == "pick" else "blend", tan.get(a.id, self._zero),
                                        tan.get(b.id, self._zero))
                continue
            terms = [self.contrib(n, i, tan[p.id]) for i, p in enumerate(n.args) if p.id in tan]
            if terms:
                tan[n.id] = self.total(terms)
        return tan


# ---- array programs over scalar nodes -------------------------------------------------------

def parse(spec: str) -> tuple[list[tuple[int, ...]], list[tuple[str, list[int], dict]]]:
    d = json.loads(spec)
    return [tuple(s) for s in d["inputs"]], [(o, list(a), dict(p[0]) if p else {}) for o, a, *p in d["nodes"]]


def _along(x: np.ndarray, axis, f) -> np.ndarray:
    """f(list of nodes) over ``axis`` of an object array (axis None: every entry)."""
    if axis is None:
        return np.array(f(list(x.ravel())), dtype=object)
    x = np.moveaxis(x, axis, -1)
    out = np.empty(x.shape[:-1], dtype=object)
    for idx in np.ndindex(out.shape):
        out[idx] = f(list(x[idx]))
    return out


def _rows(x: np.ndarray, f) -> np.ndarray:
    """f(row) -> row, over the last axis."""
    out = np.empty(x.shape, dtype=object)
    for idx in np.ndindex(x.shape[:-1]):
        out[idx] = f(list(x[idx]))
    return out


def _shifted(g: Graph, row: list[Node]):
    """t_j = z_j - m (m = max z, held constant: the functions are shift-invariant, so the arg-max
    is no branch of theirs), e_j = exp(t_j), s = sum_j e_j."""
    m = g.const(max(n.value for n in row))
    t = [g.op("sub", n, m) for n in row]
    e = [g.op("exp", x) for x in t]
    return m, t, e, g.op("sum", *e) if len(e) > 1 else e[0]


def _softmax(g, row):
    _, _, e, s = _shifted(g, row)
    return [g.op("div", x, s) for x in e]


def _log_softmax(g, row):
    _, t, _, s = _shifted(g, row)
    ls = g.op("log", s)
    return [g.op("sub", x, ls) for x in t]


def _logsumexp(g, row):
    m, _, _, s = _shifted(g, row)
    return g.op("add", m, g.op("log", s))


_UNARY = ("neg", "exp", "log", "log1p", "sin", "cos", "tanh", "sigmoid", "softplus", "log_sigmoid")
_BINARY = ("add", "sub", "mul", "div")


def _apply(g: Graph, op: str, xs: list[np.ndarray], params: dict) -> np.ndarray:
    if op in _UNARY:
        return np.frompyfunc(lambda a: g.op(op, a), 1, 1)(xs[0])
    if op in _BINARY:
        return np.frompyfunc(lambda a, b: g.op(op, a, b), 2, 1)(*xs)
    if op == "relu":
        return np.frompyfunc(g.relu, 1, 1)(xs[0])
    if op == "maximum":
        return np.frompyfunc(g.maximum, 2, 1)(*xs)
    if op == "matmul":
        a, b = xs
        out = np.empty((a.shape[0], b.shape[1]), dtype=object)
        for i in range(a.shape[0]):
            for j in range(b.shape[1]):
                out[i, j] = g.total([g.op("mul", a[i, k], b[k, j]) for k in range(a.shape[1])])
        return out
    if op == "sum":
        return _along(xs[0], params.get("axis"), g.total)
    if op == "mean":
        return _along(xs[0], params.get("axis"), lambda r: g.op("scale", g.total(r), aux=len(r)))
    if op == "softmax":
        return _rows(xs[0], lambda r: _softmax(g, r))
    if op == "log_softmax":
        return _rows(xs[0], lambda r: _log_softmax(g, r))
    if op == "logsumexp":
        return _along(xs[0], -1, lambda r: _logsumexp(g, r))
    raise ValueError(f"graph spec: unknown op {op!r}")


def trace(ctx, spec: str, arrays: Sequence) -> tuple[Graph, list[np.ndarray], np.ndarray]:
    """The scalar graph of the spec at the inputs: (graph, input node arrays, output node array)."""
    shapes, nodes = parse(spec)
    g = Graph(ctx)
    ins = []
    for shape, a in zip(shapes, arrays):
        a = a.tolist() if isinstance(a, np.ndarray) else a
        vals = np.empty(shape, dtype=object)
        flat = np.array(a, dtype=object).reshape(-1) if shape else [a if not isinstance(a, list) else a[0]]
        for k, idx in enumerate(np.ndindex(shape)):
            vals[idx] = g.leaf(ctx.mpf(flat[k]))
        ins.append(vals)
    vals = list(ins)
    for op, args, params in nodes:
        vals.append(np.asarray(_apply(g, op, [vals[i] for i in args], params), dtype=object))
    return g, ins, vals[-1]


def _nodes(g: Graph, shape: tuple, values) -> np.ndarray:
    values = values.tolist() if isinstance(values, np.ndarray) else values
    flat = np.array(values, dtype=object).reshape(-1) if shape else [values]
    out = np.empty(shape, dtype=object)
    for k, idx in enumerate(np.ndindex(shape)):
        out[idx] = g.const(flat[k])
    return out


def build(ctx, spec: str, what: str, arrays: Sequence) -> tuple[Graph, list[Node]]:
    """The graph and the output nodes of ``what``: value (the program's output), vjp (the
    gradients of <cotangent, output> w.r.t. each input, concatenated; the cotangent is the last
    array), jvp (the output tangent; one tangent per input follows the inputs), hvp (the Hessian
    of a scalar output times the tangents, per input, concatenated)."""
    shapes, _ = parse(spec)
    k = len(shapes)
    g, ins, out = trace(ctx, spec, arrays[:k])
    upto = len(g.nodes)
    if what == "value":
        return g, list(out.ravel())
    if what == "vjp":
        cot = _nodes(g, out.shape, arrays[k])
        adj = g.reverse(list(zip(out.ravel(), cot.ravel())), upto)
        return g, [adj.get(n.id, g._zero) for x in ins for n in x.ravel()]
    tangents = {}
    for x, t in zip(ins, arrays[k:]):
        for n, tn in zip(x.ravel(), _nodes(g, x.shape, t).ravel()):
            tangents[n.id] = tn
    if what == "jvp":
        tan = g.forward(tangents, upto)
        return g, [tan.get(n.id, g._zero) for n in out.ravel()]
    if what == "hvp":
        (y,) = out.ravel()
        adj = g.reverse([(y, g.const(1))], upto)
        grads = [adj.get(n.id, g._zero) for x in ins for n in x.ravel()]
        tan = g.forward(tangents, len(g.nodes))
        return g, [tan.get(n.id, g._zero) for n in grads]
    raise ValueError(f"unknown derivative {what!r}")


def program(ctx, spec: str, what: str, *arrays):
    """Exact value / vjp / jvp / hvp of the graph spec (see ``build``), flattened."""
    _, outs = build(ctx, spec, what, arrays)
    return [n.value for n in outs]


def _sweep(g: Graph, f: list[float], dp: list[list[float]], y: Node, cu: np.ndarray, ce: np.ndarray):
    """First-order bound coefficients of node y: (sum_v |dy/dv| cu_v, sum_v |dy/dv| ce_v)."""
    adj = np.zeros(y.id + 1)
    adj[y.id] = 1.0
    su = se = 0.0
    for n in reversed(g.nodes[:y.id + 1]):
        a = adj[n.id]
        if a == 0.0:
            continue
        su += abs(a) * cu[n.id]
        se += abs(a) * ce[n.id]
        for p, d in zip(n.args, dp[n.id]):
            adj[p.id] += a * d
    return su, se


def program_bound(ctx, spec: str, what: str, *arrays) -> dict[str, Any]:
    """The running error bound of every output of ``what``: arrays S_u, S_eta with
    |computed - exact| <= u S_u + eta S_eta to first order; and for every branch decision
    (margin |a - b|, S_u, S_eta of a - b), so a check can tell a robust branch from one the
    computed values may take the other way."""
    g, outs = build(ctx, spec, what, arrays)
    f = [float(n.value) for n in g.nodes]
    allow = [_allowance(n, f) for n in g.nodes]
    cu, ce = np.array([a[0] for a in allow]), np.array([a[1] for a in allow])
    dp = [_partials(n, f) if n.args else [] for n in g.nodes]
    su, se = zip(*[_sweep(g, f, dp, y, cu, ce) for y in outs]) if outs else ((), ())
    dec = []
    for a, b in g.decisions:
        ua, ea = _sweep(g, f, dp, a, cu, ce)
        ub, eb = _sweep(g, f, dp, b, cu, ce) if b is not None else (0.0, 0.0)
        dec.append((abs(f[a.id] - (f[b.id] if b is not None else 0.0)), ua + ub, ea + eb))
    return {"S_u": np.array(su), "S_eta": np.array(se), "decisions": dec, "nodes": len(g.nodes)}


def product(ctx, a, b):
    """a b (mul's reverse mode: the cotangent times the other factor, rounded once)."""
    return a * b


# ---- closed forms (tests/test_reference_bp.py checks the graph engine against them) ----------

def dense_grads(ctx, h, W, b, delta):
    """z = h W^T + b (batched), cotangent delta: (dW, db, dh) = (delta^T h, sum_n delta, delta W)."""
    N, m, d = len(h), len(W), len(W[0])
    dW = [[ctx.fsum(delta[n][i] * h[n][j] for n in range(N)) for j in range(d)] for i in range(m)]
    db = [ctx.fsum(delta[n][i] for n in range(N)) for i in range(m)]
    dh = [[ctx.fsum(delta[n][i] * W[i][j] for i in range(m)) for j in range(d)] for n in range(N)]
    return dW, db, dh


def worked_f_grad(ctx, x1, x2):
    """f = ln x1 + x1 x2 - sin x2: (1/x1 + x2, x1 - cos x2)."""
    return [1 / x1 + x2, x1 - ctx.cos(x2)]


def logreg_grad(ctx, w, x, y, lam):
    """L = 1/2 ||w||^2 - lam log sigma(y w.x): dL/dw = w - lam y sigma(-y w.x) x."""
    s = _sig(ctx, -y * ctx.fsum(a * b for a, b in zip(w, x)))
    return [wi - lam * y * s * xi for wi, xi in zip(w, x)]


def sigmoid_second(ctx, z):
    """sigma'' = sigma (1 - sigma)(1 - 2 sigma)."""
    s = _sig(ctx, z)
    return s * (1 - s) * (1 - 2 * s)


def tanh_second(ctx, z):
    """tanh'' = -2 tanh sech^2."""
    return -2 * ctx.tanh(z) * ctx.sech(z) ** 2


def softplus_second(ctx, z):
    """softplus'' = sigma'."""
    return _sig(ctx, z) * _sig(ctx, -z)


def sigmoid_chain_grad(ctx, x, depth):
    """d/dx sigma^(l)(x) = prod_{i<l} sigma'(a_i), a_0 = x, a_{i+1} = sigma(a_i)."""
    p, a = ctx.one, x
    for _ in range(int(depth)):
        p = p * _sig(ctx, a) * _sig(ctx, -a)
        a = _sig(ctx, a)
    return p


# ---- operation counts (bp.bracketing) ------------------------------------------------------
def chain_cost(dims, order: str) -> int:
    """Scalar multiply-adds of the matrix chain M_1 M_2 ... M_k, M_j of shape dims[j-1] x dims[j],
    evaluated by matrix products from the left, ((M_1 M_2) M_3) ... (order "left"), or from the
    right, M_1 (... (M_{k-1} M_k)) ("right"): sum_j dims[0] dims[j-1] dims[j] over j = 2..k, or
    sum_j dims[j-1] dims[j] dims[k] over j = 1..k-1 (a p x q times q x r product costs p q r)."""
    d = [int(v) for v in dims]
    k = len(d) - 1
    if order == "left":
        return sum(d[0] * d[j - 1] * d[j] for j in range(2, k + 1))
    if order == "right":
        return sum(d[j - 1] * d[j] * d[k] for j in range(1, k))
    raise ValueError(f"order {order!r}: 'left' or 'right'")


def chain_jacobian(ctx, *mats):
    """The exact Jacobian A_L ... A_1 of x -> A_L (... (A_1 x)), the factors given as A_1, ..., A_L."""
    J = ctx.matrix([[ctx.mpf(v) for v in row] for row in np.asarray(mats[0]).tolist()])
    for A in mats[1:]:
        J = ctx.matrix([[ctx.mpf(v) for v in row] for row in np.asarray(A).tolist()]) * J
    return [[J[i, j] for j in range(J.cols)] for i in range(J.rows)]
