"""Reference functions of the ``out`` family: output units and cost functions (§6.2).

Each function is f(ctx, *args) on an mpmath context, where an argument is a number or a
list (a row of logits z, a target distribution p, a batch of rows); a function may return
a list, each component of which ``ffnspec.reference.precision.evaluate_vector`` rounds
once.  Formulas avoid cancellation where a form without it exists (log1p of the sum of
the non-maximal terms, a_y - 1 = -sum_{j != y} a_j), so the working precision is spent on
the answer.  Error scales (``*_scale``, S) and accumulation terms (``*_acc``, A) follow the
derivations in spec/20_out.toml.
Book: Goodfellow, Bengio & Courville, *Deep Learning*, §6.2.1-§6.2.2.4.
"""
from ffnspec.reference.act import sigmoid, softplus
from ffnspec.reference.precision import shared


@shared
def _parts(ctx, z):
    """t = z - max z, the index k of the first maximum, r = sum_{j != k} e^{t_j} (so s = 1 + r)."""
    m = max(z)
    k = z.index(m)
    t = [x - m for x in z]
    return t, k, ctx.fsum(ctx.exp(x) for j, x in enumerate(t) if j != k)


# ------------------------------------------------------------------- values ----
@shared
def softmax(ctx, z):
    """a_i = e^{z_i} / sum_k e^{z_k} = e^{t_i} / (1 + r)."""
    t, k, r = _parts(ctx, z)
    return [ctx.exp(x) / (1 + r) for x in t]


def logsumexp(ctx, z):
    """log sum_k e^{z_k} = max z + log1p(r)."""
    t, k, r = _parts(ctx, z)
    return z[k] + ctx.log1p(r)


def log_softmax(ctx, z):
    """z_i - logsumexp(z) = t_i - log1p(r)."""
    t, k, r = _parts(ctx, z)
    return [x - ctx.log1p(r) for x in t]


def cross_entropy(ctx, z, y):
    """-log softmax(z)_y = log sum_j e^{z_j - z_y} = log1p(sum_{j != y} e^{z_j - z_y})."""
    y = int(y)
    if z[y] == -ctx.inf:  # the target class is masked: probability 0
        return ctx.inf
    return ctx.log1p(ctx.fsum(ctx.exp(x - z[y]) for j, x in enumerate(z) if j != y))


def cross_entropy_sum(ctx, z, y):
    """sum over a batch of rows."""
    return ctx.fsum(cross_entropy(ctx, r, c) for r, c in zip(z, y))


def cross_entropy_mean(ctx, z, y):
    """-1/|S| sum log f(x)_y over a batch S of rows."""
    return cross_entropy_sum(ctx, z, y) / len(z)


def nll(ctx, lp, y):
    """-log p(y) from log-probabilities."""
    return -lp[int(y)]


def cross_entropy_soft(ctx, z, p):
    """H(p, q) = -sum_i p_i log q_i, q = softmax(z)."""
    return -ctx.fsum(pi * li for pi, li in zip(p, log_softmax(ctx, z)) if pi)


def entropy(ctx, p):
    """H(p) = -sum_i p_i log p_i."""
    return -ctx.fsum(pi * ctx.log(pi) for pi in p if pi)


def kl_div(ctx, z, p):
    """KL(p || q) = sum_i p_i (log p_i - log q_i), q = softmax(z)."""
    return ctx.fsum(pi * (ctx.log(pi) - li) for pi, li in zip(p, log_softmax(ctx, z)) if pi)


def softmax_pair(ctx, row):
    """softmax([0, z]) = [sigma(-z), sigma(z)] (seed 002: softmax is the sigmoid for n = 2)."""
    zero, z = row
    assert zero == 0
    return [sigmoid(ctx, -z), sigmoid(ctx, z)]


def softplus_pair(ctx, row):
    """logsumexp([0, z]) = zeta(z)."""
    zero, z = row
    assert zero == 0
    return softplus(ctx, z)


def bce(ctx, z, y):
    """-[y log sigma(z) + (1-y) log sigma(-z)] = y zeta(-z) + (1-y) zeta(z) (= zeta((1-2y)z) for y in {0,1})."""
    return y * softplus(ctx, -z) + (1 - y) * softplus(ctx, z)


def bce_prob(ctx, a, y):
    """-[y log a + (1-y) log(1-a)]; a term with a zero weight is absent (0 log 0 = 0)."""
    return -(y * ctx.log(a) if y else 0) - ((1 - y) * ctx.log1p(-a) if y != 1 else 0)


def half_sq_error(ctx, yh, y):
    """-log N(y; yh, 1) - log sqrt(2 pi) = (y - yh)^2 / 2 (one component of 1/2 ||y - yh||^2)."""
    return (y - yh) ** 2 / 2


def mse(ctx, yh, y):
    """(1/m) sum (y - yh)^2."""
    return ctx.fsum((a - b) ** 2 for a, b in zip(yh, y)) / len(yh)


def mae(ctx, yh, y):
    """(1/m) sum |y - yh|."""
    return ctx.fsum(abs(a - b) for a, b in zip(yh, y)) / len(yh)


def logaddexp(ctx, a, b):
    """log(e^a + e^b) = max(a, b) + zeta(-|a - b|) (the two-term logsumexp)."""
    return max(a, b) + softplus(ctx, -abs(a - b))


