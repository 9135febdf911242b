"""Special values as limits: the expected result of an op at +-0, +-inf and NaN arguments.

The rule (docs/measure.md "Special values"; IEEE 754-2019 §6.3, §9.2; Deep Learning §4.1, §6.2):

1. NaN.  A NaN argument gives NaN.  Where the exact function does not depend on that argument
   at that point (prelu(1, alpha), bce(0, y) = log 2), the value it has there is accepted too,
   as IEEE 754-2019 §9.2.1 does for hypot(inf, NaN) = inf.
2. Limits.  Finite arguments, +-0 included, are exact values.  Each +-inf argument is approached
   along +-2^(1024 + e), independently of the others.  The expected value is the joint limit of
   the exact function in the extended reals, rounded once to the format; where it does not exist
   (inf - inf in mse(inf, inf), a softmax of two +inf entries: the answer depends on the path)
   it is NaN.  An exact zero times an infinite argument is the function's own value there:
   prelu(-inf, 0) = relu(-inf) = 0, bce(-inf, 0) = 0, gaussian_nll(mu, inf, 0) = +inf (the
   precision 0 contributes -log(0)/2 = +inf whatever y is), not IEEE multiplication's NaN.
3. Zeros.  The sign of a zero result comes from the zero arguments read as directions: +-0 is
   approached along +-2^-e (from inside the domain where its own side lies outside it).  Where
   every argument is finite, a zero limit reached through values of one sign has that sign
   (the sign rules of IEEE 754-2019 §6.3 and odd functions: tanh(-0) = -0, (-0) * 1 = -0,
   |(-0) - (+0)| = +0).  At an infinite argument it may be either zero: the stable forms of §6.2
   reach such a limit as a difference of equal terms (m - lse(z)), +0 by §6.3, or as the negation
   of one (-log_softmax(z)_y), -0; a clause's hand-written table may demand more
   (sigmoid(-inf) = +0).  A function identically 0 near the point, approaching 0 through both
   signs, or a nonzero value that merely underflows in the format, leaves the sign free.

The joint limit is found on a ladder of three levels per special argument (e = 64, 128, 256),
every combination of levels evaluated at 320 bits with the clause's mpmath reference: a finite
limit when all values agree to 2^-48 (relative to 1 + |value|), +-inf when all values have one
sign and the smallest magnitude over the combinations at or above each level is at least 8 and
grows with the level, NaN otherwise.  tests/test_special_limits.py checks the outcomes against mpmath's own
closed forms at huge finite arguments and against the hand-written tables in spec/.
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import mpmath

LEVELS = (64, 128, 256)
PREC = 320
AGREE = mpmath.mpf(2) ** -48
GROWS = 8  # a divergence is at least this large at the first level (log(2^1088) / 2 = 377 is the slowest here)


@dataclass(frozen=True)
class Limit:
    """The expected result of one output component: ``value`` (a float in the extended reals,
    before rounding: an mpf, or nan), ``sign`` of a zero result (+1, -1, or 0: either), and
    ``or_value``: a non-NaN value also accepted in place of NaN (rule 1), else None."""
    value: object
    sign: int = 0
    or_value: object = None


NAN = Limit(mpmath.mpf("nan"))


def _approach(x: float, level: int, lo: float, hi: float) -> mpmath.mpf:
    """The argument x at ladder level ``level``: +-inf -> +-2^(1024 + e), beyond every format's
    largest finite, +-0 -> +-2^-e (inside [lo, hi])."""
    if math.isinf(x):
        return mpmath.mpf(2) ** (1024 + LEVELS[level]) * (1 if x > 0 else -1)
    side = -1 if math.copysign(1.0, x) < 0 else 1
    if side < 0 and lo >= 0:
        side = 1
    elif side > 0 and hi <= 0:
        side = -1
    return mpmath.mpf(2) ** -LEVELS[level] * side


def _components(v) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _classify(values: list, levels: list[tuple[int, ...]], any_inf: bool) -> Limit:
    """One output component's limit from its values over the ladder combinations."""
    if any(not hasattr(v, "_mpf_") or mpmath.isnan(v) for v in values):  # a complex result: outside the domain
        return NAN
    top = values[levels.index(max(levels))]
    if all(mpmath.isfinite(v) for v in values):
        size = max(abs(v) for v in values)
        if max(values) - min(values) <= AGREE * (1 + size):
            varies = max(values) - min(values) > AGREE ** 2 * size
            if not (varies and abs(top) <= AGREE):
                return Limit(top)  # a value that merely underflows in a format keeps no sign
            signs = {int(mpmath.sign(v)) for v in values}
            return Limit(mpmath.mpf(0), signs.pop() if len(signs) == 1 and not any_inf else 0)
    if all(v == values[0] for v in values) and mpmath.isinf(values[0]):  # infinite at every level
        return Limit(values[0])
    for s in (1, -1):
        if all(s * v > 0 for v in values):
            floor = [min(s * v for v, lv in zip(values, levels) if min(lv, default=0) >= j) for j in range(len(LEVELS))]
            if floor[0] >= GROWS and all(a < b for a, b in zip(floor, floor[1:])):
                return Limit(s * mpmath.inf)
    return NAN


