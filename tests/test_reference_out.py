"""Independent validation of reference/out.py: directional derivatives against numerical
differentiation (mpmath.diff), identities at high precision, error scales non-negative,
and correct rounding of the vector evaluation against python-flint's arb balls.

Everything runs in private mpmath contexts (never the global ``mp``).
"""
from __future__ import annotations

import inspect
import math

import mpmath
import numpy as np
import pytest

from ffnspec import spec
from ffnspec.conformance.inputs import rows
from ffnspec.reference import act, function, out, precision
from ffnspec.reference.floatformat import FORMATS, round_mpf

PREC = 300
SLACK = 20
F64 = FORMATS["float64"]
OUT = {n: f for n, f in inspect.getmembers(out, inspect.isfunction) if f.__module__ == out.__name__}


def _ctx(prec: int):
    c = mpmath.MPContext()
    c.prec = prec
    return c


def _mp(ctx, a):
    return [_mp(ctx, x) for x in a] if isinstance(a, (list, tuple)) else ctx.mpf(a)


def _flat(v):
    return [x for e in v for x in _flat(e)] if isinstance(v, (list, tuple)) else [v]


def _small_items(name: str, count: int = 3) -> list[tuple]:
    """A few items (as nested lists) of a recipe's float64 groups, rows no longer than 17."""
    items = []
    for g in rows.groups(name, F64):
        if g[0].ndim > 1 and g[0].shape[-1] > 17:
            continue
        if g[0].ndim > 2 and g[0].shape[1] > 8:
            continue
        kept = 0
        for i in np.random.default_rng(0).permutation(g[0].shape[0]):
            item = tuple(a[i].tolist() if a.ndim > 1 else float(a[i]) for a in g)
            flat = _flat(list(item))
            if all(math.isfinite(x) for x in flat) and max(abs(x) for x in flat) < 1e4:
                items.append(item)
                kept += 1
                if kept == count:
                    break
    return items


def _derivative_clauses():
    return [c for c in spec.clauses() if c.kind == "reduction_derivative"]


def _step(x, h, d):
    """x + h d, elementwise over (nested) lists: rows and batches."""
    return [_step(a, h, b) for a, b in zip(x, d)] if isinstance(x, list) else x + h * d


def _shift(item, wrt, h, t):
    out_ = list(item)
    for k, i in enumerate(wrt):
        out_[i] = _step(item[i], h, t[k])
    return out_


@pytest.mark.parametrize("clause", _derivative_clauses(), ids=lambda c: c.id)
def test_directional_derivatives_match_numerical(clause):
    # <v, J t> from the vjp and the jvp references must equal d/dh <v, f(x + h t)> at h = 0
    # (central differences, mpmath.diff) -- the references are the spec's ground truth (§6.5).
    value = function(_value_reference(clause))
    vjp, jvp = (function(clause.extra["modes"][m]["reference"]) for m in ("vjp", "jvp"))
    wrt = list(clause.extra.get("wrt", [0]))
    rng = np.random.default_rng(5)
    items = _small_items(clause.extra["vectors"])
    assert items, clause.id
    for item in items[:8]:
        ctx = _ctx(200)
        x = [_mp(ctx, a) for a in item]
        y0 = _flat(value(ctx, *x))
        v = [ctx.mpf(float(s)) for s in rng.standard_normal(len(y0))]
        t = [(rng.standard_normal(np.shape(item[i])).tolist() if isinstance(item[i], list) else float(rng.standard_normal()))
             for i in wrt]
        tm = [_mp(ctx, a) for a in t]

        def g(h):
            return ctx.fsum(a * b for a, b in zip(v, _flat(value(ctx, *_shift(x, wrt, h, tm)))))
        num = ctx.diff(g, 0, h=ctx.ldexp(1, -60))
        cot = v if isinstance(value(ctx, *x), list) else v[0]
        back = _flat(vjp(ctx, *x, cot))
        tan = _flat(tm)
        by_vjp = ctx.fsum(a * b for a, b in zip(back, tan))
        fwd = _flat(jvp(ctx, *x, *tm))
        by_jvp = ctx.fsum(a * b for a, b in zip(v, fwd))
        scale = 1 + abs(num)
        assert abs(by_vjp - num) <= ctx.ldexp(scale, -40), (clause.id, item, by_vjp, num)
        assert abs(by_jvp - num) <= ctx.ldexp(scale, -40), (clause.id, item, by_jvp, num)


def _value_reference(clause) -> str:
    """The value reference of the op a derivative clause differentiates."""
    for c in spec.clauses():
        if c.kind == "reduction" and c.op == clause.op and c.reference:
            return c.reference
    raise KeyError(clause.op)