def gaussian_nll(ctx, mu, y, beta):
    """-log N(y; mu, 1/beta) - log sqrt(2 pi) = beta (y - mu)^2 / 2 - log(beta) / 2."""
    return beta * (y - mu) ** 2 / 2 - ctx.log(beta) / 2


def _mdn_r(ctx, w, mu, beta, y):
    """r_i = log pi_i + log N(y; mu_i, 1/beta_i) + log sqrt(2 pi), pi = softmax(w)."""
    return [li + ctx.log(b) / 2 - b * (y - m) ** 2 / 2 for li, m, b in zip(log_softmax(ctx, w), mu, beta)]


def mdn_nll(ctx, w, mu, beta, y):
    """-log sum_i pi_i N(y; mu_i, 1/beta_i) - log sqrt(2 pi) = -logsumexp(r)."""
    return -logsumexp(ctx, _mdn_r(ctx, w, mu, beta, y))


def cov_from_factor(ctx, b):
    """Sigma = B B^T."""
    return [[ctx.fsum(x * y for x, y in zip(bi, bj)) for bj in b] for bi in b]


# ------------------------------------------------- directional derivatives ----
# vjp references take (op arguments..., cotangent); jvp references (op arguments...,
# one tangent per differentiated argument).  Checked against mpmath.diff in
# tests/test_reference_out.py.

def _centred(ctx, z, t):
    """a = softmax(z) and t_i - sum_j a_j t_j for every i, as (t_i - t_k) + sum_{j != k} a_j (t_k - t_j)
    with k the index of max z: no cancellation at the dominant class (sum_j a_j = 1)."""
    a = softmax(ctx, z)
    k = z.index(max(z))
    e = ctx.fsum(a[j] * (t[k] - t[j]) for j in range(len(t)) if j != k)
    return a, [(x - t[k]) + e if i != k else e for i, x in enumerate(t)]


def softmax_jvp(ctx, z, t):
    """J t with J = diag(a) - a a^T: a_i (t_i - sum_j a_j t_j).  J is symmetric, so J^T v = J v."""
    a, c = _centred(ctx, z, t)
    return [x * y for x, y in zip(a, c)]


def logsumexp_vjp(ctx, z, c):
    """c grad lse(z) = c softmax(z) (§6.2.2.3: the gradient of the log-partition is the softmax)."""
    return [c * x for x in softmax(ctx, z)]


def logsumexp_jvp(ctx, z, t):
    """grad lse(z)^T t = sum_j a_j t_j."""
    return ctx.fsum(x * y for x, y in zip(softmax(ctx, z), t))


softmax_vjp = softmax_jvp


def log_softmax_vjp(ctx, z, v):
    """J^T v with J = I - 1 a^T: v_i - a_i sum_j v_j; at the dominant class k,
    (sum_{j != k} a_j) v_k - a_k sum_{j != k} v_j (no cancellation)."""
    a, k = softmax(ctx, z), z.index(max(z))
    s = ctx.fsum(v)
    rest_a, rest_v = ctx.fsum(x for j, x in enumerate(a) if j != k), ctx.fsum(x for j, x in enumerate(v) if j != k)
    return [rest_a * vi - ai * rest_v if i == k else vi - ai * s for i, (vi, ai) in enumerate(zip(v, a))]


def log_softmax_jvp(ctx, z, t):
    """J t: t_i - sum_j a_j t_j."""
    return _centred(ctx, z, t)[1]


def cross_entropy_vjp(ctx, z, y, c):
    """c (softmax(z) - onehot(y)), with a_y - 1 = -sum_{j != y} a_j."""
    a, y = softmax(ctx, z), int(y)
    return [c * (-ctx.fsum(x for j, x in enumerate(a) if j != y) if i == y else a[i]) for i in range(len(a))]


def cross_entropy_jvp(ctx, z, y, t):
    """sum_j a_j t_j - t_y = sum_{j != y} a_j (t_j - t_y)."""
    a, y = softmax(ctx, z), int(y)
    return ctx.fsum(a[j] * (t[j] - t[y]) for j in range(len(a)) if j != y)


def bce_grad(ctx, z, y, c):
    """c (sigma(z) - y) = c ((1-y) sigma(z) - y sigma(-z)); the same for a cotangent or a tangent c."""
    return c * ((1 - y) * sigmoid(ctx, z) - y * sigmoid(ctx, -z))


def half_sq_error_grad(ctx, yh, y, c):
    """c (yh - y)."""
    return c * (yh - y)


def mse_vjp(ctx, yh, y, c):
    """c 2 (yh - y) / m."""
    return [c * 2 * (a - b) / len(yh) for a, b in zip(yh, y)]


def mse_jvp(ctx, yh, y, t):
    return ctx.fsum(2 * (a - b) * s for a, b, s in zip(yh, y, t)) / len(yh)


def mae_vjp(ctx, yh, y, c):
    """c sign(yh - y) / m (subgradient 0 where yh = y)."""
    return [c * ctx.sign(a - b) / len(yh) for a, b in zip(yh, y)]


def mae_jvp(ctx, yh, y, t):
    return ctx.fsum(ctx.sign(a - b) * s for a, b, s in zip(yh, y, t)) / len(yh)


def _gaussian_dbeta(ctx, mu, y, beta):
    return (y - mu) ** 2 / 2 - 1 / (2 * beta)


