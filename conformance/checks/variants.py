"""Variants of one op that must agree bitwise (kind "variant"): in-place against out-of-place
([hid.inplace]) and scalar (0-d) against array inputs ([hid.scalar]), for values and for the
derivatives of both AD modes, at and beside every kink.

In-place variants are optional ops: the clause lists (op, op_) pairs and checks each pair the
backend offers; a backend offering none is reported as skipped, not as a pass.
"""
from __future__ import annotations

import numpy as np
import pytest

from ffnspec import spec
from ffnspec.conformance.inputs.scalars import kink_inputs
from ffnspec.conformance.machinery.harness import MODES, OpProgram, Target
from ffnspec.conformance.machinery.records import Record, fail
from ffnspec.conformance.machinery.registry import Registry
from ffnspec.conformance.machinery.reproduce import format_float

CHECKS = Registry("variant check")
register = CHECKS.register


def run(clause: spec.Clause, target: Target, record: Record, z: np.ndarray) -> None:
    """kind = variant: the clause's registered check (``check = "inplace"`` / ``"scalar"``)."""
    CHECKS.lookup(clause, clause.check)(clause, target, record, np.asarray(z, dtype=np.float64))


def _inputs(target: Target, z: np.ndarray, *, nan: bool) -> np.ndarray:
    """Kinks (0, +-1), the smallest subnormals, +-max_finite, +-inf, and a sample of z."""
    fmt = target.fmt
    z = z[np.isfinite(z)]
    if z.size > 256:
        z = np.random.default_rng(0x5ca1).choice(z, 256, replace=False)
    extra = [np.inf, -np.inf] + ([np.nan] if nan else [])
    return np.concatenate([kink_inputs(fmt, [-1.0, 0.0, 1.0]), z, extra])


def _runs(clause: spec.Clause, op: str) -> list[dict]:
    ps = clause.extra.get("op_params", {}).get(op, {})
    runs = [{}]
    for k, v in ps.items():
        runs = [{**r, k: x} for r in runs for x in (v if isinstance(v, list) else [v])]
    return runs


def _modes(target: Target) -> list[str]:
    return [m for m in MODES if callable(getattr(target.backend, m, None))]


def _grad(target: Target, program: OpProgram, z: np.ndarray, mode: str, op: str) -> np.ndarray:
    seed = np.ones_like(z) if mode == "vjp" else [np.ones_like(z)]
    uses = [op] + (["copy"] if program.copy else [])
    _, d = target.gradient(program, [z], seed, mode=mode, shape=z.shape, uses=uses)
    return d[0] if mode == "vjp" else d


def _bits_equal(a: np.ndarray, b: np.ndarray, *, zero_sign: bool = True) -> np.ndarray:
    same = (a.view(np.int64) == b.view(np.int64)) | (np.isnan(a) & np.isnan(b))
    return same if zero_sign else same | ((a == 0) & (b == 0))


def _compare(clause, target, record, z, got, want, what, call, *, zero_sign=True):
    ok = _bits_equal(np.ravel(got), np.ravel(want), zero_sign=zero_sign)
    record.examples += int(ok.size)
    if not ok.all():
        i = int(np.argmin(ok))
        record.violations += int((~ok).sum())
        record.max_error = 1.0
        record.worst_input = [float(np.ravel(z)[i])]
        record.worst_output, record.worst_exact = float(np.ravel(got)[i]), float(np.ravel(want)[i])
        fail(record, clause, target, what=f"{what}: {format_float(np.ravel(got)[i])} instead of "
             f"{format_float(np.ravel(want)[i])}", op_call=call, criterion="bitwise equal")


def _ptext(params: dict) -> str:
    return "".join(f", {k}={v!r}" for k, v in params.items())


@register("inplace")
def inplace(clause, target, record, z):
    pairs = [(a, b) for a, b in clause.extra["pairs"] if b in target.backend.ops]
    if not pairs:
        record.notes.append("the backend offers no in-place variant of " +
                            ", ".join(a for a, _ in clause.extra["pairs"]))
        pytest.skip("not applicable: the backend offers no in-place variants (optional ops)")
    record.notes.append("checked: " + ", ".join(b for _, b in pairs))
    absent = [b for _, b in clause.extra["pairs"] if b not in target.backend.ops]
    if absent:
        record.notes.append("not offered (optional): " + ", ".join(absent))
    for op, op_ in pairs:
        for params in _runs(clause, op):
            x = _inputs(target, z, nan=True)
            want = target.apply(op, x, shape=x.shape, **params)
            got, after = target.call_inplace(op_, x, **params)
            call = f"b.ops.{op_}(args[0]{_ptext(params)})"
            _compare(clause, target, record, x, got, want, f"{op_} returned a different value than {op}", call)
            _compare(clause, target, record, x, after, want, f"after {op_} its argument does not hold {op}", call)
            x = x[~np.isnan(x)]
            for mode in _modes(target):
                g = _grad(target, OpProgram(op, tuple(sorted(params.items()))), x, mode, op)
                gi = _grad(target, OpProgram(op_, tuple(sorted(params.items())), copy=True), x, mode, op_)
                one = f"b.asarray(np.ones(1), {target.dtype!r}, {target.device!r})"
                call = (f"b.vjp(lambda ops, z: ops.{op_}(ops.copy(z){_ptext(params)}), args, {one})[1][0]"
                        if mode == "vjp" else
                        f"b.jvp(lambda ops, z: ops.{op_}(ops.copy(z){_ptext(params)}), args, [{one}])[1]")
                _compare(clause, target, record, x, gi, g, f"{mode} through {op_} differs from {op}", call,
                         zero_sign=False)


@register("scalar")
def scalar(clause, target, record, z):
    for op in clause.extra["uses"]:
        target.require(op)
        for params in _runs(clause, op):
            x = _inputs(target, z, nan=True)
            full = target.apply(op, x, shape=x.shape, **params)
            pick = np.concatenate([np.arange(min(x.size, 48)), np.arange(max(0, x.size - 3), x.size)])
            for i in pick:
                one = target.apply(op, np.asarray(x[i]), shape=(), **params)
                _compare(clause, target, record, x[i:i + 1], one.reshape(1), full[i:i + 1],
                         f"{op}: a 0-d input gives another value than the array", f"b.ops.{op}(args[0][0]{_ptext(params)})")
            two = target.apply(op, x[: x.size // 2 * 2].reshape(2, -1), shape=(2, x.size // 2), **params)
            _compare(clause, target, record, x[: x.size // 2 * 2], two, full[: x.size // 2 * 2],
                     f"{op}: a 2-d input gives another value than the 1-d one", f"b.ops.{op}(args[0]{_ptext(params)})")
            xf = x[~np.isnan(x)]
            prog = OpProgram(op, tuple(sorted(params.items())))
            for mode in _modes(target):
                g = _grad(target, prog, xf, mode, op)
                for i in pick[pick < xf.size]:
                    gi = _grad(target, prog, np.asarray(xf[i]), mode, op)
                    oned = f"b.asarray(np.ones(()), {target.dtype!r}, {target.device!r})"
                    call = (f"b.vjp(lambda ops, z: ops.{op}(z{_ptext(params)}), [args[0][0]], {oned})[1][0]"
                            if mode == "vjp" else
                            f"b.jvp(lambda ops, z: ops.{op}(z{_ptext(params)}), [args[0][0]], [{oned}])[1]")
                    _compare(clause, target, record, xf[i:i + 1], gi.reshape(1), g[i:i + 1],
                             f"{mode} derivative of {op} at a 0-d input differs from the array's", call, zero_sign=False)
