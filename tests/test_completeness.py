"""The spec is complete: every clause has a reference, a check and a current doc page;
every check and citation names an existing clause."""
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

from ffnspec import spec
from ffnspec.adapters.numpy_backend import NumpyBackend
from ffnspec.conformance.checks import composites, identities, properties, variants
from ffnspec.conformance.inputs import rows
from ffnspec.reference import function
from ffnspec.spec import render

ROOT = Path(__file__).resolve().parents[1]
CLAUSES = spec.clauses()
IDS = {c.id for c in CLAUSES}


def _conformance_kinds() -> set[str]:
    import ffnspec.conformance as pkg
    kinds = set()
    for m in pkgutil.iter_modules(pkg.__path__):
        if m.name.startswith("test_"):
            mod = importlib.import_module(f"ffnspec.conformance.{m.name}")
            for obj in vars(mod).values():
                for mark in getattr(obj, "pytestmark", []):
                    if mark.name == "ffnspec":
                        kinds.add(mark.kwargs["kind"])
    return kinds


# Each clause kind is run by a generic check; a kind without one would be silently unchecked.
def test_every_kind_has_a_check():
    assert {c.kind for c in CLAUSES} <= _conformance_kinds()
    assert _conformance_kinds() <= set(spec.KINDS)


@pytest.mark.parametrize("clause", CLAUSES, ids=[c.id for c in CLAUSES])
def test_clause_is_complete(clause):
    # A clause without a reference cannot be measured; ARCHITECTURE.md "The spec as the single source of truth".
    t = clause.tolerance
    assert clause.statement.strip() and clause.title.strip()
    assert clause.source.get("book"), "every clause cites the book section"
    assert t.derivation.strip(), "every tolerance has a written derivation"
    if clause.kind in ("accuracy", "derivative"):
        function(clause.reference)
        assert clause.op and t.must is not None and t.criterion in ("ulp", "mixed")
    if clause.kind == "derivative":
        function(t.scale)
    if t.underflow:
        function(t.underflow)
    if clause.kind == "identity":
        assert clause.relations
        for rel in clause.relations:
            for term in rel:
                if "ref" in term:
                    function(term["ref"])
                if "op" in term:
                    identities.primary_accuracy_clause(term["op"])  # its bound feeds the tolerance
    if clause.kind == "property":
        assert properties.ELEMENTWISE.lookup(clause, clause.predicate)  # registered by conformance/<family>.py
    if clause.kind == "special":
        assert clause.special
    _complete_hid_kinds(clause)
    _complete_out_kinds(clause)
    for op in clause.ops():
        assert op in NumpyBackend().ops, f"the built-in backend lacks op {op!r}"


def _complete_hid_kinds(clause):
    """The hid family's kinds: piecewise/subgradient name a reference and an op; composite/
    gradient/variant name a registered check; mixed bounds name their scale S."""
    t = clause.tolerance
    if clause.kind in ("piecewise", "subgradient"):
        function(clause.reference)
        assert clause.op and t.criterion == "exact"
    if clause.kind in ("composite", "gradient"):
        assert composites.CHECKS.lookup(clause, clause.check)
        function(clause.reference)
    if clause.kind == "variant":
        assert variants.CHECKS.lookup(clause, clause.check)
    if clause.kind in ("composite", "gradient") and t.criterion == "mixed":
        function(t.scale)
        assert t.must is not None and t.per_term is not None


def _complete_out_kinds(clause):
    """The out family's kinds (conformance/out.py, checks/*.reduction): an input recipe; values name a reference
    and, for the mixed bound, k and any S, A; derivatives name a reference per mode; properties a
    registered predicate."""
    t = clause.tolerance
    if not clause.kind.startswith("reduction"):
        return
    assert clause.op and clause.extra.get("vectors") in rows.RECIPES
    for ref in (t.scale, t.accumulation):
        if ref:
            function(ref)
    if clause.kind == "reduction":
        function(clause.reference)
        assert t.criterion == "mixed" and t.must is not None
    if clause.kind == "reduction_derivative":
        assert t.criterion == "mixed" and t.must is not None and set(clause.extra["modes"]) == {"vjp", "jvp"}
        for refs in clause.extra["modes"].values():
            for key in ("reference", "scale", "accumulation", "underflow"):
                if key in refs:
                    function(refs[key])
    if clause.kind == "reduction_property":
        assert properties.REDUCTION.lookup(clause, clause.predicate)