SCALED = sorted({r for c in spec.clauses() if c.family == "out" for r in
                 [c.tolerance.scale, c.tolerance.accumulation, c.tolerance.underflow]
                 + [m.get(k) for m in c.extra.get("modes", {}).values() for k in ("scale", "accumulation", "underflow")]
                 if r})


def test_every_out_scale_is_used_and_non_negative():
    # S, A and C enter bounds as k u (|y| + S) + u_acc A + eta (1 + C): a negative one would
    # tighten a bound below what the derivation allows ("Tolerances come from analysis").
    for c in spec.clauses():
        if c.family != "out" or c.kind not in ("reduction", "reduction_derivative"):
            continue
        refs = ([(c.tolerance.scale, None), (c.tolerance.accumulation, None), (c.tolerance.accuracy_scale, None)]
                if c.kind == "reduction" else
                [(m.get(k), name) for name, m in c.extra["modes"].items() for k in ("scale", "accumulation", "underflow")])
        for ref, mode in refs:
            if not ref:
                continue
            f = function(ref)
            rng = np.random.default_rng(1)
            for item in _small_items(c.extra["vectors"], 2)[:6]:
                ctx = _ctx(80)
                args = [_mp(ctx, a) for a in item]
                if mode == "vjp":
                    y0 = function(_value_reference(c))(ctx, *args)
                    n_out = len(_flat(y0))
                    args.append([ctx.mpf(float(s)) for s in rng.standard_normal(n_out)] if isinstance(y0, list)
                                else ctx.mpf(1.0))
                elif mode == "jvp":
                    args += [_mp(ctx, a) for a in (item[i] for i in c.extra.get("wrt", [0]))]
                for s in _flat(f(ctx, *args)):
                    assert s >= 0 and ctx.isfinite(s), (c.id, ref, item, s)


def test_accuracy_criteria_of_reductions_are_within_must():
    # A finding must be a loss MUST tolerates, never a looser test: S_acc <= S + A at every row
    # (u_acc = u in float32 and float64), e.g. n (1 - a_k) <= n - 1.  docs/measure.md "Tiers"
    for c in spec.clauses():
        t = c.tolerance
        if c.kind != "reduction" or t.accuracy_scale is None:
            continue
        assert t.accuracy <= t.must, c.id
        for item in _small_items(c.extra["vectors"], 2)[:8]:
            ctx = _ctx(80)
            args = [_mp(ctx, a) for a in item]
            acc, must = (_flat(function(r)(ctx, *args)) for r in (t.accuracy_scale, t.scale))
            extra = _flat(function(t.accumulation)(ctx, *args)) if t.accumulation else [0] * len(must)
            for sa, sm, ea in zip(acc, must, extra):
                assert sa <= sm + ea, (c.id, item, sa, sm, ea)


# ======================================================================= identities ===
def _zero(ctx, *terms, extra=0):
    w = _ctx(4 * PREC)
    r = abs(w.fsum([w.mpf(t) for t in terms]))
    return r <= w.ldexp(w.fsum([abs(w.mpf(t)) for t in terms]) + extra, SLACK - PREC)


ROWS = [[0.5, -1.25, 3.0], [1000.0, 0.0], [-2.0, -2.0, -2.0, -2.0], [7.0], [-745.0, 0.0, 1e-300, 30.5],
        [float("-inf"), 1.0, 2.0]]


@pytest.mark.parametrize("row", ROWS)
def test_softmax_identities(row):
    c = _ctx(PREC)
    z = _mp(c, row)
    a, ls, lse = out.softmax(c, z), out.log_softmax(c, z), out.logsumexp(c, z)
    assert _zero(c, *a, -1)                                                   # sums to 1 (GBC eq. 6.29)
    for shift in (1, -1000, 3.25):
        for p, q in zip(a, out.softmax(c, [x + shift for x in z])):           # shift invariance (eq. 6.33)
            assert _zero(c, p, -q)
    for p, l in zip(a, ls):
        if p:
            assert _zero(c, c.log(p), -l, extra=1)                            # log_softmax = log softmax
    m = max(z)
    n = sum(1 for x in z if x != -c.inf)
    assert m <= lse <= m + c.log(n) * (1 + c.ldexp(1, SLACK - PREC))          # max <= lse <= max + log n
    for y in range(len(row)):
        if z[y] != -c.inf:
            assert _zero(c, out.cross_entropy(c, z, y), ls[y])                # CE = -log softmax_y (eq. 6.30)
            hot = [c.one if i == y else c.zero for i in range(len(row))]
            assert _zero(c, out.cross_entropy_soft(c, z, hot), ls[y])         # NLL = H(e_y, q)


