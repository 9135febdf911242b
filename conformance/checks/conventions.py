"""Kink and tie conventions (spec/20_hid.toml [hid.conventions]).

The spec's table gives, per op and point, the preferred (sub)gradient, value or routing rule,
the reason and the allowed values; an adapter declares its own in ``conventions``.  This
module resolves a row against a target, probes what the backend actually does at the row's
point, and runs the [hid.conventions] check (kind "convention").  The per-op checks
(checks/piecewise.py, the hid family's composite checks in conformance/hid.py) hold each op
to its declared value through ``accepted``; a declared value other than the preferred one
makes their verdict "conforms with declared deviations" (``finish``), never a silent pass.
"""
from __future__ import annotations

import numpy as np
import pytest

from ffnspec import spec
from ffnspec.conformance.machinery.harness import MODES, NotImplementedByBackend, OpProgram, Target
from ffnspec.conformance.machinery.records import Record, fail
from ffnspec.conformance.machinery.reproduce import format_float
from ffnspec.reference.floatformat import round_array

CLAUSE = "hid.conventions"


def rows(op: str | None = None, of: str | None = None) -> list[dict]:
    """The table's rows, optionally those of one op and kind ("derivative", "value", "routing")."""
    return [r for r in spec.clause(CLAUSE).conventions
            if (op is None or r["op"] == op) and (of is None or r["of"] == of)]


def row_at(op: str, point: float, of: str = "derivative") -> dict | None:
    """The row for op at a kink point (0 matches both zeros)."""
    for r in rows(op, of):
        if r["point"] not in ("ties",) and float(r["point"]) == point:
            return r
    return None


def declared(target: Target, row: dict) -> str | None:
    v = target.backend.conventions.get(row["name"])
    return None if v is None else str(v)


def resolve(value: str, alpha_hat: float | None = None) -> float:
    """A table value as a float: "alpha" is the slope in the format; "+0"/"-0" signed zeros."""
    if value == "alpha":
        if alpha_hat is None:
            raise ValueError("'alpha' needs the slope")
        return alpha_hat
    return float(value)


def accepted(target: Target, row: dict, alpha_hat: float | None = None) -> list[float]:
    """The values a check accepts at the row's point: the declared one when it is allowed,
    otherwise any allowed one ([hid.conventions] reports the missing or bad declaration)."""
    d = declared(target, row)
    values = [d] if d in row["allowed"] else row["allowed"]
    return [resolve(v, alpha_hat) for v in values]


def alpha_hat(alpha: float | None, target: Target) -> float | None:
    """The slope as a value of the target's format, RN_fmt(alpha) (spec/20_hid.toml)."""
    return None if alpha is None else float(round_array(np.array([float(alpha)]), target.fmt)[0])


def non_preferred(target: Target, used: list[dict]) -> list[str]:
    """'name = declared (preferred p)' for every used row declared allowed-but-not-preferred."""
    out = []
    for r in used:
        d = declared(target, r)
        if d in r["allowed"] and d != r["preferred"]:
            out.append(f"{r['name']} = {d} (preferred {r['preferred']})")
    return list(dict.fromkeys(out))


def finish(record: Record, target: Target, used: list[dict]) -> None:
    """Call last, after every assertion passed: a clause that relied on a declared
    non-preferred convention conforms *with declared deviations* (pytest xfail)."""
    notes = non_preferred(target, used)
    if notes:
        tables_ = ", ".join(dict.fromkeys(r.get("clause", CLAUSE) for r in used))
        record.deviation = "declared convention(s) differ from the preferred: " + "; ".join(notes) + \
                           f" (declared in the adapter's conventions; table in [{tables_}])"
        record.message = record.deviation
        pytest.xfail(record.deviation)


# --------------------------------------------------------------------- probing ----
def _derivatives(target: Target, op: str, z: np.ndarray, params: dict) -> dict[str, np.ndarray]:
    """d op / dz at z through each mode the backend has, unit cotangent/tangent."""
    out = {}
    for mode in MODES:
        if not callable(getattr(target.backend, mode, None)):
            continue
        if op == "prelu":
            alpha = np.full((1,), params["alpha"])
            zz = z.reshape(1, -1)
            prims, shape = [zz, alpha], zz.shape
            seed = np.ones(shape) if mode == "vjp" else [np.ones(shape), np.zeros(1)]
        else:
            prims, shape = [z], z.shape
            seed = np.ones(shape) if mode == "vjp" else [np.ones(shape)]
        _, d = target.gradient(OpProgram(op, tuple(sorted((k, v) for k, v in params.items() if op != "prelu"))),
                               prims, seed, mode=mode, shape=shape, uses=[op])
        out[mode] = np.ravel(d[0] if mode == "vjp" else d)
    return out


def _label(v: float, row: dict, ah: float | None) -> str:
    for name in row["allowed"] + [row["preferred"]]:
        try:
            if resolve(name, ah) == v and (name not in ("+0", "-0") or np.signbit(v) == name.startswith("-")):
                return name
        except ValueError:
            pass
    return repr(float(v))


