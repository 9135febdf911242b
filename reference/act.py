"""Reference functions of the ``act`` family: sigmoid, softplus, log-sigmoid, tanh, SiLU.

Each function is f(ctx, z) on an mpmath context; ``ffnspec.reference.precision``
chooses the precision and rounds once.  Formulas are written in forms free of
cancellation so that the working precision is spent on the answer.
Book: Goodfellow, Bengio & Courville, *Deep Learning*, §3.10, §6.2.2.2, §6.3.
"""


def sigmoid(ctx, z):
    """sigma(z) = 1 / (1 + e^-z)."""
    return 1 / (1 + ctx.exp(-z))


def softplus(ctx, z):
    """zeta(z) = log(1 + e^z) = max(z, 0) + log1p(e^-|z|)."""
    return max(z, 0) + ctx.log1p(ctx.exp(-abs(z)))


def log_sigmoid(ctx, z):
    """log sigma(z) = -zeta(-z)."""
    return -softplus(ctx, -z)


def tanh(ctx, z):
    """tanh(z)."""
    return ctx.tanh(z)


def silu(ctx, z):
    """SiLU / swish: z sigma(z)."""
    return z * sigmoid(ctx, z)


def logaddexp(ctx, x, y):
    """log(e^x + e^y) = max + log1p(e^-|x-y|)."""
    return max(x, y) + ctx.log1p(ctx.exp(-abs(x - y)))


# --- derivatives (closed forms; tests check each against mpmath.diff) ---------

def sigmoid_grad(ctx, z):
    """sigma'(z) = sigma(z) sigma(-z)."""
    return sigmoid(ctx, z) * sigmoid(ctx, -z)


def softplus_grad(ctx, z):
    """zeta'(z) = sigma(z)."""
    return sigmoid(ctx, z)


def log_sigmoid_grad(ctx, z):
    """(log sigma)'(z) = sigma(-z)."""
    return sigmoid(ctx, -z)


def tanh_grad(ctx, z):
    """tanh'(z) = 1 - tanh^2(z) = sech^2(z)."""
    return ctx.sech(z) ** 2


def silu_grad(ctx, z):
    """(z sigma(z))' = sigma(z) (1 + z sigma(-z))."""
    return sigmoid(ctx, z) * (1 + z * sigmoid(ctx, -z))


# --- error scales S(z) for the mixed derivative criterion ----------------------
# S is the first-order sensitivity of the derivative to the permitted error of the
# forward value it is computed from (back-propagation reuses stored outputs,
# §6.5.6), plus |z g'(z)|, its sensitivity to a relative perturbation of z.

def sigmoid_grad_scale(ctx, z):
    """y = sigma(z), g = y(1-y): S = |1 - 2y| y + |z g'(z)|."""
    y = sigmoid(ctx, z)
    return abs(1 - 2 * y) * y + abs(z * sigmoid_grad(ctx, z) * (1 - 2 * y))


def tanh_grad_scale(ctx, z):
    """y = tanh(z), g = 1 - y^2: S = 2 y^2 + |z g'(z)| = 2y^2 + 2|z y g|."""
    y = ctx.tanh(z)
    return 2 * y * y + abs(2 * z * y * tanh_grad(ctx, z))


def softplus_grad_scale(ctx, z):
    """g = sigma(z), computed from z: S = |z sigma'(z)|."""
    return abs(z * sigmoid_grad(ctx, z))


def log_sigmoid_grad_scale(ctx, z):
    """g = sigma(-z), computed from z: S = |z sigma'(z)|."""
    return abs(z * sigmoid_grad(ctx, z))


def silu_grad_scale(ctx, z):
    """g = sigma(z)(1 + z sigma(-z)): S = sigma(z) + |z| sigma'(z) (|1 + z(1-2 sigma)| + 1)
    -- the magnitudes of the summed terms, each perturbed relatively."""
    s, ds = sigmoid(ctx, z), sigmoid_grad(ctx, z)
    return s + abs(z) * ds * (abs(1 + z * (1 - 2 * s)) + 1)


# --- Bernoulli output unit (§6.2.2.2, eqs. 6.20-6.23) ---------------------------

def silu_grad_accuracy_scale(ctx, z):
    """S_acc = sigma(z) + |z| sigma(z) sigma(-z): the magnitudes of the two terms of
    g = sigma + z sigma sigma(-z), whose cancellation near the zero of g no algorithm avoids."""
    s = sigmoid(ctx, z)
    return s + abs(z) * s * sigmoid(ctx, -z)


def bernoulli_p1(ctx, z):
    """P(y=1 | z) = exp(1 z) / (exp(0 z) + exp(1 z))."""
    return ctx.exp(z) / (ctx.exp(0) + ctx.exp(z))


def bernoulli_p0(ctx, z):
    """P(y=0 | z) = exp(0 z) / (exp(0 z) + exp(1 z))."""
    return ctx.exp(0) / (ctx.exp(0) + ctx.exp(z))


def silu_underflow_scale(ctx, z):
    """c(z) = |z|: the factor by which z sigma(z) multiplies sigma's underflow error."""
    return abs(z)
