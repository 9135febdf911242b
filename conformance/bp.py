"""The bp family (spec/50_bp.toml, reference/bp.py): back-propagation over whole programs.

A program is a graph spec (JSON, reference/bp.py): the inputs' shapes and array nodes over the
graph primitives of spec/ops.toml.  ``GraphProgram`` runs a spec through a backend's OpTable as
``fn(ops, *inputs)``, so every backend runs the same program and differentiates it with its own
reverse mode (vjp), forward mode (jvp) and Hessian-vector product (hvp).  The reference expands
the same spec into scalar nodes and gives the exact value, vjp, jvp and hvp, and a running error
bound from the same graph (docs/measure.md, "Running error bound").  The checks here build the
clauses' programs (dense layer, MLP, worked graphs, fan-out, broadcasting, vanishing gradients),
the exact routing checks (add/mul/max patterns, where, the custom ReLU) and the random-graph
strategy (hypothesis) with its check.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ffnspec.conformance.checks.composites import register, register_strategy
from ffnspec.conformance.machinery.harness import OpProgram, Target
from ffnspec.conformance.machinery.measure import exact, same_exact, two_eta
from ffnspec.conformance.machinery.records import conclude
from ffnspec.conformance.machinery.reproduce import named
from ffnspec.reference import bp as ref
from ffnspec.reference import precision, tables
from ffnspec.reference.floatformat import Format, round_array

BOUND_BITS = 113  # the bound's graph values: far more than its float sweeps need


# ---------------------------------------------------------------- programs ----
@dataclass(frozen=True)
class GraphProgram:
    """fn(ops, *inputs) evaluating a graph spec node by node through the backend's ops."""
    spec: str

    def __call__(self, ops, *xs):
        vals = list(xs)
        for op, args, params in ref.parse(self.spec)[1]:
            vals.append(ops[op](*[vals[i] for i in args], **params))
        return vals[-1]

    def uses(self) -> list[str]:
        return sorted({op for op, _, _ in ref.parse(self.spec)[1]})

    def source(self) -> list[str]:
        """The program as Python source over the OpTable (for reproducers)."""
        shapes, nodes = ref.parse(self.spec)
        names = [f"x{i}" for i in range(len(shapes))]
        lines = [f"def program(ops, {', '.join(names)}):"]
        for k, (op, args, params) in enumerate(nodes):
            name = f"v{len(names)}"
            kw = "".join(f", {p}={v!r}" for p, v in params.items())
            lines.append(f"    {name} = ops.{op}({', '.join(names[i] for i in args)}{kw})")
            names.append(name)
        lines.append(f"    return {names[-1]}")
        return lines


def spec_of(shapes: Sequence[tuple[int, ...]], nodes: Sequence[tuple]) -> str:
    """A graph spec: input shapes and nodes (op, argument indices[, params])."""
    return json.dumps({"inputs": [list(s) for s in shapes],
                       "nodes": [[n[0], list(n[1])] + ([n[2]] if len(n) > 2 and n[2] else []) for n in nodes]})


def out_shape(spec: str, inputs: Sequence[np.ndarray]) -> tuple[int, ...]:
    """The output shape of the program (by NumPy's own evaluation of shapes)."""
    shapes, nodes = ref.parse(spec)
    vals = [np.zeros(s) for s in shapes]
    for op, args, params in nodes:
        a = [vals[i] for i in args]
        if op == "matmul":
            vals.append(a[0] @ a[1])
        elif op in ("sum", "mean"):
            vals.append(np.sum(a[0], axis=params.get("axis")))
        elif op == "logsumexp":
            vals.append(np.sum(a[0], axis=-1))
        elif op == "where":
            vals.append(a[0] + a[1] + a[2])
        else:
            vals.append(sum(a[1:], a[0]))
    return np.shape(vals[-1])


# -------------------------------------------------------------- measuring ----
_BOUNDS: dict[tuple, dict[str, Any]] = {}


def bound(spec: str, what: str, arrays: Sequence[np.ndarray]) -> dict[str, Any]:
    """The reference's running error bound of ``what`` at these arrays (cached in-process: the
    same programs recur in every format)."""
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    key = (spec, what, tuple((a.shape, a.tobytes()) for a in arrays))
    if key not in _BOUNDS:
        if len(_BOUNDS) > 4096:
            _BOUNDS.clear()
        _BOUNDS[key] = ref.program_bound(precision.context(BOUND_BITS), spec, what, *arrays)
    return _BOUNDS[key]


def limit(target: Target, b: dict[str, Any], k: float) -> np.ndarray:
    """Twice k (u S_u + eta S_eta): the bound, doubled (2 eta is a float64, eta is not)."""
    return k * (2 * target.fmt.unit_roundoff * b["S_u"] + two_eta(target) * b["S_eta"])


def ambiguous(target: Target, b: dict[str, Any], k: float) -> bool:
    """Whether a branch (relu, maximum) decided on the exact values may go the other way on the
    computed ones: its margin within the bound of the two sides' errors."""
    fmt = target.fmt
    # a tie of exact values (bound 0) is no uncertainty: relu'(0) = 0 and an even max split, the
    # preferred conventions ([hid.conventions]) every built-in adapter declares
    return any(0 < (lim := k * (fmt.unit_roundoff * su + two_eta(target) * se)) and m <= lim
               for m, su, se in b["decisions"])


def _mode_call(target: Target, prog: GraphProgram, inputs, what: str, seeds, shape):
    """The backend's answer for ``what``: value, vjp (concatenated), jvp or hvp (concatenated)."""
    uses = prog.uses()
    if what in ("value", "vjp"):
        cot = seeds[0] if what == "vjp" else np.ones(shape)
        value, grads = target.gradient(prog, inputs, cot, mode="vjp", shape=shape, uses=uses)
        return np.ravel(value) if what == "value" else np.concatenate([np.ravel(g) for g in grads])
    if what == "jvp":
        return np.ravel(target.gradient(prog, inputs, list(seeds), mode="jvp", shape=shape, uses=uses)[1])
    _, hv = target.hessian_vector(prog, inputs, list(seeds), uses=uses)
    return np.concatenate([np.ravel(h) for h in hv])