def logaddexp_vjp(ctx, a, b, c):
    """[c sigma(a - b), c sigma(b - a)]: the softmax of [a, b], times the cotangent."""
    return [c * sigmoid(ctx, a - b), c * sigmoid(ctx, b - a)]


def logaddexp_jvp(ctx, a, b, ta, tb):
    return ta * sigmoid(ctx, a - b) + tb * sigmoid(ctx, b - a)


def gaussian_nll_vjp(ctx, mu, y, beta, c):
    """[c beta (mu - y), c ((y - mu)^2 / 2 - 1 / (2 beta))]: gradients in mu and beta."""
    return [c * beta * (mu - y), c * _gaussian_dbeta(ctx, mu, y, beta)]


def gaussian_nll_jvp(ctx, mu, y, beta, tm, tb):
    return beta * (mu - y) * tm + _gaussian_dbeta(ctx, mu, y, beta) * tb


def _mdn_parts(ctx, w, mu, beta, y):
    """pi = softmax(w), gamma = softmax(r) (the responsibilities), d = y - mu."""
    return softmax(ctx, w), softmax(ctx, _mdn_r(ctx, w, mu, beta, y)), [y - m for m in mu]


def mdn_nll_vjp(ctx, w, mu, beta, y, c):
    """[c (pi - gamma), c gamma beta (mu - y), c gamma (d^2/2 - 1/(2 beta))] for w, mu, beta."""
    pi, g, d = _mdn_parts(ctx, w, mu, beta, y)
    return ([c * (p - q) for p, q in zip(pi, g)] + [-c * q * b * e for q, b, e in zip(g, beta, d)]
            + [c * q * (e * e / 2 - 1 / (2 * b)) for q, b, e in zip(g, beta, d)])


def mdn_nll_jvp(ctx, w, mu, beta, y, tw, tm, tb):
    pi, g, d = _mdn_parts(ctx, w, mu, beta, y)
    return ctx.fsum([(p - q) * t for p, q, t in zip(pi, g, tw)] + [-q * b * e * t for q, b, e, t in zip(g, beta, d, tm)]
                    + [q * (e * e / 2 - 1 / (2 * b)) * t for q, b, e, t in zip(g, beta, d, tb)])


# ------------------------------------------------------------ error scales ----
# S (u-part) and A (accumulation part, in units of u_acc) of the mixed bounds
#   |y_hat - y| <= k (u (|y| + S) + eta) + u_acc A,
# one pair per clause; each is the first-order error of the clause's algorithm class,
# derived in spec/20_out.toml.  Terms with a zero probability (masked entries) contribute 0.

@shared
def _stats(ctx, z):
    """t = z - max z, a = softmax(z), T = sum_j a_j |t_j|, L = log s = log1p(r)."""
    t, k, r = _parts(ctx, z)
    a = softmax(ctx, z)
    return t, a, ctx.fsum(x * abs(y) for x, y in zip(a, t) if x), ctx.log1p(r)


@shared
def _sensitivity(ctx, z, a):
    """sum_j |z_j d l_i / d z_j| = |z_i| (1 - a_i) + sum_{j != i} a_j |z_j| for l = log_softmax (and lse's
    sum_j a_j |z_j| as the extra last entry): the first-order effect of relative perturbations u |z_j| of
    the inputs (BHH 2020: the condition number times |f|).  Masked entries contribute 0.  The sum
    over j != i is the terms before i plus those after it: no cancellation (total - a_i |z_i| cancels)."""
    az = [x * abs(y) if x else ctx.zero for x, y in zip(a, z)]
    before, after = [ctx.zero], [ctx.zero]
    for t in az[:-1]:
        before.append(before[-1] + t)
    for t in reversed(az[1:]):
        after.append(after[-1] + t)
    after.reverse()
    return [abs(y) * (1 - x) + b + c if x else ctx.zero
            for x, y, b, c in zip(a, z, before, after)], ctx.fsum(az)


def softmax_scale(ctx, z):
    """a_i (|t_i| + T + 2 L + 3) + a_i sens_i: the shifted class, plus the sensitivity to the inputs."""
    t, a, T, L = _stats(ctx, z)
    sens, _ = _sensitivity(ctx, z, a)
    return [x * (abs(y) + T + 2 * L + 3 + q) if x else ctx.zero for x, y, q in zip(a, t, sens)]


def softmax_acc(ctx, z):
    """(n - 1) a_i: the relative error gamma_{n-1} of the sum s carried by every component."""
    return [(len(z) - 1) * x for x in softmax(ctx, z)]


def log_softmax_scale(ctx, z):
    """|t_i| + T + 2 L + 2 + sens_i."""
    t, a, T, L = _stats(ctx, z)
    sens, _ = _sensitivity(ctx, z, a)
    return [abs(y) + T + 2 * L + 2 + q for y, q in zip(t, sens)]


def _lse_accuracy(ctx, z):
    """2L + sum_{j != k} a_j (|t_j| + n): log1p of r, the sum of the n - 1 non-maximal terms,
    each e^{t_j} with relative error (|t_j| + 2) u (the shift's rounding, a faithful exp),
    accumulated with (n - 2) u, and a faithful log1p (2u L).  Masked entries contribute 0."""
    t, k, r = _parts(ctx, z)
    a, n = softmax(ctx, z), len(z)
    return 2 * ctx.log1p(r) + ctx.fsum(a[j] * (abs(t[j]) + n) for j in range(n) if j != k and a[j])


