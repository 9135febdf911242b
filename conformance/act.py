"""The act family (spec/10_act.toml, reference/act.py): what conformance checks specifically
for the scalar activations sigmoid, softplus, tanh and their derivatives.  Their values,
derivatives, identities and special values are checked by the generic checks from the
clauses alone; here are the predicates of the exact properties ([act.*] kind "property"):
each calls the backend on the given inputs and returns which of them violate the clause's
statement.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ffnspec.conformance.checks.properties import ELEMENTWISE, Finding
from ffnspec.conformance.inputs import scalars
from ffnspec.reference import tables
from ffnspec.reference.floatformat import ulp

SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf])
predicate = ELEMENTWISE.register


@predicate("sigmoid_in_unit_interval")
def sigmoid_in_unit_interval(target, z):
    z = np.concatenate([z, SPECIALS])
    y = target.call("sigmoid", z)
    return Finding([z], y, np.clip(y, 0, 1), ~((y >= 0) & (y <= 1)), "sigmoid left [0, 1]")


@predicate("nondecreasing")
def nondecreasing(target, z):
    # sorted, one zero; each input's grid successors make adjacent pairs even for random z
    z = np.concatenate([[-np.inf], scalars.successors(z, target.fmt), [np.inf]])
    y = target.call("sigmoid", z)
    bad = (y[1:] < y[:-1]) | np.isnan(y[1:])  # NaN compares false: a NaN result is no ordered value
    bad[0] |= np.isnan(y[0])
    return Finding([z[1:]], y[1:], y[:-1], bad, "sigmoid decreased between adjacent inputs, or returned NaN "
                   "for a non-NaN input (worst input is the larger z; 'exact' shows the result at the smaller one)")


@predicate("sigmoid_grad_at_most_quarter")
def sigmoid_grad_at_most_quarter(target, z):
    z = np.concatenate([z, [0.0, -0.0]])
    g = target.derivative("sigmoid", z, mode="vjp")
    bad = (g > 0.25) | ((z == 0) & (g != 0.25)) | np.isnan(g)
    return Finding([z], g, np.minimum(g, 0.25), bad, "sigma'(z) exceeded 1/4, or sigma'(0) != 1/4")


def _chain(length: int) -> Callable:
    def fn(ops, z):
        for _ in range(length):
            z = ops.sigmoid(z)
        return z
    return fn


@predicate("sigmoid_chain_vanishes")
def sigmoid_chain_vanishes(target, z):
    z = z[np.isfinite(z)]
    outs, bads, ins, bounds = [], [], [], []
    for length in range(1, 9):
        g = target.program_vjp(_chain(length), z, ops=["sigmoid"])
        bound = 4.0 ** -length
        outs.append(g)
        bounds.append(np.full_like(g, bound))
        bads.append(~(np.abs(g) <= bound))
        ins.append(z)
    return Finding([np.concatenate(ins)], np.concatenate(outs), np.concatenate(bounds),
                   np.concatenate(bads), "derivative of an l-fold sigmoid chain exceeded 4^-l")


@predicate("softplus_between_relu_and_relu_plus_log2")
def softplus_between_relu_and_relu_plus_log2(target, z):
    y = target.call("softplus", z)
    ex = tables.exact("act.softplus", (z,), target.fmt)
    relu = np.maximum(z, 0)
    with np.errstate(over="ignore"):
        upper = relu + math.log(2) + 5 * ulp(ex.hi, ex.lo, target.fmt)
    bad = ~((y >= relu) & (y <= upper))
    return Finding([z], y, ex.hi, bad, "softplus outside [max(0,z), max(0,z) + log 2 (+5 ULP)]")


def tanh_saturation_point(fmt) -> float:
    """z_sat = artanh(1 - 2^-2p), rounded up to the format."""
    from ffnspec.reference.floatformat import from_ordinal, ordinal, round_mpf
    from ffnspec.reference.precision import context
    ctx = context(4 * fmt.p + 64)
    zs = ctx.atanh(1 - ctx.ldexp(1, -2 * fmt.p))
    r = round_mpf(zs, fmt)
    if r < zs:
        r = float(from_ordinal(ordinal(np.array([r]), fmt) + 1, fmt)[0])
    return r


@predicate("tanh_bounded_and_saturating")
def tanh_bounded_and_saturating(target, z):
    z = np.concatenate([z, [np.inf, -np.inf]])
    y = target.call("tanh", z)
    zs = tanh_saturation_point(target.fmt)
    sat = np.abs(z) >= zs
    bad = ~(np.abs(y) <= 1) | (sat & (y != np.sign(z)))
    return Finding([z], y, np.where(sat, np.sign(z), np.clip(y, -1, 1)), bad,
                   f"|tanh| > 1, or tanh(z) != sign(z) for |z| >= z_sat = {zs!r}")