def reproducer(target: Target, prog: GraphProgram, inputs, what: str, seeds) -> str:
    """A few lines: the program over the backend's own ops and the backend's own autodiff."""
    names = [f"x{i}" for i in range(len(inputs))]
    arrays = dict(zip(names, inputs))
    arrays.update({f"s{i}": s for i, s in enumerate(seeds)} if what != "value" else {})
    xs = f"[{', '.join(names)}]"
    ss = f"[{', '.join(f's{i}' for i in range(len(seeds)))}]"
    call = {"value": f"b.to_numpy(program(b.ops, {', '.join(names)})).tolist()",
            "vjp": f"[b.to_numpy(g).tolist() for g in b.vjp(program, {xs}, s0)[1]]",
            "jvp": f"b.to_numpy(b.jvp(program, {xs}, {ss})[1]).tolist()",
            "hvp": f"[b.to_numpy(h).tolist() for h in b.hvp(program, {xs}, {ss})[1]]"}[what]
    return named(target, arrays, call, prelude=tuple(prog.source()))


def measure(clause, target: Target, record, spec: str, inputs: Sequence[np.ndarray], what: str,
            seeds: Sequence[np.ndarray] = (), *, part: slice | None = None, label: str = "") -> bool:
    """Check the backend's ``what`` of the program against the exact one within k times the
    running error bound (k = clause must); ``part`` selects the compared components (e.g. one
    input's gradient).  Returns False when the program was set aside as ambiguous (a branch the
    computed values may take the other way)."""
    inputs = [np.asarray(a, dtype=np.float64) for a in inputs]
    seeds = [np.asarray(s, dtype=np.float64) for s in seeds]
    k = clause.tolerance.must
    b = bound(spec, what, list(inputs) + list(seeds))
    if ambiguous(target, b, k):
        note = "programs set aside (a branch within the error bound of its margin): "
        old = [n for n in record.notes if n.startswith(note)]
        count = int(old[0].removeprefix(note)) + 1 if old else 1
        record.notes = [n for n in record.notes if not n.startswith(note)] + [f"{note}{count}"]
        return False
    prog = GraphProgram(spec)
    got = _mode_call(target, prog, inputs, what, seeds, out_shape(spec, inputs))
    ex = tables.exact_problems(ref.program, [(spec, what, *inputs, *seeds)], target.fmt)
    hi, lo, cr = ex.hi[0], ex.lo[0], ex.cr[0]
    lim = limit(target, b, k)
    sel = part if part is not None else slice(None)
    got, hi, lo, cr, lim = got[sel], hi[sel], lo[sel], cr[sel], lim[sel]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        err = 2 * k * np.abs((got - hi) - lo) / lim
    err = np.where(lim == 0, np.where(same_exact(got, cr), 0.0, np.inf), err)
    err = np.where(np.isnan(err), np.inf, err)
    bad = ~(err <= k)
    conclude(record, clause, target, bad, err,
             what=f"{what} of the program ({label or 'components'}) is outside the running error bound",
             criterion=f"|y - t| <= {k:g} (u S_u + eta S_eta), S from the program's running error bound "
                       "(error in units of u S_u + eta S_eta)",
             reproducer=lambda i: reproducer(target, prog, inputs, what, seeds),
             inputs=[np.arange(got.size, dtype=float)], got=got, want=hi + lo)
    return True


# ---------------------------------------------------------------- inputs ----
def grid(seed: int, shape, lo: float = -2.0, hi: float = 2.0, step: float = 0.125, nonzero: bool = False):
    """Deterministic entries that are multiples of ``step`` in [lo, hi] (exact in every format)."""
    rng = np.random.default_rng(seed)
    vals = np.arange(lo, hi + step / 2, step)
    if nonzero:
        vals = vals[vals != 0]
    return rng.choice(vals, size=shape)


def seeds_for(seed: int, shapes) -> list[np.ndarray]:
    """Cotangents or tangents: multiples of 1/4 in [-2, 2]."""
    return [grid(seed + i, s, step=0.25) for i, s in enumerate(shapes)]


# ------------------------------------------------------------ dense layer ----
# z = h W + b batched: h (N, d), W (d, m), b (m,) broadcast over the batch (the book's z = W h + b
# with W stored transposed, as h W is how a batch is written); cotangent delta (N, m).
def _dense_spec(N: int, d: int, m: int) -> str:
    return spec_of([(N, d), (d, m), (m,)], [("matmul", (0, 1)), ("add", (3, 2))])


_DENSE_SHAPES = ((3, 2, 2), (4, 3, 2), (1, 3, 3), (5, 4, 4))


def _dense_problems():
    for i, (N, d, m) in enumerate(_DENSE_SHAPES):
        h, W, b = grid(10 + i, (N, d)), grid(20 + i, (d, m)), grid(30 + i, (m,))
        yield (N, d, m), _dense_spec(N, d, m), [h, W, b], grid(40 + i, (N, m), step=0.25)


def _dense(clause, target, record, which: int, label: str):
    for (N, d, m), spec, inputs, delta in _dense_problems():
        sizes = [a.size for a in inputs]
        start = sum(sizes[:which])
        measure(clause, target, record, spec, inputs, "vjp", [delta], part=slice(start, start + sizes[which]),
                label=f"{label}, N={N} d={d} m={m}")
        tangents = [np.zeros_like(a) for a in inputs]
        tangents[which] = grid(50 + which, inputs[which].shape, step=0.25)
        measure(clause, target, record, spec, inputs, "jvp", tangents, label=f"forward mode along {label[2:]}")


@register("dense_grad_w", fixed=True)
def dense_grad_w(clause, target, record, z):
    _dense(clause, target, record, 1, "dW = h^T delta")


@register("dense_grad_b", fixed=True)
def dense_grad_b(clause, target, record, z):
    _dense(clause, target, record, 2, "db = sum_n delta_n")


@register("dense_grad_h", fixed=True)
def dense_grad_h(clause, target, record, z):
    _dense(clause, target, record, 0, "dh = delta W^T")


@register("dense_grad_z", fixed=True)
def dense_grad_z(clause, target, record, z):
    # a = g(z) elementwise, cotangent G: dz = G * g'(z); z over [-8, 8] (saturation included)
    for i, g in enumerate(("tanh", "sigmoid", "softplus", "log_sigmoid")):
        zz = grid(60 + i, (4, 8), lo=-8, hi=8, step=0.25)
        spec = spec_of([zz.shape], [(g, (0,))])
        measure(clause, target, record, spec, [zz], "vjp", [grid(70 + i, zz.shape, step=0.25)], label=f"g = {g}")
        measure(clause, target, record, spec, [zz], "jvp", [grid(80 + i, zz.shape, step=0.25)], label=f"g = {g}")