def logsumexp_accuracy_scale(ctx, z):
    """S_acc of out.logsumexp: the error of m + log1p(r) (no input sensitivity, no constant)."""
    return _lse_accuracy(ctx, z)


def log_softmax_accuracy_scale(ctx, z):
    """S_acc,i of out.log_softmax: |t_i| (the shift) + the error of log1p(r); 0 for a masked entry."""
    t, e = _parts(ctx, z)[0], _lse_accuracy(ctx, z)
    return [abs(x) + e if ctx.isfinite(x) else ctx.zero for x in t]


def cross_entropy_accuracy_scale(ctx, z, y):
    """S_acc of out.cross_entropy = -l_y: |t_y| + the error of log1p(r)."""
    return log_softmax_accuracy_scale(ctx, z)[int(y)]


def log_softmax_acc(ctx, z):
    return [ctx.mpf(len(z) - 1)] * len(z)


def logsumexp_scale(ctx, z):
    """T + 2 L + 2 + sum_j a_j |z_j|."""
    t, a, T, L = _stats(ctx, z)
    return T + 2 * L + 2 + _sensitivity(ctx, z, a)[1]


def logsumexp_acc(ctx, z):
    return ctx.mpf(len(z) - 1)


def cross_entropy_scale(ctx, z, y):
    """S of log_softmax at the target: |t_y| + T + 2 L + 2 + sens_y."""
    return log_softmax_scale(ctx, z)[int(y)]


def cross_entropy_acc(ctx, z, y):
    return ctx.mpf(len(z) - 1)


def cross_entropy_mean_scale(ctx, z, y):
    """The mean of the rows' S."""
    return ctx.fsum(cross_entropy_scale(ctx, r, c) for r, c in zip(z, y)) / len(z)


def cross_entropy_mean_acc(ctx, z, y):
    """(n - 1) per row, plus gamma_{m-1} of the batch sum of non-negative terms: (m - 1) J."""
    return (len(z[0]) - 1) + (len(z) - 1) * cross_entropy_mean(ctx, z, y)


def cross_entropy_soft_scale(ctx, z, p):
    """sum_i p_i S_i(log_softmax)."""
    return ctx.fsum(pi * s for pi, s in zip(p, log_softmax_scale(ctx, z)) if pi)


def cross_entropy_soft_acc(ctx, z, p):
    return (len(z) - 1) * (ctx.fsum(p) + cross_entropy_soft(ctx, z, p))


def kl_div_scale(ctx, z, p):
    """sum_i p_i (|log p_i| + |log q_i| + S_i(log_softmax)): the magnitudes of the summed terms."""
    return ctx.fsum(pi * (abs(ctx.log(pi)) + abs(li) + s)
                    for pi, li, s in zip(p, log_softmax(ctx, z), log_softmax_scale(ctx, z)) if pi)


def kl_div_acc(ctx, z, p):
    return (len(z) - 1) * ctx.fsum(pi * (1 + abs(ctx.log(pi)) + abs(li)) for pi, li in zip(p, log_softmax(ctx, z)) if pi)


def bce_scale(ctx, z, y):
    """|z| + log 2: every algorithm class sums terms bounded by |z| and log 2."""
    return abs(z) + ctx.ln2


def mse_acc(ctx, yh, y):
    """gamma_{m-1} of a sum of non-negative terms: (m - 1) J."""
    return (len(yh) - 1) * mse(ctx, yh, y)


def mae_acc(ctx, yh, y):
    return (len(yh) - 1) * mae(ctx, yh, y)


def logaddexp_scale(ctx, a, b):
    """zeta(-|d|) + |d| sigma(-|d|), d = a - b: the softplus term and its sensitivity to rounding d."""
    d = abs(a - b)
    return softplus(ctx, -d) + d * sigmoid(ctx, -d)


def gaussian_nll_scale(ctx, mu, y, beta):
    """T1 + |T2| + |beta dJ/dbeta|, T1 = beta (y-mu)^2 / 2, T2 = log(beta) / 2, beta dJ/dbeta = T1 - 1/2."""
    t1 = beta * (y - mu) ** 2 / 2
    return t1 + abs(ctx.log(beta)) / 2 + abs(t1 - ctx.mpf(1) / 2)


def _mdn_eps(ctx, w, mu, beta, y):
    """Per component, the u-part of the error of r_i: 3|l_i| + 2 S_i(log_softmax) + 3|L_i| + 4 T_i + |r_i|."""
    r = _mdn_r(ctx, w, mu, beta, y)
    return r, [3 * abs(li) + 2 * s + 3 * abs(ctx.log(b)) / 2 + 2 * b * (y - m) ** 2 + abs(ri)
               for li, s, b, m, ri in zip(log_softmax(ctx, w), log_softmax_scale(ctx, w), beta, mu, r)]


def mdn_nll_scale(ctx, w, mu, beta, y):
    """1/2 sum_i gamma_i eps_i + S(logsumexp at r)."""
    r, eps = _mdn_eps(ctx, w, mu, beta, y)
    return ctx.fsum(g * e for g, e in zip(softmax(ctx, r), eps)) / 2 + logsumexp_scale(ctx, r)


def mdn_nll_acc(ctx, w, mu, beta, y):
    """Two sums over the K components (log_softmax of w, logsumexp of r)."""
    return ctx.mpf(2 * (len(w) - 1))


# --- derivatives ---------------------------------------------------------------

