"""The out family (spec/30_out.toml, reference/out.py): what conformance checks specifically
for softmax, logsumexp, log-softmax and the losses (§6.2): the predicates of the exact
properties and relations between ops (kind "reduction_property", checks/properties.py),
with the programs and input constructions they use.  Their values, derivatives and special
values are checked by the generic checks from the clauses alone, with the mixed bound of
machinery/measure.py on the recipes of inputs/rows.py.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ffnspec.conformance.checks.properties import REDUCTION, Outcome
from ffnspec.conformance.inputs.rows import directions
from ffnspec.conformance.machinery import reproduce
from ffnspec.conformance.machinery.harness import AdapterFault, Target, items
from ffnspec.conformance.machinery.measure import eta, exact_sum, limits, u_acc
from ffnspec.conformance.machinery.reproduce import row_value
from ffnspec.reference import tables
from ffnspec.reference.floatformat import Format, from_ordinal, ordinal, round_array, ulp

predicate = REDUCTION.register


def _ratio(residual, allowance):
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.abs(residual) / allowance
    return np.where(np.isnan(r), np.where(np.abs(residual) == 0, 0.0, np.inf), r)


def _finite_rows(z: np.ndarray) -> np.ndarray:
    """Rows with no NaN/+inf and at least one finite entry (-inf entries are masks)."""
    return ~np.isnan(z).any(axis=-1) & ~np.isposinf(z).any(axis=-1) & np.isfinite(z).any(axis=-1)


@predicate("softmax_range")
def softmax_range(clause, target, group):
    (z,) = group
    z = z[_finite_rows(z)]
    a = items(target.call_reduction("softmax", z))
    bad = ~((a >= 0) & (a <= 1))
    return Outcome((z,), np.where(bad, np.inf, 0.0), a, np.clip(a, 0, 1), "a softmax entry left [0, 1]",
                   lambda i: row_value(target, "softmax", (z,), i))


@predicate("softmax_sum")
def softmax_sum(clause, target, group):
    (z,) = group
    z = z[_finite_rows(z)]
    a = items(target.call_reduction("softmax", z))
    lim = limits("out.softmax", target, (z,)).limit
    resid = np.array([exact_sum(r) - 1.0 if np.all(np.isfinite(r)) else math.inf for r in a])
    return Outcome((z,), _ratio(resid, lim.sum(axis=1)), resid, np.zeros_like(resid),
                   "sum of softmax entries differs from 1 by more than the sum of the entries' allowances",
                   lambda i: row_value(target, "softmax", (z,), i))


@predicate("softmax_finite")
def softmax_finite(clause, target, group):
    (z,) = group
    z = z[_finite_rows(z)]
    if z.shape[1] == 2:  # the book's example: no overflow for z = [1000, 0]
        z = np.concatenate([z, round_array(np.array([[1000.0, 0.0], [0.0, 1000.0]]), target.fmt)])
    a = items(target.call_reduction("softmax", z))
    bad = ~np.isfinite(a)
    return Outcome((z,), np.where(bad, np.inf, 0.0), a, np.nan_to_num(a), "softmax returned a non-finite entry for finite logits",
                   lambda i: row_value(target, "softmax", (z,), i))


def _exact_shifts(z: np.ndarray, fmt: Format, shifts) -> tuple[np.ndarray, np.ndarray]:
    """(rows, shifted rows) for every shift c (a scalar or one per row) with z + c exact and finite."""
    keep_z, keep_s = [], []
    for c in shifts:
        c = np.broadcast_to(np.asarray(c, dtype=np.float64), z.shape[:1])[:, None]
        with np.errstate(invalid="ignore", over="ignore"):
            s = z + c
            bb = s - z
            two_sum_err = (z - (s - bb)) + (c - bb)  # exact error of the float64 addition (TwoSum)
        ok = (np.isfinite(s) | np.isneginf(z)).all(axis=1) & ((two_sum_err == 0) | np.isneginf(z)).all(axis=1)
        ok &= ((round_array(s, fmt) == s) | np.isneginf(s)).all(axis=1) & (np.abs(c[:, 0]) > 0)
        keep_z.append(z[ok])
        keep_s.append(s[ok])
    return np.concatenate(keep_z), np.concatenate(keep_s)


def _shift_outcome(target, z, zs, explain):
    if z.size == 0:
        return None
    a = items(target.call_reduction("softmax", z))
    b = items(target.call_reduction("softmax", zs))
    allow = limits("out.softmax", target, (z,)).limit + limits("out.softmax", target, (zs,)).limit
    resid = a - b
    both = (z, zs)
    return Outcome(both, _ratio(resid, allow), b, a, explain,
                   lambda i: reproduce.items(target, ["print(b.to_numpy(b.ops.softmax(args[0])).tolist())",
                                                      "print(b.to_numpy(b.ops.softmax(args[1])).tolist())"],
                                             [(z[i:i + 1], False), (zs[i:i + 1], False)]))


@predicate("softmax_shift")
def softmax_shift(clause, target, group):
    (z,) = group
    z = z[_finite_rows(z)]
    z, zs = _exact_shifts(z, target.fmt, (1.0, -1.0, 3.5, 64.0, -1000.0, 3072.0))
    return _shift_outcome(target, z, zs, "softmax(z + c) and softmax(z) differ by more than their allowances")


@predicate("softmax_overparam")
def softmax_overparam(clause, target, group):
    (z,) = group
    z = z[_finite_rows(z) & np.isfinite(z[:, -1])]
    z, zs = _exact_shifts(z, target.fmt, (-z[:, -1],))
    return _shift_outcome(target, z, zs, "softmax(z) and softmax(z - z_n) (n-1 free logits, z_n = 0) differ "
                                         "by more than their allowances")


@predicate("softmax_masked")
def softmax_masked(clause, target, group):
    (z,) = group
    rows = _finite_rows(z) & np.isneginf(z).any(axis=1)
    z = z[rows]
    if z.size == 0:
        return None
    fmt = target.fmt
    mask = np.isneginf(z)
    a = items(target.call_reduction("softmax", z))
    err = np.zeros_like(a)
    err[mask & (a != 0)] = np.inf                                       # an excluded class gets exactly 0
    (v,) = directions(clause, target.dtype, [z.shape], 1)
    _, (g,) = target.reduction_derivative("softmax", (z,), [0], v, mode="vjp")
    err[mask & (g != 0)] = np.inf                                       # and exactly zero gradient
    t = directions(clause, target.dtype, [z.shape], 2)[0]
    _, jt = target.reduction_derivative("softmax", (z,), [0], [t], mode="jvp")
    _, j0 = target.reduction_derivative("softmax", (z,), [0], [np.where(mask, 0.0, t)], mode="jvp")
    moved = ~((jt == j0) | (np.isnan(jt) & np.isnan(j0)))
    err[moved] = np.inf                                                 # tangents on excluded classes change nothing
    for i in range(z.shape[0]):                                         # the rest is softmax of the kept classes
        keep = ~mask[i]
        sub = z[i][keep][None, :]
        asub = items(target.call_reduction("softmax", sub))[0]
        allow = limits("out.softmax", target, (z[i:i + 1],)).limit[0][keep] + limits("out.softmax", target, (sub,)).limit[0]
        err[i, keep] = np.maximum(err[i, keep], _ratio(a[i, keep] - asub, allow))
    return Outcome((z,), err, a, np.where(mask, 0.0, a),
                   "a -inf (excluded) class leaked: nonzero value or gradient, a tangent on it moved the result, "
                   "or the kept classes differ from the softmax of the kept logits",
                   lambda i: row_value(target, "softmax", (z,), i))


ALL_MASKED = {"nan": math.nan, "zero": 0.0}  # "uniform" is 1/n


@predicate("softmax_all_masked")
def softmax_all_masked(clause, target, group):
    (z,) = group
    n = z.shape[1]
    z = np.full((1, n), -np.inf)
    a = items(target.call_reduction("softmax", z))
    preferred = clause.extra["preferred"]
    declared = str(target.backend.conventions.get("softmax_all_masked", preferred))
    if declared not in (*ALL_MASKED, "uniform"):
        raise AdapterFault(None, f"conventions['softmax_all_masked'] = {declared!r}; allowed: nan, zero, uniform")
    want = round_array(np.full_like(a, 1.0 / n if declared == "uniform" else ALL_MASKED[declared]), target.fmt)
    same = (a == want) | (np.isnan(a) & np.isnan(want))
    dev = None if declared == preferred else (f"declared convention softmax_all_masked = {declared!r} "
                                              f"(preferred {preferred!r})")
    return Outcome((z,), np.where(same, 0.0, np.inf), a, want,
                   f"softmax of an all -inf row must follow the declared convention {declared!r}",
                   lambda i: row_value(target, "softmax", (z,), i), deviation=dev)


@predicate("logsumexp_bounds")
def logsumexp_bounds(clause, target, group):
    (z,) = group
    z = z[_finite_rows(z)]
    y = items(target.call_reduction("logsumexp", z))[:, 0]
    m = np.max(z, axis=1)
    n = np.isfinite(z).sum(axis=1)
    lim = limits("out.logsumexp", target, (z,)).limit[:, 0]
    with np.errstate(over="ignore"):
        upper = m + np.log(n) + lim
    lower = m - target.fmt.min_normal if target.ftz else m  # flush-to-zero: a subnormal max may read as 0
    with np.errstate(invalid="ignore", over="ignore"):  # y = upper = inf: the branch not taken
        err = np.where(y < lower, np.inf, np.where(y > upper, 1.0 + (y - upper) / np.maximum(lim, 1e-300), 0.0))
    err = np.where(np.isnan(y), np.inf, err)
    return Outcome((z,), err, y, m, "logsumexp below max z, or above max z + log n (+ its allowance)",
                   lambda i: row_value(target, "logsumexp", (z,), i))


@predicate("logaddexp_lse")
def logaddexp_lse(clause, target, group):
    (z,) = group
    if z.shape[1] < 2:
        return None
    z = z[np.isfinite(z[:, :2]).all(axis=1), :2]  # the first two entries of each row
    if z.size == 0:
        return None
    x, y = z[:, :1].copy(), z[:, 1:].copy()
    la = target.call("logaddexp", x[:, 0], y[:, 0])
    ls = items(target.call_reduction("logsumexp", z))[:, 0]
    ex = limits("out.logsumexp", target, (z,))
    allow = ex.limit[:, 0] + 5 * ulp(ex.exact.hi[:, 0], ex.exact.lo[:, 0], target.fmt) + eta(target)
    resid = la - ls
    return Outcome((z,), _ratio(resid, allow), la, ls,
                   "logaddexp(x, y) and logsumexp([x, y]) disagree by more than their bounds allow",
                   lambda i: reproduce.items(target, ["print(b.to_numpy(b.ops.logaddexp(args[0], args[1])).tolist())",
                                                      "print(b.to_numpy(b.ops.logsumexp(args[2])).tolist())"],
                                             [(x[i], False), (y[i], False), (z[i:i + 1], False)]))


@predicate("ce_reduction")
def ce_reduction(clause, target, group):
    z, y = group
    fmt = target.fmt
    errs, outs, exps = [], [], []
    for b in range(z.shape[0]):
        none = target.call_reduction("cross_entropy", z[b], y[b])
        total = float(target.call_reduction("cross_entropy_sum", z[b], y[b]))
        mean = float(target.call_reduction("cross_entropy_mean", z[b], y[b]))
        m = z.shape[1]
        lim = limits("out.ce", target, (z[b], y[b])).limit[:, 0]
        mag = float(np.sum(np.abs(none)))
        ua = u_acc(fmt)
        allow_sum = 2 * lim.sum() + (m - 1) * ua * mag + fmt.unit_roundoff * abs(total) + eta(target)
        allow_mean = allow_sum / m + (m - 1) * ua * mag / m + fmt.unit_roundoff * abs(mean) + eta(target)
        exact_sum = math.fsum(none)
        if abs(exact_sum) > fmt.max_finite:  # the sum overflows the format: +-inf is its rounding
            e = 0.0 if total == math.copysign(math.inf, exact_sum) else math.inf
        else:
            e = max(_ratio(total - exact_sum, allow_sum), _ratio(mean - total / m, allow_mean))
        errs.append(e)
        outs.append(mean)
        exps.append(total / m)
    return Outcome(group, np.array(errs), np.array(outs), np.array(exps),
                   "reduction='sum' is not the sum of reduction='none', or 'mean' is not sum / |S|",
                   lambda i: reproduce.items(target, [f"print(b.to_numpy(b.ops.{o}(*args)).tolist())" for o in
                                                      ("cross_entropy", "cross_entropy_sum", "cross_entropy_mean")],
                                             [(z[i], False), (y[i], True)]))


@predicate("nll_is_ce")
def nll_is_ce(clause, target, group):
    z, y = group
    lp = target.call_reduction("log_softmax", z)
    nll = target.call_reduction("nll", lp, y)
    ce = target.call_reduction("cross_entropy", z, y)
    yi = y.astype(np.int64)
    picked = -lp[np.arange(len(yi)), yi]
    err = np.where((nll == picked) | (np.isnan(nll) & np.isnan(picked)), 0.0, np.inf)  # a gather: exact
    allow = limits("out.ce", target, (z, y)).limit[:, 0] * 2
    with np.errstate(invalid="ignore"):  # inf - inf where both are inf: decided by the where
        err = np.maximum(err, np.where(np.isinf(ce) & (ce == nll), 0.0, _ratio(nll - ce, allow)))
    if "cross_entropy_soft" in target.backend.ops:  # H(onehot(y), q) = -log q_y
        onehot = (np.arange(z.shape[1])[None, :] == yi[:, None]).astype(np.float64)
        # rows whose log-probabilities are representable (|z| <= max/4) or masked (-inf: excluded classes)
        fin = np.isfinite(ce) & (np.where(np.isfinite(z), np.abs(z), 0) <= target.fmt.max_finite / 4).all(axis=1)
        soft = target.call_reduction("cross_entropy_soft", z[fin], onehot[fin])
        allow_s = allow[fin] / 2 + limits("out.ce.soft", target, (z[fin], onehot[fin])).limit[:, 0]
        err[fin] = np.maximum(err[fin], _ratio(soft - ce[fin], allow_s))
    return Outcome(group, err, nll, ce,
                   "nll(log_softmax(z), y) is not -log_softmax(z)[y] exactly, or differs from cross_entropy(z, y) "
                   "(or from the cross-entropy with the one-hot target) beyond the allowances",
                   lambda i: reproduce.items(target, ["print(b.to_numpy(b.ops.nll(b.ops.log_softmax(args[0]), args[1])).tolist())",
                                                      "print(b.to_numpy(b.ops.cross_entropy(args[0], args[1])).tolist())"],
                                             [(z[i:i + 1], False), (y[i:i + 1], True)]))


@predicate("kl_decomposition")
def kl_decomposition(clause, target, group):
    z, p = group
    kl = items(target.call_reduction("kl_div", z, p))[:, 0]
    h = items(target.call_reduction("cross_entropy_soft", z, p))[:, 0]
    ent = tables.exact_items("out.entropy", (p,), target.fmt)
    lk = limits("out.kl", target, (z, p)).limit[:, 0]
    allow = lk + limits("out.ce.soft", target, (z, p)).limit[:, 0]
    resid = np.array([exact_sum([a, -b, c, d]) for a, b, c, d in zip(kl, h, ent.hi[:, 0], ent.lo[:, 0])])
    with np.errstate(invalid="ignore"):
        err = np.maximum(_ratio(resid, allow), np.where(kl < -lk, np.inf, 0.0))
    err = np.where(np.isnan(err), np.inf, err)  # a non-finite KL or cross-entropy: a violation
    return Outcome(group, err, kl, h - ent.hi[:, 0],
                   "KL(p || q) differs from H(p, q) - H(p) beyond the allowances, or is below -(its allowance)",
                   lambda i: reproduce.items(target, ["print(b.to_numpy(b.ops.kl_div(*args)).tolist())",
                                                      "print(b.to_numpy(b.ops.cross_entropy_soft(*args)).tolist())"],
                                             [(z[i:i + 1], False), (p[i:i + 1], False)]))


def _grad(target: Target, fn, z: np.ndarray, uses) -> np.ndarray:
    _, (g,) = target.gradient(fn, [z], np.ones_like(z), mode="vjp", shape=z.shape, uses=uses)
    return g


class _BCEProgram:
    def __init__(self, y, op: str = "bce"):
        self.y, self.op = y, op

    def __call__(self, ops, z):
        return ops[self.op](z, self.y)


class _MSEOnSigmoid:
    def __init__(self, y):
        self.y = y

    def __call__(self, ops, z):
        return ops.half_sq_error(ops.sigmoid(z), self.y)


@predicate("bce_asymptotics")
def bce_asymptotics(clause, target, group):
    z, y = group
    fmt = target.fmt
    hard = (y == 0) | (y == 1)
    z, y = z[hard & np.isfinite(z)], y[hard & np.isfinite(z)]
    wrong = (2 * y - 1) * z  # the margin: < 0 means the answer is wrong
    t_sat = (fmt.p + 1) * math.log(2)  # beyond it sigma(-|z|) < u/2: sigma - y rounds to -+1
    j = target.call_reduction("bce", z, y)
    g = _grad(target, _BCEProgram(target.to_backend(y)), z, ["bce"])
    lim = limits("out.bce", target, (z, y)).limit[:, 0]
    s = np.where(y == 1, -1.0, 1.0)                        # the sign of the gradient when wrong
    err = np.zeros_like(z)
    far_wrong = wrong <= -t_sat
    err[far_wrong & (g != s)] = np.inf                     # gradient -> -+1 exactly
    with np.errstate(over="ignore"):
        tail = np.exp(-np.abs(z))
    err = np.maximum(err, np.where(far_wrong, _ratio(j - np.abs(z), lim + tail), 0.0))   # J ~ |z|
    half = 0.5 * (1 - 24 * fmt.unit_roundoff)
    err[(wrong <= 0) & ~(np.abs(g) >= half)] = np.inf      # never below 1/2 while wrong
    far_right = wrong >= t_sat                             # saturates only when right:
    gl = tail * (1 + 36 * fmt.unit_roundoff) + 12 * eta(target)   # |sigma - y| = sigma(-|z|) <= e^-|z|
    err[far_right & ~(np.abs(g) <= gl)] = np.inf
    err[far_right & ~(j <= tail + lim)] = np.inf
    return Outcome((z, y), err, g, s * (wrong < 0),
                   "confidently wrong: gradient not -+1 or J not ~|z|; wrong: |gradient| < 1/2; "
                   "confidently right: loss or gradient not ~0",
                   lambda i: reproduce.items(target, ["print(b.to_numpy(b.ops.bce(args[0], args[1])).tolist())",
                                                      "print(b.to_numpy(b.vjp(lambda ops, z: ops.bce(z, args[1]), [args[0]], "
                                                      "args[2])[1][0]).tolist())"],
                                             [(z[i:i + 1], False), (y[i:i + 1], False), (np.ones(1), False)]))


@predicate("bce_prob_form")
def bce_prob_form(clause, target, group):
    z, y = group
    fmt = target.fmt
    sig = tables.exact_items("act.sigmoid", (z,), fmt).cr[:, 0]  # a = RN(sigma(z))
    # where a rounds to 0 or 1 (or, with flush-to-zero declared, is subnormal and may read as 0)
    # the probability form has lost the information: the clause's point, no check there
    ok = (sig > (target.fmt.min_normal if target.ftz else 0)) & (sig < 1) & np.isfinite(z)
    z, y, a = z[ok], y[ok], sig[ok]
    lhs = target.call_reduction("bce_prob", a, y)
    rhs = target.call_reduction("bce", z, y)
    u = fmt.unit_roundoff
    lb = limits("out.bce", target, (z, y)).limit[:, 0]
    with np.errstate(divide="ignore"):
        lp = -np.log(a) * y + -np.log1p(-a) * (1 - y)
    lim_prob = 5 * u * np.abs(lp) + 2 * u + 4 * eta(target)       # the probability form's own error
    ua = ulp(a, np.zeros_like(a), fmt)                             # a = RN(sigma(z)): |a - sigma(z)| <= ulp(a) / 2
    with np.errstate(divide="ignore", over="ignore"):              # its effect on log a and on log(1 - a)
        cond = 1.01 * ua * (y / (2 * a - ua) + (1 - y) / (2 * (1 - a) - ua))
    resid = lhs - rhs
    return Outcome((z, y), _ratio(resid, lb + lim_prob + cond), lhs, rhs,
                   "-[y log a + (1-y) log(1-a)] at a = RN(sigma(z)) differs from the logit form beyond "
                   "the allowances and the conditioning of the probability form",
                   lambda i: reproduce.items(target, ["print(b.to_numpy(b.ops.bce_prob(args[2], args[1])).tolist())",
                                                      "print(b.to_numpy(b.ops.bce(args[0], args[1])).tolist())"],
                                             [(z[i:i + 1], False), (y[i:i + 1], False), (a[i:i + 1], False)]))


@predicate("mse_on_sigmoid_vanishes")
def mse_on_sigmoid_vanishes(clause, target, group):
    z, y = group
    fmt = target.fmt
    hard = ((y == 1) & (z <= 0)) | ((y == 0) & (z >= 0))   # a wrong answer
    z, y = z[hard & np.isfinite(z)], y[hard & np.isfinite(z)]
    yb = target.to_backend(y)
    g_mse = _grad(target, _MSEOnSigmoid(yb), z, ["sigmoid", "half_sq_error"])
    g_bce = _grad(target, _BCEProgram(yb), z, ["bce"])
    s = tables.exact_items("act.sigmoid", (-np.abs(z),), fmt).hi[:, 0]  # sigma(-|z|)
    u = fmt.unit_roundoff
    # |(sigma - y) sigma'| <= sigma(-|z|), and sigma' may carry act.sigmoid.grad's 21 (u (sigma' + S) + eta)
    ds = tables.approximate("act.sigmoid_grad", (z,))
    vanish = (s + 21 * (u * (ds + tables.approximate("act.sigmoid_grad_scale", (z,))) + eta(target))) * (1 + 16 * u)
    err = np.maximum(_ratio(np.maximum(np.abs(g_mse) - vanish, 0), vanish) + (np.abs(g_mse) > vanish),
                     np.where(np.abs(g_bce) >= 0.5 * (1 - 24 * u), 0.0, np.inf))
    err = np.where(np.isnan(g_mse) | np.isnan(g_bce), np.inf, err)
    return Outcome((z, y), err, g_mse, s,
                   "MSE-on-sigmoid gradient exceeds sigma(-|z|) (it must vanish when wrong) or the BCE "
                   "gradient fell below 1/2 in magnitude",
                   lambda i: reproduce.items(target, ["print(b.to_numpy(b.vjp(lambda ops, z: ops.half_sq_error(ops.sigmoid(z), "
                                                      "args[1]), [args[0]], args[2])[1][0]).tolist())",
                                                      "print(b.to_numpy(b.vjp(lambda ops, z: ops.bce(z, args[1]), [args[0]], "
                                                      "args[2])[1][0]).tolist())"],
                                             [(z[i:i + 1], False), (y[i:i + 1], False), (np.ones(1), False)]))


@predicate("pos_weight_neutral")
def pos_weight_neutral(clause, target, group):
    z, y = group
    w = np.ones_like(z)
    plain = target.call_reduction("bce", z, y)
    weighted = target.call_reduction("bce_pos_weight", z, y, w)
    (v,) = directions(clause, target.dtype, [z.shape], 3)
    _, (g0,) = target.reduction_derivative("bce", (z, y), [0], v, mode="vjp")
    _, (g1,) = target.reduction_derivative("bce_pos_weight", (z, y, w), [0], v, mode="vjp")
    def differs(a, b):
        return ~((a.view(np.int64) == b.view(np.int64)) | (np.isnan(a) & np.isnan(b)))
    err = np.where(differs(plain, weighted) | differs(g0, g1), np.inf, 0.0)
    return Outcome((z, y), err, np.where(differs(plain, weighted), weighted, g1), np.where(differs(plain, weighted),
                                                                                        plain, g0),
                   "pos_weight = 1 changed the value or the gradient (bitwise)",
                   lambda i: reproduce.items(target, ["print(b.to_numpy(b.ops.bce(args[0], args[1])).tolist(), "
                                                      "b.to_numpy(b.ops.bce_pos_weight(args[0], args[1], args[2])).tolist())",
                                                      "print(b.to_numpy(b.vjp(lambda ops, z: ops.bce(z, args[1]), [args[0]], args[3])[1][0]).tolist(), "
                                                      "b.to_numpy(b.vjp(lambda ops, z: ops.bce_pos_weight(z, args[1], args[2]), [args[0]], args[3])[1][0]).tolist())"],
                                             [(z[i:i + 1], False), (y[i:i + 1], False), (w[i:i + 1], False), (v[i:i + 1], False)]))


def _constant_rows(c: np.ndarray, n: int) -> np.ndarray:
    return np.repeat(c[:, None], n, axis=1)


def _loss_and_slope(target, op, c, y):
    """(J(c 1), dJ/dc = sum of the vjp gradient) per row, the constant broadcast over the row."""
    yh = _constant_rows(c, y.shape[1])
    j = np.array([target.call_reduction(op, yh[i], y[i]) for i in range(len(c))])
    g = np.array([exact_sum(target.reduction_derivative(op, (yh[i], y[i]), [0], np.array(1.0), mode="vjp")[1][0])
                  for i in range(len(c))])  # the backend's gradient entries, summed exactly
    return j, g


@predicate("mse_best_constant")
def mse_best_constant(clause, target, group):
    (y,) = group
    fmt = target.fmt
    n = y.shape[1]
    spread = np.array([max(float(np.std(r)), 1.0) for r in y])
    y = y[(np.abs(y).max(axis=1) + 2 * spread) ** 2 < fmt.max_finite / 4]  # J finite in the format
    if y.size == 0:
        return None
    spread = np.array([max(float(np.std(r)), 1.0) for r in y])
    mean = round_array(np.array([math.fsum(r) / n for r in y]), fmt)
    delta = round_array(spread / 2, fmt)
    err = np.zeros(len(y))
    j0, g0 = _loss_and_slope(target, "mse", mean, y)
    lim0 = limits("out.mse", target, (_constant_rows(mean, n), y)).limit[:, 0]
    for sgn in (1.0, -1.0):
        c = round_array(mean + sgn * delta, fmt)
        j1, g1 = _loss_and_slope(target, "mse", c, y)
        lim1 = limits("out.mse", target, (_constant_rows(c, n), y)).limit[:, 0]
        gap = np.array([float((Fraction(float(ci)) - sum(map(Fraction, r.tolist())) / n) ** 2
                              - (Fraction(float(m)) - sum(map(Fraction, r.tolist())) / n) ** 2) for ci, m, r in zip(c, mean, y)])
        resolvable = gap > lim0 + lim1
        err[resolvable & ~(j1 > j0)] = np.inf                  # the mean beats a constant delta away
        err[(np.sign(g1) != sgn) & (c != mean)] = np.inf        # and the slope points back to it
    slope = np.array([float(2 * (Fraction(float(m)) - sum(Fraction(float(v)) for v in r) / n)) for m, r in zip(mean, y)])
    # each gradient entry 2 (c - y_i) / n carries 3 roundings (mse.grad): 6 u mean|c - y_i| in all
    allow = 6 * fmt.unit_roundoff * np.abs(mean[:, None] - y).mean(axis=1) + 2 * n * eta(target)
    err = np.maximum(err, _ratio(g0 - slope, allow))           # dJ/dc at the mean is 2 (c - mean) ~ 0
    return Outcome((y,), err, g0, slope, "the mean is not the best constant under MSE: J(mean) >= J(mean +- delta), "
                   "or dJ/dc does not vanish at the mean / point back to it",
                   lambda i: reproduce.items(target, ["print(b.to_numpy(b.ops.mse(args[0], args[1])).tolist())"],
                                             [(_constant_rows(mean, n)[i], False), (y[i], False)]))


@predicate("mae_best_constant")
def mae_best_constant(clause, target, group):
    (y,) = group
    fmt = target.fmt
    n = y.shape[1]
    srt = np.sort(y, axis=1)
    if n % 2:  # odd: the median is a data value; 0 is in the subdifferential there
        med = srt[:, n // 2]
    else:      # even: every c between the middle two is optimal; take their rounded midpoint
        med = round_array((srt[:, n // 2 - 1] + srt[:, n // 2]) / 2, fmt)
    err = np.zeros(len(y))
    _, g0 = _loss_and_slope(target, "mae", med, y)
    tol = (1 + n * u_acc(fmt)) / n + fmt.unit_roundoff
    err[~(np.abs(g0) <= (tol if n % 2 else n * u_acc(fmt) / n + eta(target)))] = np.inf
    top = int(ordinal(np.array([fmt.max_finite]), fmt)[0])
    for sgn in ((1.0, -1.0) if n % 2 else ()):  # one grid step off the median, the subgradient points back
        c = from_ordinal(np.clip(ordinal(med, fmt) + int(sgn), -top, top), fmt)
        clear = np.array([not np.any((r >= min(a, b)) & (r <= max(a, b)) & (r != a)) for r, a, b in zip(y, med, c)])
        _, g1 = _loss_and_slope(target, "mae", c, y)
        err[clear & (c != med) & ~(np.sign(g1) == sgn)] = np.inf
    return Outcome((y,), err, g0, np.zeros_like(g0), "the median is not a best constant under MAE: the subgradient "
                   "at the median excludes 0, or one step away it does not point back",
                   lambda i: reproduce.items(target, ["print(b.to_numpy(b.vjp(lambda ops, c: ops.mae(c, args[1]), [args[0]], "
                                                      "args[2])[1][0]).tolist())"],
                                             [(_constant_rows(med, n)[i], False), (y[i], False), (np.array(1.0), False)]))


def _psd_with_margin(c: np.ndarray, margin: float) -> bool:
    """Whether sym(c) + margin I is positive semi-definite, decided exactly (rational LDL^T with
    symmetric pivoting; a zero pivot must have a zero column)."""
    d = c.shape[0]
    m = [[(Fraction(float(c[i, j])) + Fraction(float(c[j, i]))) / 2 + (Fraction(margin) if i == j else 0)
          for j in range(d)] for i in range(d)]
    idx = list(range(d))
    while idx:
        k = max(idx, key=lambda i: m[i][i])
        p = m[k][k]
        if p < 0:
            return False
        if p == 0:
            if any(m[k][j] != 0 for j in idx):
                return False
            idx.remove(k)
            continue
        idx.remove(k)
        for i in idx:
            f = m[i][k] / p
            for j in idx:
                m[i][j] -= f * m[k][j]
    return True


@predicate("cov_psd")
def cov_psd(clause, target, group):
    (b,) = group
    fmt = target.fmt
    c = target.call_reduction("cov_from_factor", b)
    d = b.shape[-1]
    ab = np.abs(b)
    mag = ab @ np.swapaxes(ab, -1, -2)                         # |B| |B|^T: the summed terms' magnitudes
    gam = d * u_acc(fmt) + 2 * fmt.unit_roundoff               # gamma_d accumulation + the products and the store
    err = np.zeros(b.shape[0])
    for i in range(b.shape[0]):
        if mag[i].max() > fmt.max_finite / 2:  # entries may overflow: +-inf is then their rounding
            continue
        e = gam * mag[i] + 2 * eta(target)
        margin = float(np.linalg.norm(e, "fro")) * (1 + 1e-6) + 1e-300
        sym_ok = np.all(np.abs(c[i] - c[i].T) <= 2 * e)
        diag_ok = np.all(np.diag(c[i]) >= 0)
        psd = np.all(np.isfinite(c[i])) and _psd_with_margin(c[i], margin)
        err[i] = 0.0 if (sym_ok and diag_ok and psd) else np.inf
    return Outcome((b,), err, err, np.zeros_like(err), "B B^T is not symmetric, has a negative diagonal entry, or has "
                   "an eigenvalue below -(the bound on its rounding error)",
                   lambda i: row_value(target, "cov_from_factor", (b,), i))