# A family's own checks live in the module named for it, so the family reads as one column:
# spec/NN_<family>.toml, reference/<family>.py, conformance/<family>.py.  ARCHITECTURE "One family, one column"
def test_family_checks_live_in_the_family_module():
    registries = {"composite": composites.CHECKS, "gradient": composites.CHECKS,
                  "property": properties.ELEMENTWISE, "reduction_property": properties.REDUCTION}
    for c in CLAUSES:
        if c.kind in registries:
            f = registries[c.kind].lookup(c, c.check or c.predicate)
            assert f.__module__ == f"ffnspec.conformance.{c.family}", (c.id, f.__module__)


# The kink/tie table: each row names an op, a point, a preferred value among the allowed ones and
# a reason; every adapter op it names exists in the built-in backend.  [hid.conventions]
def test_convention_rows_are_well_formed():
    rows = spec.clause("hid.conventions").conventions
    assert len({r["name"] for r in rows}) == len(rows)
    for r in rows:
        assert r["preferred"] in r["allowed"] and r["reason"].strip() and r["of"] in ("derivative", "value", "routing")
        assert r["op"] in NumpyBackend().ops


# Seeds are cited by file name; a typo would send readers nowhere.
def test_seed_citations_exist():
    seeds = ROOT.parent / "shared" / "seeds"
    if not seeds.is_dir():
        pytest.skip("shared/seeds not beside the checkout")
    for c in CLAUSES:
        for s in c.source.get("seeds", []):
            assert (seeds / s).is_file(), f"{c.id} cites missing seed {s}"


# Docs are generated from the clauses; a stale page misquotes the spec.  Run `ffnspec docs`.
def test_doc_pages_are_current():
    docs = ROOT / "docs" / "clauses"
    expected = render.pages()
    assert sorted(p.name for p in docs.glob("*.md")) == sorted(expected)
    for name, text in expected.items():
        assert (docs / name).read_text(encoding="utf-8") == text, f"docs/clauses/{name} is stale: run `ffnspec docs`"


# The adapter guide's ops table is generated; a stale one teaches the wrong argument order.
def test_adapter_guide_ops_table_is_current():
    guide = (ROOT / "docs" / "adapters.md").read_text(encoding="utf-8")
    assert render.with_ops_table(guide) == guide, "docs/adapters.md's ops table is stale: run `ffnspec docs`"


# Every op a clause calls is defined in spec/ops.toml, and the built-in backend offers each one
# with the arity the signature gives.
def test_every_op_is_specified_and_built_in():
    import inspect
    ops = spec.ops()
    used = {o for c in CLAUSES for o in c.ops()}
    assert used - set(ops) == set(), "ops used by clauses but missing from spec/ops.toml"
    from ffnspec.adapters import numpy_backend
    raw = {**numpy_backend._OUT_OPS, **{n: f for n, (f, _) in numpy_backend._HID_OPS.items()}}
    for name, op in ops.items():
        assert name in NumpyBackend().ops, f"the NumPy backend lacks op {name}"
        try:
            sig = inspect.signature(raw[name]) if name in raw else None
        except ValueError:  # a ufunc
            sig = None
        if sig is not None and not any(p.kind is p.VAR_POSITIONAL for p in sig.parameters.values()):
            params = [p for p in sig.parameters.values() if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            assert len(params) == len(op.arguments), (name, op.signature, params)


# Clause pages cite the book and the provenance page, never a file a reader cannot open.
def test_clause_pages_cite_no_seed_files():
    for name, text in render.pages().items():
        assert not re.search(r"\d{3}_[0-9a-f]{16}\.txt", text), name


# Every [clause.id] cited in a conformance check, a deviation file or the docs must exist.
def test_citations_name_existing_clauses():
    cited = set()
    pattern = re.compile(r"\[((?:act|hid|out|loss|bp|opt|init|num|xor)\.[a-z0-9_.]+)\]")
    for folder in ("conformance", "adapters", "docs", "tests"):
        for p in (ROOT / folder).rglob("*"):
            if p.suffix in (".py", ".toml", ".md"):
                cited |= set(pattern.findall(p.read_text(encoding="utf-8")))
    for p in (ROOT / "adapters" / "deviations").glob("*.toml"):
        cited |= set(re.findall(r'clause\s*=\s*"([^"*?]+)"', p.read_text(encoding="utf-8")))
    assert cited - IDS == set()


# Clause ids are stable and never reused: the id encodes its family.
def test_ids_are_well_formed():
    for c in CLAUSES:
        assert re.fullmatch(r"[a-z]+(\.[a-z0-9_]+)+", c.id), c.id
