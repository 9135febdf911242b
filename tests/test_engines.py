"""The two engines of reference/precision.py agree bit for bit: the ball engine (python-flint's
arb, rigorous enclosures) and mpmath's Ziv loop (the reference of record) give the same
canonical triple (hi, lo, sgn) -- hence the same correctly rounded value in every format.

Sampled here on every unary reference of the act and hid families (a seeded sample of each
16-bit grid, the thresholds where implementations switch branches, and random float32 and
float64 values); over every 16-bit bit pattern with ``--thorough`` (about a minute per
function and format with mpmath).  Also: the canonical triple determines RN_fmt(t) exactly
(``floatformat.round_exact`` against ``round_mpf`` at boundaries), and references the ball
engine cannot decide fall back to mpmath.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from ffnspec.reference import act, hid, precision, tables
from ffnspec.reference.floatformat import FORMATS, from_ordinal, ordinal, round_array, round_exact, round_mpf

pytest.importorskip("flint")

F16, BF16, F32, F64 = (FORMATS[n] for n in ("float16", "bfloat16", "float32", "float64"))

UNARY = ["act.sigmoid", "act.softplus", "act.log_sigmoid", "act.tanh", "act.silu", "act.sigmoid_grad",
         "act.softplus_grad", "act.log_sigmoid_grad", "act.tanh_grad", "act.silu_grad", "act.sigmoid_grad_scale",
         "act.tanh_grad_scale", "act.softplus_grad_scale", "act.log_sigmoid_grad_scale", "act.silu_grad_scale",
         "act.bernoulli_p1", "act.bernoulli_p0", "act.silu_underflow_scale", "hid.relu", "hid.relu_grad",
         "hid.absolute", "hid.hardtanh", "hid.hardtanh_grad"]
BINARY = [("hid.rectifier", 0.010002136230468750), ("hid.rectifier", -0.30004882812500000),
          ("hid.rectifier_grad", 3.69921875), ("act.logaddexp", 2.5), ("hid.tent", 3.0)]


def _same(a: precision.Value, b: precision.Value) -> bool:
    return (a.sgn == b.sgn and all(x == y and math.copysign(1, x) == math.copysign(1, y) or (x != x and y != y)
                                   for x, y in ((a.hi, b.hi), (a.lo, b.lo))))


def _referee(f, args, fmt, prec: int = 3000) -> list[precision.Value]:
    """The triple from one mpmath evaluation at ``prec`` bits, taken as exact."""
    out = []
    for v in precision._evaluate(f, args, prec):
        d = precision._mpf_dyadic(v)
        out.append(precision._decide(d, d, True, fmt) if d[0] else precision.Value(0.0, 0.0, 0))
    return out


def _disagreements(name: str, zs, fmt, params=()) -> list:
    """Inputs where the engines differ, unless a 3000-bit evaluation shows the ball engine right:
    mpmath's two-precision test is blind to a cancellation to exactly zero at both precisions
    (e.g. 1 - 2 sigma(z) for |z| < 2^-170), and there the proven ball result is the exact one."""
    f = tables.function(name)
    bad = []
    for z in zs:
        args = (float(z), *params)
        ball = precision.values(f, args, fmt)
        with precision.use_engine("mpmath"):
            ref = precision.values(f, args, fmt)
        if not all(_same(a, b) for a, b in zip(ball, ref)):
            fooled = all(r.hi == 0 for r in ref) and all(_same(a, b) for a, b in zip(ball, _referee(f, args, fmt)))
            if not fooled:
                bad.append((z, ball, ref))
    return bad


def _thresholds(fmt) -> np.ndarray:
    pts = [(fmt.p + 1) * math.log(2), fmt.p * math.log(2), math.log(fmt.max_finite), math.log(fmt.min_subnormal),
           15.0, 20.0, 33.0, 1.2784645427610738, 0.0, 1.0]
    c = ordinal(round_array(np.array(pts + [-p for p in pts]), fmt), fmt)
    top = int(ordinal(np.array([fmt.max_finite]), fmt)[0])
    return from_ordinal(np.clip((c[:, None] + np.arange(-8, 9)[None, :]).ravel(), -top, top), fmt)


def _sample(fmt, seed: int, n: int = 300) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if fmt in (F16, BF16):
        grid = tables.patterns(fmt.name)
        grid = grid[np.isfinite(grid)]
        z = grid[rng.integers(0, grid.size, n)]
    else:
        dt, nbits = (np.float32, 32) if fmt is F32 else (np.float64, 64)
        raw = rng.integers(0, 2 ** (nbits - 1), size=n // 2, dtype=np.int64).astype(np.uint64)
        with np.errstate(invalid="ignore"):
            wide = (raw.astype(np.uint32) if nbits == 32 else raw).view(dt).astype(np.float64)
        z = np.concatenate([wide[np.isfinite(wide)], round_array(rng.standard_normal(n // 2) * 30, fmt)])
        z = np.concatenate([z, -z[: n // 4]])
    return np.unique(np.concatenate([z, _thresholds(fmt)]))


@pytest.mark.parametrize("fmt", [F16, BF16, F32, F64], ids=lambda f: f.name)
@pytest.mark.parametrize("name", UNARY)
def test_engines_agree_on_a_sample(name, fmt):
    bad = _disagreements(name, _sample(fmt, seed=sum(map(ord, name + fmt.name))), fmt)
    assert not bad, f"{name} {fmt.name}: engines differ at {bad[:3]}"


@pytest.mark.parametrize("fmt", [F16, BF16, F32], ids=lambda f: f.name)
@pytest.mark.parametrize("name,param", BINARY)
def test_engines_agree_with_a_fixed_parameter(name, param, fmt):
    z = _sample(fmt, seed=7, n=200)
    if name == "hid.tent":
        z = np.linspace(0, 1, 129)
    bad = _disagreements(name, z, fmt, (float(round_array(np.array([param]), fmt)[0]),))
    assert not bad, f"{name} {fmt.name}: engines differ at {bad[:3]}"


@pytest.mark.thorough
@pytest.mark.parametrize("fmt", [F16, BF16], ids=lambda f: f.name)
@pytest.mark.parametrize("name", UNARY)
def test_engines_agree_on_every_16_bit_input(name, fmt):
    z = tables.patterns(fmt.name)
    z = z[~np.isnan(z)]
    bad = _disagreements(name, z, fmt)
    assert not bad, f"{name} {fmt.name}: engines differ at {len(bad)} inputs, e.g. {bad[:3]}"


ROW_REFS = {  # reference -> how its arguments are formed from a row z (v, t: directions; y: a label)
    "z": ["out.softmax", "out.logsumexp", "out.log_softmax", "out.softmax_scale", "out.softmax_acc",
          "out.log_softmax_scale", "out.log_softmax_acc", "out.logsumexp_scale", "out.logsumexp_acc"],
    "zv": [f"out.{op}_{m}{part}" for op in ("softmax", "log_softmax") for m in ("vjp", "jvp")
           for part in ("", "_scale", "_acc", "_underflow")],
    "zy": ["out.cross_entropy", "out.cross_entropy_scale", "out.cross_entropy_acc"],
    "zyc": ["out.cross_entropy_vjp", "out.cross_entropy_vjp_scale", "out.cross_entropy_vjp_acc",
            "out.cross_entropy_vjp_underflow"],
    "zyt": ["out.cross_entropy_jvp", "out.cross_entropy_jvp_scale", "out.cross_entropy_jvp_acc",
            "out.cross_entropy_jvp_underflow"],
}


def _rows(rng, fmt) -> list[list[float]]:
    """Rows of lengths 1-9 and spreads 1, 10, 1000, a third of them with masked (-inf) entries."""
    out = []
    for n in range(1, 10):
        for s in (1.0, 10.0, 1000.0):
            r = round_array(rng.standard_normal(n) * s, fmt)
            if n > 1 and rng.random() < 0.4:
                r[rng.random(n) < 0.4] = -math.inf
                r[rng.integers(n)] = float(round_array(np.array([rng.standard_normal()]), fmt)[0])
            out.append(r.tolist())
    return out


@pytest.mark.parametrize("fmt", [F16, F32, F64], ids=lambda f: f.name)
def test_vector_references_agree(fmt):
    # The out family's row references (softmax, logsumexp, cross-entropy, their derivatives and
    # error scales), masked rows included: exact infinities are arb's (e^-inf = 0).
    rng = np.random.default_rng(3)
    bad = []
    for r in _rows(rng, fmt):
        d = (rng.integers(-16, 17, size=len(r)) / 4.0).tolist()
        y = float(rng.choice([i for i, x in enumerate(r) if math.isfinite(x)]))
        forms = {"z": (r,), "zv": (r, d), "zy": (r, y), "zyc": (r, y, 0.75), "zyt": (r, y, d)}
        for form, names in ROW_REFS.items():
            for name in names:
                f = tables.function(name)
                args = forms[form]
                ball = precision.values(f, args, fmt)
                with precision.use_engine("mpmath"):
                    ref = precision.values(f, args, fmt)
                if not all(_same(a, b) for a, b in zip(ball, ref)):
                    if not all(_same(a, b) for a, b in zip(ball, _referee(f, args, fmt))):
                        bad.append((name, args, ball, ref))
    assert not bad, f"{len(bad)} disagreements, e.g. {bad[:2]}"


# ------------------------------------------------------ the triple determines RN_fmt ---
def _canonical(t: mpmath.mpf, fmt) -> precision.Value:
    d = precision._mpf_dyadic(t)
    return precision._decide(d, d, True, fmt)


@pytest.mark.parametrize("fmt", [F16, BF16, F32, F64], ids=lambda f: f.name)
def test_round_exact_is_correct_rounding(fmt):
    # Every midpoint, the overflow threshold and subnormal boundaries, each exactly and moved by
    # +-2^-200 relative (t - hi far below float64's reach): RN_fmt(t) from (hi, lo, sgn) must be
    # round_mpf's single correct rounding of t itself.
    ctx = precision.context(1200)
    rng = np.random.default_rng(11)
    top = int(ordinal(np.array([fmt.max_finite]), fmt)[0])
    idx = np.concatenate([rng.integers(-top, top, 300), [0, 1, 2, top - 1, -top + 1, 1 << (fmt.p - 1)]])
    a = from_ordinal(idx, fmt)
    b = from_ordinal(np.minimum(idx + 1, top), fmt)
    cases = []
    for x, y in zip(a.tolist(), b.tolist()):
        mid = (ctx.mpf(x) + ctx.mpf(y)) / 2
        cases += [mid, mid * (1 + ctx.ldexp(1, -200)), mid * (1 - ctx.ldexp(1, -200)), ctx.mpf(x)]
    edge = ctx.mpf(fmt.max_finite) + ctx.ldexp(1, fmt.emax - fmt.p)  # max + ulp/2: rounds to inf (ties to even)
    cases += [edge, edge * (1 - ctx.ldexp(1, -300)), -edge, ctx.ldexp(1, fmt.emin - fmt.p),
              ctx.ldexp(1, fmt.emin - fmt.p) * (1 + ctx.ldexp(1, -300)), -ctx.ldexp(1, fmt.emin - fmt.p - 2)]
    for t in cases:
        v = _canonical(t, fmt)
        got = float(round_exact(np.array([v.hi]), np.array([v.lo]), np.array([v.sgn]), fmt)[0])
        want = round_mpf(t, fmt)
        assert got == want and math.copysign(1, got) == math.copysign(1, want), (t, v, got, want)
        if math.isfinite(v.hi):
            assert abs(ctx.mpf(v.hi) + v.lo - t) <= abs(t) * ctx.ldexp(1, -106) + ctx.ldexp(1, -1075), t


def test_unsupported_context_feature_falls_back_to_mpmath():
    # a reference reading ctx.prec (an mpmath-only attribute) is evaluated by mpmath, correctly
    def f(ctx, z):
        return ctx.exp(z) * (ctx.prec > 0)
    hi, lo, cr = precision.evaluate(f, (1.0,), F32)
    assert cr == float(np.float32(math.e)) and hi == math.e


def test_undecidable_branch_falls_back_to_mpmath():
    # sigma(z) - sigma(z) is exactly 0, but two balls around it never compare: mpmath decides
    def f(ctx, z):
        d = act.sigmoid(ctx, z) - act.sigmoid(ctx, z)
        return ctx.one if d == 0 else ctx.zero
    assert precision.evaluate(f, (0.3,), F32) == (1.0, 0.0, 1.0)


def test_hid_tent_on_balls_is_exact():
    assert precision.evaluate(hid.tent, (0.3125, 3.0), F16) == (0.5, 0.0, 0.5)
