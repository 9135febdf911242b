"""The ffnspec clauses, loaded from the TOML files in this package.

A clause is data: a stable id, a statement, a source, a kind (which generic check
runs it), an error criterion with a written derivation, and the op or relation
it constrains.  Cite as ``ffnspec <edition> [<id>]``.
"""
from __future__ import annotations

import fnmatch
import functools
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

EDITION = "2026.1"
KINDS = ("accuracy", "derivative", "identity", "property", "special", "invariance",
         # hid family: exact piecewise-linear values and (sub)gradients, structured ops and
         # programs (a registered check per clause), kink/tie conventions, op variants
         "piecewise", "subgradient", "composite", "gradient", "convention", "variant",
         # out family: ops over a row or a batch (softmax, logsumexp, losses), conformance/out.py
         "reduction", "reduction_derivative", "reduction_property",
         # bp family: random programs drawn by a registered strategy (conformance/bp.py)
         "graph")
MODED_KINDS = ("derivative", "subgradient", "gradient",  # checked once per AD mode (vjp, jvp)
               "reduction_derivative")
CRITERIA = ("ulp", "mixed", "identity", "exact",
            "bound", "statistical")  # xor/opt/init: a bound the check computes; hypothesis tests


class SpecError(ValueError):
    """A clause file is malformed."""


@dataclass(frozen=True)
class Tolerance:
    criterion: str                       # ulp | mixed | identity | exact
    must: float | None = None            # ULPs (ulp) or k in k*u*(|y|+S) (mixed)
    scale: str | None = None             # reference function giving S (mixed)
    underflow: str | None = None         # reference function giving c(z): ulp bound + c(z) 2^(emin-p)
    per_term: float | None = None        # mixed: k = must + per_term * n, n = terms summed (named by the check)
    accumulation: str | None = None      # reduction kinds: reference function giving A in + u_acc A (sums)
    derivation: str = ""
    # The accuracy tier: what a good implementation achieves, in ULPs of the exact value
    # (relative), or k of a mixed bound k u (|t| + S_acc) + eta whose S_acc is only the
    # cancellation no algorithm avoids.  A violation is an accuracy finding, not a failure
    # (a failure under --strict).
    accuracy: float | None = None
    accuracy_scale: str | None = None    # reference function giving S_acc (None: relative, in ULPs)
    accuracy_derivation: str = ""


@dataclass(frozen=True)
class Clause:
    id: str
    title: str
    kind: str
    statement: str
    source: dict[str, Any]
    tolerance: Tolerance
    op: str | None = None                # adapter op exercised
    reference: str | None = None         # reference function, "module.function"
    args: tuple[str, ...] = ("z",)       # how the op's arguments are formed from z
    domain: tuple[float, float] | None = None
    special: tuple[dict[str, Any], ...] = ()
    relations: tuple[tuple[dict[str, Any], ...], ...] = ()
    predicate: str | None = None
    check: str | None = None             # composite/gradient/variant kinds: the registered check run
    params: dict[str, Any] = field(default_factory=dict)  # op keyword arguments; a list = one run per value
    conventions: tuple[dict[str, Any], ...] = ()
    references: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def citation(self) -> str:
        return f"ffnspec {EDITION} [{self.id}]"

    def ops(self) -> tuple[str, ...]:
        """Every adapter op this clause calls."""
        names = [self.op] if self.op else []
        for rel in self.relations:
            names += [t["op"] for t in rel if "op" in t]
        names += self.extra.get("uses", [])
        return tuple(dict.fromkeys(n for n in names if n))


_CLAUSE_KEYS = {f for f in Clause.__dataclass_fields__ if f != "extra"}