def _nll_spec(N: int, c: int) -> str:
    """L = -sum(Y * log_softmax(Z)) over a batch: the softmax/NLL head; dL/dZ = softmax(Z) - Y."""
    return spec_of([(N, c), (N, c)], [("log_softmax", (0,)), ("mul", (1, 2)), ("sum", (3,), {"axis": None}),
                                      ("neg", (4,))])


def _bce_spec(N: int) -> str:
    """L = -sum(y log sigma(z) + (1 - y) log sigma(-z)) (1 - y given as an input); dL/dz = sigma(z) - y."""
    return spec_of([(N,), (N,), (N,)], [("log_sigmoid", (0,)), ("neg", (0,)), ("log_sigmoid", (4,)),
                                        ("mul", (1, 3)), ("mul", (2, 5)), ("add", (6, 7)),
                                        ("sum", (8,), {"axis": None}), ("neg", (9,))])


def onehot(seed: int, N: int, c: int) -> np.ndarray:
    y = np.random.default_rng(seed).integers(0, c, size=N)
    return np.eye(c)[y]


@register("dense_delta", fixed=True)
def dense_delta(clause, target, record, z):
    for i, (N, c) in enumerate(((3, 4), (5, 2), (1, 6))):
        Z, Y = grid(90 + i, (N, c), lo=-6, hi=6, step=0.25), onehot(100 + i, N, c)
        measure(clause, target, record, _nll_spec(N, c), [Z, Y], "vjp", [np.array(1.0)],
                part=slice(0, N * c), label=f"softmax/NLL, N={N} classes={c}")
    zz = grid(110, (12,), lo=-8, hi=8, step=0.25)
    y = (grid(111, (12,)) > 0).astype(float)
    measure(clause, target, record, _bce_spec(12), [zz, y, 1 - y], "vjp", [np.array(1.0)],
            part=slice(0, 12), label="sigmoid/BCE")


# ------------------------------------------------------------------- MLP ----
def mlp_spec(N: int, d: int, n: int, c: int, unit: str = "tanh") -> str:
    """One hidden layer, softmax/NLL head: L = -sum(Y * log_softmax(g(X W1 + b1) W2 + b2))."""
    return spec_of([(N, d), (d, n), (n,), (n, c), (c,), (N, c)],
                   [("matmul", (0, 1)), ("add", (6, 2)), (unit, (7,)), ("matmul", (8, 3)), ("add", (9, 4)),
                    ("log_softmax", (10,)), ("mul", (5, 11)), ("sum", (12,), {"axis": None}), ("neg", (13,))])


def mlp_inputs(seed: int, N: int, d: int, n: int, c: int) -> list[np.ndarray]:
    return [grid(seed, (N, d)), grid(seed + 1, (d, n), lo=-1, hi=1), grid(seed + 2, (n,), lo=-1, hi=1),
            grid(seed + 3, (n, c), lo=-1, hi=1), grid(seed + 4, (c,), lo=-1, hi=1), onehot(seed + 5, N, c)]


_MLPS = (((4, 3, 4, 3), "tanh"), ((2, 2, 3, 2), "sigmoid"), ((3, 2, 4, 3), "relu"))


@register("mlp_grads", fixed=True)
def mlp_grads(clause, target, record, z):
    for i, (dims, unit) in enumerate(_MLPS):
        inputs = mlp_inputs(120 + 10 * i, *dims)
        spec = mlp_spec(*dims, unit=unit)
        n_par = sum(a.size for a in inputs[1:5])
        start = inputs[0].size
        measure(clause, target, record, spec, inputs, "vjp", [np.array(1.0)], part=slice(start, start + n_par),
                label=f"dW1, db1, dW2, db2 ({unit} hidden layer, N, d, n, c = {dims})")
        tangents = [np.zeros_like(inputs[0])] + seeds_for(130 + i, [a.shape for a in inputs[1:5]]) + [
            np.zeros_like(inputs[5])]
        measure(clause, target, record, spec, inputs, "jvp", tangents, label=f"forward mode ({unit})")


# ------------------------------------------------------------- chain rule ----
_CHAIN = (
    # scalar form: z = sin(exp(x)) elementwise
    (spec_of([(6,)], [("exp", (0,)), ("sin", (1,))]), lambda: [grid(140, (6,))], "scalar: z = sin(exp(x))"),
    # vector form: z = sum(c * tanh(A x)), x a column
    (spec_of([(3, 2), (2, 1), (3, 1)], [("matmul", (0, 1)), ("tanh", (3,)), ("mul", (2, 4)),
                                        ("sum", (5,), {"axis": None})]),
     lambda: [grid(141, (3, 2)), grid(142, (2, 1)), grid(143, (3, 1))], "vector: z = c . tanh(A x)"),
    # tensor form: Z = sigmoid(X) B, a matrix cotangent
    (spec_of([(2, 3), (3, 2)], [("sigmoid", (0,)), ("matmul", (2, 1))]),
     lambda: [grid(144, (2, 3)), grid(145, (3, 2))], "tensor: Z = sigmoid(X) B"),
)


@register("chain_rule", fixed=True)
def chain_rule(clause, target, record, z):
    for i, (spec, make, label) in enumerate(_CHAIN):
        inputs = make()
        cot = grid(150 + i, out_shape(spec, inputs), step=0.25)
        measure(clause, target, record, spec, inputs, "vjp", [cot], label=label)
        measure(clause, target, record, spec, inputs, "jvp", seeds_for(160 + i, [a.shape for a in inputs]),
                label=label)


# ----------------------------------------------------- fan-out, broadcasting ----
_FANOUT = (
    # x feeds mul twice, sin and an add: f = x x + sin(x) x
    (spec_of([(8,)], [("mul", (0, 0)), ("sin", (0,)), ("mul", (2, 0)), ("add", (1, 3))]),
     lambda: [grid(170, (8,))], "f = x x + sin(x) x"),
    # W used by the layer and by the penalty sum(W * W)
    (spec_of([(3, 2), (2, 2)], [("matmul", (0, 1)), ("tanh", (2,)), ("sum", (3,), {"axis": None}),
                                ("mul", (1, 1)), ("sum", (5,), {"axis": None}), ("add", (4, 6))]),
     lambda: [grid(171, (3, 2)), grid(172, (2, 2))], "L = sum tanh(h W) + sum W^2"),
    # a diamond: u = exp(x), v = u * u, w = u + v, output w * u
    (spec_of([(5,)], [("exp", (0,)), ("mul", (1, 1)), ("add", (1, 2)), ("mul", (3, 1))]),
     lambda: [grid(173, (5,), lo=-1, hi=1)], "diamond u = e^x, (u + u^2) u"),
)


