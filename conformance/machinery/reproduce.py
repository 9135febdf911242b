"""Reproducers: copy-paste Python that re-runs a check's worst case through the same adapter.

Every reproducer loads the backend the run used (``load_backend(spec)``), builds the
arguments as backend arrays of exactly the values the check used, and prints what the
backend returns.  Three argument shapes: scalars (one-element arrays, ``scalars``), arrays
of an item of a group, labels as integers (``items``), and named arrays for structured
calls and programs (``named``).
"""
from __future__ import annotations

import numpy as np

from ffnspec import spec
from ffnspec.conformance.machinery.harness import INDEX_ARGS, REDUCTION_SHAPES, Target
from ffnspec.reference.floatformat import python_literal

format_float = python_literal  # reproducers print exact floats


def _header(target: Target) -> list[str]:
    return ["import numpy as np", "from ffnspec.adapters import load_backend",
            f"b = load_backend({target.backend_spec!r})"]


# ------------------------------------------------------------- scalar inputs ----
def op_call(op: str) -> str:
    """Text of an elementwise call of op on ``args``."""
    return f"b.ops.{op}(*args)"


def derivative_call(op: str, target: Target, mode: str) -> str:
    """Text of the vjp/jvp derivative of a unary op at ``args`` (unit cotangent/tangent)."""
    one = f"b.asarray(np.ones(1), {target.dtype!r}, {target.device!r})"
    if mode == "vjp":
        return f"b.vjp(lambda ops, z: ops.{op}(z), args, {one})[1][0]"
    return f"b.jvp(lambda ops, z: ops.{op}(z), args, [{one}])[1]"


def scalars(target: Target, op_call: str | list[str], inputs: list[float]) -> str:
    """Copy-paste Python that re-runs the worst case through the same adapter; ``op_call``
    (one expression or several) reads its arguments from ``args``."""
    arrays = ", ".join(f"b.asarray(np.array([{format_float(v)}]), {target.dtype!r}, {target.device!r})" for v in inputs)
    calls = [op_call] if isinstance(op_call, str) else op_call
    lines = [
        *_header(target),
        f"args = [{arrays}]",
        *(f"print(b.to_numpy({call}).tolist())" for call in calls),
    ]
    native = getattr(target.backend, "snippet", None)
    if callable(native) and len(calls) == 1:
        try:
            lines.append("# natively: " + native(calls[0], inputs, target.dtype, target.device))
        except Exception:  # a hint only; never let it mask the failure
            pass
    elif len(calls) == 1:
        lines += library_call(target, calls[0])
    return "\n".join(lines)


def library_name(fn, near: object = None) -> str | None:
    """The importable public name of a library function (``scipy.special.expit``), or None
    for a lambda, a closure or anything no module exports under its name.  Looked up in its
    own module (the public package first) and in the modules ``near`` (an adapter) imported."""
    import importlib
    import inspect
    import types
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if not name or "<" in name or "." in name:
        return None
    module = getattr(fn, "__module__", None)
    candidates = [module.rsplit("._", 1)[0], module] if module else []
    home = inspect.getmodule(type(near)) if near is not None else None
    candidates += [m.__name__ for m in vars(home).values() if isinstance(m, types.ModuleType)] if home else []
    for mod in candidates:
        try:
            if getattr(importlib.import_module(mod), name, None) is fn:
                return f"{mod}.{name}"
        except Exception:
            continue
    return None


def library_call(target: Target, call: str) -> list[str]:
    """For an adapter without a ``snippet``: the same values through the library function the
    adapter's OpTable holds, called directly (bypassing the adapter), when it is a public one."""
    import re
    m = re.fullmatch(r"b\.ops\.(\w+)\(\*args\)", call)
    fn = target.backend.ops.get(m.group(1)) if m else None
    name = library_name(fn, target.backend) if fn is not None else None
    if name is None:
        return []
    return [f"import {name.rsplit('.', 1)[0]}  # the library itself, without the adapter:",
            f"print(b.to_numpy({name}(*args)).tolist())"]


# ---------------------------------------------------- items of a group (rows) ----
def literal(a, index: bool = False) -> str:
    a = np.asarray(a)
    if index:
        return f"np.array({np.asarray(a, dtype=np.int64).tolist()!r})"
    if a.ndim == 0:
        return f"np.array({format_float(float(a))})"
    body = np.array2string(a, separator=", ", threshold=10 ** 9, max_line_width=10 ** 9,
                           formatter={"float_kind": format_float})
    return f"np.array({body})"


