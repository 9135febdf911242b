"""Reference functions of the ``hid`` family: rectifiers, maxout, hard tanh, radial basis
units, the low-rank projection and the folding tent map.

Elementwise functions are f(ctx, z, ...) on an mpmath context, evaluated and rounded once by
``ffnspec.reference.precision``.  Structured ones (maxout, RBF, low rank) take nested lists
of context numbers; the checks flatten them for ``precision.evaluate``.  Derivatives away
from kinks are closed forms (tests check them against mpmath.diff); at a kink the value is a
declared convention (spec/20_hid.toml [hid.conventions]), not a reference value.
Book: Goodfellow, Bengio & Courville, *Deep Learning*, §6.3, §6.4.1.
"""


# --- piecewise-linear units ----------------------------------------------------------

def relu(ctx, z):
    """max{0, z}."""
    return max(z, ctx.zero)


def relu_grad(ctx, z):
    """1 for z > 0, 0 for z < 0 (z = 0: convention)."""
    return ctx.one if z > 0 else ctx.zero


def rectifier(ctx, z, alpha):
    """max(0, z) + alpha min(0, z); alpha = 0 gives the ReLU (also at z = -inf: the limit 0)."""
    return max(z, ctx.zero) + (alpha * min(z, ctx.zero) if alpha else ctx.zero)


def rectifier_grad(ctx, z, alpha):
    """1 for z > 0, alpha for z < 0 (z = 0: convention)."""
    return ctx.one if z > 0 else alpha


def absolute(ctx, z):
    """|z| = rectifier(z, -1)."""
    return abs(z)


def absolute_grad(ctx, z):
    """sign(z) for z != 0 (z = 0: convention)."""
    return ctx.one if z > 0 else -ctx.one


def hardtanh(ctx, z):
    """max{-1, min{1, z}}."""
    return max(-ctx.one, min(ctx.one, z))


def hardtanh_grad(ctx, z):
    """1 inside (-1, 1), 0 outside (z = +-1: convention)."""
    return ctx.one if abs(z) < 1 else ctx.zero


# --- maxout (§6.3.1, eq. 6.38) --------------------------------------------------------

def maxout(ctx, *group):
    """max_{j in G} z_j."""
    return max(group)


def maxout_route(ctx, rule, *group):
    """Routing weights w_j of the upstream gradient in one group: 1 at the arg-max; with t
    tied maxima 1/t each ("even"), or 1 at the first / last of them."""
    top = max(group)
    tied = [j for j, v in enumerate(group) if v == top]
    w = [ctx.zero] * len(group)
    if rule == "even":
        for j in tied:
            w[j] = ctx.one / len(tied)
    else:
        w[tied[0] if rule == "first" else tied[-1]] = ctx.one
    return w


# --- PReLU: the slope's gradient, summed over every use of a shared alpha --------------

def prelu_grad_alpha(ctx, g, z):
    """sum_i g_i min(0, z_i) over the uses i of one alpha."""
    return ctx.fsum(gi * min(zi, ctx.zero) for gi, zi in zip(g, z))


def prelu_grad_alpha_scale(ctx, g, z):
    """S = sum_i |g_i min(0, z_i)|, the magnitude of the summed terms."""
    return ctx.fsum(abs(gi * min(zi, ctx.zero)) for gi, zi in zip(g, z))


# --- radial basis units (§6.3.3) --------------------------------------------------------

def rbf_exponent(ctx, x, w, sigma):
    """q = ||x - w||^2 / sigma^2."""
    return ctx.fsum((xj - wj) ** 2 for xj, wj in zip(x, w)) / sigma ** 2


def rbf(ctx, x, w, sigma):
    """h = exp(-||x - w||^2 / sigma^2)."""
    return ctx.exp(-rbf_exponent(ctx, x, w, sigma))


def rbf_scale(ctx, x, w, sigma):
    """S = q h: the sensitivity of h to a relative perturbation of q."""
    q = rbf_exponent(ctx, x, w, sigma)
    return q * ctx.exp(-q)


