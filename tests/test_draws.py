"""Kept and replayed derandomised draws (conformance/machinery/draws.py): a replayed
exploration must give the records the engine gives, pass or fail."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import settings

from ffnspec.conformance.machinery import draws
from ffnspec.conformance.machinery.records import Record
from ffnspec.reference import tables
from tests._inner import run_suite
from tests.mutants import Mutant, _sigmoid

CLAUSES = ("act.sigmoid", "act.sigmoid.grad", "out.softmax")


def _records(report: dict) -> list[dict]:
    return sorted(report["records"], key=lambda r: (r["clause"], r["dtype"], r["mode"] or ""))


@pytest.fixture
def engine_only(monkeypatch):
    """Nothing kept: every exploration runs hypothesis's engine (in memory, no cache files)."""
    monkeypatch.setattr(draws, "_kept", {})
    monkeypatch.setattr(draws, "_path", lambda digest: None)


def test_replay_gives_the_engines_records(pytester, engine_only, monkeypatch):
    # The second run replays every exploration the first one drew; its records must be the
    # engine's, field for field (examples, worst inputs, curves).  [act.sigmoid] [out.softmax]
    ret0, first, out0 = run_suite(pytester, "numpy", ("float32", "float16"), CLAUSES, cache=False)
    assert ret0 == pytest.ExitCode.OK, out0
    assert draws._kept, "the engine's draws were kept"
    engine_runs = []
    monkeypatch.setattr(draws.Exploration, "keep", lambda self: engine_runs.append(self.digest))
    ret1, second, out1 = run_suite(pytester, "numpy", ("float32", "float16"), CLAUSES, cache=False)
    assert ret1 == pytest.ExitCode.OK, out1
    assert engine_runs == [], "every exploration replayed"
    assert _records(first) == _records(second)


class SigmoidOffOnShortArrays(Mutant):
    defect = "sigma 64 steps high on arrays of 7-17 elements: only drawn arrays have that length"
    replace = {"sigmoid": lambda z: _sigmoid(z) if not 7 <= z.size <= 17 else
               np.nextafter(_sigmoid(z), np.inf) * (1 + 64 * np.finfo(z.dtype).eps)}


def test_a_failing_replay_falls_back_to_the_engine(pytester, engine_only):
    # A backend that fails a replayed example must be reported exactly as without replay:
    # the record is restored and hypothesis finds, shrinks and reports.  [act.sigmoid]
    broken = "tests.test_draws:SigmoidOffOnShortArrays"
    ret0, fresh, out0 = run_suite(pytester, broken, ("float32",), ("act.sigmoid",), cache=False)
    assert ret0 == pytest.ExitCode.TESTS_FAILED, out0
    draws._kept.clear()
    run_suite(pytester, "numpy", ("float32",), ("act.sigmoid",), cache=False)   # keeps the draws
    assert draws._kept
    ret1, replayed, out1 = run_suite(pytester, broken, ("float32",), ("act.sigmoid",), cache=False)
    assert ret1 == pytest.ExitCode.TESTS_FAILED, out1
    assert _records(fresh) == _records(replayed)
    assert "Failing test case: explore(" in out0 and "Failing test case: explore(" in out1  # shrunk and reported


def test_a_failed_replay_leaves_the_record_as_it_was():
    # Observations of the examples replayed before the failing one must not count twice.
    record = Record(clause="act.sigmoid", backend="b", dtype="float32", device="cpu", examples=5, notes=["n"])
    record.scope = scope = object()
    run = draws.Exploration(("arrays", "float32", None), settings(max_examples=20, derandomize=True))
    draws._kept[run.digest] = [np.zeros(2), np.ones(3), np.ones(4)]

    def body(z):
        record.examples += z.size
        record.notes.append("seen")
        if z.size == 4:
            raise AssertionError("fails")
    try:
        assert run.replay(body, record) is False
    finally:
        del draws._kept[run.digest]
    assert record.examples == 5 and record.notes == ["n"] and record.scope is scope


def test_kept_draws_round_trip_through_the_cache(tmp_path, monkeypatch):
    # Arrays and groups of arrays come back bit for bit, dtypes included; a damaged file is
    # ignored (the engine draws again), never an error.
    monkeypatch.setattr(draws, "_kept", {})
    monkeypatch.setattr(tables, "_cache_dir", tmp_path)
    examples = [np.array([0.5, -0.0, 1e-300]), (np.array([[1.0, np.inf]]), np.array([1], dtype=np.int64))]
    draws._save("d1", examples)
    draws._kept.clear()
    back = draws._load("d1")
    assert len(back) == 2 and np.array_equal(back[0], examples[0]) and np.signbit(back[0][1])
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(back[1], examples[1]))
    draws._kept.clear()
    (tmp_path / "draws" / "d1.npz").write_bytes(b"not a zip")
    assert draws._load("d1") is None


def test_random_profiles_never_replay():
    # Fresh random draws (profiles fast, thorough) are the point of those profiles.
    run = draws.Exploration(("arrays", "float32", None), settings(max_examples=20, derandomize=False))
    assert not run.active and not run.replay(lambda e: None, None)


def test_the_key_separates_strategies_and_settings():
    # Different formats, domains or example counts draw different examples.
    s20, s8 = settings(max_examples=20, derandomize=True), settings(max_examples=8, derandomize=True)
    keys = {draws._digest(("arrays", "float32", None), s20), draws._digest(("arrays", "float16", None), s20),
            draws._digest(("arrays", "float32", (0.0, 1.0)), s20), draws._digest(("arrays", "float32", None), s8)}
    assert len(keys) == 4
