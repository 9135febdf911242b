"""The opt family (spec/60_opt.toml, reference/opt.py): gradient-based learning, as composite
checks of fixed constructions (checks/composites.py).  Every optimizer check is a local-error
check along a trajectory: from the backend's own state s_t, its step s_{t+1} = step(s_t, g_t) is
compared with the exact step from s_t, so errors do not pile up and a trajectory of any length is
checkable.  Gradients fed to the steps are the exact gradients at the backend's own iterate,
rounded once to the format (quadratics, the XOR network), or the backend's own gradient
(opt.xor.trajectory, opt.sgd.minibatch, through its reverse mode).
"""
from __future__ import annotations

import numpy as np

from ffnspec import spec
from ffnspec.conformance.checks.composites import register
from ffnspec.conformance.machinery.harness import NotImplementedByBackend, Target
from ffnspec.conformance.machinery.measure import two_eta
from ffnspec.conformance.machinery.records import conclude
from ffnspec.conformance.machinery.reproduce import named
from ffnspec.reference import function, tables
from ffnspec.reference.floatformat import round_array

_OPS_UNDERFLOW = 8     # operations of a step that may each underflow (eta each)


def _rn(v, fmt) -> np.ndarray:
    return round_array(np.asarray(v, dtype=np.float64), fmt)


def _quadratic(fmt):
    a = np.array([1.0, 2.0, 4.0, 0.5, 3.0, 7.0])
    theta0 = _rn([1.5, -2.0, 0.75, 3.0, -0.3, 1.1], fmt)
    return a, theta0


def _grad(a, theta, fmt):
    """grad J = a theta rounded once to the format (the exact gradient at the backend's iterate)."""
    return tables.exact_problems(function("opt.quadratic_grad"), [(a, theta)], fmt).cr[0]