def probe(target: Target, row: dict) -> tuple[set[str], list[str]]:
    """What the backend does at the row's point: the set of observed labels (one expected)
    and a readable list of observations."""
    op, point = row["op"], row["point"]
    target.require(op)
    seen: list[tuple[str, str]] = []
    if row["of"] == "value":  # relu(-0): the sign of the zero
        y = target.apply(op, np.array([float(point)]), shape=(1,))
        seen.append(("value", _label(float(y[0]), row, None) if y[0] == 0 else repr(float(y[0]))))
    elif row["of"] == "routing":
        for label, where in _routing(target):
            seen.append((where, label))
    else:
        z = np.array([0.0, -0.0]) if float(point) == 0 else np.array([float(point)])
        alphas = [0.01, 0.2, -0.5] if op in ("leaky_relu", "prelu") else [None]
        for a in alphas:
            ah = alpha_hat(a, target)
            params = {} if a is None else {"alpha": ah if op == "prelu" else a}
            for mode, d in _derivatives(target, op, z, params).items():
                for zi, di in zip(z, d):
                    seen.append((f"{mode} at z={format_float(zi)}" + ("" if a is None else f", alpha={a}"),
                                 _label(di, row, ah)))
    return {lab for _, lab in seen}, [f"{w}: {lab}" for w, lab in seen]


_TIE_GROUPS = (np.array([[1.0, 1.0]]), np.array([[2.0, -1.0, 2.0]]), np.array([[0.5, 3.0, 3.0, 3.0]]))


def _routing(target: Target):
    """Label each mode's routing of a unit cotangent in tied groups: even / first / last."""
    for g in _TIE_GROUPS:
        k = g.shape[-1]
        top = g.max()
        tied = np.flatnonzero(g[0] == top)
        for mode in MODES:
            if not callable(getattr(target.backend, mode, None)):
                continue
            if mode == "vjp":
                _, (w,) = target.gradient(OpProgram("maxout", (("k", k),)), [g], np.ones((1, 1)), mode=mode,
                                          shape=(1, 1), uses=["maxout"])
                w = w[0]
            else:
                w = np.array([target.gradient(OpProgram("maxout", (("k", k),)), [g], [np.eye(k)[j][None]],
                                              mode=mode, shape=(1, 1), uses=["maxout"])[1][0, 0] for j in range(k)])
            expect = {
                "even": np.where(g[0] == top, float(round_array(np.array([1 / len(tied)]), target.fmt)[0]), 0.0),
                "first": (np.arange(k) == tied[0]).astype(float),
                "last": (np.arange(k) == tied[-1]).astype(float),
            }
            label = next((n for n, e in expect.items() if np.array_equal(w, e)), f"other {w.tolist()}")
            yield label, f"{mode} on {g[0].tolist()}"


def _probe_text(target: Target, row: dict) -> list[str]:
    """Source probing one row's point through the adapter (both modes)."""
    arr = lambda v: f"b.asarray(np.array({v}), {target.dtype!r}, {target.device!r})"  # noqa: E731
    if row["of"] == "value":
        return [f"print(b.to_numpy(b.ops.{row['op']}({arr([float(row['point'])])})).tolist())"]
    if row["of"] == "routing":
        z, prog, one = arr([[2.0, -1.0, 2.0]]), "lambda ops, z: ops.maxout(z, k=3)", arr([[1.0]])
        return [f"print(b.to_numpy(b.vjp({prog}, [{z}], {one})[1][0]).tolist())"]
    z = [0.0, -0.0] if float(row["point"]) == 0 else [float(row["point"])]
    if row["op"] == "prelu":
        args, prog = [arr([z]), arr([0.25])], "lambda ops, z, a: ops.prelu(z, a)"
        seeds = (arr([[1.0] * len(z)]), f"[{arr([[1.0] * len(z)])}, {arr([0.0])}]")
    else:
        kw = ", alpha=0.25" if row["op"] == "leaky_relu" else ""
        args, prog = [arr(z)], f"lambda ops, z: ops.{row['op']}(z{kw})"
        seeds = (arr([1.0] * len(z)), f"[{arr([1.0] * len(z))}]")
    return [f"print('vjp', b.to_numpy(b.vjp({prog}, [{', '.join(args)}], {seeds[0]})[1][0]).tolist())",
            f"print('jvp', b.to_numpy(b.jvp({prog}, [{', '.join(args)}], {seeds[1]})[1]).tolist())"]


# ----------------------------------------------------------------------- check ----
def check(clause: spec.Clause, target: Target, record: Record) -> None:
    """[hid.conventions]: every row declared, allowed, and matching the backend's behaviour."""
    problems, used = [], []
    for row in clause.conventions:
        d = declared(target, row)
        try:
            labels, seen = probe(target, row)
        except NotImplementedByBackend as e:
            record.notes.append(f"{row['name']}: not probed ({e})")
            labels, seen = set(), []
        record.examples += len(seen)
        shown = f" (behaves as {', '.join(sorted(labels))})" if labels else ""
        if d is None:
            problems.append(f"{row['name']} is not declared{shown}; allowed: {', '.join(row['allowed'])}")
        elif d not in row["allowed"]:
            problems.append(f"{row['name']} = {d} is not allowed{shown}; allowed: {', '.join(row['allowed'])}")
        elif labels and labels != {d}:
            problems.append(f"{row['name']} is declared {d} but the backend behaves otherwise: " + "; ".join(seen))
        else:
            used.append(row)
            record.notes.append(f"{row['name']} = {d}" + (" (preferred)" if d == row["preferred"]
                                                          else f" (preferred {row['preferred']})"))
    record.violations += len(problems)
    record.max_error = float(len(problems))
    if problems:
        names = [r["name"] for r in clause.conventions]
        first = next(r for r in clause.conventions if r["name"] == problems[0].split()[0])
        fail(record, clause, target, what="kink/tie conventions: " + " | ".join(problems), op_call="",
             criterion="each row declared, allowed, and as declared",
             repro="\n".join(["import numpy as np", "from ffnspec.adapters import load_backend",
                              f"b = load_backend({target.backend_spec!r})",
                              f"print({{k: b.conventions.get(k) for k in {names!r}}})", *_probe_text(target, first)]))
    finish(record, target, used)
