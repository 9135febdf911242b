"""Inputs for ops over rows and batches (the out family): logit rows, labels, target
distributions, regression targets, Gaussian and mixture parameters.  Every value is exactly
representable in the target format.

A *recipe* (named by a clause's ``vectors`` key) gives deterministic groups and a
hypothesis strategy.  A group is a tuple of arrays sharing a leading *item* axis: for
row-wise ops an item is a row (softmax, cross-entropy), for ops that reduce a whole array
(MSE, a batch mean) an item is that array, for elementwise losses an item is one element.

Rows cover (ARCHITECTURE.md "Inputs that find real defects"):
- lengths 1, 2, 3, 8, 17, 1000, 1026 (vectorised main loops and their tails);
- spreads N(0, s), s in {1, 10, 1000} (where exp overflows unless the row is shifted);
- dominant-term rows: one entry above the rest by more than -log(eps) = (p-1) ln 2;
- masked rows (-inf entries: excluded classes), ties (all equal; two maxima), rows at the
  format's extremes (+-max_finite), and rows far below 0 (where e^z underflows unshifted);
- exhaustively every finite 16-bit z for the pairs [0, z] and for binary cross-entropy.

Also here: the cotangents and tangents of derivative checks (``directions``) and the
arguments of an op taken from a recipe's group (``op_args``).
"""
from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
from hypothesis import strategies as st

from ffnspec import spec
from ffnspec.conformance.inputs import scalars
from ffnspec.reference.floatformat import Format, round_array

LENGTHS = (1, 2, 3, 8, 17, 1000, 1026)
SPREADS = (1.0, 10.0, 1000.0)
LONG = 1000  # rows at least this long get fewer kinds (reference cost)
# The 16-bit limits (profile ``thorough``, 16-bit formats): a row of 2^16 + 1 entries passes the
# range of a 16-bit index (labels up to 2^16) and the counts a sequential 16-bit sum can carry
# (2^11 in float16, 2^8 in bfloat16: 1 + 1 + ... stalls there); its sum of squares passes
# float16's largest finite value (65504) where the mean does not.
LIMIT_LENGTH = 2 ** 16 + 1
LIMIT_RECIPES = ("logits", "logits_labels", "regression")

Group = tuple[np.ndarray, ...]


def _fit(a, fmt: Format) -> np.ndarray:
    """Round to fmt, clipping to the finite range first (keeps -inf masks)."""
    a = np.asarray(a, dtype=np.float64)
    finite = np.isfinite(a)
    a = np.where(finite, np.clip(a, -fmt.max_finite, fmt.max_finite), a)
    return round_array(a, fmt)