def rbf_grad_terms(ctx, x, W, sigma, seed, mode, wrt, index):
    """The terms summed into one derivative entry, as (term, q, factor) with factor = term / h.

    mode "vjp": seed is the cotangent gbar (N x n); wrt "x" (index (a, j)), "W" ((i, j)) or
    "sigma" ((i,)).  mode "jvp": seed is the tangents (xdot, Wdot, sigmadot); wrt "h", index (a, i).
    dh/dx_j = -2 h (x_j - W_ij) / sigma^2,  dh/dW_ij = -dh/dx_j,  dh/dsigma = 2 h q / sigma."""
    out = []

    def unit(a, i):
        q = rbf_exponent(ctx, x[a], W[i], sigma[i])
        return q, ctx.exp(-q)

    if mode == "jvp":
        xd, Wd, sd = seed
        a, i = index
        q, h = unit(a, i)
        for j in range(len(x[a])):
            f = -2 * (x[a][j] - W[i][j]) / sigma[i] ** 2
            out += [(h * f * xd[a][j], q, f * xd[a][j]), (-h * f * Wd[i][j], q, -f * Wd[i][j])]
        f = 2 * q / sigma[i]
        out.append((h * f * sd[i], q, f * sd[i]))
        return out
    g = seed
    if wrt == "x":
        a, j = index
        for i in range(len(W)):
            q, h = unit(a, i)
            f = g[a][i] * -2 * (x[a][j] - W[i][j]) / sigma[i] ** 2
            out.append((h * f, q, f))
    elif wrt == "W":
        i, j = index
        for a in range(len(x)):
            q, h = unit(a, i)
            f = g[a][i] * 2 * (x[a][j] - W[i][j]) / sigma[i] ** 2
            out.append((h * f, q, f))
    else:
        (i,) = index
        for a in range(len(x)):
            q, h = unit(a, i)
            f = g[a][i] * 2 * q / sigma[i]
            out.append((h * f, q, f))
    return out


def rbf_grad(ctx, *problem):
    """One derivative entry: the sum of its terms."""
    return ctx.fsum(t for t, _, _ in rbf_grad_terms(ctx, *problem))


def rbf_grad_scale(ctx, *problem):
    """S = sum |t| (1 + q): each term's sensitivity to the stored h's error (d + 5)(1 + q) u."""
    return ctx.fsum(abs(t) * (1 + q) for t, q, _ in rbf_grad_terms(ctx, *problem))


def rbf_grad_underflow(ctx, *problem):
    """c = sum |t / h|: what multiplies a subnormal h's absolute error."""
    return ctx.fsum(abs(f) for _, _, f in rbf_grad_terms(ctx, *problem))


# --- low-rank linear projection W = VU (§6.3.3) ------------------------------------------

def lowrank(ctx, x, V, U, i):
    """(V (U x))_i."""
    return ctx.fsum(V[i][l] * ctx.fsum(U[l][j] * x[j] for j in range(len(x))) for l in range(len(U)))


def lowrank_scale(ctx, x, V, U, i):
    """S = sum_l |V_il| sum_j |U_lj x_j|."""
    return ctx.fsum(abs(V[i][l]) * ctx.fsum(abs(U[l][j] * x[j]) for j in range(len(x))) for l in range(len(U)))


# --- depth: folding by absolute-value units (§6.4.1, Fig. 6.5) --------------------------

def tent(ctx, x, layers):
    """T^l(x), T(x) = 1 - |1 - 2x|: 2^l linear pieces on [0, 1]."""
    for _ in range(int(layers)):
        x = 1 - abs(1 - 2 * x)
    return x


def tent_grad(ctx, x, layers):
    """(T^l)'(x) inside a piece: the product of the layers' slopes +-2."""
    d = ctx.one
    for _ in range(int(layers)):
        d *= 2 if x < ctx.mpf(1) / 2 else -2
        x = 1 - abs(1 - 2 * x)
    return d