@register("fan_out", fixed=True)
def fan_out(clause, target, record, z):
    for i, (spec, make, label) in enumerate(_FANOUT):
        inputs = make()
        cot = grid(180 + i, out_shape(spec, inputs), step=0.25)
        measure(clause, target, record, spec, inputs, "vjp", [cot], label=label)


_BROADCAST = ((3, 4), [(4,), (1, 4), (3, 1), ()])


@register("broadcast_grads", fixed=True)
def broadcast_grads(clause, target, record, z):
    big, smalls = _BROADCAST
    for i, s in enumerate(smalls):
        for j, op in enumerate(("add", "sub", "mul", "div")):
            a = grid(190 + i, big)
            b = grid(200 + 4 * i + j, s, lo=0.5, hi=2) if op == "div" else grid(200 + 4 * i + j, s)
            spec = spec_of([big, s], [(op, (0, 1))])
            measure(clause, target, record, spec, [a, b], "vjp", [grid(210 + j, big, step=0.25)],
                    part=slice(a.size, None), label=f"{op} of (3, 4) and {s}")


# ------------------------------------------------------------ worked graphs ----
WORKED_F = spec_of([(8,), (8,)], [("log", (0,)), ("mul", (0, 1)), ("sin", (1,)), ("add", (2, 3)), ("sub", (5, 4))])


@register("worked_f", fixed=True)
def worked_f(clause, target, record, z):
    # f(x1, x2) = ln x1 + x1 x2 - sin x2, eight points at once: df/dx1 = 1/x1 + x2, df/dx2 = x1 - cos x2
    x1, x2 = grid(220, (8,), lo=0.125, hi=4), grid(221, (8,), lo=-4, hi=4)
    measure(clause, target, record, WORKED_F, [x1, x2], "value", label="f")
    measure(clause, target, record, WORKED_F, [x1, x2], "vjp", [np.ones(8)], label="(df/dx1, df/dx2)")
    measure(clause, target, record, WORKED_F, [x1, x2], "jvp", seeds_for(222, [(8,), (8,)]), label="forward mode")


def logreg_spec(d: int) -> str:
    """L = 1/2 ||w||^2 - lam log sigma(y w.x); inputs w, x, y, lam, 1/2."""
    return spec_of([(d,), (d,), (), (), ()],
                   [("mul", (0, 0)), ("sum", (5,), {"axis": None}), ("mul", (4, 6)), ("mul", (0, 1)),
                    ("sum", (8,), {"axis": None}), ("mul", (2, 9)), ("log_sigmoid", (10,)), ("mul", (3, 11)),
                    ("sub", (7, 12))])


def logreg_inputs(i: int, d: int = 4) -> list[np.ndarray]:
    return [grid(230 + i, (d,)), grid(240 + i, (d,)), np.array(1.0 if i % 2 else -1.0), np.array(0.5 + i / 4),
            np.array(0.5)]


@register("worked_logreg", fixed=True)
def worked_logreg(clause, target, record, z):
    for i in range(3):
        inputs = logreg_inputs(i)
        measure(clause, target, record, logreg_spec(4), inputs, "vjp", [np.array(1.0)], part=slice(0, 4),
                label="dL/dw = w - lam y sigma(-y w.x) x")
        tangents = [grid(250 + i, (4,), step=0.25)] + [np.zeros_like(a) for a in inputs[1:]]
        measure(clause, target, record, logreg_spec(4), inputs, "jvp", tangents, label="forward mode along w")


# ------------------------------------------------- reverse = forward (adjoint) ----
@register("adjoint_identity", fixed=True)
def adjoint_identity(clause, target, record, z):
    """<v, J u> = <J^T v, u>: the backend's jvp and vjp of one program, against each other."""
    dims = (4, 3, 4, 3)
    inputs = mlp_inputs(260, *dims)[:5]
    spec = spec_of([a.shape for a in inputs], [("matmul", (0, 1)), ("add", (5, 2)), ("tanh", (6,)),
                                               ("matmul", (7, 3)), ("add", (8, 4))])
    shape = out_shape(spec, inputs)
    k = clause.tolerance.must
    prog = GraphProgram(spec)
    for i in range(3):
        v = grid(270 + i, shape, step=0.25)
        u = seeds_for(280 + 10 * i, [a.shape for a in inputs])
        bj, bv = bound(spec, "jvp", inputs + u), bound(spec, "vjp", inputs + [v])
        jt = _mode_call(target, prog, inputs, "jvp", u, shape)
        gv = _mode_call(target, prog, inputs, "vjp", [v], shape)
        uu = np.concatenate([np.ravel(a) for a in u])
        # both inner products summed exactly (fsum) of float64 products, which round in float64 only
        lhs, rhs = math.fsum((np.ravel(v) * jt).tolist()), math.fsum((gv * uu).tolist())
        u64 = 2.0 ** -53
        allow = (np.sum(np.abs(np.ravel(v)) * limit(target, bj, k)) + np.sum(np.abs(uu) * limit(target, bv, k))) / 2 \
            + u64 * (np.sum(np.abs(np.ravel(v) * jt)) + np.sum(np.abs(gv * uu)))
        with np.errstate(invalid="ignore", divide="ignore"):
            err = np.array([abs(lhs - rhs) / allow if allow > 0 else (0.0 if lhs == rhs else np.inf)])
        err = np.where(np.isnan(err), np.inf, err)

        def rep(j, v=v, u=u):
            names = [f"x{m}" for m in range(len(inputs))]
            us = f"[{', '.join(f'u{m}' for m in range(len(u)))}]"
            arrays = {**dict(zip(names, inputs)), "v": v, **{f"u{m}": a for m, a in enumerate(u)}}
            return named(target, arrays, "float((b.to_numpy(v) * Ju).sum()), "
                         f"sum(float((g * b.to_numpy(t)).sum()) for g, t in zip(JTv, {us}))",
                         prelude=(*prog.source(), f"xs = [{', '.join(names)}]",
                                  f"Ju = b.to_numpy(b.jvp(program, xs, {us})[1])",
                                  "JTv = [b.to_numpy(g) for g in b.vjp(program, xs, v)[1]]"))
        conclude(record, clause, target, ~(err <= 1), err, what="<v, J u> from forward mode differs from "
                 "<J^T v, u> from reverse mode by more than both modes' bounds allow",
                 criterion="|<v, J_hat u> - <J_hat^T v, u>| <= sum_i |v_i| B_jvp,i + sum_j |u_j| B_vjp,j "
                           "+ u64 (|terms|) (error in units of that allowance)",
                 reproducer=rep, inputs=[np.array([float(i)])], got=np.array([lhs]), want=np.array([rhs]))


