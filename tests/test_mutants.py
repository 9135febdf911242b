"""Every conformance check can fail: each mutant in tests/mutants.py (the NumPy backend
with one defect) must be caught by the clauses it names, with the clause id in the
message, while the correct NumPy backend passes the same selection."""
from __future__ import annotations

import pytest

from ffnspec import spec
from tests import mutants, mutants_bp, mutants_hid, mutants_out
from tests import mutants_init, mutants_opt, mutants_xor
from tests._inner import run_suite

MUTANTS = mutants.MUTANTS + mutants_out.MUTANTS  # act/num (tests/mutants.py), out (tests/mutants_out.py)
MUTANTS += mutants_hid.MUTANTS  # hid (tests/mutants_hid.py)
MUTANTS += mutants_bp.MUTANTS  # bp (tests/mutants_bp.py)
MUTANTS += mutants_xor.MUTANTS + mutants_opt.MUTANTS + mutants_init.MUTANTS  # xor, opt, init


def parse(entry: str) -> tuple[str, str | None, str | None]:
    """"clause[/mode][@dtype]" -> (clause, mode, dtype)."""
    entry, _, dtype = entry.partition("@")
    clause, _, mode = entry.partition("/")
    return clause, mode or None, dtype or None


def matching(report: dict, entry: str) -> list[dict]:
    clause, mode, dtype = parse(entry)
    return [r for r in report["records"] if r["clause"] == clause
            and (mode is None or r["mode"] == mode) and (dtype is None or r["dtype"] == dtype)]


def selection(m: type[mutants.Mutant]) -> tuple[str, ...]:
    return m.clauses or tuple(dict.fromkeys(parse(e)[0] for e in m.catches + m.spares))


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.__name__)
def test_mutant_is_caught(pytester: pytest.Pytester, mutant: type[mutants.Mutant]) -> None:
    # A check that cannot fail proves nothing (array-api-tests' logaddexp = max + 5); the
    # clause id in the message is the citation a user acts on.  [act.*] [num.*]
    profile = () if mutant.profile == "ci" else (f"--ffnspec-profile={mutant.profile}",)
    ret, rep, out = run_suite(pytester, f"{mutant.__module__}:{mutant.__name__}", mutant.dtypes_run, selection(mutant), *profile)
    assert ret == pytest.ExitCode.TESTS_FAILED and not rep["summary"]["conforms"], out
    for entry in mutant.catches:
        clause = parse(entry)[0]
        caught = [r for r in matching(rep, entry) if r["verdict"] in ("fail", "error")]
        assert caught, f"{mutant.__name__} ({mutant.defect}) escaped [{entry}]: " \
                       f"{[(r['clause'], r['mode'], r['dtype'], r['verdict']) for r in matching(rep, entry)]}"
        for r in caught:
            assert f"[{clause}]" in r["message"], r["message"]
            assert mutant.says in r["message"], r["message"]
    for entry in mutant.spares:
        got = matching(rep, entry)
        assert got and all(r["verdict"] == "pass" for r in got), (entry, [r["verdict"] for r in got])
    # The same selection passes on the correct backend, so the defect is what was caught.
    ret, base, out = run_suite(pytester, "numpy", mutant.dtypes_run, selection(mutant), *profile)
    assert ret == pytest.ExitCode.OK and base["summary"]["conforms"], out
    for entry in mutant.catches:
        assert matching(base, entry) and all(r["verdict"] == "pass" for r in matching(base, entry))


def test_every_clause_has_a_mutant() -> None:
    # Every clause (and each mode of a derivative clause) must be proven able to fail.  [act.*] [num.*]
    caught = {parse(e)[:2] for m in MUTANTS for e in m.catches}
    missing = []
    for c in spec.clauses():
        modes = ("vjp", "jvp") if c.kind in spec.MODED_KINDS else (None,)
        missing += [f"{c.id}/{m}" if m else c.id for m in modes if (c.id, m) not in caught]
    assert not missing, f"clauses no mutant proves able to fail: {missing}"


def test_mutants_name_real_clauses() -> None:
    # A misspelt clause in a mutant's list would make its proof vacuous.  [num.dtype]
    ids = {c.id for c in spec.clauses()}
    for m in MUTANTS:
        assert m.catches and m.defect, m.__name__
        for e in m.catches + m.spares:
            clause, mode, dtype = parse(e)
            assert clause in ids and mode in (None, "vjp", "jvp") and dtype in (None, *m.dtypes_run), (m.__name__, e)


FINDING_MUTANTS = [m for m in MUTANTS + [getattr(mod, n) for mod in (mutants, mutants_out) for n in dir(mod)]
                   if getattr(m, "finds", ())]
FINDING_MUTANTS = list(dict.fromkeys(FINDING_MUTANTS))


@pytest.mark.parametrize("mutant", FINDING_MUTANTS, ids=lambda m: m.__name__)
def test_finding_mutant(pytester: pytest.Pytester, mutant: type[mutants.Mutant]) -> None:
    # The accuracy tier must see a real loss that MUST accepts (a gradient returned as 0 where
    # the exact value is representable), and --strict must fail it.  docs/measure.md "Tiers"
    backend = f"{mutant.__module__}:{mutant.__name__}"
    ret, rep, out = run_suite(pytester, backend, mutant.dtypes_run, mutant.finds)
    assert ret == pytest.ExitCode.OK and rep["summary"]["conforms"], out
    assert rep["summary"]["accuracy_findings"] > 0 and "accuracy finding" in rep["summary"]["verdict"]
    for r in rep["records"]:
        assert r["verdict"] == "pass" and r["findings"] > 0, (r["clause"], r["mode"], r["findings"])
        assert f"[{r['clause']}]" in r["finding"] and "accuracy finding" in r["finding"]
    ret, strict, out = run_suite(pytester, backend, mutant.dtypes_run, mutant.finds, "--ffnspec-strict")
    assert ret == pytest.ExitCode.TESTS_FAILED and all(r["verdict"] == "fail" for r in strict["records"]), out


def test_every_accuracy_criterion_can_find() -> None:
    # An accuracy criterion no mutant trips proves nothing.  docs/measure.md "Tiers"
    found = {c for m in FINDING_MUTANTS for c in m.finds}
    missing = [c.id for c in spec.clauses() if c.tolerance.accuracy is not None and c.id not in found]
    assert not missing, f"accuracy criteria no mutant trips: {missing}"
