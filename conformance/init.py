"""The init family (spec/70_init.toml, reference/init.py): initialisation (seed 003), as composite
checks of fixed constructions (checks/composites.py): the zero-weight saddle and the constant
initialisation's symmetry through the backend's reverse mode and optimizer step, and the
backend's own initialisers checked statistically (KS by the DKW-Massart bound, a second-moment
test by Laurent-Massart or Hoeffding, a sign test for orthogonal draws), each test at
ALPHA = 10^-6 / 128 (Bonferroni over at most 128 tests a run).  Seeds are fixed (SEED_BASE plus
a per-test offset), recorded in the record's notes: the ci profile is derandomised.
"""
from __future__ import annotations

import math

import numpy as np

from ffnspec import spec
from ffnspec.conformance.checks.composites import register
from ffnspec.conformance.machinery.harness import Target
from ffnspec.conformance.machinery.measure import same_exact, two_eta, u_acc
from ffnspec.conformance.machinery.records import conclude
from ffnspec.conformance.machinery.reproduce import named
from ffnspec.conformance.opt import _XOR_X, _XOR_Y, _rn, backend_gradient
from ffnspec.reference import function, tables
from ffnspec.reference import init as ref

SEED_BASE = {"base": 20261202}   # one place to change the seeds of a run (benchmarks/init_seeds.py)


def _seed(offset: int) -> int:
    return SEED_BASE["base"] + offset


# -------------------------------------------------------------- saddle, symmetry ----
def tanh_mlp_mse(ops, X: object, Y: object, W1: object, b1: object, W2: object, b2: object) -> object:
    """A one-hidden-layer tanh network's MSE (tanh(0) = 0: zero weights give zero hidden outputs)."""
    return ops.mse(ops.linear(ops.tanh(ops.linear(X, W1, b1)), W2, b2), Y)


@register("zero_saddle", fixed=True)
def zero_saddle(clause, target, record, z):
    target.require("linear", "tanh", "mse")
    target.require_mode("vjp")
    m = 3
    params = [np.zeros((2, m)), np.zeros(m), np.zeros((m, 1)), np.array([0.25])]
    grads = backend_gradient(target, tanh_mlp_mse, _XOR_X, _XOR_Y, params, ["linear", "tanh", "mse"])
    hidden = np.concatenate([g.ravel() for g in grads[:3]])
    want_b2 = float(np.mean(2 * (0.25 - _XOR_Y)))  # = 2 (b2 - mean y) = -0.5: not a minimum
    ok = np.concatenate([hidden == 0, [bool(np.isclose(grads[3][0], want_b2, rtol=0, atol=0))]])
    got = np.concatenate([hidden, grads[3]])
    conclude(record, clause, target, ~ok, np.where(ok, 0.0, 1.0),
             what="at zero weights the hidden-layer gradients are not exactly 0 (or the output-bias gradient is not "
                  "2 (b2 - mean y) = -1/2)",
             criterion="exact: dJ/dW1 = dJ/db1 = dJ/dW2 = 0, dJ/db2 = -1/2",
             reproducer=lambda i: named(target, {"X": _XOR_X, "Y": _XOR_Y}, "# tanh MLP, W1 = b1 = W2 = 0, b2 = 1/4"),
             inputs=[np.arange(got.size, dtype=float)], got=got, want=np.concatenate([0 * hidden, [want_b2]]))


@register("constant_symmetry", fixed=True)
def constant_symmetry(clause, target, record, z):
    fmt = target.fmt
    target.require("linear", "tanh", "mse", "sgd_step")
    target.require_mode("vjp")
    m, steps, lr = 3, 10, 0.25
    shapes = [(2, m), (m,), (m, 1), (1,)]
    params = [np.full((2, m), 0.25), np.full(m, 0.125), np.full((m, 1), 0.5), np.array([0.0])]
    sizes = np.cumsum([0] + [int(np.prod(s)) for s in shapes])
    bad, err = [], []
    for t in range(steps):
        grads = backend_gradient(target, tanh_mlp_mse, _XOR_X, _XOR_Y, params, ["linear", "tanh", "mse"])
        g = np.concatenate([x.ravel() for x in grads])
        theta = np.concatenate([p.ravel() for p in params])
        out = target.apply("sgd_step", np.stack([theta, 0 * theta]), g, shape=(2, theta.size), lr=lr, momentum=0.0,
                           nesterov=False, weight_decay=0.0)
        params = [out[0][sizes[i]:sizes[i + 1]].reshape(s) for i, s in enumerate(shapes)]
        W1, b1, W2, _ = params
        same = np.concatenate([same_exact(W1, W1[:, :1]).ravel(), same_exact(b1, b1[:1]),
                               same_exact(W2, W2[:1]).ravel()])
        bad.append(~same.all())
        err.append(0.0 if same.all() else 1.0)
    record.notes.append(f"symmetry: after {steps} steps W1 columns = {params[0][:, 0].tolist()}")
    conclude(record, clause, target, np.array(bad), np.array(err),
             what="hidden units started identical are not bitwise identical after a gradient-descent step",
             criterion="exact: W1[:, j], b1[j], W2[j] equal for all j after every step",
             reproducer=lambda i: named(target, {"X": _XOR_X, "Y": _XOR_Y}, "# tanh MLP from W1 = 1/4, b1 = 1/8, W2 = 1/2"),
             inputs=[np.arange(steps, dtype=float)], got=np.array(err), want=np.zeros(steps))