def joint_limit(fn: Callable, args: Sequence, domains: Sequence[tuple[float, float] | None]) -> list[Limit]:
    """The limit (rule above) of ``fn(ctx, *args)`` for each output component.  An argument is a
    number or a sequence of numbers (a row); ``domains`` gives each argument's closed interval,
    None for data held exactly (class labels, a target distribution)."""
    return list(_limit(fn, _freeze(args), tuple(domains)))


def _freeze(args):
    return tuple(tuple(a) if isinstance(a, (list, tuple)) else a for a in args)


def _limit(fn: Callable, args: tuple, domains: tuple) -> tuple[Limit, ...]:
    """The cached _joint_limit, keyed on the signs of the arguments too (-0.0 == 0.0)."""
    signs = tuple(math.copysign(1.0, float(x)) for a in args for x in (a if isinstance(a, tuple) else (a,)))
    return _joint_limit(fn, args, domains, signs)


@functools.lru_cache(maxsize=None)
def _joint_limit(fn: Callable, args: tuple, domains: tuple, signs: tuple) -> tuple[Limit, ...]:
    flat = [(i, j, float(x)) for i, a in enumerate(args) if domains[i] is not None
            for j, x in enumerate(a if isinstance(a, tuple) else (a,))]
    if any(math.isnan(x) for _, _, x in flat):
        return _nan_inputs(fn, args, domains)
    infinite = [(i, j, x) for i, j, x in flat if math.isinf(x)]
    zeros = [(i, j, x) for i, j, x in flat if x == 0]
    value = _ladder(fn, args, domains, infinite)
    if not any(v.value == 0 for v in value) or not zeros:
        return value
    # the sign of a zero result: the zeros approached from their sides (rule 3)
    sided = _ladder(fn, args, domains, infinite + zeros)
    return tuple(Limit(v.value, s.sign if v.value == 0 else v.sign) for v, s in zip(value, sided))


@functools.lru_cache(maxsize=None)
def _context() -> mpmath.MPContext:
    """One private context at PREC bits (building one costs more than a ladder)."""
    ctx = mpmath.MPContext()
    ctx.prec = PREC
    return ctx


def _ladder(fn: Callable, args: tuple, domains: tuple, moving: list) -> tuple[Limit, ...]:
    """The limit of fn as the ``moving`` arguments approach their values, each independently."""
    ctx = _context()
    combos = list(itertools.product(range(len(LEVELS)), repeat=len(moving))) or [()]
    outs = []
    for combo in combos:
        xs = [[ctx.mpf(v) for v in a] if isinstance(a, tuple) else ctx.mpf(a) for a in args]
        for (i, j, x), level in zip(moving, combo):
            v = ctx.mpf(_approach(x, level, *domains[i]))
            if isinstance(xs[i], list):
                xs[i][j] = v
            else:
                xs[i] = v
        try:
            outs.append(_components(fn(ctx, *xs)))
        except (ValueError, ZeroDivisionError):
            outs.append(None)
    if any(o is None for o in outs):
        return (NAN,) * max((len(o) for o in outs if o is not None), default=1)
    any_inf = any(math.isinf(x) for _, _, x in moving)
    return tuple(_classify([o[k] for o in outs], combos, any_inf) for k in range(len(outs[0])))


def _nan_inputs(fn: Callable, args: tuple, domains: tuple) -> tuple[Limit, ...]:
    """Rule 1: NaN, or the value the function has whatever the NaN arguments are."""
    spots = [(i, j) for i, a in enumerate(args) if domains[i] is not None
             for j, x in enumerate(a if isinstance(a, tuple) else (a,)) if math.isnan(x)]
    results = []
    for fill in (1.0, 0.25, -2.0, math.inf, -math.inf):
        filled = [list(a) if isinstance(a, tuple) else a for a in args]
        ok = True
        for i, j in spots:
            lo, hi = domains[i]
            if not lo <= fill <= hi:
                ok = False
            if isinstance(filled[i], list):
                filled[i][j] = fill
            else:
                filled[i] = fill
        if ok:
            results.append(_limit(fn, _freeze(filled), domains))
    n = max((len(r) for r in results), default=1)
    out = []
    for k in range(n):
        vals = [r[k].value for r in results]
        same = len(vals) > 1 and all(not mpmath.isnan(v) and (v == vals[0] or (
            mpmath.isfinite(v) and abs(v - vals[0]) <= AGREE * (1 + abs(v)))) for v in vals)
        out.append(Limit(NAN.value, 0, vals[0]) if same else NAN)
    return tuple(out)
