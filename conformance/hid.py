"""The hid family (spec/20_hid.toml, reference/hid.py): what conformance checks specifically
for the structured hidden units, as composite checks registered by name (kinds "composite"
and "gradient", checks/composites.py): PReLU with a per-channel or shared slope, maxout,
radial basis units, the low-rank projection and the folding tent map, each with the
construction of its structured problems from the drawn values.  The hid family's
piecewise-linear units, kink/tie conventions and op variants are checked by the generic
checks/piecewise.py, checks/conventions.py and checks/variants.py from the clauses alone.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from ffnspec.conformance.checks import conventions
from ffnspec.conformance.checks.composites import register
from ffnspec.conformance.inputs.scalars import cycle, kink_inputs, mantissa, pool
from ffnspec.conformance.machinery.harness import OpProgram, Target
from ffnspec.conformance.machinery.measure import approx, exact, k_terms, mixed_error, same_exact
from ffnspec.conformance.machinery.records import conclude
from ffnspec.conformance.machinery.reproduce import grad_call, named, seed_text
from ffnspec.reference import function, tables
from ffnspec.reference.floatformat import Format, ordinal, round_array


# ------------------------------------------------------------------ PReLU ----
_SLOPES = ((0.01, -0.3, 0.0), (3.7, 0.25, -1.0), (0.2,))   # per channel (C = 3), and shared (1,)


def _prelu_problems(z: np.ndarray, fmt: Format, target: Target):
    """(z of shape (M, C, L) or (M, C), alpha of shape (C, 1) / (C,) / (1,)) covering every drawn value."""
    v = np.concatenate([pool(z, fmt, finite=False, size=1 << 16), kink_inputs(fmt, [0.0]), [np.inf, -np.inf]])
    out = []
    for slopes, shape in ((_SLOPES[0], (3, 4)), (_SLOPES[1], (3,)), (_SLOPES[2], (3, 2))):
        per = int(np.prod(shape))
        rows = -(-v.size // per)
        zz = cycle(v, rows * per).reshape((rows,) + shape)
        a = np.array([conventions.alpha_hat(s, target) for s in slopes])
        alpha = a.reshape(-1, 1) if len(shape) == 2 and a.size > 1 else a
        out.append((zz, alpha))
    return out


def _alpha_full(zz: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    if alpha.size == 1:
        return np.full_like(zz, alpha.ravel()[0])
    return np.broadcast_to(alpha.reshape((1, -1) + (1,) * (zz.ndim - 2)), zz.shape)


@register("prelu_value")
def prelu_value(clause, target, record, z):
    fmt = target.fmt
    for zz, alpha in _prelu_problems(z, fmt, target):
        y = target.apply("prelu", zz, alpha, shape=zz.shape)
        af = _alpha_full(zz, alpha)
        num = ~np.isnan(zz)
        want = np.full(zz.shape, np.nan)
        want[num] = tables.exact(clause.reference, (zz[num], af[num]), fmt).cr
        ok = same_exact(y, want)
        if target.ftz:  # the exact or the rounded value subnormal: 0 counts (checks/accuracy._flushed)
            hi = np.full(zz.shape, np.nan)
            hi[num] = tables.exact(clause.reference, (zz[num], af[num]), fmt).hi
            ok |= ((np.abs(want) < fmt.min_normal) | (np.abs(hi) < fmt.min_normal)) & (y == 0)
            sub = (zz != 0) & (np.abs(zz) < fmt.min_normal)
            for s in conventions.accepted(target, conventions.row_at("prelu", 0.0), af):
                with np.errstate(invalid="ignore"):
                    piece = round_array(s * zz, fmt)  # the piece chosen at 0 ("alpha": the channel's slope)
                ok |= sub & (same_exact(y, piece) | ((np.abs(piece) < fmt.min_normal) & (y == 0)))
        err = np.where(ok, 0.0, 1.0)

        def rep(i, zz=zz, alpha=alpha):
            n = np.unravel_index(i, zz.shape)[0]
            return named(target, {"z": zz[n:n + 1], "alpha": alpha}, "b.to_numpy(b.ops.prelu(z, alpha)).tolist()")
        conclude(record, clause, target, ~ok, err, what=f"prelu value is not the correctly rounded alpha_c z "
                 f"(alpha shape {alpha.shape})", criterion="exact: RN(max(0,z) + alpha_c min(0,z)) bitwise",
                 reproducer=rep, inputs=[zz, af], got=y, want=want)


def _unit_seed(mode: str, zz: np.ndarray, alpha: np.ndarray):
    return np.ones_like(zz) if mode == "vjp" else [np.ones_like(zz), np.zeros_like(alpha)]


@register("prelu_grad_z")
def prelu_grad_z(clause, target, record, z, *, mode):
    fmt = target.fmt
    row = conventions.row_at("prelu", 0.0)
    for zz, alpha in _prelu_problems(z, fmt, target):
        # forward mode: alpha's zero tangent meets min(0, -inf) = -inf, and 0 (-inf) is NaN in
        # IEEE arithmetic; infinite z is checked in reverse mode only
        drop = np.isnan(zz) | (np.isinf(zz) if mode == "jvp" else False)
        zz = zz[~drop.reshape(zz.shape[0], -1).any(axis=1)]
        _, d = target.gradient(OpProgram("prelu"), [zz, alpha], _unit_seed(mode, zz, alpha), mode=mode,
                               shape=zz.shape, uses=["prelu"])
        g = d[0] if mode == "vjp" else d
        af = _alpha_full(zz, alpha)
        want = np.where(zz > 0, 1.0, af)
        ok = same_exact(g, want) & (zz != 0)
        kink = zz == 0
        for s in sorted(set(np.ravel(af[kink]).tolist())):
            acc = conventions.accepted(target, row, s)
            here = kink & (af == s)
            want[here] = acc[0]
            ok[here] = np.isin(g[here], acc)
        if target.ftz:  # a subnormal z may be read as 0: the derivative declared at 0
            sub = (zz != 0) & (np.abs(zz) < fmt.min_normal)
            for s in conventions.accepted(target, row, af):
                ok |= sub & (g == s)
        err = np.where(ok, 0.0, 1.0)

        def rep(i, zz=zz, alpha=alpha):
            n = np.unravel_index(i, zz.shape)[0]
            one = np.ones(zz[n:n + 1].shape)
            seed = seed_text(target, one) if mode == "vjp" else seed_text(target, one, 0 * alpha, tangents=True)
            return named(target, {"z": zz[n:n + 1], "alpha": alpha},
                         grad_call(mode, "ops.prelu(z, alpha)", ["z", "alpha"], seed))
        conclude(record, clause, target, ~ok, err, what=f"{mode} derivative of prelu w.r.t. z is not 1 / alpha_c / "
                 f"the declared prelu_grad_at_0 (alpha shape {alpha.shape})",
                 criterion="exact: 1 (z > 0), alpha_c (z < 0), declared value at 0",
                 reproducer=rep, inputs=[zz, af], got=g, want=want)
    return [row]


def _grad_alpha_problems(z: np.ndarray, fmt: Format, target: Target):
    """Problems whose sums cannot overflow: |z| <= max/2^8, cotangents in [1, 2) (signed)."""
    v = pool(z, fmt, extra=[0.0, -0.0, fmt.min_subnormal, -fmt.min_subnormal, -1.0, -fmt.max_finite / 256])
    v = np.where(np.abs(v) <= fmt.max_finite / 256, v, np.copysign(fmt.max_finite / 256, v) * 0.75)
    v = round_array(v, fmt)
    out = []
    for slopes, shape in (((0.25, -0.5), (2, 4)), ((0.01,), (3, 2))):
        per = int(np.prod(shape))
        rows = max(3, min(64, -(-v.size // per)))
        zz = cycle(v, rows * per).reshape((rows,) + shape)
        a = np.array([conventions.alpha_hat(s, target) for s in slopes])
        alpha = a.reshape(-1, 1) if a.size > 1 else a
        g = mantissa(cycle(v, zz.size, 7), fmt, -1, 0).reshape(zz.shape)
        # several independent problems: chunks of 4 rows, so the sums are of n = 4 * uses per row
        for r in range(0, max(rows - 3, 1), 4):
            out.append((zz[r:r + 4], alpha, g[r:r + 4]))
    return out


@register("prelu_grad_alpha")
def prelu_grad_alpha(clause, target, record, z, *, mode):
    fmt = target.fmt
    ref, sc = function(clause.reference), function(clause.tolerance.scale)
    for zz, alpha, gbar in _grad_alpha_problems(z, fmt, target):
        if mode == "vjp":
            _, (_, ga) = target.gradient(OpProgram("prelu"), [zz, alpha], gbar, mode=mode, shape=zz.shape,
                                         uses=["prelu"])
            ch = np.broadcast_to(np.arange(alpha.size).reshape((1, -1) + (1,) * (zz.ndim - 2)) if alpha.size > 1
                                 else np.zeros((1,) * zz.ndim, dtype=int), zz.shape)
            probs = [(gbar[ch == c].tolist(), zz[ch == c].tolist()) for c in range(alpha.size)]
            ex = exact(ref, probs, fmt)
            S = approx(sc, probs)
            n = np.array([len(p[0]) for p in probs])
            got = ga.ravel()
        else:
            adot = mantissa(gbar.ravel()[:alpha.size], fmt, -1, 0).reshape(alpha.shape)
            _, got = target.gradient(OpProgram("prelu"), [zz, alpha], [np.zeros_like(zz), adot], mode=mode,
                                     shape=zz.shape, uses=["prelu"])
            ad = _alpha_full(zz, adot)
            probs = [([a], [b]) for a, b in zip(ad.ravel().tolist(), zz.ravel().tolist())]
            ex = exact(ref, probs, fmt)
            S = approx(sc, probs)
            n = np.ones(len(probs))
            got = got.ravel()
        err = mixed_error(target, got, ex, S, k_terms(clause, n))
        bad = ~(err <= 1)

        def rep(i, zz=zz, alpha=alpha, gbar=gbar):
            if mode == "vjp":
                return named(target, {"z": zz, "alpha": alpha, "gbar": gbar},
                             grad_call(mode, "ops.prelu(z, alpha)", ["z", "alpha"], "gbar"))
            return named(target, {"z": zz, "alpha": alpha, "zdot": np.zeros_like(zz),
                                  "adot": mantissa(gbar.ravel()[:alpha.size], fmt, -1, 0).reshape(alpha.shape)},
                         grad_call(mode, "ops.prelu(z, alpha)", ["z", "alpha"], "[zdot, adot]"))
        conclude(record, clause, target, bad, err, what=f"{mode} derivative w.r.t. alpha (shape {alpha.shape}) "
                 "is not the sum of g_bar min(0, z) over the slope's uses",
                 criterion=f"|g - t| <= k (u (|t| + S) + eta), k = {clause.tolerance.must:g} + n "
                 "(error in units of that bound)", reproducer=rep, inputs=[np.arange(got.size, dtype=float)],
                 got=got, want=ex.hi + ex.lo)


# ----------------------------------------------------------------- maxout ----
def _maxout_rows(z: np.ndarray, fmt: Format, k: int, *, nan: bool) -> np.ndarray:
    """Rows of 3 groups of k: drawn values, then tied groups (2..k equal maxima, at
    +-max_finite, +-inf, +-0, subnormals) and, for values, a group holding NaN."""
    v = pool(z, fmt)
    groups = cycle(v, max(3, -(-v.size // k)) * k).reshape(-1, k)
    special = [np.full(k, fmt.max_finite), np.full(k, -fmt.max_finite), np.full(k, np.inf),
               np.full(k, -np.inf), np.array([0.0, -0.0] * k)[:k], np.full(k, fmt.min_subnormal),
               np.full(k, -fmt.min_subnormal)]
    if k > 1:
        ties = groups[: min(len(groups), 512)].copy()
        for r, row in enumerate(ties):  # t = 2..k copies of the maximum at rotating places
            t = 2 + r % (k - 1)
            pos = (np.arange(t) * (r + 1) + r) % k
            row[np.unique(pos)] = row.max()
        mixed = np.array([[fmt.max_finite, -np.inf, fmt.max_finite, 1.0][:k] for _ in range(1)])
        special += list(mixed)
        groups = np.concatenate([groups, ties])
    if nan:
        special.append(np.array([1.0, np.nan, 2.0, -1.0][:k]))
    groups = np.concatenate([groups, np.array(special)])
    pad = (-len(groups)) % 3
    groups = np.concatenate([groups, groups[:pad]])
    return groups.reshape(-1, 3 * k)


@register("maxout_value")
def maxout_value(clause, target, record, z):
    fmt = target.fmt
    for k in clause.params["k"]:
        x = _maxout_rows(z, fmt, k, nan=True)
        y = target.apply("maxout", x, shape=(x.shape[0], 3), k=k)
        groups = x.reshape(-1, k)
        defined = ~np.isnan(groups).any(axis=1)
        want = np.full(len(groups), np.nan)
        want[defined] = exact(function(clause.reference), [tuple(g) for g in groups[defined].tolist()], fmt).cr
        want = want.reshape(y.shape)
        ok = same_exact(y, want, any_zero_sign=True)
        if target.ftz:  # subnormals may compare as 0 (DAZ): any member equal to the max once flushed
            fg = _flushed(groups, fmt)
            top = (fg == fg.max(axis=1, keepdims=True)).reshape(y.shape + (k,))
            member = np.any(top & (groups.reshape(y.shape + (k,)) == y[..., None]), axis=-1)
            ok |= (np.abs(want) < fmt.min_normal) & ((y == 0) | member)
        err = np.where(ok, 0.0, 1.0)

        def rep(i, x=x, k=k):
            r = i // 3
            return named(target, {"z": x[r:r + 1]}, f"b.to_numpy(b.ops.maxout(z, k={k})).tolist()")
        conclude(record, clause, target, ~ok, err, what=f"maxout (k = {k}) is not the exact group maximum",
                 criterion="exact: max over each group of k consecutive entries", reproducer=rep,
                 inputs=[np.arange(y.size, dtype=float)], got=y, want=want)


def _flushed(a: np.ndarray, fmt: Format) -> np.ndarray:
    return np.where(np.abs(a) < fmt.min_normal, 0.0, a)


def _routing_ok(tied, w, r, cf, total, sum_err, rules, fmt, k):
    """Per group: routed by one of the rules; without a tie all of an arbitrary upstream
    gradient to the arg-max; routed gradients adding up to it (2u|g| for 'even')."""
    t = tied.sum(axis=1)
    one_t = round_array(1.0 / t, fmt)
    ok_rule = np.zeros(len(t), dtype=bool)
    for rule in rules:
        want = {"even": np.where(tied, one_t[:, None], 0.0),
                "first": np.eye(k)[np.argmax(tied, axis=1)],
                "last": np.eye(k)[k - 1 - np.argmax(tied[:, ::-1], axis=1)]}[rule]
        ok_rule |= np.all(same_exact(w, want), axis=1)
    ok_single = (t > 1) | (np.all(same_exact(r, np.where(tied, cf[:, None], 0.0)), axis=1) if r is not None else True)
    allow = np.where((t > 1) & ("even" in rules), 2 * fmt.unit_roundoff * np.abs(cf), 0.0)
    return ok_rule, np.broadcast_to(ok_single, t.shape), sum_err <= allow


@register("maxout_grad")
def maxout_grad(clause, target, record, z, *, mode):
    fmt = target.fmt
    row = conventions.rows("maxout", "routing")[0]
    rules = [conventions.declared(target, row)] if conventions.declared(target, row) in row["allowed"] \
        else list(row["allowed"])
    for k in clause.params["k"]:
        x = _maxout_rows(z, fmt, k, nan=False)
        m = x.shape[0]
        groups = x.reshape(-1, k)
        top = groups.max(axis=1, keepdims=True)
        tied = groups == top
        t = tied.sum(axis=1)
        prog = OpProgram("maxout", (("k", k),))
        c = mantissa(cycle(pool(z, fmt), m * 3, 3), fmt, -2, 1).reshape(m, 3)
        # routing weights w (unit upstream gradient), and the routing of an arbitrary one, r
        if mode == "vjp":
            w = target.gradient(prog, [x], np.ones((m, 3)), mode=mode, shape=(m, 3), uses=["maxout"])[1][0]
            r = target.gradient(prog, [x], c, mode=mode, shape=(m, 3), uses=["maxout"])[1][0]
            w, r = w.reshape(-1, k), r.reshape(-1, k)
            total = np.array([math.fsum(row_) for row_ in r])
        else:
            cols = []
            for j in range(k):
                e = np.zeros((m, 3, k))
                e[:, :, j] = 1
                cols.append(target.gradient(prog, [x], [e.reshape(m, 3 * k)], mode=mode, shape=(m, 3),
                                            uses=["maxout"])[1].ravel())
            w = np.stack(cols, axis=1)
            total = target.gradient(prog, [x], [np.repeat(c.ravel(), k).reshape(m, 3 * k)], mode=mode,
                                    shape=(m, 3), uses=["maxout"])[1].ravel()
            r = None
        cf = c.ravel()
        sum_err = np.abs(total - cf)
        # the tie structure; with flush-to-zero declared, subnormals may compare as 0 (DAZ), so
        # the structure of the flushed values is accepted too
        structures = [tied] + ([_flushed(groups, fmt) == _flushed(top, fmt)] if target.ftz else [])
        ok = np.zeros(len(groups), dtype=bool)
        oks = np.zeros((3, len(groups)), dtype=bool)
        for tie in structures:
            ok_rule, ok_single, ok_sum = _routing_ok(tie, w, r, cf, total, sum_err, rules, fmt, k)
            ok |= ok_rule & ok_single & ok_sum & np.all(np.where(tie, True, w == 0), axis=1)
            oks |= np.stack([ok_rule, ok_single, ok_sum])
        ok_rule, ok_single, ok_sum = oks
        err = np.where(ok, 0.0, np.maximum(1.0, sum_err / np.maximum(np.abs(cf), fmt.min_subnormal)))
        bad = ~ok

        def rep(i, x=x, k=k, c=c):
            rr = i // 3
            seed = (seed_text(target, c[rr:rr + 1]) if mode == "vjp" else
                    seed_text(target, np.ones((1, 3 * k)), tangents=True))
            return named(target, {"z": x[rr:rr + 1]}, grad_call(mode, f"ops.maxout(z, k={k})", ["z"], seed))
        why = []
        if (~ok_rule).any():
            why.append(f"tied groups not routed by the rule {' or '.join(rules)} (maxout_ties)")
        if (~ok_single).any():
            why.append("a group without a tie does not route the whole upstream gradient to its arg-max")
        if (~ok_sum).any():
            why.append("the routed gradients of a group do not add up to the upstream gradient")
        conclude(record, clause, target, bad, err, what=f"{mode} maxout (k = {k}): " + "; ".join(why),
                 criterion="exact routing; ties by the declared rule; sum over a group = upstream gradient "
                 "(within 2u|g| for 'even')", reproducer=rep, inputs=[t.astype(float), cf], got=total, want=cf)
    return [row]


# ---------------------------------------------------------- radial basis ----
_RBF_DIMS = (1, 3, 8)


def _rbf_problems(z: np.ndarray, fmt: Format):
    """(x (2, d), W (3, d), sigma (3,)) with entries in (-2, 2), sigma in [1/2, 4); one unit
    per problem sits next to a row of x with large entries (x near W, ||x|| large)."""
    v = pool(z, fmt)
    out = []
    n_problems = 4 if v.size > 17 else 1
    for p in range(n_problems):
        for d in _RBF_DIMS:
            off = (p * 131 + d * 17) % v.size
            x = mantissa(cycle(v, 2 * d, off), fmt, -4, 0).reshape(2, d)
            W = mantissa(cycle(v, 3 * d, off + 5), fmt, -4, 0).reshape(3, d)
            sigma = np.abs(mantissa(cycle(v, 3, off + 11), fmt, -1, 1))
            big = round_array(np.copysign(np.abs(x[0]) * 0 + 1.5, x[0]) + x[0] / 8, fmt)
            x[0] = big
            W[1] = round_array(big + mantissa(cycle(v, d, off + 3), fmt, -9, -7), fmt)
            out.append((x, W, sigma))
    return out


@register("rbf_value")
def rbf_value(clause, target, record, z):
    fmt = target.fmt
    ref, sc = function(clause.reference), function(clause.tolerance.scale)
    for x, W, sigma in _rbf_problems(z, fmt):
        h = target.apply("rbf", x, W, sigma, shape=(x.shape[0], W.shape[0]))
        probs = [(x[a], W[i], float(sigma[i])) for a in range(x.shape[0]) for i in range(W.shape[0])]
        ex = exact(ref, probs, fmt)
        S = approx(sc, probs)
        err = mixed_error(target, h.ravel(), ex, S, k_terms(clause, x.shape[1]))
        bad = ~(err <= 1)
        conclude(record, clause, target, bad, err, what=f"rbf value (d = {x.shape[1]}) exceeds the mixed bound",
                 criterion=f"|h - t| <= (6 + d) (u (t + q t) + eta) (error in units of that bound)",
                 reproducer=lambda i, x=x, W=W, sigma=sigma: named(
                     target, {"x": x, "W": W, "sigma": sigma}, "b.to_numpy(b.ops.rbf(x, W, sigma)).tolist()"),
                 inputs=[np.repeat(np.arange(x.shape[0], dtype=float), W.shape[0])], got=h.ravel(),
                 want=ex.hi + ex.lo)


@register("rbf_grad")
def rbf_grad(clause, target, record, z, *, mode):
    fmt = target.fmt
    t = clause.tolerance
    ref, sc, uf = function(clause.reference), function(t.scale), function(t.underflow)
    for x, W, sigma in _rbf_problems(z, fmt):
        N, d = x.shape
        n = W.shape[0]
        prims = [x, W, sigma]
        if mode == "vjp":
            gbar = mantissa(cycle(pool(z, fmt), N * n, 1), fmt, -1, 0).reshape(N, n)
            _, (gx, gW, gs) = target.gradient(OpProgram("rbf"), prims, gbar, mode=mode, shape=(N, n), uses=["rbf"])
            got = np.concatenate([gx.ravel(), gW.ravel(), gs.ravel()])
            probs = ([(x, W, sigma, gbar, "vjp", "x", (a, j)) for a in range(N) for j in range(d)]
                     + [(x, W, sigma, gbar, "vjp", "W", (i, j)) for i in range(n) for j in range(d)]
                     + [(x, W, sigma, gbar, "vjp", "sigma", (i,)) for i in range(n)])
            terms = np.array([n] * (N * d) + [N] * (n * d) + [N] * n)
            seed_src, seed_arrays = "gbar", {"gbar": gbar}
        else:
            tx = mantissa(cycle(pool(z, fmt), N * d, 2), fmt, -1, 0).reshape(N, d)
            tW = mantissa(cycle(pool(z, fmt), n * d, 4), fmt, -1, 0).reshape(n, d)
            ts = mantissa(cycle(pool(z, fmt), n, 6), fmt, -3, -2)
            _, th = target.gradient(OpProgram("rbf"), prims, [tx, tW, ts], mode=mode, shape=(N, n), uses=["rbf"])
            got = th.ravel()
            probs = [(x, W, sigma, (tx, tW, ts), "jvp", "h", (a, i)) for a in range(N) for i in range(n)]
            terms = np.full(N * n, 2 * d + 1)
            seed_src, seed_arrays = "[xdot, Wdot, sdot]", {"xdot": tx, "Wdot": tW, "sdot": ts}
        ex = exact(ref, probs, fmt)
        S = approx(sc, probs)
        c = approx(uf, probs)
        err = mixed_error(target, got, ex, S, k_terms(clause, d + terms), underflow=c)
        bad = ~(err <= 1)
        names = (["dx"] * (N * d) + ["dW"] * (n * d) + ["dsigma"] * n) if mode == "vjp" else ["dh"] * (N * n)
        worst = names[int(np.argmax(np.where(bad, err, -1)))] if bad.any() else ""
        conclude(record, clause, target, bad, err,
                 what=f"{mode} rbf derivative ({worst}, d = {d}) exceeds the mixed bound",
                 criterion="|g - t| <= (10 + d + n_s) (u (|t| + S) + eta (1 + c)) (error in units of that bound)",
                 reproducer=lambda i, x=x, W=W, sigma=sigma, sa=seed_arrays, st=seed_src: named(
                     target, {"x": x, "W": W, "sigma": sigma, **sa},
                     grad_call(mode, "ops.rbf(x, W, sigma)", ["x", "W", "sigma"], st)),
                 inputs=[terms.astype(float)], got=got, want=ex.hi + ex.lo)


# ----------------------------------------------------------------- low rank ----
def _lowrank_problems(z: np.ndarray, fmt: Format):
    v = pool(z, fmt)
    out = []
    reps = 4 if v.size > 17 else 1
    for p in range(reps):
        for d, r in ((1, 1), (3, 2), (8, 2)):
            off = (p * 97 + d * 13) % v.size

            def ent(count, o):
                e = mantissa(cycle(v, count, o), fmt, -2, 1)
                return np.where(np.abs(ordinal(cycle(v, count, o + 1), fmt)) % 7 == 0, 0.0, e)
            out.append((ent(2 * d, off).reshape(2, d), ent(3 * r, off + 3).reshape(3, r), ent(r * d, off + 7).reshape(r, d)))
    return out


@register("lowrank_value")
def lowrank_value(clause, target, record, z):
    fmt = target.fmt
    ref, sc = function(clause.reference), function(clause.tolerance.scale)
    for x, V, U in _lowrank_problems(z, fmt):
        h = target.apply("lowrank", x, V, U, shape=(x.shape[0], V.shape[0]))
        probs = [(x[a], V, U, i) for a in range(x.shape[0]) for i in range(V.shape[0])]
        ex = exact(ref, probs, fmt)
        S = approx(sc, probs)
        d, r = x.shape[1], U.shape[0]
        err = mixed_error(target, h.ravel(), ex, S, k_terms(clause, d + r))
        bad = ~(err <= 1)
        conclude(record, clause, target, bad, err, what=f"low-rank projection (d = {d}, r = {r}) exceeds the mixed bound",
                 criterion="|h - t| <= (1 + d + r) (u (|t| + S) + eta) (error in units of that bound)",
                 reproducer=lambda i, x=x, V=V, U=U: named(target, {"x": x, "V": V, "U": U},
                                                           "b.to_numpy(b.ops.lowrank(x, V, U)).tolist()"),
                 inputs=[np.repeat(np.arange(x.shape[0], dtype=float), V.shape[0])], got=h.ravel(), want=ex.hi + ex.lo)


@register("lowrank_linear")
def lowrank_linear(clause, target, record, z):
    fmt = target.fmt
    v = pool(z, fmt)
    ints = (np.abs(ordinal(v, fmt)) % 5 - 2).astype(float)
    reps = 8 if v.size > 17 else 1
    for p in range(reps):
        take = lambda n, o: cycle(ints, n, p * 29 + o)  # noqa: E731
        x, y = take(3, 0).reshape(1, 3), take(3, 3).reshape(1, 3)
        U, V = take(6, 6).reshape(2, 3), take(4, 12).reshape(2, 2)
        a, b = float(take(1, 16)[0]), float(take(1, 17)[0])
        f = lambda u: target.apply("lowrank", u, V, U, shape=(1, 2))  # noqa: E731
        fx, fy, fxy, f0 = f(x), f(y), f(a * x + b * y), f(np.zeros_like(x))
        want = (a * x + b * y) @ U.T @ V.T
        ok = same_exact(fxy, a * fx + b * fy) & same_exact(fxy, want) & same_exact(fx, x @ U.T @ V.T) & (f0 == 0)
        err = np.where(ok, 0.0, np.abs(fxy - want) + 1)
        conclude(record, clause, target, ~ok, err, what=f"f(a x + b y) != a f(x) + b f(y) (a = {a:g}, b = {b:g}) "
                 "or f(x) != V U x exactly, or f(0) != 0",
                 criterion="exact on small integers", inputs=[np.full(2, a), np.full(2, b)], got=fxy, want=want,
                 reproducer=lambda i, x=x, y=y, U=U, V=V, a=a, b=b: named(
                     target, {"x": x, "y": y, "xy": a * x + b * y, "V": V, "U": U},
                     f"[b.to_numpy(b.ops.lowrank(u, V, U)).tolist() for u in (x, y, xy)]  # want f(xy) = "
                     f"{a:g} f(x) + {b:g} f(y)"))


# ------------------------------------------------------------------ folding ----
@functools.lru_cache(maxsize=None)
def _fold_program(layers: int):
    def fn(ops, x, one, two):
        for _ in range(layers):
            x = ops.sub(one, ops.abs(ops.sub(one, ops.mul(two, x))))
        return x
    fn.__name__ = f"tent_{layers}"
    return fn


@register("folding", fixed=True)
def folding(clause, target, record, z):
    fmt = target.fmt
    modes = [m for m in ("vjp", "jvp") if callable(getattr(target.backend, m, None))]
    if not modes:
        target.require_mode("vjp")
    for layers in range(1, min(fmt.p - 2, 10) + 1):
        n = 1 << (layers + 2)
        x = np.arange(n + 1) / n
        one, two = np.ones_like(x), np.full_like(x, 2.0)
        want = tables.exact(clause.reference, (x, np.full_like(x, layers)), fmt).cr
        slope = tables.exact("hid.tent_grad", (x, np.full_like(x, layers)), fmt).cr
        inside = np.arange(n + 1) % 4 != 0
        for mode in modes:
            seed = np.ones_like(x) if mode == "vjp" else [np.ones_like(x), np.zeros_like(x), np.zeros_like(x)]
            y, d = target.gradient(_fold_program(layers), [x, one, two], seed, mode=mode, shape=x.shape,
                                   uses=["abs", "sub", "mul"])
            g = d[0] if mode == "vjp" else d
            s = np.diff(y) * n
            pieces = 1 + int(np.count_nonzero(s[1:] != s[:-1]))
            ok = same_exact(y, want) & (~inside | same_exact(g, slope))
            bad = ~ok
            if pieces != 1 << layers:
                bad[0] = True
            err = np.where(bad, 1.0, 0.0)
            what = (f"T^{layers} evaluated with abs/sub/mul has {pieces} linear pieces on [0, 1], not {1 << layers}"
                    if pieces != 1 << layers else
                    f"T^{layers} values or {mode} slopes inside the pieces are not exact")
            seed = (seed_text(target, np.ones_like(x)) if mode == "vjp" else
                    seed_text(target, np.ones_like(x), 0 * x, 0 * x, tangents=True))
            prelude = ("def tent(ops, x, one, two):", f"    for _ in range({layers}):",
                       "        x = ops.sub(one, ops.abs(ops.sub(one, ops.mul(two, x))))", "    return x")
            conclude(record, clause, target, bad, err, what=what,
                     criterion=f"exact values; exactly 2^l = {1 << layers} pieces; slopes +-2^l inside pieces",
                     reproducer=lambda i, x=x, seed=seed, prelude=prelude, mode=mode: named(
                         target, {"x": x, "one": np.ones_like(x), "two": np.full_like(x, 2.0)},
                         grad_call(mode, "tent", ["x", "one", "two"], seed), prelude),
                     inputs=[x], got=y, want=want)