# --------------------------------------------------------------- distributions ----
_SHAPE = (256, 1024)   # (fan_out, fan_in): 2^18 draws per test, fan_in != fan_out
_SQRT2 = math.sqrt(2.0)


def _normal_cdf(x: np.ndarray, s: float) -> np.ndarray:
    return 0.5 * np.array([math.erfc(-v / (s * _SQRT2)) for v in x.tolist()])


# The truncated law of jax.nn.initializers (and Keras): N(0, s'^2) cut at +-2 s' with
# s' = s / TRUNC_STD, TRUNC_STD the standard deviation of N(0, 1) truncated to (-2, 2), so that the
# variance is s^2 as the clause states.
TRUNC_STD = 0.87962566103423978
_PHI2 = 0.5 * math.erfc(-2 / _SQRT2)


def _truncated_cdf(x: np.ndarray, s: float) -> np.ndarray:
    sp = s / TRUNC_STD
    return np.clip((_normal_cdf(np.clip(x, -2 * sp, 2 * sp), sp) - (1 - _PHI2)) / (2 * _PHI2 - 1), 0.0, 1.0)


def _uniform_cdf(x: np.ndarray, a: float) -> np.ndarray:
    return np.clip((x + a) / (2 * a), 0.0, 1.0)


def ks_statistic(x: np.ndarray, cdf) -> float:
    """D_n = sup |F_n - F| of the sample against a continuous F."""
    xs = np.sort(np.asarray(x, dtype=np.float64))
    F = cdf(xs)
    n = xs.size
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - F), np.max(F - (i - 1) / n)))


def slacks(fmt, family: str) -> tuple[float, float]:
    """(KS slack, relative second-moment slack) of draws stored in fmt: a generator on the format's
    grid of [0, 1) moves the CDF by at most one step 2^(1-p), the storage rounding moves each x by
    u|x|, i.e. the CDF by u sup|x f(x)| (1/2 uniform, phi(1) = 0.242 normal), and x^2 by 2u + u^2;
    the grid's second moment differs by at most a relative 2u more."""
    u = fmt.unit_roundoff
    xf = {"uniform": 0.5, "normal": 0.2420, "truncated_normal": 0.2420 / (2 * _PHI2 - 1)}[family]
    return 2.0 ** (1 - fmt.p) + u * xf, 4 * u + u * u


def distribution_test(x: np.ndarray, family: str, scale: float, fmt) -> dict:
    """The KS and second-moment statistics of x against U(-a, a) (scale = a) or N(0, s^2) (scale = s),
    in units of their thresholds (<= 1 passes)."""
    n = x.size
    ks_slack, m_slack = slacks(fmt, family)
    cdf = {"uniform": lambda v: _uniform_cdf(v, scale), "normal": lambda v: _normal_cdf(v, scale),
           "truncated_normal": lambda v: _truncated_cdf(v, scale)}[family]
    D = ks_statistic(x, cdf)
    ks = D / (ref.dkw_epsilon(n) + ks_slack)
    M = float(np.mean(np.square(x, dtype=np.float64)))
    if family != "normal":   # bounded draws: x^2 in [0, c], Hoeffding
        var, c = (scale ** 2 / 3, scale ** 2) if family == "uniform" else (scale ** 2, 4 * (scale / TRUNC_STD) ** 2)
        t = ref.hoeffding_t(n, c) + m_slack * var
        mom = abs(M - var) / t
    else:
        var = scale ** 2
        lo, hi = ref.chi2_band(n)
        r = M / var
        mom = (1 - r) / (1 - lo * (1 - m_slack)) if r < 1 else (r - 1) / (hi * (1 + m_slack) - 1)
    return {"D": D, "ks": ks, "M": M, "var": var, "moment": mom, "n": n}


