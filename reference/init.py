"""Reference functions of the ``init`` family: initialisation (seed 003; Glorot & Bengio 2010,
He et al. 2015, Saxe et al. 2014): the target distributions' parameters, and the statistical
thresholds with their false-alarm rates and power (spec/70_init.toml).

W has shape (fan_out, fan_in) (the layer maps fan_in inputs to fan_out units, as
torch.nn.Linear.weight).  The thresholds are non-asymptotic:
  DKW-Massart: P(sup_x |F_n(x) - F(x)| > e) <= 2 exp(-2 n e^2)  (Massart, Ann. Probab. 18, 1990);
  Laurent-Massart: for X ~ chi^2_n, P(X - n >= 2 sqrt(n x) + 2 x) <= e^-x and
      P(n - X >= 2 sqrt(n x)) <= e^-x  (Ann. Statist. 28, 2000, Lemma 1);
  Hoeffding: for i.i.d. Y_i in [0, c], P(|mean Y - E Y| >= t) <= 2 exp(-2 n t^2 / c^2);
  for sign counts, Hoeffding with c = 1.
"""
from __future__ import annotations

import math

# The family-wise false-alarm budget of one run (one backend, every dtype) and the number of
# tests it is shared by (Bonferroni): a run performs at most TESTS_PER_RUN tests.
FAMILY_ALPHA = 1e-6
TESTS_PER_RUN = 128
ALPHA = FAMILY_ALPHA / TESTS_PER_RUN          # per test
MISS = 1e-3                                   # the power target: miss probability <= 10^-3


def xavier_uniform_bound(ctx, fan_in, fan_out, gain):
    """a = gain sqrt(6 / (fan_in + fan_out)): W ~ U(-a, a) (Glorot & Bengio 2010, eq. 16)."""
    return gain * ctx.sqrt(ctx.mpf(6) / (fan_in + fan_out))


def xavier_normal_std(ctx, fan_in, fan_out, gain):
    """sigma = gain sqrt(2 / (fan_in + fan_out)): W ~ N(0, sigma^2)."""
    return gain * ctx.sqrt(ctx.mpf(2) / (fan_in + fan_out))


def kaiming_std(ctx, fan, gain):
    """sigma = gain / sqrt(fan), fan = fan_in (forward) or fan_out (backward) (He et al. 2015)."""
    return gain / ctx.sqrt(ctx.mpf(fan))


def kaiming_uniform_bound(ctx, fan, gain):
    """a = gain sqrt(3 / fan): the uniform law with the same variance."""
    return gain * ctx.sqrt(ctx.mpf(3) / fan)


# ------------------------------------------------------------------ thresholds ----
def dkw_epsilon(n: int, alpha: float = ALPHA) -> float:
    """The KS threshold with P(D_n > e) <= alpha under the null: sqrt(ln(2/alpha) / (2n))."""
    return math.sqrt(math.log(2 / alpha) / (2 * n))


def ks_power_miss(n: int, delta: float, slack: float, alpha: float = ALPHA) -> float:
    """Miss probability of the KS test against an alternative at sup-distance delta from the null,
    the threshold being dkw_epsilon + slack: P(D_n <= e) <= P(sup|F_n - G| >= delta - e)
    <= 2 exp(-2 n (delta - e)^2) (1 when delta <= e)."""
    e = dkw_epsilon(n, alpha) + slack
    return 1.0 if delta <= e else min(1.0, 2 * math.exp(-2 * n * (delta - e) ** 2))


def chi2_band(n: int, alpha: float = ALPHA) -> tuple[float, float]:
    """(lo, hi) with P(X/n outside [lo, hi]) <= alpha for X ~ chi^2_n (Laurent-Massart, alpha/2 a side)."""
    x = math.log(2 / alpha)
    return 1 - 2 * math.sqrt(x / n), 1 + 2 * math.sqrt(x / n) + 2 * x / n


def chi2_power_miss(n: int, ratio: float, slack: float, alpha: float = ALPHA) -> float:
    """Miss probability of the second-moment test for normal data whose true variance is ratio times
    the null's: the statistic is ratio chi^2_n / n; with the band widened by the relative slack,
    Laurent-Massart bounds the chance it falls inside."""
    lo, hi = chi2_band(n, alpha)
    lo, hi = lo * (1 - slack), hi * (1 + slack)
    if ratio > 1:   # need P(ratio X/n <= hi) = P(n - X >= n (1 - hi/ratio)) <= e^-x, x = (n (1 - hi/ratio))^2 / (4n)
        gap = n * (1 - hi / ratio)
    else:           # need P(ratio X/n >= lo) = P(X - n >= n (lo/ratio - 1)); solve 2 sqrt(n x) + 2 x = gap
        gap = n * (lo / ratio - 1)
    if gap <= 0:
        return 1.0
    if ratio > 1:
        return min(1.0, math.exp(-gap * gap / (4 * n)))
    s = (-math.sqrt(n) + math.sqrt(n + 2 * gap)) / 2   # sqrt(x) solving 2 sqrt(n) r + 2 r^2 = gap
    return min(1.0, math.exp(-s * s))


def hoeffding_t(n: int, c: float, alpha: float = ALPHA) -> float:
    """t with P(|mean - E| >= t) <= alpha for n i.i.d. values in [0, c]: c sqrt(ln(2/alpha) / (2n))."""
    return c * math.sqrt(math.log(2 / alpha) / (2 * n))


def hoeffding_power_miss(n: int, gap: float, c: float, alpha: float = ALPHA) -> float:
    """Miss probability when the true mean sits gap away from the null's: 2 exp(-2 n (gap - t)^2 / c^2)."""
    t = hoeffding_t(n, c, alpha)
    return 1.0 if gap <= t else min(1.0, 2 * math.exp(-2 * n * (gap - t) ** 2 / c ** 2))


# ------------------------------------------------------------- saddle, biases ----
def zero_weight_grads(ctx, Y, b2, m):
    """The tanh network's gradient at W1 = b1 = W2 = 0: hidden parts 0 (H = tanh 0 = 0 and
    W2 = 0), dJ/db2 = 2 (b2 - mean Y).  Returns [0] * (2m + m + m) + [dJ/db2]."""
    m = int(m)
    return [ctx.zero] * (4 * m) + [2 * (ctx.mpf(b2) - ctx.fsum(ctx.mpf(y) for y in Y) / len(Y))]


def zero_bias(ctx, n):
    """Biases start at 0 (seed 003)."""
    return [ctx.zero] * int(n)