def items(target: Target, lines: list[str], arrays: list[tuple[np.ndarray, bool]]) -> str:
    """Copy-paste Python re-running the worst item through the same adapter; ``arrays`` are
    (array, is_label) pairs, read by ``lines`` from ``args``."""
    conv = [f"b.asindex({literal(a, True)}, {target.device!r})" if idx else
            f"b.asarray({literal(a)}, {target.dtype!r}, {target.device!r})" for a, idx in arrays]
    return "\n".join([*_header(target), f"args = [{', '.join(conv)}]", *lines])


def _item_arrays(op: str, group, i: int, scalar: bool) -> list[tuple[np.ndarray, bool]]:
    idx = INDEX_ARGS.get(op, ())
    return [(a[i] if scalar else a[i:i + 1], k in idx) for k, a in enumerate(group)]


def row_value(target: Target, op: str, group, i: int) -> str:
    """op on item i of a group."""
    scalar = REDUCTION_SHAPES.get(op) == "scalar"
    return items(target, [f"print(b.to_numpy(b.ops.{op}(*args)).tolist())"], _item_arrays(op, group, i, scalar))


def row_derivative(target: Target, clause: spec.Clause, mode: str, ref_args, n_args: int, i: int) -> str:
    """The clause's vjp/jvp on item i: ``ref_args`` are the group's n_args arrays, then the seeds."""
    op, wrt = clause.op, list(clause.extra.get("wrt", [0]))
    scalar = REDUCTION_SHAPES.get(op) == "scalar"
    args = _item_arrays(op, ref_args[:n_args], i, scalar)
    seeds = [(s[i] if scalar else s[i:i + 1], False) for s in ref_args[n_args:]]
    params = ", ".join(f"p{k}" for k in range(len(wrt)))
    call_args = ", ".join(f"p{wrt.index(k)}" if k in wrt else f"args[{k}]" for k in range(n_args))
    fn = f"lambda ops, {params}: ops.{op}({call_args})"
    primals = "[" + ", ".join(f"args[{k}]" for k in wrt) + "]"
    seed_list = ", ".join(f"args[{n_args + k}]" for k in range(len(seeds)))
    line = (f"print([b.to_numpy(g).tolist() for g in b.vjp({fn}, {primals}, {seed_list})[1]])" if mode == "vjp" else
            f"print(b.to_numpy(b.jvp({fn}, {primals}, [{seed_list}])[1]).tolist())")
    return items(target, [line], args + seeds)


# ------------------------------------------------- structured calls, programs ----
def array_text(name: str, a: np.ndarray, target: Target) -> str:
    vals = np.asarray(a, dtype=np.float64)
    body = repr(vals.tolist()).replace("inf", "float('inf')").replace("nan", "float('nan')")
    return f"{name} = b.asarray(np.array({body}).reshape({vals.shape}), {target.dtype!r}, {target.device!r})"


def named(target: Target, arrays: dict[str, np.ndarray], call: str, prelude: tuple[str, ...] = ()) -> str:
    """Copy-paste Python re-running a structured call through the same adapter."""
    return "\n".join([*_header(target), *(array_text(n, a, target) for n, a in arrays.items()), *prelude,
                      f"print({call})"])


def seed_text(target: Target, *arrays: np.ndarray, tangents: bool = False) -> str:
    """Backend arrays of the given (small) constant arrays, as source."""
    items = [f"b.asarray(np.array({np.asarray(a, dtype=np.float64).tolist()}), {target.dtype!r}, {target.device!r})"
             for a in arrays]
    return f"[{', '.join(items)}]" if tangents else items[0]


def grad_call(mode: str, program: str, names: list[str], seed: str) -> str:
    """Text of a vjp/jvp call of a program (an expression in ops and the names, or a function
    name) over named primals."""
    fn = program if program.isidentifier() else f"lambda ops, {', '.join(names)}: {program}"
    if mode == "vjp":
        return f"[b.to_numpy(g).tolist() for g in b.vjp({fn}, [{', '.join(names)}], {seed})[1]]"
    return f"b.to_numpy(b.jvp({fn}, [{', '.join(names)}], {seed})[1]).tolist()"
