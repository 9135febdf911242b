"""Inputs that find real defects: every value is exactly representable in the
target format.  Deterministic regions (exhaustive for 16-bit formats; threshold
neighbourhoods and a grid-uniform sample otherwise) plus hypothesis strategies.

Thresholds (ARCHITECTURE.md "Inputs that find real defects"): where exp overflows
and underflows, where 1 + e^-z rounds to 1 (p ln 2), where sigma rounds to 1
((p+1) ln 2), where tanh rounds to 1, constants libraries hard-code (15, 20, 33,
Eigen's tanh clamp 7.90531), each +-256 grid steps.  Kinks of piecewise-linear units:
+-0, the smallest subnormals, 1-8 grid steps either side, the smallest normals.

Structured problems (matrices, slopes, groups) are built from drawn values with
``pool``, ``cycle`` and ``mantissa``, so they stay exactly representable.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from hypothesis import strategies as st

from ffnspec.reference.floatformat import Format, all_values, from_ordinal, ordinal, round_array, value_at

NEIGHBOURHOOD = 256
GRID_SAMPLE = 4096
LENGTHS = (1, 3, 8, 17, 1000, 1026)
STEPS = 8         # grid steps either side of a kink
POOL = 4096       # at most this many drawn values feed one deterministic pass of a structured check


def thresholds(fmt: Format) -> np.ndarray:
    """Branch and information-loss points of the act family in fmt, both signs."""
    ln2 = math.log(2)
    pts = [
        math.log(fmt.max_finite),            # exp overflows
        math.log(fmt.min_subnormal),         # exp underflows to 0
        math.log(fmt.min_normal),            # exp becomes subnormal
        fmt.p * ln2, (fmt.p + 1) * ln2,      # 1 + e^-z == 1; sigma(z) == 1
        (fmt.p + 2) * ln2 / 2,               # tanh(z) rounds to 1
        15.0, 20.0, 33.0, 9.0, 7.90531110763549805,  # hard-coded library thresholds
        1.0, 0.0,
    ]
    pts = np.array(pts + [-p for p in pts])
    pts = pts[np.abs(pts) <= fmt.max_finite]
    return np.unique(round_array(pts, fmt))


def clip_domain(z: np.ndarray, domain: tuple[float, float] | None) -> np.ndarray:
    if domain is None:
        return z
    return z[(z >= domain[0]) & (z <= domain[1])]


@functools.lru_cache(maxsize=None)
def _regions(fmt: Format) -> np.ndarray:
    if fmt.p <= 11 or fmt.name == "bfloat16":  # 16-bit: every finite value
        return all_values(fmt)
    top = int(ordinal(np.array([fmt.max_finite]), fmt)[0])
    centres = ordinal(thresholds(fmt), fmt)
    steps = np.arange(-NEIGHBOURHOOD, NEIGHBOURHOOD + 1)
    near = (centres[:, None] + steps[None, :]).ravel()
    rng = np.random.default_rng(0x6ff5)  # fixed: the deterministic region is a table
    grid = rng.integers(-top, top + 1, size=GRID_SAMPLE)
    ends = np.concatenate([np.arange(0, 64), np.arange(top - 63, top + 1)])
    idx = np.unique(np.clip(np.concatenate([near, grid, ends, -ends]), -top, top))
    return from_ordinal(idx, fmt)


def region(fmt: Format, domain: tuple[float, float] | None = None, *, dense_runs: bool = False) -> np.ndarray:
    """The deterministic input set for a unary clause in fmt (sorted, finite).  With
    ``dense_runs`` (clauses about neighbouring inputs, e.g. monotonicity) it adds 256 runs
    of 4096 consecutive grid values at seeded random places: 10^6 adjacent pairs."""
    z = _regions(fmt)
    if dense_runs and fmt.p > 11 and fmt.name != "bfloat16":
        z = np.unique(np.concatenate([z, _dense_runs(fmt)]))
    return clip_domain(z, domain)


@functools.lru_cache(maxsize=None)
def _dense_runs(fmt: Format, runs: int = 256, length: int = 4096) -> np.ndarray:
    # three in four runs where activations are not saturated (|z| in [2^-4, 2^10]), the rest anywhere
    top = int(ordinal(np.array([fmt.max_finite]), fmt)[0])
    rng = np.random.default_rng(0x0ad1)
    mags = 2.0 ** rng.uniform(-4, 10, size=3 * runs // 4) * rng.choice([-1.0, 1.0], size=3 * runs // 4)
    starts = np.concatenate([ordinal(round_array(mags, fmt), fmt),
                             rng.integers(-top, top - length, size=runs - 3 * runs // 4)])
    starts = np.clip(starts, -top, top - length)
    return from_ordinal((starts[:, None] + np.arange(length)[None, :]).ravel(), fmt)


def successors(z: np.ndarray, fmt: Format, count: int = 8) -> np.ndarray:
    """The finite z and the ``count`` grid values above each, sorted, once each (one zero):
    adjacent pairs even for random z.  Deduplicated as grid positions, before converting."""
    top = int(ordinal(np.array([fmt.max_finite]), fmt)[0])
    o = np.sort(ordinal(z[np.isfinite(z)], fmt))
    if not o.size:
        return from_ordinal(o, fmt)
    o = o[np.concatenate([[True], o[1:] != o[:-1]])]  # np.unique is ~50x slower on int64 in NumPy 2.4
    # the union of the runs [o_i, o_i + count], in order: each run stops where the next starts
    # (differences taken only where small: the full range overflows int64)
    run = np.append(np.where(o[1:] - (count + 1) < o[:-1], o[1:] - o[:-1], count + 1),
                    min(count + 1, top - int(o[-1]) + 1))
    start = np.repeat(np.cumsum(run) - run, run)
    return from_ordinal(np.repeat(o, run) + np.arange(start.size) - start, fmt)


def kink_inputs(fmt: Format, kinks) -> np.ndarray:
    """At and beside each kink, and at the ends of the range: finite values, -0 included."""
    top = int(ordinal(np.array([fmt.max_finite]), fmt)[0])
    sub = 1 << (fmt.p - 1)                       # ordinal of the smallest normal
    idx = [np.arange(-STEPS, STEPS + 1), sub + np.arange(-2, 3), -(sub + np.arange(-2, 3)),
           top - np.arange(STEPS), -(top - np.arange(STEPS))]
    for c in kinks:
        if c != 0:
            o = int(ordinal(np.array([float(c)]), fmt)[0])
            idx.append(o + np.arange(-STEPS, STEPS + 1))
    z = from_ordinal(np.clip(np.concatenate(idx), -top, top), fmt)
    return np.concatenate([np.unique(z), [-0.0]])


def make_args(templates: tuple[str, ...], z: np.ndarray) -> list[np.ndarray]:
    """Arguments of an op call formed exactly from z: "z", "-z", "2z" or a constant."""
    out = []
    for t in templates:
        if t == "z":
            out.append(z)
        elif t == "-z":
            out.append(-z)
        elif t == "2z":
            out.append(2 * z)
        else:
            out.append(np.full_like(z, float(t)))
    return out


def finite_args(templates: tuple[str, ...], z: np.ndarray, fmt: Format) -> np.ndarray:
    """Drop inputs whose derived arguments would overflow the format (e.g. 2z)."""
    keep = np.ones(z.shape, dtype=bool)
    for a in make_args(templates, z):
        keep &= np.abs(a) <= fmt.max_finite
    return z[keep]


# --- structured problems from drawn values ----------------------------------------
def pool(z: np.ndarray, fmt: Format, *, extra=(), finite: bool = True, size: int = POOL) -> np.ndarray:
    """Up to ``size`` of the drawn values (a fixed sample of a large region) plus ``extra``."""
    z = np.asarray(z, dtype=np.float64)
    if finite:
        z = z[np.isfinite(z)]
    if z.size > size:
        z = np.random.default_rng(0x41d).choice(z, size, replace=False)
    out = np.concatenate([z, np.asarray(extra, dtype=np.float64)])
    return out if out.size else np.array([1.0])


def cycle(v: np.ndarray, n: int, offset: int = 0) -> np.ndarray:
    """n values taken cyclically from v (a short hypothesis draw fills any shape)."""
    return v[(np.arange(n) + offset) % v.size]


def mantissa(v: np.ndarray, fmt: Format, lo: int, hi: int) -> np.ndarray:
    """Each value's significand in [1, 2), signed, times 2^e with e in [lo, hi] chosen by its
    grid position: full-precision values of a controlled magnitude (exact scaling)."""
    v = np.where(np.isfinite(v) & (v != 0), v, 1.0)
    m, _ = np.frexp(v)
    e = lo + np.abs(ordinal(v, fmt)) % (hi - lo + 1)
    return round_array(np.ldexp(2 * m, e.astype(int)), fmt)


# --- hypothesis ------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def floats(fmt: Format, domain: tuple[float, float] | None = None) -> st.SearchStrategy[float]:
    """Finite fmt values: grid-uniform, near thresholds, subnormal, or simple.  Made once per
    (fmt, domain): composite strategies draw it per element, and a new strategy object costs
    hypothesis a validation each time (most of a run's time, before this cache)."""
    top = int(ordinal(np.array([fmt.max_finite]), fmt)[0])
    sub = 1 << (fmt.p - 1)
    centres = [int(c) for c in ordinal(thresholds(fmt), fmt)]
    pick = st.one_of(
        st.integers(-top, top),
        st.builds(lambda c, k: c + k, st.sampled_from(centres), st.integers(-NEIGHBOURHOOD, NEIGHBOURHOOD)),
        st.integers(-sub, sub),
    ).map(lambda i: value_at(max(-top, min(top, i)), fmt))
    values = st.one_of(pick, st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0]))
    if domain is not None:
        lo, hi = domain
        values = values.map(lambda v: v if lo <= v <= hi else float(round_array(np.array([min(max(v, lo), hi)]), fmt)[0])
                            ).filter(lambda v: lo <= v <= hi)
    return values