def _alpha(ctx, z):
    """The out.softmax allowance of each a_j in units of u (k = 2): 2 (a_j + S_j)."""
    return [2 * (x + s) for x, s in zip(softmax(ctx, z), softmax_scale(ctx, z))]


def softmax_jvp_scale(ctx, z, v):
    """(alpha_i + a_i) |v_i - d| + a_i sum_j alpha_j |v_j|, d = sum_j a_j v_j (the same for J v and J^T v)."""
    a, al = softmax(ctx, z), _alpha(ctx, z)
    d = ctx.fsum(x * y for x, y in zip(a, v))
    tail = ctx.fsum(x * abs(y) for x, y in zip(al, v))
    return [(q + x) * abs(y - d) + x * tail for x, q, y in zip(a, al, v)]


def softmax_jvp_acc(ctx, z, v):
    """(n-1) a_i |v_i - d| + (2n-1) a_i sum_j a_j |v_j|."""
    a, n = softmax(ctx, z), len(z)
    d = ctx.fsum(x * y for x, y in zip(a, v))
    tail = ctx.fsum(x * abs(y) for x, y in zip(a, v))
    return [(n - 1) * x * abs(y - d) + (2 * n - 1) * x * tail for x, y in zip(a, v)]


softmax_vjp_scale = softmax_jvp_scale
softmax_vjp_acc = softmax_jvp_acc


def _a_rho(ctx, z):
    """a_j rho_j: the u-part of the error of a_j, recovered either as exp(log_softmax) (2 (|l_j| + S_j) + 2
    relative) or as softmax (alpha_j absolute), whichever is larger; 0 for a masked entry."""
    a, ls, s, al = softmax(ctx, z), log_softmax(ctx, z), log_softmax_scale(ctx, z), _alpha(ctx, z)
    return a, [max(x * (2 * (abs(l) + q) + 2), p) if x else ctx.zero for x, l, q, p in zip(a, ls, s, al)]


def _a_rho_lse(ctx, z):
    """_a_rho, or a_j recovered from the stored logsumexp y as exp(z_j - y): y within its MUST bound
    2u (|y| + S_lse), the subtraction u |l_j|, a faithful exp 2u (torch's logsumexp backward)."""
    (a, ar), y, sl = _a_rho(ctx, z), logsumexp(ctx, z), logsumexp_scale(ctx, z)
    rel = 2 * (abs(y) + sl) + 2 if ctx.isfinite(y) else ctx.zero
    return a, [max(r, x * (rel + abs(l))) if x else ctx.zero for x, r, l in zip(a, ar, log_softmax(ctx, z))]


def log_softmax_vjp_scale(ctx, z, v):
    """(a_i rho_i + a_i) |sum v|."""
    a, ar = _a_rho(ctx, z)
    s = abs(ctx.fsum(v))
    return [(q + x) * s for x, q in zip(a, ar)]


def log_softmax_vjp_acc(ctx, z, v):
    """(n-1) a_i (|sum v| + sum |v_j|)."""
    a, n = softmax(ctx, z), len(z)
    s = abs(ctx.fsum(v)) + ctx.fsum(abs(y) for y in v)
    return [(n - 1) * x * s for x in a]


def log_softmax_jvp_scale(ctx, z, t):
    """|d| + sum_j (a_j rho_j + a_j) |t_j|, d = sum_j a_j t_j."""
    a, ar = _a_rho(ctx, z)
    d = ctx.fsum(x * y for x, y in zip(a, t))
    tail = ctx.fsum((q + x) * abs(y) for x, q, y in zip(a, ar, t))
    return [abs(d) + tail] * len(z)


def log_softmax_jvp_acc(ctx, z, t):
    a, n = softmax(ctx, z), len(z)
    return [(2 * n - 1) * ctx.fsum(x * abs(y) for x, y in zip(a, t))] * n


def cross_entropy_soft_vjp(ctx, z, p, c):
    """c (a s - p), s = sum_i p_i: the gradient of H(p, softmax z) (and of KL(p || softmax z)) in z."""
    a, s = softmax(ctx, z), ctx.fsum(p)
    return [c * (x * s - q) for x, q in zip(a, p)]


def cross_entropy_soft_jvp(ctx, z, p, t):
    """sum_j (a_j s - p_j) t_j."""
    a, s = softmax(ctx, z), ctx.fsum(p)
    return ctx.fsum((x * s - q) * y for x, q, y in zip(a, p, t))


def cross_entropy_soft_vjp_scale(ctx, z, p, c):
    """|c| (s (a_i rho_i + 2 a_i) + p_i): a_i's error, the product a_i s, the subtraction's operands."""
    (a, ar), s = _a_rho(ctx, z), ctx.fsum(p)
    return [abs(c) * (s * (r + 2 * x) + q) for x, r, q in zip(a, ar, p)]


def cross_entropy_soft_vjp_acc(ctx, z, p, c):
    """2 (n - 1) |c| a_i s: the sum s, and softmax's own sum."""
    s, n = ctx.fsum(p), len(z)
    return [abs(c) * 2 * (n - 1) * x * s for x in softmax(ctx, z)]


def cross_entropy_soft_vjp_underflow(ctx, z, p, c):
    return [abs(c)] * len(z)