# ------------------------------------------------------------- second order ----
@register("hvp_mlp", fixed=True)
def hvp_mlp(clause, target, record, z):
    for i, (dims, unit) in enumerate(_MLPS[:2]):
        inputs = mlp_inputs(300 + 10 * i, *dims)
        tangents = seeds_for(310 + 10 * i, [a.shape for a in inputs[:5]]) + [np.zeros_like(inputs[5])]
        n = sum(a.size for a in inputs[:5])
        measure(clause, target, record, mlp_spec(*dims, unit=unit), inputs, "hvp", tangents, part=slice(0, n),
                label=f"H v of the MLP loss ({unit} hidden layer)")
    for i in range(2):
        inputs = logreg_inputs(i)
        tangents = [grid(320 + i, (4,), step=0.25)] + [np.zeros_like(a) for a in inputs[1:]]
        measure(clause, target, record, logreg_spec(4), inputs, "hvp", tangents, part=slice(0, 8),
                label="H v of the logistic-regression loss")


@register("second_derivatives", fixed=True)
def second_derivatives(clause, target, record, z):
    # d^2/dz^2 sum(f(z)) along the ones vector is f''(z) entry by entry
    for i, f in enumerate(("sigmoid", "tanh", "softplus")):
        zz = grid(330 + i, (40,), lo=-12, hi=12, step=0.125)
        measure(clause, target, record, spec_of([zz.shape], [(f, (0,)), ("sum", (1,), {"axis": None})]), [zz],
                "hvp", [np.ones_like(zz)], label=f"{f}''")


# ---------------------------------------------------------- vanishing gradient ----
_DEPTHS = (1, 2, 4, 8, 16, 32, 64)


def sigmoid_chain(depth: int, n: int) -> str:
    return spec_of([(n,)], [("sigmoid", (k,)) for k in range(depth)])


@register("vanishing", fixed=True)
def vanishing(clause, target, record, z):
    fmt = target.fmt
    x = np.array([0.0, 0.5, -1.0, 2.0, -4.0, 4.0])
    for depth in _DEPTHS:
        spec = sigmoid_chain(depth, x.size)
        measure(clause, target, record, spec, [x], "vjp", [np.ones_like(x)], label=f"l = {depth}")
        _, (g,) = target.gradient(GraphProgram(spec), [x], np.ones_like(x), mode="vjp", shape=x.shape,
                                  uses=["sigmoid"])
        cap = float(round_array(np.array([4.0 ** -depth]), fmt)[0])  # RN(4^-l), monotone rounding of factors <= 1/4
        bad = ~(g <= cap)
        conclude(record, clause, target, bad, np.where(bad, np.inf, 0.0),
                 what=f"the gradient of sigma composed {depth} times exceeds RN(4^-{depth})",
                 criterion=f"exact: 0 <= g <= RN(4^-l) = {cap!r}",
                 reproducer=lambda i: reproducer(target, GraphProgram(spec), [x], "vjp", [np.ones_like(x)]),
                 inputs=[x], got=g, want=np.full(x.shape, cap))


# ------------------------------------------------------------ memoisation ----
def ladder(depth: int, n: int = 3) -> str:
    """x_{i+1} = sin(x_i) cos(x_i): 2^depth paths from x_0 to the output, 4 depth edges."""
    nodes = []
    for i in range(depth):
        prev = 0 if i == 0 else 3 * i
        nodes += [("sin", (prev,)), ("cos", (prev,)), ("mul", (len(nodes) + 1, len(nodes) + 2))]
    return spec_of([(n,)], nodes)


def edges(spec: str) -> int:
    """Edges of the program's graph: one per argument of every node."""
    return sum(len(args) for _, args, _ in ref.parse(spec)[1])


@register("memoisation", fixed=True)
def memoisation(clause, target, record, z):
    x = grid(370, (3,), lo=-1, hi=1)
    for depth in (1, 2, 4, 8, 12):
        spec = ladder(depth)
        prog = GraphProgram(spec)
        measure(clause, target, record, spec, [x], "vjp", [np.ones(3)], label=f"ladder of depth {depth}")
        counts = target.count_vjp(prog, [x], np.ones(3), uses=prog.uses())
        e = edges(spec)
        bad = np.array([counts["applications"] > e])
        record.notes = [n for n in record.notes if not n.startswith("counts: ")] + [
            f"counts: depth {depth}: {counts['applications']} derivative applications for {e} edges "
            f"and {2 ** depth} paths"]

        def rep(i, spec=spec):
            return named(target, {"x0": x, "s0": np.ones(3)}, "b.count_vjp(program, [x0], s0)",
                         prelude=tuple(GraphProgram(spec).source()))
        conclude(record, clause, target, bad, np.where(bad, float(counts["applications"]) / e, 0.0),
                 what=f"one reverse sweep of a depth-{depth} ladder applies {counts['applications']} derivative "
                      f"rules for {e} edges ({2 ** depth} paths): not memoised",
                 criterion="exact: derivative applications <= edges of the graph",
                 reproducer=rep, inputs=[np.array([float(depth)])], got=np.array([float(counts["applications"])]),
                 want=np.array([float(e)]))


# ------------------------------------------------------------- bracketing ----
# The Jacobian of x -> A_L (... (A_1 x)) (x a column of n = d_0 entries, A_i of shape d_i x d_{i-1},
# m = d_L outputs) is the chain J = A_L ... A_1 (§6.5.9).  m reverse sweeps with unit cotangents
# form its rows, I_m A_L ... A_1 evaluated from the output side; n forward sweeps with unit
# tangents its columns, A_L ... A_1 I_n from the input side.  Costs: reference bp.chain_cost.
@dataclass(frozen=True)
class ChainProgram:
    """fn(ops, x, A_1, ..., A_L) = A_L @ (... @ (A_1 @ x)): a Jacobian chain of L factors."""
    depth: int

    def __call__(self, ops, x, *mats):
        for A in mats:
            x = ops.matmul(A, x)
        return x

    def source(self) -> list[str]:
        names = ", ".join(f"A{i + 1}" for i in range(self.depth))
        return [f"def program(ops, x, {names}):", "    v = x",
                *(f"    v = ops.matmul(A{i + 1}, v)" for i in range(self.depth)), "    return v"]