# The lengths hypothesis draws (rows, arrays): both sides of 4-, 8- and 16-lane loops.  Few
# distinct shapes, so a backend that compiles per shape (JAX: each jax.nn op, each derivative)
# compiles each op a handful of times; num.length_invariance checks its own lengths (LENGTHS).
DRAWN_LENGTHS = (1, 2, 3, 4, 7, 8, 9, 16, 17)
SMALL_SIZES = (1, 2, 3, 4, 7, 8)  # batch sizes, mixture components, factor sizes


def lengths(sizes: tuple[int, ...] = DRAWN_LENGTHS) -> st.SearchStrategy[int]:
    """A drawn length (or size): one of ``sizes``."""
    return st.sampled_from(sizes)


@functools.lru_cache(maxsize=None)
def _lists(fmt: Format, domain: tuple[float, float] | None, n: int) -> st.SearchStrategy[list[float]]:
    return st.lists(floats(fmt, domain), min_size=n, max_size=n)


def arrays(fmt: Format, domain: tuple[float, float] | None = None) -> st.SearchStrategy[np.ndarray]:
    """1-d arrays of ``floats``, of the lengths in DRAWN_LENGTHS."""
    return lengths().flatmap(lambda n: _lists(fmt, domain, n)).map(lambda v: np.array(v, dtype=np.float64))