def cross_entropy_soft_jvp_scale(ctx, z, p, t):
    """sum_j (s (a_j rho_j + 2 a_j) + p_j) |t_j| + |g|: the components' errors, the products, the sum."""
    (a, ar), s = _a_rho(ctx, z), ctx.fsum(p)
    g = ctx.fsum((x * s - q) * y for x, q, y in zip(a, p, t))
    return ctx.fsum((s * (r + 2 * x) + q) * abs(y) for x, r, q, y in zip(a, ar, p, t)) + abs(g)


def cross_entropy_soft_jvp_acc(ctx, z, p, t):
    s, n = ctx.fsum(p), len(z)
    return (2 * n - 1) * ctx.fsum((x * s + q) * abs(y) for x, q, y in zip(softmax(ctx, z), p, t))


def cross_entropy_soft_jvp_underflow(ctx, z, p, t):
    return ctx.fsum(abs(x) for x in t)


def cross_entropy_mean_vjp(ctx, z, y, c):
    """(c / m) (softmax(z_r) - e_{y_r}) for each row r of a batch of m rows."""
    m = len(z)
    return [cross_entropy_vjp(ctx, row, yr, c / m) for row, yr in zip(z, y)]


def cross_entropy_mean_jvp(ctx, z, y, t):
    """(1/m) sum_r (sum_j a_rj t_rj - t_ry)."""
    return ctx.fsum(cross_entropy_jvp(ctx, row, yr, tr) for row, yr, tr in zip(z, y, t)) / len(z)


def cross_entropy_mean_vjp_scale(ctx, z, y, c):
    """Each row's out.ce.grad scale at the cotangent c / m, plus |g_i|: the factor c/m (or c (1/m))
    is rounded once or twice before it multiplies a - e_y."""
    m = len(z)
    return [[s + abs(g) for s, g in zip(cross_entropy_vjp_scale(ctx, row, yr, c / m), cross_entropy_vjp(ctx, row, yr, c / m))]
            for row, yr in zip(z, y)]


def cross_entropy_mean_vjp_acc(ctx, z, y, c):
    m = len(z)
    return [logsumexp_vjp_acc(ctx, row, c / m) for row in z]


def cross_entropy_mean_vjp_underflow(ctx, z, y, c):
    return [[abs(c) / len(z)] * len(row) for row in z]


def cross_entropy_mean_jvp_scale(ctx, z, y, t):
    """(1/m) sum_r (S_r + |g_r|): each row's out.ce.grad jvp scale, and the row terms summed."""
    rows = list(zip(z, y, t))
    return ctx.fsum(cross_entropy_jvp_scale(ctx, r, yr, tr) + abs(cross_entropy_jvp(ctx, r, yr, tr))
                    for r, yr, tr in rows) / len(z)


def cross_entropy_mean_jvp_acc(ctx, z, y, t):
    """(1/m) sum_r (A_r + (m - 1) |g_r|): each row's accumulation, and the batch sum of m terms."""
    m = len(z)
    return ctx.fsum(cross_entropy_jvp_acc(ctx, r, yr, tr) + (m - 1) * abs(cross_entropy_jvp(ctx, r, yr, tr))
                    for r, yr, tr in zip(z, y, t)) / m


def cross_entropy_mean_jvp_underflow(ctx, z, y, t):
    return ctx.fsum(abs(x) for tr in t for x in tr) / len(z)


def logsumexp_vjp_scale(ctx, z, c):
    """|c| (a_i rho_i + a_i): a_i's error (computed, or recovered from the stored log-softmax or
    logsumexp) and the product."""
    a, ar = _a_rho_lse(ctx, z)
    return [abs(c) * (q + x) for x, q in zip(a, ar)]


def logsumexp_vjp_acc(ctx, z, c):
    return [abs(c) * (len(z) - 1) * x for x in softmax(ctx, z)]


def logsumexp_vjp_underflow(ctx, z, c):
    return [abs(c)] * len(z)


def logsumexp_jvp_scale(ctx, z, t):
    """sum_j (a_j rho_j + a_j) |t_j| + |sum_j a_j t_j|: each a_j's error, the products, the sum."""
    a, ar = _a_rho_lse(ctx, z)
    return ctx.fsum((q + x) * abs(s) for x, q, s in zip(a, ar, t)) + abs(ctx.fsum(x * s for x, s in zip(a, t)))


def logsumexp_jvp_acc(ctx, z, t):
    return (2 * len(z) - 1) * ctx.fsum(x * abs(s) for x, s in zip(softmax(ctx, z), t))


def logsumexp_jvp_underflow(ctx, z, t):
    return ctx.fsum(abs(x) for x in t)


def cross_entropy_vjp_scale(ctx, z, y, c):
    """|c| (a_i rho_i + a_i) (the onehot subtraction is in the u |g_i| term)."""
    a, ar = _a_rho(ctx, z)
    return [abs(c) * (q + x) for x, q in zip(a, ar)]


def cross_entropy_vjp_acc(ctx, z, y, c):
    return logsumexp_vjp_acc(ctx, z, c)


def cross_entropy_jvp_scale(ctx, z, y, t):
    """sum_j (a_j rho_j + a_j) |t_j| + |t_y| + |sum_j a_j t_j|."""
    a, ar = _a_rho(ctx, z)
    return (ctx.fsum((q + x) * abs(s) for x, q, s in zip(a, ar, t)) + abs(t[int(y)])
            + abs(ctx.fsum(x * s for x, s in zip(a, t))))