def power(family: str, fmt, n: int) -> dict:
    """Miss probabilities of the second-moment test against a 5 % error in sigma (both ways), a
    swapped fan_in/fan_out (variance ratio fan_out/fan_in = 1/4 or 4) and a wrong gain (ratio 2)."""
    _, m_slack = slacks(fmt, family)
    out = {}
    for name, ratio in (("sigma+5%", 1.05 ** 2), ("sigma-5%", 0.95 ** 2), ("fans swapped", 4.0),
                        ("fans swapped'", 0.25), ("gain sqrt2 vs 1", 2.0)):
        if family == "normal":
            out[name] = ref.chi2_power_miss(n, ratio, m_slack)
        else:  # x^2 in [0, c]; the alternative's c is ratio times the null's: Hoeffding on the gap
            var, c = (1.0 / 3, 1.0) if family == "uniform" else (1.0, 4 / TRUNC_STD ** 2)
            t_null = ref.hoeffding_t(n, c) + m_slack * var
            gap = abs(ratio - 1) * var - t_null
            out[name] = 1.0 if gap <= 0 else min(1.0, 2 * math.exp(-2 * n * gap ** 2 / (ratio * c) ** 2))
    return out


def normal_law(clause: spec.Clause, target: Target) -> tuple[str, list[dict]]:
    """The declared law of the 'normal' initialisers (conventions["init_normal_law"], the row of the
    clause's conventions table; undeclared: the preferred N(0, sigma^2)) and the rows relied on."""
    row = dict(clause.conventions[0], clause=clause.id)
    law = str(target.backend.conventions.get(row["name"], row["preferred"]))
    if law not in row["allowed"]:
        law = row["preferred"]   # a declaration outside the table: judged by the preferred law (it fails if drawn otherwise)
    return law, [row]


def _dist_check(clause, target, record, op: str, family: str, configs):
    fmt = target.fmt
    fan_out, fan_in = _SHAPE
    for j, (params, scale_fn) in enumerate(configs):
        seed = _seed(1000 * j + sum(map(ord, op)) + sum(map(ord, fmt.name)))
        x = target.apply(op, np.zeros(_SHAPE), shape=_SHAPE, seed=seed, **params).ravel()
        scale = float(tables.approximate_problems(function(scale_fn[0]), [scale_fn[1](fan_in, fan_out, params)])[0, 0])
        res = distribution_test(x, family, scale, fmt)
        miss = power(family, fmt, res["n"])
        record.notes.append(f"{op}({_kw(params)}, seed={seed}): D = {res['D']:.4g} (threshold "
                            f"{res['D'] / res['ks']:.4g}), E x^2 / var = {res['M'] / res['var']:.5f}; "
                            f"worst miss probability {max(miss.values()):.2g}")
        err = np.array([res["ks"], res["moment"]])
        conclude(record, clause, target, ~(err <= 1), err,
                 what=f"{op}({_kw(params)}) draws do not have the stated distribution "
                      f"(KS D = {res['D']:.4g}, E x^2 / var = {res['M'] / res['var']:.4f}, seed {seed})",
                 criterion=f"KS D <= sqrt(ln(2/alpha)/(2n)) + slack and second moment within its band, alpha = "
                           f"{ref.ALPHA:.3g} per test (family-wise 1e-6 a run)",
                 reproducer=lambda i, params=params, seed=seed: named(
                     target, {"w": np.zeros(_SHAPE)}, f"b.to_numpy(b.ops.{op}(w, {_kw(dict(params, seed=seed))})).std()"),
                 inputs=[np.array([float(seed)] * 2)], got=np.array([res["D"], res["M"]]),
                 want=np.array([0.0, res["var"]]))