def chain_problems(target: Target):
    """Random chains: L = 1-4 factors, dimensions d_0..d_L in 1-6, entries of the factors in
    {-1, 0, 1} (so every entry of J and of the sweeps' partial products is an integer of
    magnitude <= 6^3 = 216, exact in every format), x multiples of 1/8 in [-2, 2]."""
    from hypothesis import strategies as st

    @st.composite
    def problems(draw):
        dims = draw(st.lists(st.integers(1, 6), min_size=2, max_size=5))
        mats = [np.array(draw(st.lists(st.sampled_from((-1.0, 0.0, 1.0)), min_size=dims[i + 1] * dims[i],
                                       max_size=dims[i + 1] * dims[i]))).reshape(dims[i + 1], dims[i])
                for i in range(len(dims) - 1)]
        x = np.array(draw(st.lists(st.sampled_from(VALUES), min_size=dims[0], max_size=dims[0]))).reshape(dims[0], 1)
        return tuple(dims), mats, x
    return problems()


def _unit(k: int, shape) -> np.ndarray:
    e = np.zeros(int(np.prod(shape)))
    e[k] = 1.0
    return e.reshape(shape)


def _jacobian(target: Target, prog: ChainProgram, primals: list[np.ndarray], mode: str, m: int, n: int):
    """The backend's Jacobian with respect to x by its own mode: m vjp rows or n jvp columns."""
    def sweep(seed):
        return target.gradient(prog, primals, seed, mode=mode, shape=(m, 1), uses=["matmul"])[1]
    if mode == "vjp":
        return np.stack([np.ravel(sweep(_unit(k, (m, 1)))[0]) for k in range(m)])
    zeros = [np.zeros_like(a) for a in primals[1:]]
    return np.stack([np.ravel(sweep([_unit(j, (n, 1)), *zeros])) for j in range(n)], axis=1)


def _tally_note(record, prefix: str, key: str) -> None:
    """Count ``key`` in the record's note "prefix: key n, ..." (outcomes over drawn problems)."""
    old = next((t for t in record.notes if t.startswith(prefix)), None)
    counts = dict(item.rsplit(" ", 1) for item in old.removeprefix(prefix).split(", ")) if old else {}
    counts[key] = str(int(counts.get(key, 0)) + 1)
    record.notes = [t for t in record.notes if not t.startswith(prefix)] + [
        prefix + ", ".join(f"{k} {v}" for k, v in counts.items())]


@register_strategy("bracketing")
def _bracketing_strategy(target: Target):
    return chain_problems(target)


@register("bracketing")
def bracketing(clause, target, record, problem):
    dims, mats, x = problem
    n, m = dims[0], dims[-1]
    prog, primals = ChainProgram(len(mats)), [x, *mats]
    exact_j = np.array(ref.chain_jacobian(precision.context(53), *mats), dtype=np.float64)
    assert np.all(np.abs(exact_j) <= 256) and np.all(exact_j == np.round(exact_j))  # exact in every format
    arrays = {"x": x, **{f"A{i + 1}": a for i, a in enumerate(mats)}}
    names = f"[{', '.join(arrays)}]"
    for mode in ("vjp", "jvp"):  # the Jacobian itself, by the backend's own mode: exact integers
        got = _jacobian(target, prog, primals, mode, m, n)
        bad = ~(got == exact_j)
        unit = f"b.asarray(e, {target.dtype!r}, {target.device!r})"
        call = f"[b.to_numpy(b.vjp(program, {names}, {unit})[1][0]).ravel().tolist() " \
               f"for e in np.eye({m}).reshape({m}, {m}, 1)]" if mode == "vjp" else \
               f"[b.to_numpy(b.jvp(program, {names}, [{unit}] + [0 * a for a in {names}[1:]])[1]).ravel().tolist() " \
               f"for e in np.eye({n}).reshape({n}, {n}, 1)]"
        conclude(record, clause, target, bad, np.where(bad, np.inf, 0.0),
                 what=f"the Jacobian of a {len(mats)}-factor chain {list(dims)} by {mode} sweeps is not the "
                      "exact product",
                 criterion="exact: the chain's Jacobian A_L ... A_1 (integers <= 256 in magnitude)",
                 reproducer=lambda i, call=call: named(target, arrays, call, prelude=tuple(prog.source())),
                 inputs=[np.arange(got.size, dtype=float)], got=np.ravel(got), want=np.ravel(exact_j))
    rev = target.count_jacobian(prog, primals, mode="vjp", uses=["matmul"])
    fwd = target.count_jacobian(prog, primals, mode="jvp", uses=["matmul"])
    chain = list(dims[::-1])  # d_L, ..., d_0: the factors A_L, ..., A_1 of J
    want = (m, ref.chain_cost([m] + chain, "left"), n, ref.chain_cost(chain + [n], "right"))
    got = (rev["sweeps"], rev["madds"], fwd["sweeps"], fwd["madds"])
    order = np.sign(got[1] - got[3]) == np.sign(m - n)  # reverse cheaper iff fewer outputs than inputs
    bad = np.array([g != w for g, w in zip(got, want)] + [not order])
    _tally_note(record, "cheaper: ", ("reverse", "equal", "forward")[int(np.sign(got[1] - got[3])) + 1])
    record.notes = [t for t in record.notes if not t.startswith("counts: ")] + [
        f"counts: last chain {list(dims)}: reverse {got[0]} sweeps, {got[1]} multiply-adds; forward {got[2]} "
        f"sweeps, {got[3]} multiply-adds"]

    def rep(i):
        return named(target, arrays, f"[b.count_jacobian(program, {names}, 'vjp'), "
                                     f"b.count_jacobian(program, {names}, 'jvp')]", prelude=tuple(prog.source()))
    conclude(record, clause, target, bad, np.where(bad, np.inf, 0.0),
             what=f"the operation counts of the Jacobian of the chain {list(dims)} (m = {m} outputs, n = {n} inputs) "
                  f"are not those of its bracketing: (reverse sweeps, madds, forward sweeps, madds) = {got}, "
                  f"predicted {want}" + ("" if order else "; the cheaper mode is not the predicted one"),
             criterion="exact: reverse m sweeps, m sum_i d_i d_(i-1) multiply-adds; forward n sweeps, "
                       "n sum_i d_i d_(i-1); reverse cheaper iff m < n",
             reproducer=rep, inputs=[np.array([float(m), float(m), float(n), float(n), float(m - n)])],
             got=np.array([*map(float, got), float(np.sign(got[1] - got[3]))]),
             want=np.array([*map(float, want), float(np.sign(m - n))]))