def _parse(raw: dict[str, Any], where: str) -> Clause:
    try:
        tol = raw.pop("tolerance")
        tolerance = Tolerance(**tol)
    except (KeyError, TypeError) as e:
        raise SpecError(f"{where}: clause {raw.get('id')!r} has a bad or missing [tolerance]: {e}") from None
    known = {k: v for k, v in raw.items() if k in _CLAUSE_KEYS}
    extra = {k: v for k, v in raw.items() if k not in _CLAUSE_KEYS}
    for key in ("args", "special", "conventions", "references"):
        if key in known:
            known[key] = tuple(known[key])
    if "relations" in known:
        known["relations"] = tuple(tuple(r) for r in known["relations"])
    if "domain" in known:
        known["domain"] = tuple(float(x) for x in known["domain"])
    try:
        clause = Clause(tolerance=tolerance, extra=extra, **known)
    except TypeError as e:
        raise SpecError(f"{where}: clause {raw.get('id')!r}: {e}") from None
    if clause.kind not in KINDS:
        raise SpecError(f"{where}: clause {clause.id}: unknown kind {clause.kind!r}")
    if tolerance.criterion not in CRITERIA:
        raise SpecError(f"{where}: clause {clause.id}: unknown criterion {tolerance.criterion!r}")
    if not tolerance.derivation.strip():
        raise SpecError(f"{where}: clause {clause.id}: the tolerance has no written derivation")
    if tolerance.accuracy is not None and not tolerance.accuracy_derivation.strip():
        raise SpecError(f"{where}: clause {clause.id}: the accuracy criterion has no written derivation")
    return clause


@functools.lru_cache(maxsize=None)
def clauses() -> tuple[Clause, ...]:
    """All clauses, in file order (act, hid, out, ... then num)."""
    found: list[Clause] = []
    seen: set[str] = set()
    for res in sorted(resources.files(__name__).iterdir(), key=lambda r: r.name):
        if not res.name.endswith(".toml"):
            continue
        data = tomllib.loads(res.read_text(encoding="utf-8"))
        for raw in data.get("clause", []):
            c = _parse(dict(raw), res.name)
            if c.id in seen:
                raise SpecError(f"{res.name}: duplicate clause id {c.id}")
            seen.add(c.id)
            found.append(c)
    return tuple(found)


@dataclass(frozen=True)
class Op:
    """An adapter op as spec/ops.toml defines it: how ffnspec calls it and what it returns."""
    name: str
    signature: str                       # the call, arguments in ffnspec's order
    shape: str                           # result-shape rule (see spec/ops.toml)
    meaning: str
    like: str = ""
    params: tuple[str, ...] = ()         # keyword parameters
    labels: tuple[str, ...] = ()         # arguments passed as integer class labels (asindex)
    optional: bool = False               # an op a library may lack without being incomplete
    specials: str = ""                   # layout of its generated special-value table (inputs/specials.py)
    domain: dict[str, Any] = field(default_factory=dict)  # argument -> [lo, hi], closed, extended reals

    def interval(self, arg: str) -> tuple[float, float]:
        """The closed interval of argument ``arg`` (the extended reals unless ``domain`` says)."""
        lo, hi = self.domain.get(arg, (-float("inf"), float("inf")))
        return float(lo), float(hi)

    @property
    def arguments(self) -> tuple[str, ...]:
        """Positional argument names, in order."""
        inner = self.signature[self.signature.index("(") + 1: self.signature.rindex(")")]
        return tuple(a.strip() for a in inner.split(",") if a.strip() and "=" not in a)


@functools.lru_cache(maxsize=None)
def ops() -> dict[str, Op]:
    """Every adapter op, from spec/ops.toml."""
    data = tomllib.loads(resources.files(__name__).joinpath("ops.toml").read_text(encoding="utf-8"))
    out = {}
    for name, raw in data.get("op", {}).items():
        try:
            out[name] = Op(name=name, **{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
        except TypeError as e:
            raise SpecError(f"ops.toml: op {name!r}: {e}") from None
        if not out[name].signature.startswith(f"{name}("):
            raise SpecError(f"ops.toml: op {name!r}: signature {out[name].signature!r} names another op")
    return out


def clause(clause_id: str) -> Clause:
    for c in clauses():
        if c.id == clause_id:
            return c
    raise KeyError(f"no clause {clause_id!r}")


def select(*, kind: str | None = None, patterns: tuple[str, ...] = ()) -> list[Clause]:
    """Clauses of ``kind`` whose id matches any glob in ``patterns`` (all if none)."""
    return [
        c for c in clauses()
        if (kind is None or c.kind == kind)
        and (not patterns or any(fnmatch.fnmatchcase(c.id, p) for p in patterns))
    ]