def _judge(clause, target, record, op, problems, outs, ref, scale, *, what, params_text, k=None):
    """Local errors of a batch of steps: problems are (state, g, ref_args, params) and outs the
    backend's next states; the exact next state and S come from the reference."""
    fmt = target.fmt
    f, sf = function(ref), function(scale)
    ex = tables.exact_problems(f, [p[2] for p in problems], fmt)
    S = tables.approximate_problems(sf, [p[2] for p in problems])
    got = np.stack([o.ravel() for o in outs])
    k = clause.tolerance.must if k is None else k
    with np.errstate(invalid="ignore", over="ignore"):
        err = 2 * np.abs((got - ex.hi) - ex.lo) / (k * (2 * fmt.unit_roundoff * (np.abs(ex.hi) + S)
                                                        + two_eta(target) * (1 + _OPS_UNDERFLOW)))
    err = np.where(np.isnan(err), np.inf, err)
    bad = ~(err <= 1)
    step = np.repeat(np.arange(len(problems), dtype=float), got.shape[1])

    def rep(i):
        state, g, _, params = problems[i // got.shape[1]]
        return named(target, {"state": state, "g": g}, f"b.to_numpy(b.ops.{op}(state, g, {params_text(params)})).tolist()")
    conclude(record, clause, target, bad.ravel(), err.ravel(), what=what,
             criterion=f"|s_hat - s| <= {k:g} (u (|s| + S) + eta (1 + {_OPS_UNDERFLOW})) per component, from the "
                       "backend's own state (error in units of that bound)",
             reproducer=rep, inputs=[step], got=got.ravel(), want=(ex.hi + ex.lo).ravel())


def _kw(params: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


# ------------------------------------------------------------------------- SGD ----
def _sgd_trajectory(target, a, theta0, steps, lrs, momentum, nesterov, wd):
    """(problems, outs): the backend's sgd_step iterated on J = 1/2 sum a_i theta_i^2."""
    fmt = target.fmt
    state = np.stack([theta0, np.zeros_like(theta0)])
    problems, outs = [], []
    for t in range(steps):
        lr = lrs[t % len(lrs)]
        g = _grad(a, state[0], fmt)
        params = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=wd)
        out = target.apply("sgd_step", state, g, shape=state.shape, **params)
        problems.append((state, g, (state[0], state[1], g, lr, momentum, int(nesterov), wd), params))
        outs.append(out)
        state = out
    return problems, outs


def _momentum_form(target) -> str:
    form = str(target.backend.conventions.get("momentum_form", ""))
    if form not in ("framework", "003"):
        raise NotImplementedByBackend(f"backend {target.backend.name!r} declares no momentum_form "
                                      "(framework or 003): its sgd_step cannot be read")
    return form


def _sgd_check(clause, target, record, *, momentum, nesterov, wd, lrs, steps=32, what):
    fmt = target.fmt
    a, theta0 = _quadratic(fmt)
    form = _momentum_form(target) if momentum else "framework"
    if form == "003" and nesterov:
        raise NotImplementedByBackend("a backend declaring the 003 momentum form has no framework-form Nesterov step")
    problems, outs = _sgd_trajectory(target, a, theta0, steps, lrs, momentum, nesterov, wd)
    if form == "003":
        problems = [(s, g, (s[0], s[1], g, p["lr"], momentum), p) for s, g, _, p in problems]
        ref, scale = "opt.momentum_003", "opt.momentum_003_scale"
    else:
        ref, scale = "opt.sgd_step", "opt.sgd_step_scale"
    _judge(clause, target, record, "sgd_step", problems, outs, ref, scale, what=what, params_text=_kw)
    return problems, outs


@register("gd_step", fixed=True)
def gd_step(clause, target, record, z):
    _sgd_check(clause, target, record, momentum=0.0, nesterov=False, wd=0.0, lrs=[0.125],
               what="a gradient-descent step theta - alpha grad J misses the local bound")


@register("momentum_step", fixed=True)
def momentum_step(clause, target, record, z):
    _sgd_check(clause, target, record, momentum=0.875, nesterov=False, wd=0.0, lrs=[0.0625],
               what="a momentum step misses the declared form's local bound")


@register("nesterov_step", fixed=True)
def nesterov_step(clause, target, record, z):
    _sgd_check(clause, target, record, momentum=0.875, nesterov=True, wd=0.0, lrs=[0.0625],
               what="a Nesterov step (gradient at the look-ahead point) misses the local bound")


@register("momentum_forms", fixed=True)
def momentum_forms(clause, target, record, z):
    # a learning rate that changes every step: the two forms differ by mu (lr_t - lr_{t-1}) v
    _sgd_check(clause, target, record, momentum=0.875, nesterov=False, wd=0.0, lrs=[0.125, 0.0625, 0.25],
               steps=24, what="with a changing learning rate, the momentum steps do not follow the declared form")


@register("l2_penalty", fixed=True)
def l2_penalty(clause, target, record, z):
    # lambda = 1/8: weight_decay = 2 lambda is the gradient 2 lambda theta of lambda ||theta||^2
    for momentum in (0.0, 0.5):
        _sgd_check(clause, target, record, momentum=momentum, nesterov=False, wd=0.25, lrs=[0.125],
                   what=f"a step on J + lambda ||theta||^2 (weight_decay = 2 lambda, momentum {momentum}) misses the "
                        "local bound")


@register("descent_lemma", fixed=True)
def descent_lemma(clause, target, record, z):
    fmt = target.fmt
    a, theta0 = _quadratic(fmt)
    L, alpha = float(a.max()), 0.25          # 0 < alpha < 2 / L = 2/7
    problems, outs = _sgd_trajectory(target, a, theta0, 160, [alpha], 0.0, False, 0.0)
    thetas = [p[0][0] for p in problems] + [outs[-1][0]]
    J = tables.approximate_problems(function("opt.quadratic"), [(a, t) for t in thetas])[:, 0]
    ex = tables.approximate_problems(function("opt.sgd_step"), [p[2] for p in problems])[:, :a.size]
    S = tables.approximate_problems(function("opt.sgd_step_scale"), [p[2] for p in problems])[:, :a.size]
    k = spec_k("opt.gd.step")
    u = fmt.unit_roundoff
    bad, err, floor = [], [], 0
    for t, (st, g, _, _) in enumerate(problems):
        gex = a * st[0]
        dec = alpha * (1 - alpha * L / 2) * float(np.sum(gex ** 2))
        delta = k * (u * (np.abs(ex[t]) + S[t]) + two_eta(target) * (1 + _OPS_UNDERFLOW)) + alpha * u * np.abs(g)
        pert = float(np.sum(np.abs(a * ex[t]) * delta) + L / 2 * np.sum(delta ** 2))
        if dec <= pert:
            floor += 1
            bad.append(False)
            err.append(0.0)
            continue
        up = J[t + 1] >= J[t]
        bad.append(bool(up))
        err.append(float(J[t + 1] / J[t]) if up else 0.0)
    record.notes.append(f"descent: alpha = {alpha}, L = {L}; {floor} of {len(problems)} steps at the rounding floor; "
                        f"J from {J[0]:.3g} to {J[-1]:.3g}")
    conclude(record, clause, target, np.array(bad), np.array(err),
             what="J did not decrease under gradient descent with 0 < alpha < 2/L while grad J is above the rounding floor",
             criterion="J(theta_{t+1}) < J(theta_t) whenever alpha (1 - alpha L/2) ||g||^2 > |grad J|.delta + L/2 ||delta||^2",
             reproducer=lambda i: named(target, {"state": np.stack([thetas[i], 0 * thetas[i]]), "g": problems[i][1]},
                                        f"b.to_numpy(b.ops.sgd_step(state, g, lr={alpha}, momentum=0.0, nesterov=False, "
                                        "weight_decay=0.0)).tolist()"),
             inputs=[np.arange(len(problems), dtype=float)], got=J[1:], want=J[:-1])


def spec_k(clause_id: str) -> float:
    """k (the MUST bound) of another clause, whose derivation a check reuses."""
    return spec.clause(clause_id).tolerance.must


# ------------------------------------------------------------------- Adam, AdamW ----
def _adam_gradients(n: int, steps: int) -> np.ndarray:
    """Gradients with |g| in [1/4, 2): g^2 and (1 - beta2) g^2 stay normal in every format."""
    rng = np.random.default_rng(3)
    return np.sign(rng.uniform(-1, 1, (steps, n))) * 2.0 ** rng.uniform(-2, 1, (steps, n))


def _adam_check(clause, target, record, *, decoupled: bool, wds):
    fmt = target.fmt
    hyper = dict(lr=0.0625, beta1=0.875, beta2=0.9921875, eps=2.0 ** -10)
    for wd in wds:
        theta0 = _rn([1.5, -2.0, 0.75, 3.0, -0.3, 1.1, 0.0, -0.5], fmt)
        grads = _rn(_adam_gradients(theta0.size, 12), fmt)
        if decoupled:  # g = 0 from m = v = 0: decoupled decay shrinks theta by (1 - lr wd) exactly
            grads = np.concatenate([np.zeros((1, theta0.size)), grads])
        state = np.stack([theta0, np.zeros_like(theta0), np.zeros_like(theta0)])
        problems, outs = [], []
        for t, g in enumerate(grads, start=1):
            params = dict(step=t, **hyper, weight_decay=wd, decoupled=decoupled)
            out = target.apply("adam_step", state, g, shape=state.shape, **params)
            problems.append((state, g, (state[0], state[1], state[2], g, t, hyper["lr"], hyper["beta1"],
                                        hyper["beta2"], hyper["eps"], wd, int(decoupled)), params))
            outs.append(out)
            state = out
        name = "AdamW (decoupled weight decay)" if decoupled else "Adam (L2 penalty in the gradient)"
        _judge(clause, target, record, "adam_step", problems, outs, "opt.adam_step", "opt.adam_step_scale",
               what=f"an {name} step, weight_decay {wd}, misses the local bound", params_text=_kw)


@register("adam_step", fixed=True)
def adam_step(clause, target, record, z):
    _adam_check(clause, target, record, decoupled=False, wds=(0.0, 0.25))


@register("adamw_step", fixed=True)
def adamw_step(clause, target, record, z):
    _adam_check(clause, target, record, decoupled=True, wds=(0.25,))


# ------------------------------------------------------------- learning-rate decay ----
@register("lr_exponential", fixed=True)
def lr_exponential(clause, target, record, z):
    fmt = target.fmt
    u64 = 2.0 ** -53
    u32 = 2.0 ** -24
    for lr0, gamma in ((0.125, 0.875), (0.5, 0.95)):
        steps = 40
        lr0 = float(_rn(lr0, fmt))
        got = target.apply("lr_exponential", np.array([lr0]), shape=(steps + 1,), gamma=gamma, steps=steps)
        ex = tables.exact_problems(function("opt.exp_lr"), [(lr0, gamma, t) for t in range(steps + 1)], fmt)
        eta = (ex.hi + ex.lo)[:, 0]
        t = np.arange(steps + 1, dtype=float)
        gam = t * u64 / (1 - t * u64)
        u_store = fmt.unit_roundoff + (u32 if fmt.p < 24 else 0.0)  # a 16-bit cast may pass through float32
        allow = (gam + u_store * (1 + gam)) * np.abs(eta) + two_eta(target)
        err = np.abs(got - eta) / allow
        conclude(record, clause, target, ~(err <= 1), err,
                 what=f"the exponential schedule (eta_0 = {lr0}, beta = {gamma}) is not beta^t eta_0 within t roundings",
                 criterion="|eta_hat_t - beta^t eta_0| <= (gamma_t(u_64) + u_s (1 + gamma_t)) beta^t eta_0",
                 reproducer=lambda i, lr0=lr0, gamma=gamma, steps=steps: named(
                     target, {"lr0": np.array([lr0])},
                     f"b.to_numpy(b.ops.lr_exponential(lr0, gamma={gamma!r}, steps={steps})).tolist()"),
                 inputs=[t], got=got, want=eta)


# ------------------------------------------------------------- programs with AD ----
class _Program:
    """fn(ops, *params) with backend constants (data) bound: a picklable program for vjp."""

    def __init__(self, body, consts):
        self.body, self.consts = body, consts

    def __call__(self, ops, *params):
        return self.body(ops, *self.consts, *params)


def _linear_mse(ops, X, Y, w, b):
    return ops.mse(ops.linear(X, w, b), Y)


def _data(n: int, d: int, fmt, seed: int):
    rng = np.random.default_rng(seed)
    X = _rn(np.sign(rng.uniform(-1, 1, (n, d))) * 2.0 ** rng.uniform(-1, 1, (n, d)), fmt)
    Y = _rn(rng.uniform(-1, 1, (n, 1)), fmt)
    return X, Y


@register("minibatch_mean", fixed=True)
def minibatch_mean(clause, target, record, z):
    fmt = target.fmt
    target.require("linear", "mse")
    target.require_mode("vjp")
    B, d = 8, 3
    X, Y = _data(B, d, fmt, 5)
    w, b = _rn([[0.5], [-0.75], [0.25]], fmt), _rn([0.125], fmt)

    def grad(Xs, Ys):
        consts = [target.to_backend(Xs), target.to_backend(Ys)]
        _, (gw, gb) = target.gradient(_Program(_linear_mse, consts), [w, b], np.array(1.0), mode="vjp", shape=(),
                                      uses=["linear", "mse"])
        return np.concatenate([gw.ravel(), gb.ravel()])

    gB = grad(X, Y)
    per = np.stack([grad(X[i:i + 1], Y[i:i + 1]) for i in range(B)])
    mean = np.array([np.float64(np.sum(np.array(col, dtype=np.longdouble)) / B) for col in per.T])
    ref, sc = function("opt.linear_mse_grad"), function("opt.linear_mse_grad_scale")
    S_B = tables.approximate_problems(sc, [(X, Y[:, 0], w[:, 0], float(b[0]))])[0]
    gex = tables.approximate_problems(ref, [(X, Y[:, 0], w[:, 0], float(b[0]))])[0]
    S_i = tables.approximate_problems(sc, [(X[i:i + 1], Y[i:i + 1, 0], w[:, 0], float(b[0])) for i in range(B)])
    g_i = tables.approximate_problems(ref, [(X[i:i + 1], Y[i:i + 1, 0], w[:, 0], float(b[0])) for i in range(B)])
    u = fmt.unit_roundoff
    kB = clause.tolerance.must + clause.tolerance.per_term * (d + B)
    k1 = clause.tolerance.must + clause.tolerance.per_term * (d + 1)
    allow = (kB * (u * (np.abs(gex) + S_B) + two_eta(target) * 4)
             + np.mean(k1 * (u * (np.abs(g_i) + S_i) + two_eta(target) * 4), axis=0) + 2 * u * np.abs(mean))
    err = np.abs(gB - mean) / allow
    conclude(record, clause, target, ~(err <= 1), err,
             what="the minibatch gradient is not the mean of the per-example gradients within their allowances",
             criterion="|g_B - mean_i g_i| <= allowance(g_B) + mean_i allowance(g_i) + 2u|mean|",
             reproducer=lambda i: named(target, {"X": X, "Y": Y, "w": w, "b": b},
                                        "[b.to_numpy(g).tolist() for g in b.vjp(lambda ops, w, b: ops.mse(ops.linear("
                                        "b.asarray(X, DT, 'cpu'), w, b), b.asarray(Y, DT, 'cpu')), [w, b], "
                                        "b.asarray(np.array(1.0), DT, 'cpu'))[1]]".replace("DT", repr(target.dtype))),
             inputs=[np.arange(gB.size, dtype=float)], got=gB, want=mean)


def mlp_mse(ops, X: object, Y: object, W1: object, b1: object, W2: object, b2: object) -> object:
    """The 2-2-1 ReLU network's MSE on (X, Y): the XOR program of §6.1 with a square loss."""
    return ops.mse(ops.linear(ops.relu(ops.linear(X, W1, b1)), W2, b2), Y)


def backend_gradient(target: Target, program, X: np.ndarray, Y: np.ndarray, params: list[np.ndarray],
                     uses: list[str]) -> list[np.ndarray]:
    """The backend's reverse-mode gradient of program(ops, X, Y, *params) (a scalar loss) w.r.t. params,
    X and Y bound as backend constants."""
    consts = [target.to_backend(X), target.to_backend(Y)]
    _, grads = target.gradient(_Program(program, consts), list(params), np.array(1.0), mode="vjp", shape=(), uses=uses)
    return grads


_XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
_XOR_Y = np.array([[0.0], [1.0], [1.0], [0.0]])


@register("xor_trajectory", fixed=True)
def xor_trajectory(clause, target, record, z):
    fmt = target.fmt
    target.require("linear", "relu", "mse", "sgd_step")
    target.require_mode("vjp")
    shapes = [(2, 2), (2,), (2, 1), (1,)]
    params = [_rn(v, fmt) for v in ([[0.5, -0.375], [0.625, 0.75]], [0.125, -0.0625], [[0.75], [-0.5]], [0.25])]
    lr, steps = 0.25, 40
    u = fmt.unit_roundoff
    k = clause.tolerance.must
    gbad, gerr, gstep, gotg, wantg = [], [], [], [], []
    problems, outs = [], []
    skipped = 0
    for t in range(steps):
        grads = backend_gradient(target, mlp_mse, _XOR_X, _XOR_Y, params, ["linear", "relu", "mse"])
        gvec = np.concatenate([g.ravel() for g in grads])
        W1, b1, W2, b2 = params
        args = (_XOR_X, _XOR_Y[:, 0], W1, b1, W2, b2)
        Z = _XOR_X @ W1 + b1
        margin = 4 * u * (np.abs(_XOR_X) @ np.abs(W1) + np.abs(b1)) + two_eta(target)
        if np.any(np.abs(Z) <= margin):  # a pre-activation within rounding of the kink: pattern ambiguous
            skipped += 1
        else:
            gex = tables.approximate_problems(function("opt.mlp_grad"), [args])[0]
            S = tables.approximate_problems(function("opt.mlp_grad_scale"), [args])[0]
            e = np.abs(gvec - gex) / (k * (u * (np.abs(gex) + S) + two_eta(target) * 8))
            gerr.append(e)
            gbad.append(~(e <= 1))
            gstep.append(np.full(e.size, float(t)))
            gotg.append(gvec)
            wantg.append(gex)
        theta = np.concatenate([p.ravel() for p in params])
        state = np.stack([theta, np.zeros_like(theta)])
        sp = dict(lr=lr, momentum=0.0, nesterov=False, weight_decay=0.0)
        out = target.apply("sgd_step", state, gvec, shape=state.shape, **sp)
        problems.append((state, gvec, (theta, state[1], gvec, lr, 0.0, 0, 0.0), sp))
        outs.append(out)
        sizes = np.cumsum([0] + [int(np.prod(s)) for s in shapes])
        params = [out[0][sizes[i]:sizes[i + 1]].reshape(s) for i, s in enumerate(shapes)]
    J = tables.approximate_problems(function("opt.mlp_mse"), [(_XOR_X, _XOR_Y[:, 0], *params)])[0, 0]
    record.notes.append(f"xor trajectory: {steps} steps at lr {lr}; gradient checked at {steps - skipped} "
                        f"(skipped {skipped} with a pre-activation within rounding of 0); final MSE {J:.4g}")
    if gerr:
        e = np.concatenate(gerr)
        conclude(record, clause, target, np.concatenate(gbad), e,
                 what="the backend's gradient of the XOR network's MSE at its own iterate misses the mixed bound",
                 criterion=f"|g_hat - g| <= {k:g} (u (|g| + S) + 8 eta), S = the gradient on absolute values",
                 reproducer=lambda i: named(target, {"X": _XOR_X, "Y": _XOR_Y}, "# the XOR MLP at the listed step"),
                 inputs=[np.concatenate(gstep)], got=np.concatenate(gotg), want=np.concatenate(wantg))
    _judge(clause, target, record, "sgd_step", problems, outs, "opt.sgd_step", "opt.sgd_step_scale",
           what="a gradient-descent step on the XOR network misses the local bound", params_text=_kw,
           k=spec_k("opt.gd.step"))