def _kw(params: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


_XAVIER = lambda fi, fo, p: (fi, fo, p.get("gain", 1.0))  # noqa: E731
_KAIMING = lambda fi, fo, p: (fi if p.get("mode", "fan_in") == "fan_in" else fo, p.get("gain", 1.0))  # noqa: E731


@register("xavier_uniform", fixed=True)
def xavier_uniform(clause, target, record, z):
    _dist_check(clause, target, record, "init_xavier_uniform", "uniform",
                [({"gain": 1.0}, ("init.xavier_uniform_bound", _XAVIER))])


@register("xavier_normal", fixed=True)
def xavier_normal(clause, target, record, z):
    law, used = normal_law(clause, target)
    _dist_check(clause, target, record, "init_xavier_normal", law,
                [({"gain": 1.0}, ("init.xavier_normal_std", _XAVIER))])
    return used


@register("kaiming_uniform", fixed=True)
def kaiming_uniform(clause, target, record, z):
    _dist_check(clause, target, record, "init_kaiming_uniform", "uniform",
                [({"gain": _SQRT2, "mode": "fan_in"}, ("init.kaiming_uniform_bound", _KAIMING)),
                 ({"gain": 1.0, "mode": "fan_out"}, ("init.kaiming_uniform_bound", _KAIMING))])


@register("kaiming_normal", fixed=True)
def kaiming_normal(clause, target, record, z):
    law, used = normal_law(clause, target)
    _dist_check(clause, target, record, "init_kaiming_normal", law,
                [({"gain": _SQRT2, "mode": "fan_in"}, ("init.kaiming_std", _KAIMING)),
                 ({"gain": _SQRT2, "mode": "fan_out"}, ("init.kaiming_std", _KAIMING))])
    return used


# ------------------------------------------------------------------ orthogonal ----
SIGN_DRAWS = 64


@register("orthogonal", fixed=True)
def orthogonal(clause, target, record, z):
    fmt = target.fmt
    gain = 1.0
    for j, shape in enumerate(((64, 48), (48, 64))):
        seed = _seed(7000 + j)
        W = target.apply("init_orthogonal", np.zeros(shape), shape=shape, gain=gain, seed=seed)
        Q = W if shape[0] >= shape[1] else W.T     # columns orthonormal
        m, n = Q.shape
        G = Q.T @ Q
        uc, us = u_acc(fmt), fmt.unit_roundoff
        eps = math.sqrt(n) * (m * n * uc / (1 - m * n * uc) + us)
        # the float64 product G itself errs by gamma_m(u_64) (|Q|^T |Q|)_ij
        check = m * 2.0 ** -53 / (1 - m * 2.0 ** -53) * (np.abs(Q).T @ np.abs(Q))
        allow = gain ** 2 * (2 * eps + eps * eps) + check + two_eta(target)
        err = np.abs(G - gain ** 2 * np.eye(n)) / allow
        record.notes.append(f"orthogonal {shape} seed {seed}: max |W^T W - I| = {np.abs(G - np.eye(n)).max():.3g}")
        conclude(record, clause, target, ~(err <= 1).ravel(), err.ravel(),
                 what=f"init_orthogonal {shape}: W^T W (W W^T) is not gain^2 I within the Householder bound",
                 criterion="|W^T W - g^2 I|_ij <= g^2 (2 e + e^2), e = sqrt(n) (gamma_mn(u_c) + u_s)",
                 reproducer=lambda i, shape=shape, seed=seed: named(
                     target, {"w": np.zeros(shape)}, f"b.to_numpy(b.ops.init_orthogonal(w, gain={gain}, seed={seed})).tolist()"),
                 inputs=[np.arange(err.size, dtype=float)], got=G.ravel(), want=np.eye(n).ravel())
    # Haar signs: for Haar Q and any diagonal D of signs, D Q ~ Q, so sign(W[0, 0]) is a fair coin;
    # a QR without the sign fix gives W[0, 0] = 1 - tau_1 <= 0 always (LAPACK's Householder).
    seeds = [_seed(8000 + i) for i in range(SIGN_DRAWS)]
    signs = np.array([target.apply("init_orthogonal", np.zeros((8, 6)), shape=(8, 6), gain=gain, seed=s)[0, 0] > 0
                      for s in seeds])
    t = ref.hoeffding_t(SIGN_DRAWS, 1.0)
    frac = float(signs.mean())
    err = np.array([abs(frac - 0.5) / t])
    record.notes.append(f"orthogonal signs: {int(signs.sum())} of {SIGN_DRAWS} draws (seeds {seeds[0]}..{seeds[-1]}) "
                        f"have W[0,0] > 0; accepted |frac - 1/2| <= {t:.3f}")
    conclude(record, clause, target, ~(err <= 1), err,
             what=f"init_orthogonal is not Haar: sign(W[0,0]) > 0 in {int(signs.sum())} of {SIGN_DRAWS} draws "
                  "(a QR without the sign fix)",
             criterion=f"|#{{W[0,0] > 0}}/K - 1/2| <= sqrt(ln(2/alpha)/(2K)), K = {SIGN_DRAWS}, alpha = {ref.ALPHA:.3g}",
             reproducer=lambda i: named(target, {"w": np.zeros((8, 6))},
                                        f"[b.to_numpy(b.ops.init_orthogonal(w, gain=1.0, seed=s))[0, 0] > 0 for s in "
                                        f"range({seeds[0]}, {seeds[0] + SIGN_DRAWS})]"),
             inputs=[np.array([float(SIGN_DRAWS)])], got=np.array([frac]), want=np.array([0.5]))


@register("zeros", fixed=True)
def zeros(clause, target, record, z):
    for shape in ((3, 5), (1, 7)):
        b = target.apply("init_zeros", _rn(np.ones(shape), target.fmt), shape=shape)
        ok = (b == 0).ravel()
        conclude(record, clause, target, ~ok, np.where(ok, 0.0, 1.0), what="init_zeros is not exactly 0",
                 criterion="exact: every entry 0", inputs=[np.arange(ok.size, dtype=float)], got=b.ravel(),
                 want=np.zeros(ok.size),
                 reproducer=lambda i, shape=shape: named(target, {"w": np.ones(shape)},
                                                         "b.to_numpy(b.ops.init_zeros(w)).tolist()"))