def _rng(*key) -> np.random.Generator:
    """A generator seeded by the key (deterministic across runs and processes)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def dominance_gap(fmt: Format) -> float:
    """-log(eps) = (p - 1) ln 2: beyond this gap every other e^{z_j - max} is below eps."""
    return (fmt.p - 1) * math.log(2)


# ------------------------------------------------------------------------ rows ----
def _rows(fmt: Format, n: int) -> np.ndarray:
    rng = _rng("rows", fmt.name, n)
    rows = [rng.standard_normal(n) * s for s in SPREADS]
    gap = dominance_gap(fmt)
    if n >= 2:
        for d in (gap + 1.0, 2 * gap + 4.0):                   # one entry dominates the rest
            r = rng.standard_normal(n)
            r[rng.integers(n)] = r.max() + d
            rows.append(r)
        r = rng.standard_normal(n) * 10                         # masked entries (excluded classes)
        r[rng.random(n) < 1 / 3] = -np.inf
        r[rng.integers(n)] = rng.standard_normal() * 10         # at least one class remains
        rows.append(r)
    if n < LONG:
        rows.append(np.full(n, rng.standard_normal() * 10))     # all tied
        if n >= 2:
            r = -(gap + 1 + rng.random(n) * gap)                # max 0, the rest below u: lse = log1p(r) tiny
            r[rng.integers(n)] = 0.0
            rows.append(r)
            r = rng.standard_normal(n)
            i, j = rng.choice(n, 2, replace=False)
            r[i] = r[j] = r.max() + 1                           # two tied maxima
            rows.append(r)
        ext = np.array([fmt.max_finite, -fmt.max_finite, fmt.max_finite / 2, 0.0, fmt.min_subnormal, -1.0])
        rows.append(rng.choice(ext, n))                         # the format's extremes
        rows.append(rng.standard_normal(n) - 2 * math.log(fmt.max_finite))  # e^z underflows unshifted
    return _fit(np.array(rows), fmt)


@functools.lru_cache(maxsize=None)
def logits(fmt: Format) -> list[Group]:
    """One group (rows,) per length."""
    return [(_rows(fmt, n),) for n in LENGTHS]


@functools.lru_cache(maxsize=None)
def pairs(fmt: Format) -> list[Group]:
    """Rows [0, z] for every z of the unary input region (every finite value in 16-bit formats)."""
    z = scalars.region(fmt)
    return [(np.stack([np.zeros_like(z), z], axis=1),)]


def _labels(rows: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """Each row three times: labelled with its maximum, its smallest finite entry, a random finite entry."""
    out_rows, ys = [], []
    for r in rows:
        finite = np.flatnonzero(np.isfinite(r))
        low = finite[np.argmin(r[finite])]
        for y in (int(np.argmax(r)), int(low), int(rng.choice(finite))):
            out_rows.append(r)
            ys.append(y)
    return np.array(out_rows), np.array(ys, dtype=np.float64)


@functools.lru_cache(maxsize=None)
def logits_labels(fmt: Format) -> list[Group]:
    """(rows, labels): cross-entropy targets at the largest, the smallest and a random class."""
    rng = _rng("labels", fmt.name)
    return [_labels(g[0], rng) for g in logits(fmt)]


@functools.lru_cache(maxsize=None)
def batches(fmt: Format) -> list[Group]:
    """(batches (B, m, n), labels (B, m)): three batches per shape, for batch reductions."""
    out = []
    for m, n in ((1, 3), (8, 3), (17, 8), (64, 10), (3, 1026)):
        rng = _rng("batches", fmt.name, m, n)
        z = np.stack([_fit(rng.standard_normal((m, n)) * s, fmt) for s in SPREADS])
        y = rng.integers(0, n, size=(len(SPREADS), m)).astype(np.float64)
        out.append((z, y))
    return out


def _distribution(rng, n: int, fmt: Format, onehot: bool = False) -> np.ndarray:
    """p_i = k_i 2^-e with sum k_i = 2^e: exactly representable and summing to 1 exactly."""
    e = min(fmt.p - 1, 10)
    if onehot:
        p = np.zeros(n)
        p[rng.integers(n)] = 1.0
        return p
    k = rng.multinomial(2 ** e, rng.dirichlet(np.full(n, 0.5)))
    return k / 2.0 ** e


@functools.lru_cache(maxsize=None)
def logits_soft(fmt: Format) -> list[Group]:
    """(rows, target distributions p): soft targets, one-hot targets; no masked logits."""
    out = []
    for n in (1, 2, 3, 8, 17, 1026):
        rng = _rng("soft", fmt.name, n)
        z = [rng.standard_normal(n) * s for s in SPREADS] + [rng.standard_normal(n)]
        p = [_distribution(rng, n, fmt) for _ in SPREADS] + [_distribution(rng, n, fmt, onehot=True)]
        out.append((_fit(np.array(z), fmt), np.array(p)))
    return out


@functools.lru_cache(maxsize=None)
def binary(fmt: Format) -> list[Group]:
    """(z, y) elementwise: every z of the unary region with y = 0 and y = 1, and every 16th with
    soft targets y in {1/4, RN(0.3), 1/2, 3/4}."""
    z = scalars.region(fmt)
    soft = z[::16]
    targets = (0.25, float(round_array(np.array([0.3]), fmt)[0]), 0.5, 0.75)
    zs = np.concatenate([z, z] + [soft] * len(targets))
    ys = np.concatenate([np.zeros_like(z), np.ones_like(z)] + [np.full_like(soft, v) for v in targets])
    return [(zs, ys)]


@functools.lru_cache(maxsize=None)
def spread_pairs(fmt: Format) -> list[Group]:
    """(a, b) elementwise: about 290 a across the unary region (its ends, +-max_finite, included)
    with b = a (a tie: J = a + log 2, each partial 1/2, where a + log 2 rounds to a once |a| >=
    2^p), RN(a - 1), RN(a - 40) (a tail below every format's u), RN(a - 1.015 log(max_finite))
    (e^|a - b| overflows while the smaller partial sigma(-|a - b|) is still a subnormal) and -a
    (|a - b| = 2|a|, which overflows at the top of the range), the last four in both orders."""
    z = scalars.region(fmt)
    a = np.unique(np.concatenate([z[::max(1, z.size // 256)], z[:16], z[-16:]]))
    beyond = float(round_array(np.array([1.015 * math.log(fmt.max_finite)]), fmt)[0])
    others = [_fit(a - 1, fmt), _fit(a - 40, fmt), _fit(a - beyond, fmt), -a]
    return [(np.concatenate([a] + others + [a] * len(others)), np.concatenate([a] * (1 + len(others)) + others))]


@st.composite
def _spread_pair(draw, fmt: Format):
    a = np.array([draw(_values(fmt)) for _ in range(draw(scalars.lengths()))])
    gap = np.array([draw(st.sampled_from([0.0, 0.5, 1.0, 20.0, 40.0, 100.0])) for _ in a])
    b = np.where(gap > 0, _fit(a - gap, fmt), a)
    return (a, b) if draw(st.booleans()) else (b, a)


@functools.lru_cache(maxsize=None)
def regression(fmt: Format) -> list[Group]:
    """(yhat, y) rows of every length and spread; ops reducing the whole array take a row each."""
    out = []
    for n in LENGTHS:
        rng = _rng("regression", fmt.name, n)
        yh = _fit(np.array([rng.standard_normal(n) * s for s in SPREADS]), fmt)
        y = _fit(np.array([rng.standard_normal(n) * s for s in SPREADS]), fmt)
        out.append((yh, _untie(yh, y, fmt)))
    return out


def _untie(yh: np.ndarray, y: np.ndarray, fmt: Format) -> np.ndarray:
    """y with every near-tie |yhat - y| < 2^(emin+2) moved away (ties are the |.| kink, a convention;
    a flush-to-zero backend reads subnormal inputs as 0, which can create or flip them)."""
    return np.where(np.abs(yh - y) < 4 * fmt.min_normal, _fit(yh + np.maximum(np.abs(yh), 1.0) / 8, fmt), y)


@functools.lru_cache(maxsize=None)
def pointwise(fmt: Format) -> list[Group]:
    """(yhat, y) elementwise, N(0, s) for each spread, with exact ties yhat = y."""
    rng = _rng("pointwise", fmt.name)
    yh = np.concatenate([rng.standard_normal(1024) * s for s in SPREADS])
    y = np.concatenate([rng.standard_normal(1024) * s for s in SPREADS])
    y[::64] = yh[::64]
    return [(_fit(yh, fmt), _fit(y, fmt))]


def _precisions(rng, size, fmt: Format) -> np.ndarray:
    """Predicted precisions beta > 0, log-uniform over [2^-8, 2^8]."""
    return _fit(2.0 ** rng.uniform(-8, 8, size), fmt)


@functools.lru_cache(maxsize=None)
def gaussian(fmt: Format) -> list[Group]:
    """(mu, y, beta) elementwise: heteroscedastic Gaussian output with a predicted precision."""
    rng = _rng("gaussian", fmt.name)
    n = 2048
    mu = np.concatenate([rng.standard_normal(n) * s for s in (1.0, 10.0)])
    y = np.concatenate([rng.standard_normal(n) * s for s in (1.0, 10.0)])
    beta = _precisions(rng, 2 * n, fmt)
    return [(_fit(mu, fmt), _fit(y, fmt), beta)]


@functools.lru_cache(maxsize=None)
def mixture(fmt: Format) -> list[Group]:
    """(w, mu, beta, y): mixture logits, means and precisions of K components, targets."""
    out = []
    for k in (1, 2, 3, 8):
        rng = _rng("mixture", fmt.name, k)
        m = 64
        s = np.repeat([3.0, 30.0], m // 2)[:, None]  # half the targets far from the means
        w = rng.standard_normal((m, k)) * 3
        mu = rng.standard_normal((m, k)) * s
        y = rng.standard_normal(m) * s[:, 0]
        out.append((_fit(w, fmt), _fit(mu, fmt), _precisions(rng, (m, k), fmt), _fit(y, fmt)))
    return out


@functools.lru_cache(maxsize=None)
def factors(fmt: Format) -> list[Group]:
    """(B,) square factors, some rank-deficient (a zero column): Sigma = B B^T is then singular."""
    out = []
    for d in (1, 2, 3, 8):
        rng = _rng("factors", fmt.name, d)
        b = rng.standard_normal((16, d, d)) * 4
        b[::2, :, 0] = 0.0
        out.append((_fit(b, fmt),))
    return out


@functools.lru_cache(maxsize=None)
def samples(fmt: Format) -> list[Group]:
    """(y,) rows of odd and even lengths, distinct values: the best constant of MSE and MAE."""
    out = []
    for n in (1, 3, 8, 17, 1001):
        rng = _rng("samples", fmt.name, n)
        y = [np.unique(_fit(rng.standard_normal(4 * n) * s, fmt))[:n] for s in SPREADS]
        y = [rng.permutation(r) for r in y if r.size == n]
        out.append((np.array(y),))
    return out


# --------------------------------------------------------------- hypothesis ----
@functools.lru_cache(maxsize=None)
def _values(fmt: Format, *, masked: bool = False, bound: float | None = None) -> st.SearchStrategy[float]:
    """Row entries (``scalars.floats``, within +-bound, or -inf masks): one strategy per
    arguments, drawn per entry (see ``scalars.floats``)."""
    v = scalars.floats(fmt)
    if bound is not None:
        v = v.filter(lambda x: abs(x) <= bound)
    if masked:
        v = st.one_of(v, v, v, v, st.just(-math.inf))
    return v


@st.composite
def _logit_rows(draw, fmt: Format, masked: bool = True, bound: float | None = None) -> np.ndarray:
    n = draw(scalars.lengths())
    m = draw(st.integers(1, 3))
    rows = np.array([[draw(_values(fmt, masked=masked, bound=bound)) for _ in range(n)] for _ in range(m)])
    for r in rows:
        if not np.isfinite(r).any():
            r[draw(st.integers(0, n - 1))] = draw(_values(fmt))
    return rows


@st.composite
def _labelled(draw, fmt: Format):
    rows = draw(_logit_rows(fmt))
    ys = [float(draw(st.sampled_from([int(i) for i in np.flatnonzero(np.isfinite(r))]))) for r in rows]
    return rows, np.array(ys)


@st.composite
def _soft(draw, fmt: Format):
    rows = draw(_logit_rows(fmt, masked=False, bound=fmt.max_finite / 4))  # log-probabilities representable
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    return rows, np.array([_distribution(rng, rows.shape[1], fmt, onehot=draw(st.booleans())) for _ in rows])


@st.composite
def _binary(draw, fmt: Format):
    z = np.array([draw(_values(fmt)) for _ in range(draw(scalars.lengths()))])
    y = np.array([draw(st.sampled_from([0.0, 1.0, 0.5, 0.25])) for _ in z])
    return z, y


def _bounded_rows(fmt: Format, k: int):
    bound = math.sqrt(fmt.max_finite) / 4  # squares stay finite
    @st.composite
    def draw_rows(draw):
        n = draw(scalars.lengths())
        return tuple(np.array([[draw(_values(fmt, bound=bound)) for _ in range(n)]]) for _ in range(k))
    return draw_rows()


@st.composite
def _gaussian(draw, fmt: Format):
    bound = math.sqrt(fmt.max_finite) / 64
    n = draw(scalars.lengths())
    mu = np.array([draw(_values(fmt, bound=bound)) for _ in range(n)])
    y = np.array([draw(_values(fmt, bound=bound)) for _ in range(n)])
    e = np.array([draw(st.floats(-8, 8)) for _ in range(n)])
    return mu, y, _fit(2.0 ** e, fmt)


@st.composite
def _mixture(draw, fmt: Format):
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    k = draw(scalars.lengths(scalars.SMALL_SIZES))
    m = draw(st.integers(1, 4))
    s = draw(st.sampled_from([0.5, 3.0, 30.0]))
    return (_fit(rng.standard_normal((m, k)) * s, fmt), _fit(rng.standard_normal((m, k)) * s, fmt),
            _precisions(rng, (m, k), fmt), _fit(rng.standard_normal(m) * s, fmt))


@st.composite
def _seeded(draw, fmt: Format, make: Callable):
    return make(fmt, np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1))))


def _batch(fmt: Format, rng) -> Group:
    m, n = (int(rng.choice(scalars.SMALL_SIZES)) for _ in range(2))
    s = rng.choice(SPREADS)
    return (_fit(rng.standard_normal((1, m, n)) * s, fmt), rng.integers(0, n, size=(1, m)).astype(np.float64))


def _factor(fmt: Format, rng) -> Group:
    d = int(rng.choice(scalars.SMALL_SIZES))
    return (_fit(rng.standard_normal((1, d, d)) * rng.choice([0.01, 1.0, 100.0]), fmt),)


def _sample(fmt: Format, rng) -> Group:
    n = int(rng.choice(scalars.DRAWN_LENGTHS))
    y = np.unique(_fit(rng.standard_normal(4 * n) * rng.choice(SPREADS), fmt))[:n]
    return (rng.permutation(y)[None, :],)


# ------------------------------------------------------------------ recipes ----
@dataclass(frozen=True)
class Recipe:
    groups: Callable[[Format], list[Group]]
    strategy: Callable[[Format], st.SearchStrategy[Group]] | None = None


RECIPES: dict[str, Recipe] = {
    "logits": Recipe(logits, lambda f: _logit_rows(f).map(lambda r: (r,))),
    "pairs": Recipe(pairs, lambda f: _values(f).map(lambda z: (np.array([[0.0, z]]),))),
    "logits_labels": Recipe(logits_labels, _labelled),
    "batches": Recipe(batches, lambda f: _seeded(f, _batch)),
    "logits_soft": Recipe(logits_soft, _soft),
    "binary": Recipe(binary, _binary),
    "spread_pairs": Recipe(spread_pairs, _spread_pair),
    "regression": Recipe(regression, lambda f: _bounded_rows(f, 2).map(lambda g: (g[0], _untie(g[0], g[1], f)))),
    "pointwise": Recipe(pointwise, lambda f: _bounded_rows(f, 2).map(lambda g: (g[0][0], g[1][0]))),
    "gaussian": Recipe(gaussian, _gaussian),
    "mixture": Recipe(mixture, _mixture),
    "factors": Recipe(factors, lambda f: _seeded(f, _factor)),
    "samples": Recipe(samples, lambda f: _seeded(f, _sample)),
}


def groups(name: str, fmt: Format, *, limits: bool = False) -> list[Group]:
    """The recipe's deterministic groups; with ``limits``, for 16-bit formats, also a group at
    the 16-bit limits (LIMIT_LENGTH; value clauses only: a derivative of a row has a component
    per entry, and each costs a reference evaluation)."""
    out = RECIPES[name].groups(fmt)
    if limits and fmt.p <= 11 and name in LIMIT_RECIPES:
        out = out + [_limit_group(name, fmt)]
    return out


@functools.lru_cache(maxsize=None)
def _limit_group(name: str, fmt: Format) -> Group:
    """One row of LIMIT_LENGTH entries (a vector reference stores every component, so one):
    all tied for the softmax family (softmax 1/n, a sum of n ones); N(0, 1) for cross-entropy,
    labelled with the last class (index 2^16) and the first; N(0, 16) pairs for the regression
    losses (sum of squares about 2^21, mean about 32)."""
    n = LIMIT_LENGTH
    rng = _rng("limits", name, fmt.name)
    if name == "regression":
        yh, y = (_fit(rng.standard_normal((1, n)) * 4, fmt) for _ in range(2))
        return (yh, _untie(yh, y, fmt))
    if name == "logits":
        return (_fit(np.full((1, n), 0.5), fmt),)
    z = _fit(rng.standard_normal((1, n)), fmt)
    return (np.repeat(z, 2, axis=0), np.array([n - 1, 0], dtype=np.float64))


def strategy(name: str, fmt: Format) -> st.SearchStrategy[Group] | None:
    make = RECIPES[name].strategy
    return make(fmt) if make is not None else None


# ------------------------------------------------ directions, op arguments ----
def directions(clause: spec.Clause, dtype: str, shapes: list[tuple[int, ...]], salt: int) -> list[np.ndarray]:
    """Cotangents or tangents: multiples of 1/4 in [-4, 4], seeded by clause, dtype and group.  Their
    differences are exact in every format, so no exact value of J t is a rounding midpoint shifted
    by an unresolvably small term (e.g. e^(-max_finite)), which Ziv's test could not settle."""
    rng = np.random.default_rng(zlib.crc32(f"{clause.id}|{dtype}|{salt}".encode()))
    return [rng.integers(-16, 17, size=s) / 4.0 for s in shapes]


def op_args(op: str, group: Group) -> Group:
    """The op's arguments from a group of the recipe of a clause that uses it."""
    if op == "bce_pos_weight":
        return (group[0], group[1], np.ones_like(group[0]))
    if op == "bce_prob":
        return (np.full_like(group[0], 0.25), group[1])
    return group