# ------------------------------------------------------- exact routing checks ----
def _exact_products(a: np.ndarray, b: np.ndarray, fmt: Format) -> np.ndarray:
    """RN_fmt(a b) entry by entry (the reference's product, rounded once)."""
    ex = exact(ref.product, [(float(x), float(y)) for x, y in zip(np.ravel(a), np.ravel(b))], fmt)
    return ex.cr.reshape(np.shape(a))


def _route_check(clause, target, record, op, x, y, g, want, *, label, exact_sum=False):
    _, (gx, gy) = target.gradient(OpProgram(op), [x, y], g, mode="vjp", shape=x.shape, uses=[op])
    if exact_sum:  # max at ties: the routed shares must be 0, g/2 or g and add up to g exactly
        share = lambda r: np.isin(r / np.where(g == 0, 1, g), (0.0, 0.5, 1.0)) | (g == 0)  # noqa: E731
        ok = np.where(x == y, share(gx) & share(gy) & (gx + gy == g), same_exact(gx, want[0]) & same_exact(gy, want[1]))
    else:
        ok = same_exact(gx, want[0]) & same_exact(gy, want[1])

    def rep(i):
        return named(target, {"x": x, "y": y, "g": g},
                     f"[b.to_numpy(t).tolist() for t in b.vjp(lambda ops, x, y: ops.{op}(x, y), [x, y], g)[1]]")
    conclude(record, clause, target, ~ok, np.where(ok, 0.0, 1.0), what=f"{label}: the routed cotangents are wrong",
             criterion="exact (bitwise; a tie of max: shares 0, g/2 or g summing to g)", reproducer=rep,
             inputs=[x, y, g], got=gx, want=want[0])


@register("patterns", fixed=True)
def patterns(clause, target, record, z):
    fmt = target.fmt
    x = grid(340, (32,), lo=-4, hi=4)
    y = grid(341, (32,), lo=-4, hi=4)
    y[:8] = x[:8]  # ties
    g = grid(342, (32,), step=0.25)
    _route_check(clause, target, record, "add", x, y, g, (g, g), label="add distributes")
    _route_check(clause, target, record, "mul", x, y, g, (_exact_products(g, y, fmt), _exact_products(g, x, fmt)),
                 label="mul switches")
    want = (np.where(x > y, g, 0.0), np.where(y > x, g, 0.0))
    _route_check(clause, target, record, "maximum", x, y, g, want, label="max routes", exact_sum=True)


@register("where_routing", fixed=True)
def where_routing(clause, target, record, z):
    c = (grid(350, (24,)) > 0).astype(float)
    a, b = grid(351, (24,)), grid(352, (24,))
    junk = np.array([np.nan, np.inf, -np.inf])
    a = np.where(c == 0, junk[np.arange(24) % 3], a)   # the branch not taken holds NaN and infinities
    b = np.where(c != 0, junk[np.arange(24) % 3], b)
    g = grid(353, (24,), step=0.25, nonzero=True)
    prog = OpProgram("where")
    value, (gc, ga, gb) = target.gradient(prog, [c, a, b], g, mode="vjp", shape=c.shape, uses=["where"])
    ok = same_exact(value, np.where(c != 0, a, b)) & same_exact(ga, np.where(c != 0, g, 0.0)) \
        & same_exact(gb, np.where(c != 0, 0.0, g))

    def rep(i):
        return named(target, {"c": c, "x": a, "y": b, "g": g},  # (b is the backend)
                     "[b.to_numpy(t).tolist() for t in b.vjp(lambda ops, c, x, y: ops.where(c, x, y), [c, x, y], g)[1]]")
    conclude(record, clause, target, ~ok, np.where(ok, 0.0, 1.0),
             what="where(c, a, b): the value, or the cotangents of the branches, are not exact (a NaN or an "
                  "infinity of the branch not taken leaked?)",
             criterion="exact: value a or b; d/da = g where c, 0 elsewhere; d/db = g where not c, 0 elsewhere",
             reproducer=rep, inputs=[c, a, b], got=ga, want=np.where(c != 0, g, 0.0))
    ta, tb = grid(354, (24,), step=0.25), grid(355, (24,), step=0.25)
    _, t = target.gradient(prog, [c, np.where(np.isfinite(a), a, 1.0), np.where(np.isfinite(b), b, 1.0)],
                           [np.zeros_like(c), ta, tb], mode="jvp", shape=c.shape, uses=["where"])
    ok = same_exact(t, np.where(c != 0, ta, tb))
    conclude(record, clause, target, ~ok, np.where(ok, 0.0, 1.0), what="where: the forward-mode tangent is not "
             "the taken branch's", criterion="exact: the tangent of a where c, of b elsewhere", reproducer=rep,
             inputs=[c, ta, tb], got=t, want=np.where(c != 0, ta, tb))


@register("custom_relu", fixed=True)
def custom_relu(clause, target, record, z):
    x = np.concatenate([grid(360, (30,), lo=-4, hi=4), [0.0, -0.0, target.fmt.min_subnormal,
                                                        -target.fmt.min_subnormal]])
    g = grid(361, x.shape, step=0.25, nonzero=True)
    value, (gx,) = target.gradient(OpProgram("custom_relu"), [x], g, mode="vjp", shape=x.shape, uses=["custom_relu"])
    want_v, want_g = np.maximum(x, 0.0), np.where(x < 0, 0.0, g)
    ok = same_exact(value, want_v) & same_exact(gx, want_g)
    if target.ftz:  # declared flush-to-zero: a subnormal x may be read as 0 (value 0, gradient g)
        sub = (x != 0) & (np.abs(x) < target.fmt.min_normal)
        flushed = sub & ~ok & (value == 0) & (same_exact(gx, want_g) | same_exact(gx, g))
        record.uses_convention("flush_to_zero", int(flushed.sum()))
        ok |= flushed

    def rep(i):
        return named(target, {"x": x, "g": g},
                     "[b.to_numpy(t).tolist() for t in b.vjp(lambda ops, x: ops.custom_relu(x), [x], g)[1]]")
    conclude(record, clause, target, ~ok, np.where(ok, 0.0, 1.0),
             what="the custom ReLU's value or its own backward is wrong (gradient where the input is < 0?)",
             criterion="exact: value max(0, x); gradient 0 where x < 0, g elsewhere", reproducer=rep,
             inputs=[x, g], got=gx, want=want_g)


