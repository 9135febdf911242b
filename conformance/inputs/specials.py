"""Generated special-value tables: +-0, +-inf and NaN in every argument and at every row position.

An op's ``specials`` layout in spec/ops.toml says how its table is built (a few hundred inputs at
most, batched into one backend call per row length):

  cartesian    every combination over all arguments of {+0, -0, +inf, -inf, NaN}, two ordinary
               values and the format's largest finite (that one only for ops of two arguments);
               values outside an argument's ``domain`` are left out; cartesian_channels lays
               the first argument out as one row (1, N) and the others one value per channel
  rows         rows of length 1-3 with ordinary neighbours: each special (and +-max) at each
               position, and every pair of specials at every pair of positions (fully masked
               rows left to out.softmax.all_masked's declared convention)
  rows_labels  those rows with every class label
  rows_dist    those rows against a fixed target distribution (a zero weight included), which is
               data, not approached

The expected answers come from ``ffnspec.reference.limits`` (the written rule).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from ffnspec import spec
from ffnspec.reference.floatformat import Format

SPECIALS = (0.0, -0.0, math.inf, -math.inf, math.nan)
ORDINARY = (1.0, -2.0, 0.25)
NEIGHBOURS = (1.0, -2.0, 0.5)
DISTRIBUTIONS = {1: (1.0,), 2: (0.25, 0.75), 3: (0.0, 0.25, 0.75)}


@dataclass(frozen=True)
class Table:
    """One backend call: ``group`` (the batched arguments, items first), ``entries`` (each item's
    arguments as the reference takes them) and ``fixed`` (argument positions held as data)."""
    group: tuple[np.ndarray, ...]
    entries: list[tuple]
    fixed: tuple[int, ...] = ()


def _inside(x: float, lo: float, hi: float) -> bool:
    return math.isnan(x) or lo <= x <= hi


def argument_values(lo: float, hi: float, fmt: Format, *, largest: bool) -> list[float]:
    """The specials, two ordinary values and (``largest``) +-max_finite inside [lo, hi]."""
    ordinary = [x for x in ORDINARY if lo <= x <= hi][:2]
    extremes = [fmt.max_finite, -fmt.max_finite] if largest else []
    return [x for x in (*SPECIALS, *ordinary, *extremes) if _inside(x, lo, hi)]


def special_rows(fmt: Format) -> dict[int, list[tuple[float, ...]]]:
    """Rows by length: one special (or +-max) at each position, and pairs of specials."""
    out: dict[int, list[tuple[float, ...]]] = {}
    singles = (*SPECIALS, fmt.max_finite, -fmt.max_finite)
    for n in (1, 2, 3):
        rows = out.setdefault(n, [])
        for i, s in itertools.product(range(n), singles):
            rows.append(tuple(s if k == i else NEIGHBOURS[k] for k in range(n)))
        for (i, j), (a, b) in itertools.product(itertools.combinations(range(n), 2),
                                                itertools.product(SPECIALS, SPECIALS)):
            rows.append(tuple(a if k == i else b if k == j else NEIGHBOURS[k] for k in range(n)))
    return out


def tables(op: spec.Op, fmt: Format) -> list[Table]:
    """The op's generated tables in ``fmt`` (empty if its ``specials`` layout is unset)."""
    if op.specials in ("cartesian", "cartesian_channels"):
        names = op.arguments
        per_arg = [argument_values(*op.interval(a), fmt, largest=len(names) <= 2) for a in names]
        combos = list(itertools.product(*per_arg))
        cols = [np.array(c, dtype=np.float64) for c in zip(*combos)]
        if op.shape == "scalar":  # the whole array reduces: items of one element each
            return [Table(tuple(c[:, None] for c in cols), [tuple([x] for x in c) for c in combos])]
        if op.specials == "cartesian_channels":  # prelu's z (N, C) with a slope per channel
            return [Table((cols[0][None, :], *cols[1:]), combos)]
        return [Table(tuple(cols), combos)]
    if op.specials not in ("rows", "rows_labels", "rows_dist"):
        return []
    out = []
    for n, rows in special_rows(fmt).items():
        # fully masked rows are the declared convention of out.softmax.all_masked, not a limit
        rows = [r for r in rows if not all(x == -math.inf for x in r)]
        z = np.array(rows, dtype=np.float64)
        if op.specials == "rows":
            out.append(Table((z,), [(r,) for r in rows]))
        elif op.specials == "rows_labels":
            zz = np.repeat(z, n, axis=0)
            y = np.tile(np.arange(n), len(rows))
            out.append(Table((zz, y), [(tuple(r), int(c)) for r, c in zip(zz, y)], fixed=(1,)))
        else:
            p = np.tile(np.array(DISTRIBUTIONS[n]), (len(rows), 1))
            out.append(Table((z, p), [(r, DISTRIBUTIONS[n]) for r in rows], fixed=(1,)))
    return out