def cross_entropy_jvp_acc(ctx, z, y, t):
    return (2 * len(z) - 1) * ctx.fsum(x * abs(s) for x, s in zip(softmax(ctx, z), t))


def bce_grad_scale(ctx, z, y, c):
    """|c| (sigma(z) + y sigma(-z) + (1-y) sigma(z)): sigma and the magnitudes of the summed terms."""
    s, sm = sigmoid(ctx, z), sigmoid(ctx, -z)
    return abs(c) * (s + y * sm + (1 - y) * s)


def bce_grad_accuracy_scale(ctx, z, y, c):
    """S_acc of out.bce.grad: 0 for a hard label (one term of (1-y) sigma(z) - y sigma(-z)
    vanishes: relative), else |c| ((1-y) sigma(z) + y sigma(-z)), the difference's terms."""
    if y == 0 or y == 1:
        return ctx.zero
    return abs(c) * ((1 - y) * sigmoid(ctx, z) + y * sigmoid(ctx, -z))


def mse_jvp_scale(ctx, yh, y, t):
    """sum_i 2 |yh_i - y_i| |t_i| / m: the magnitudes of the summed terms."""
    return ctx.fsum(2 * abs(a - b) * abs(s) for a, b, s in zip(yh, y, t)) / len(yh)


def mse_jvp_acc(ctx, yh, y, t):
    return (len(yh) - 1) * mse_jvp_scale(ctx, yh, y, t)


def mae_jvp_scale(ctx, yh, y, t):
    return ctx.fsum(abs(s) for a, b, s in zip(yh, y, t) if a != b) / len(yh)


def mae_jvp_acc(ctx, yh, y, t):
    return (len(yh) - 1) * mae_jvp_scale(ctx, yh, y, t)


def _logaddexp_exponents(ctx, a, b):
    """Per argument x: (g_x, E_x), g_x = e^{x - J} and E_x = 10 (|J| + S_J) + |x - J|, the u-part of
    the error of the exponent x - J_hat when J comes rounded (out.logaddexp) and the difference too."""
    j = logaddexp(ctx, a, b)
    e = 10 * (abs(j) + logaddexp_scale(ctx, a, b))
    return [(sigmoid(ctx, x - o), e + abs(x - j)) for x, o in ((a, b), (b, a))]


def logaddexp_vjp_scale(ctx, a, b, c):
    """[|c| g_a E_a, |c| g_b E_b]: the form c e^{x - J_hat} (the softmax of [a, b] from the rounded J)."""
    return [abs(c) * g * e for g, e in _logaddexp_exponents(ctx, a, b)]


def logaddexp_grad_accuracy_scale(ctx, a, b, *directions):
    """S_acc of out.logaddexp.grad, the sigmoid form: rounding d = a - b moves each partial by
    |d| sigma(d) sigma(-d) u; jvp (tangents t_a, t_b) adds the terms' magnitudes |t_a| g_a + |t_b| g_b
    (t_a g_a + t_b g_b cancels where they are opposite)."""
    d = abs(a - b)
    moved = d * sigmoid(ctx, d) * sigmoid(ctx, -d)
    if len(directions) == 1:
        return [abs(directions[0]) * moved] * 2
    ta, tb = directions
    return abs(ta) * sigmoid(ctx, a - b) + abs(tb) * sigmoid(ctx, b - a) + (abs(ta) + abs(tb)) * moved


def logaddexp_jvp_scale(ctx, a, b, ta, tb):
    (ga, ea), (gb, eb) = _logaddexp_exponents(ctx, a, b)
    return abs(ta) * ga * ea + abs(tb) * gb * eb


def gaussian_nll_vjp_scale(ctx, mu, y, beta, c):
    """[0, |c| ((y-mu)^2/2 + 1/(2 beta))]: the beta-gradient sums two terms that cancel at beta = 1/(y-mu)^2."""
    return [ctx.zero, abs(c) * ((y - mu) ** 2 / 2 + 1 / (2 * beta))]


def gaussian_nll_jvp_scale(ctx, mu, y, beta, tm, tb):
    return abs(beta * (mu - y) * tm) + ((y - mu) ** 2 / 2 + 1 / (2 * beta)) * abs(tb)


def _mdn_grad_parts(ctx, w, mu, beta, y):
    """pi, gamma, d, and per component the u-parts of the errors of pi_i (absolute), gamma_i (absolute)."""
    pi, g, d = _mdn_parts(ctx, w, mu, beta, y)
    r, eps = _mdn_eps(ctx, w, mu, beta, y)
    mean = ctx.fsum(x * e for x, e in zip(g, eps))
    dpi = _a_rho(ctx, w)[1]
    dg = [q + x * (e + mean) for q, x, e in zip(_alpha(ctx, r), g, eps)]
    return pi, g, d, dpi, dg


def mdn_nll_vjp_scale(ctx, w, mu, beta, y, c):
    """w: |c| (dpi_i + dgamma_i + pi_i sum_j dgamma_j); mu: |c beta_i d_i| dgamma_i;
    beta: |c| (d_i^2/2 + 1/(2 beta_i)) (dgamma_i + gamma_i)."""
    pi, g, d, dpi, dg = _mdn_grad_parts(ctx, w, mu, beta, y)
    c, dsum = abs(c), ctx.fsum(dg)
    # w: through log_softmax's backward, c (pi_i sum_j gamma_j - gamma_i): the sum's error too
    return ([c * (p + q + x * dsum) for p, q, x in zip(dpi, dg, pi)] + [c * b * abs(e) * q for b, e, q in zip(beta, d, dg)]
            + [c * (e * e / 2 + 1 / (2 * b)) * (q + x) for b, e, q, x in zip(beta, d, dg, g)])