@pytest.mark.parametrize("z", [-800.0, -30.0, -1.0, 0.0, 1e-20, 2.5, 40.0, 750.0])
def test_pair_identities(z):
    c = _ctx(PREC)
    row = [c.zero, c.mpf(z)]
    s, sm = act.sigmoid(c, c.mpf(z)), act.sigmoid(c, -c.mpf(z))
    a = out.softmax(c, row)
    assert _zero(c, a[0], -sm) and _zero(c, a[1], -s)                          # softmax([0,z]) = [sigma(-z), sigma(z)]
    assert _zero(c, out.logsumexp(c, row), -act.softplus(c, c.mpf(z)))       # lse(0, z) = zeta(z)
    assert _zero(c, out.softplus_pair(c, row), -act.softplus(c, c.mpf(z)))
    for y in (0, 1):
        zeta = act.softplus(c, (1 - 2 * y) * c.mpf(z))
        assert _zero(c, out.bce(c, c.mpf(z), c.mpf(y)), -zeta)               # BCE = zeta((1-2y) z) (eq. 6.27)
        if 0 < s < 1:
            assert _zero(c, out.bce_prob(c, s, c.mpf(y)), -zeta, extra=1 + c.exp(abs(c.mpf(z))))  # equal in R


def test_kl_is_cross_entropy_minus_entropy():
    c = _ctx(PREC)
    for z, p in [([0.5, -1.0, 2.0], [0.25, 0.5, 0.25]), ([3.0, 3.0], [1.0, 0.0]), ([0.0, 1.0, 2.0, 3.0], [0.25] * 4)]:
        zz, pp = _mp(c, z), _mp(c, p)
        kl = out.kl_div(c, zz, pp)
        assert _zero(c, kl, -out.cross_entropy_soft(c, zz, pp), out.entropy(c, pp))   # KL = H(p,q) - H(p)
        assert kl >= 0                                                                  # Gibbs
    zz = _mp(c, [0.0, 0.0])
    assert abs(out.kl_div(c, zz, _mp(c, [0.5, 0.5]))) < c.ldexp(1, -PREC + SLACK)      # KL(q || q) = 0


def test_mixture_of_one_is_a_gaussian():
    c = _ctx(PREC)
    for w, mu, beta, y in [(0.3, 1.0, 4.0, 0.25), (-2.0, -3.0, 0.125, 5.0)]:
        one = out.mdn_nll(c, [c.mpf(w)], [c.mpf(mu)], [c.mpf(beta)], c.mpf(y))
        assert _zero(c, one, -out.gaussian_nll(c, c.mpf(mu), c.mpf(y), c.mpf(beta)))


def test_regression_identities():
    c = _ctx(PREC)
    yh, y = _mp(c, [0.5, -2.0, 3.25]), _mp(c, [1.0, 1.0, -1.0])
    halves = [out.half_sq_error(c, a, b) for a, b in zip(yh, y)]
    assert _zero(c, out.mse(c, yh, y), -2 * c.fsum(halves) / 3)               # MSE = (2/m) sum 1/2 d^2
    med = sorted(y)[1]
    for off in (-0.5, 0.5):                                                      # mean and median are optimal
        shifted = [x + off for x in y]
        assert out.mse(c, [sum(y) / 3] * 3, y) < out.mse(c, [sum(y) / 3 + off] * 3, y)
        assert out.mae(c, [med] * 3, y) <= out.mae(c, [med + off] * 3, y)
        del shifted


# =========================================================== rounding, against arb ===
flint = pytest.importorskip("flint")


@pytest.fixture(autouse=True)
def _flint_prec():
    old = flint.ctx.prec
    yield
    flint.ctx.prec = old


def _arb_softmax(row):
    e = [flint.arb(x).exp() for x in row]
    s = sum(e[1:], e[0])
    return [x / s for x in e]


@pytest.mark.parametrize("fmt", ["float16", "bfloat16", "float32", "float64"])
def test_vector_evaluation_rounds_correctly(fmt):
    # Each component of a vector reference is rounded once; arb's certified ball decides the
    # correct rounding wherever both ends of the ball round alike (Johansson, IEEE TC 2017).
    f = FORMATS[fmt]
    rng = np.random.default_rng(3)
    for _ in range(20):
        row = [float(v) for v in np.round(rng.standard_normal(rng.integers(1, 9)) * 8, 2)]
        got = precision.evaluate_vector(out.softmax, (row,), f)
        for prec in (200, 800):
            flint.ctx.prec = prec
            balls = _arb_softmax(row)
            wide = _ctx(4 * prec)
            ends = [(round_mpf(wide.mpf(b.mid().str(prec // 3, radius=False)) - wide.mpf(b.rad().str(5, radius=False)) * 2, f),
                     round_mpf(wide.mpf(b.mid().str(prec // 3, radius=False)) + wide.mpf(b.rad().str(5, radius=False)) * 2, f))
                    for b in balls]
            if all(lo == hi for lo, hi in ends):
                break
        for (hi, lo_, cr), (a, b) in zip(got, ends):
            if a == b:
                assert cr == a, (row, cr, a)
