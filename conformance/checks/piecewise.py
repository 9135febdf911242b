"""Exact checks of piecewise-linear units (kinds "piecewise" and "subgradient").

A piecewise-linear unit's value is a float of the format or one rounding of a product
(alpha_hat z), and its derivative is 0, +-1 or alpha_hat: the correctly rounded value is
required bitwise, with no tolerance.  Inputs: the clause's region (every finite value in
16-bit formats), the neighbourhood of each kink (+-0, the smallest subnormals, 1-8 grid
steps either side, the smallest normals), +-max_finite, +-inf and NaN.  At a kink the
derivative is the backend's declared convention (checks/conventions.py).

Policies, written in the clauses:
- a zero result may carry either sign unless the clause says ``zero = "+0"`` (then the
  declared relu_at_minus_0 governs z = -0); a zero derivative may carry either sign;
- flush-to-zero (declared): subnormal results may be 0, and a subnormal z may be read as 0
  for the branch decision: the value may then be the piece chosen at 0 (the slope declared
  at 0) applied to z, and the derivative the one declared at 0.
"""
from __future__ import annotations

import numpy as np

from ffnspec import spec
from ffnspec.conformance.checks import conventions
from ffnspec.conformance.inputs.scalars import kink_inputs
from ffnspec.conformance.machinery.harness import OpProgram, Target
from ffnspec.conformance.machinery.records import Record, fail
from ffnspec.conformance.machinery.reproduce import format_float
from ffnspec.reference import tables
from ffnspec.reference.floatformat import Format, round_array, ulp_distance, ulp_error


def inputs(fmt: Format, clause: spec.Clause, z: np.ndarray, *, nan: bool = True) -> np.ndarray:
    """z plus the kink neighbourhoods, +-inf and (for values) NaN."""
    extra = [np.inf, -np.inf] + ([np.nan] if nan else [])
    return np.concatenate([np.asarray(z, dtype=np.float64), kink_inputs(fmt, clause.extra.get("kinks", [0.0])), extra])


def sweep(clause: spec.Clause) -> list[dict]:
    """One params dict per run: a list-valued parameter is swept."""
    runs = [{}]
    for k, v in clause.params.items():
        runs = [{**r, k: x} for r in runs for x in (v if isinstance(v, list) else [v])]
    return runs


def _same(y: np.ndarray, want: np.ndarray, any_zero_sign: np.ndarray) -> np.ndarray:
    """Bitwise equality, NaN matching NaN, and either zero sign where allowed."""
    with np.errstate(invalid="ignore"):
        eq = (y == want) & ((np.signbit(y) == np.signbit(want)) | any_zero_sign | (want != 0))
    return eq | (np.isnan(y) & np.isnan(want))


def _subnormal(z: np.ndarray, fmt: Format) -> np.ndarray:
    return (z != 0) & (np.abs(z) < fmt.min_normal)


def _params_text(params: dict) -> str:
    return "".join(f", {k}={v!r}" for k, v in params.items())


def _slopes_at_zero(target: Target, clause: spec.Clause, ah: float | None) -> tuple[list[float], list[dict]]:
    row = conventions.row_at(clause.op, 0.0)
    if row is None:
        return [], []
    return conventions.accepted(target, row, ah), [row]


# ------------------------------------------------------------------------ values ----
def value(clause: spec.Clause, target: Target, record: Record, z: np.ndarray) -> list[dict]:
    """[kind piecewise]: the correctly rounded value, bitwise.  Returns the convention rows used."""
    fmt = target.fmt
    z = np.asarray(z, dtype=np.float64)
    used: list[dict] = []
    failed: list = []
    for params in sweep(clause):
        ah = conventions.alpha_hat(params.get("alpha"), target)
        y = target.apply(clause.op, z, shape=z.shape, **params)
        args = (z,) if ah is None else (z, np.full_like(z, ah))
        num = ~np.isnan(z)
        want = np.full_like(z, np.nan)
        ex = tables.exact(clause.reference, tuple(a[num] for a in args), fmt)
        want[num] = ex.cr
        hi = np.full_like(z, np.nan)
        hi[num] = ex.hi
        any_sign = np.ones(z.shape, dtype=bool)
        if clause.extra.get("zero") == "+0":       # a zero result is +0 ...
            any_sign = np.zeros(z.shape, dtype=bool)
            row = conventions.row_at(clause.op, -0.0, of="value") if clause.op else None
            at_m0 = (z == 0) & np.signbit(z)
            if row is not None and at_m0.any():  # ... except where a declared convention governs -0
                used.append(row)
                acc = conventions.accepted(target, row)
                ok_m0 = np.isin(np.signbit(y[at_m0]), [np.signbit(a) for a in acc]) & (y[at_m0] == 0)
                want[at_m0] = np.where(ok_m0, y[at_m0], conventions.resolve(row["preferred"]))
        ok = _same(y, want, any_sign)
        if target.ftz:  # FTZ/DAZ policy (module docstring); the exact or the rounded value subnormal
            ok |= ((np.abs(want) < fmt.min_normal) | (np.abs(hi) < fmt.min_normal)) & (y == 0)
            slopes, rows = _slopes_at_zero(target, clause, ah)
            sub = _subnormal(z, fmt)
            for s in slopes:
                with np.errstate(invalid="ignore"):
                    piece = round_array(s * z, fmt)
                ok |= sub & (_same(y, piece, any_sign) | ((np.abs(piece) < fmt.min_normal) & (y == 0)))
            used += rows if sub.any() else []
        _special_table(clause, z, y, ok)
        steps = np.where(ok, 0, ulp_distance(y, np.where(np.isnan(want), 0, want), fmt))
        err = np.where(ok, 0.0, np.maximum(1.0, steps.astype(np.float64)))
        err = np.where(~ok & (np.isnan(y) | np.isnan(want)), np.inf, err)
        with np.errstate(invalid="ignore"):
            ulps = np.where(num, ulp_error(y, np.where(num, want, 0), np.zeros_like(z), fmt), 0.0)
        record.observe(inputs=[z], error=err, output=y, exact=want, ulp=np.where(ok, 0.0, ulps), distance=steps,
                       curve=True)
        bad = ~ok
        record.violations += int(bad.sum())
        if bad.any():
            failed.append((float(err.max()), params, dict(
                what=f"value is not the correctly rounded one{_params_text(params)}"
                + (f" (alpha_hat = {ah!r})" if ah is not None else ""),
                op_call=f"b.ops.{clause.op}(*args{_params_text(params)})")))
    _conclude(clause, target, record, failed, "exact: y = RN(f(z)) bitwise (error in grid steps)")
    return used