def mdn_nll_vjp_acc(ctx, w, mu, beta, y, c):
    """3 (K-1) times the magnitudes of the gradient's terms."""
    pi, g, d = _mdn_parts(ctx, w, mu, beta, y)
    k3, c = 3 * (len(w) - 1), abs(c)
    return ([k3 * c * (p + x) for p, x in zip(pi, g)] + [k3 * c * x * b * abs(e) for x, b, e in zip(g, beta, d)]
            + [k3 * c * x * (e * e / 2 + 1 / (2 * b)) for x, b, e in zip(g, beta, d)])


def mdn_nll_jvp_scale(ctx, w, mu, beta, y, tw, tm, tb):
    """sum over components of the vjp scale (c = 1) times |t|, plus the magnitudes of the summed terms."""
    s = mdn_nll_vjp_scale(ctx, w, mu, beta, y, ctx.one)
    g = mdn_nll_vjp(ctx, w, mu, beta, y, ctx.one)
    t = list(tw) + list(tm) + list(tb)
    return ctx.fsum((q + abs(x)) * abs(e) for q, x, e in zip(s, g, t))


def mdn_nll_jvp_acc(ctx, w, mu, beta, y, tw, tm, tb):
    a = mdn_nll_vjp_acc(ctx, w, mu, beta, y, ctx.one)
    g = mdn_nll_vjp(ctx, w, mu, beta, y, ctx.one)
    t = list(tw) + list(tm) + list(tb)
    return ctx.fsum((q + 3 * len(t) * abs(x)) * abs(e) for q, x, e in zip(a, g, t))


# --- underflow factors C: an intermediate that underflows carries eta absolutely (Higham
# §2.1); C is the magnitude of what multiplies it afterwards, so the bound has eta (1 + C) ----

def softmax_jvp_underflow(ctx, z, v):
    """a_i's eta times |v_i - d|, and each a_j's eta in d times a_i <= 1: |v_i - d| + sum |v_j|."""
    a = softmax(ctx, z)
    d = ctx.fsum(x * y for x, y in zip(a, v))
    tail = ctx.fsum(abs(y) for y in v)
    return [abs(y - d) + tail for y in v]


softmax_vjp_underflow = softmax_jvp_underflow


def log_softmax_vjp_underflow(ctx, z, v):
    """a_i = exp(l_i) underflows; it multiplies sum v."""
    return [abs(ctx.fsum(v))] * len(z)


def log_softmax_jvp_underflow(ctx, z, t):
    return [ctx.fsum(abs(x) for x in t)] * len(z)


def cross_entropy_vjp_underflow(ctx, z, y, c):
    return [abs(c)] * len(z)


def cross_entropy_jvp_underflow(ctx, z, y, t):
    return ctx.fsum(abs(x) for x in t)


def bce_grad_underflow(ctx, z, y, c):
    return abs(c)


def mdn_nll_vjp_underflow(ctx, w, mu, beta, y, c):
    """gamma_i (and pi_i) may underflow, and so may each partial product formed from them: in any
    order, the factors c, beta_i, d_i (or d_i^2/2 and 1/(2 beta_i)) multiply an eta: prod (1 + |factor|)."""
    c = 1 + abs(c)
    return ([2 * c] * len(w) + [c * (1 + b) * (1 + abs(y - m)) for b, m in zip(beta, mu)]
            + [c * (1 + (y - m) ** 2 / 2 + 1 / (2 * b)) for b, m in zip(beta, mu)])


def mdn_nll_jvp_underflow(ctx, w, mu, beta, y, tw, tm, tb):
    f = mdn_nll_vjp_underflow(ctx, w, mu, beta, y, ctx.one)
    return ctx.fsum(x * abs(t) for x, t in zip(f, list(tw) + list(tm) + list(tb)))


def product_underflow(ctx, *args):
    """1 + |c| (1 + sum |t_i| for a tangent row): the direction multiplies a product that may have
    underflowed; the last argument is the cotangent or the tangent."""
    last = args[-1]
    return 1 + (ctx.fsum(abs(x) for x in last) if isinstance(last, list) else abs(last))


def logaddexp_jvp_underflow(ctx, a, b, ta, tb):
    """1 + |t_a| + |t_b|: either partial may underflow, and each multiplies its tangent."""
    return 1 + abs(ta) + abs(tb)


def gaussian_nll_vjp_underflow(ctx, mu, y, beta, c):
    """An input or product read or flushed as 0 errs by eta, times what multiplies it: the mu-gradient
    c beta (mu - y) by |c| (1 + beta), the beta-gradient by |c| (1 + |d| + 1/beta)."""
    return [1 + abs(c) * (1 + beta), 1 + abs(c) * (1 + abs(y - mu) + 1 / beta)]


def gaussian_nll_jvp_underflow(ctx, mu, y, beta, tm, tb):
    """1 + |t_mu| (1 + beta) + |t_beta| (1 + d^2/2 + 1/(2 beta))."""
    return 1 + abs(tm) * (1 + beta) + abs(tb) * (1 + (y - mu) ** 2 / 2 + 1 / (2 * beta))