# ----------------------------------------------------------- random graphs ----
UNARY = ("tanh", "sigmoid", "sin", "cos", "exp", "log", "softplus", "log_sigmoid", "neg", "relu")
BINARY = ("add", "mul", "sub", "div", "maximum")
ROWS = ("softmax", "log_softmax", "logsumexp")
SHAPES = ((2, 3), (3,), (3, 2), (2, 1), (1, 3), ())
VALUES = tuple(np.arange(-2, 2.01, 0.125).tolist())
MAX_MAGNITUDE = 64.0
OPS = ("mul", "add", "tanh", "matmul", "sum", "sub", "sigmoid", "div", "exp", "log", "sin", "cos", "softplus",
       "log_sigmoid", "neg", "mean", "softmax", "log_softmax", "logsumexp", "maximum", "relu")


@dataclass
class _Val:
    shape: tuple
    mag: float          # |entries| <= mag
    low: float | None   # entries >= low > 0 (positive values), else None


def _unary(op: str, v: _Val) -> _Val | None:
    m, low = v.mag, v.low
    if op == "exp":
        return _Val(v.shape, math.exp(m), math.exp(-m)) if m <= 4 else None
    if op == "log":
        return _Val(v.shape, max(abs(math.log(low)), math.log(m)), None) if low and low >= 2 ** -4 else None
    table = {"tanh": (1.0, None), "sigmoid": (1.0, 1 / (1 + math.exp(m))), "sin": (1.0, None), "cos": (1.0, None),
             "softplus": (m + 1, math.log1p(math.exp(-m))), "log_sigmoid": (m + 1, None), "neg": (m, None),
             "relu": (m, None)}
    mag, low2 = table[op]
    return _Val(v.shape, mag, low2)


def _binary(op: str, a: _Val, b: _Val) -> _Val | None:
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        return None
    if op == "div":
        return _Val(shape, a.mag / b.low, None) if b.low and b.low >= 0.25 else None
    mag = {"add": a.mag + b.mag, "sub": a.mag + b.mag, "mul": a.mag * b.mag, "maximum": max(a.mag, b.mag)}[op]
    low = a.low * b.low if op == "mul" and a.low and b.low else (a.low + b.low if op == "add" and a.low and b.low
                                                                   else None)
    return _Val(shape, mag, low)


def _candidates(vals: list[_Val]) -> list[tuple]:
    """Every (node, value) that may follow; the latest value's first (so programs grow deep)."""
    out = []
    for i, v in reversed(list(enumerate(vals))):
        for op in UNARY:
            r = _unary(op, v)
            if r is not None and r.mag <= MAX_MAGNITUDE:
                out.append(((op, (i,)), r))
        if v.shape:
            for axis in [None] + list(range(len(v.shape))):
                n = int(np.prod(v.shape)) if axis is None else v.shape[axis]
                shape = () if axis is None else v.shape[:axis] + v.shape[axis + 1:]
                out.append((("sum", (i,), {"axis": axis}), _Val(shape, n * v.mag, None)))
                out.append((("mean", (i,), {"axis": axis}), _Val(shape, v.mag, None)))
            if v.mag <= 16:
                n = v.shape[-1]
                out.append((("softmax", (i,)), _Val(v.shape, 1.0, math.exp(-2 * v.mag) / n)))
                out.append((("log_softmax", (i,)), _Val(v.shape, 2 * v.mag + math.log(n), None)))
                out.append((("logsumexp", (i,)), _Val(v.shape[:-1], v.mag + math.log(n), None)))
        for j, w in reversed(list(enumerate(vals))):
            for op in BINARY:
                r = _binary(op, v, w)
                if r is not None and r.mag <= MAX_MAGNITUDE:
                    out.append(((op, (i, j)), r))
            if len(v.shape) == 2 and len(w.shape) == 2 and v.shape[1] == w.shape[0]:
                r = _Val((v.shape[0], w.shape[1]), v.shape[1] * v.mag * w.mag, None)
                if r.mag <= MAX_MAGNITUDE:
                    out.append((("matmul", (i, j)), r))
    return out


def graph_problems(target: Target, *, scalar: bool):
    """Random programs: 1-3 inputs of small shapes, 1-6 nodes over every graph primitive, each
    argument any earlier value (so nodes are reused by several consumers and operands broadcast);
    entries multiples of 1/8 in [-2, 2]; seeds multiples of 1/4.  ``scalar``: the output summed to
    a 0-d value (for Hessian-vector products)."""
    from hypothesis import strategies as st

    @st.composite
    def problems(draw):
        shapes = draw(st.lists(st.sampled_from(SHAPES), min_size=1, max_size=3))
        vals = [_Val(tuple(s), 2.0, None) for s in shapes]
        nodes = []
        for _ in range(draw(st.integers(1, 6))):
            every = _candidates(vals)
            op = draw(st.sampled_from(OPS))  # the op first, uniformly: then its arguments
            node, v = draw(st.sampled_from([c for c in every if c[0][0] == op] or every))
            nodes.append(node)
            vals.append(v)
        if scalar and vals[-1].shape:
            nodes.append(("sum", (len(vals) - 1,), {"axis": None}))
            vals.append(_Val((), 0.0, None))
        def array(shape, pool):
            n = int(np.prod(shape))
            return np.array(draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n)), dtype=np.float64).reshape(shape)
        inputs = [array(s, VALUES) for s in shapes]
        return spec_of(shapes, nodes), inputs, [array(vals[-1].shape, VALUES[::2])], [array(s, VALUES[::2]) for s in shapes]
    return problems()


@register_strategy("random_graph")
def _random_graph_strategy(target: Target):
    return graph_problems(target, scalar=False)


@register("random_graph")
def random_graph(clause, target, record, problem):
    spec, inputs, cot, tangents = problem
    measure(clause, target, record, spec, inputs, "value", label="value")
    measure(clause, target, record, spec, inputs, "vjp", cot, label="reverse mode")
    measure(clause, target, record, spec, inputs, "jvp", tangents, label="forward mode")


@register_strategy("random_graph_hvp")
def _random_graph_hvp_strategy(target: Target):
    return graph_problems(target, scalar=True)


@register("random_graph_hvp")
def random_graph_hvp(clause, target, record, problem):
    spec, inputs, _, tangents = problem
    measure(clause, target, record, spec, inputs, "hvp", tangents, label="Hessian-vector product")