def _conclude(clause, target, record, failed, criterion) -> None:
    """Fail once for the whole sweep, with the worst case's reproducer and every failing value."""
    if not failed:
        return
    worst = [f for f in failed if f[0] >= record.max_error][-1] if any(f[0] >= record.max_error for f in failed) \
        else failed[-1]
    others = [_params_text(f[1]).lstrip(", ") for f in failed if f[1]]
    what = worst[2]["what"] + (f"; failing for {'; '.join(others)}" if len(others) > 1 else "")
    fail(record, clause, target, what=what, op_call=worst[2]["op_call"], criterion=criterion)


def _special_table(clause: spec.Clause, z: np.ndarray, y: np.ndarray, ok: np.ndarray) -> None:
    """The clause's special-value table is checked as written (it must agree with the
    reference; here the backend's result at those inputs must match it)."""
    for e in clause.special:
        zi, want = float(e["z"]), float(e["value"])
        at = (z == zi) & (np.signbit(z) == np.signbit(zi)) if not np.isnan(zi) else np.isnan(z)
        signed = e.get("signed", True)
        good = (y[at] == want) & ((np.signbit(y[at]) == np.signbit(want)) | (not signed) | (want != 0))
        good |= np.isnan(want) & np.isnan(y[at])
        ok[at] &= good


# ------------------------------------------------------------------- derivatives ----
def subgradient(clause: spec.Clause, target: Target, record: Record, z: np.ndarray, *, mode: str) -> list[dict]:
    """[kind subgradient]: the exact derivative, and the declared convention at each kink."""
    fmt = target.fmt
    z = np.asarray(z, dtype=np.float64)
    z = z[~np.isnan(z)]
    used: list[dict] = []
    kinks = [float(c) for c in clause.extra.get("kinks", [0.0])]
    failed: list = []
    for params in sweep(clause):
        ah = conventions.alpha_hat(params.get("alpha"), target)
        seed = np.ones_like(z) if mode == "vjp" else [np.ones_like(z)]
        _, d = target.gradient(OpProgram(clause.op, tuple(sorted(params.items()))), [z], seed, mode=mode,
                               shape=z.shape, uses=[clause.op])
        g = d[0] if mode == "vjp" else d
        at_kink = np.isin(z, kinks)
        args = (z,) if ah is None else (z, np.full_like(z, ah))
        ex = tables.exact(clause.reference, tuple(a[~at_kink] for a in args), fmt)
        want = np.full_like(z, np.nan)
        want[~at_kink] = ex.cr
        ok = np.zeros(z.shape, dtype=bool)
        ok[~at_kink] = _same(g[~at_kink], want[~at_kink], np.ones((~at_kink).sum(), dtype=bool))
        for c in kinks:
            row = conventions.row_at(clause.op, c)
            here = z == c
            if row is None or not here.any():
                continue
            used.append(row)
            acc = conventions.accepted(target, row, ah)
            want[here] = acc[0]
            ok[here] = np.isin(g[here], acc)
        if target.ftz:  # a subnormal z may be read as 0: the derivative declared at 0
            sub = _subnormal(z, fmt)
            slopes, rows = _slopes_at_zero(target, clause, ah)
            ok |= sub & np.isin(g, slopes)
            used += rows if sub.any() else []
        _special_table(clause, z, g, ok)
        err = np.where(ok, 0.0, np.maximum(1.0, np.nan_to_num(np.abs(g - np.nan_to_num(want)), nan=np.inf,
                                                              posinf=np.inf)))
        record.observe(inputs=[z], error=err, output=g, exact=want)
        bad = ~ok
        record.violations += int(bad.sum())
        if bad.any():
            one = f"b.asarray(np.ones(1), {target.dtype!r}, {target.device!r})"
            call = (f"b.vjp(lambda ops, z: ops.{clause.op}(z{_params_text(params)}), args, {one})[1][0]"
                    if mode == "vjp" else
                    f"b.jvp(lambda ops, z: ops.{clause.op}(z{_params_text(params)}), args, [{one}])[1]")
            i = int(np.argmax(err))
            at = "a kink: the declared convention" if at_kink[i] else "not a kink"
            failed.append((float(err.max()), params, dict(
                what=f"{mode} derivative is not exact at z = {format_float(z[i])} ({at}){_params_text(params)}"
                + (f" (alpha_hat = {ah!r})" if ah is not None else ""), op_call=call)))
    _conclude(clause, target, record, failed, "exact: the derivative, and the declared value at each kink")
    return used
