"""Comparing two reports record by record (machinery/report.compare and its python -m entry)."""
from __future__ import annotations

import copy
import json

import pytest

from ffnspec.conformance.machinery import compare as compare_cli
from ffnspec.conformance.machinery.report import MEASURED, TEXT, Difference, compare
from tests._inner import run_suite


def _report(**changes) -> dict:
    rec = {"clause": "act.sigmoid", "backend": "numpy", "dtype": "float32", "device": "cpu", "mode": None,
           "verdict": "pass", "criterion": "ulp", "must": 1.0, "max_error": 0.5, "max_ulp": 0.5, "max_distance": 0,
           "grade": "correctly rounded", "worst_input": [1.5], "worst_output": 0.8, "worst_exact": 0.8,
           "examples": 100, "violations": 0, "message": None, "reproducer": None, "deviation": None, "notes": []}
    grad = dict(rec, clause="act.sigmoid.grad", mode="vjp", criterion="mixed")
    rep = {"created": "2026-01-01T00:00:00+00:00", "environment": {"python": "3.12"}, "records": [rec, grad]}
    rep = copy.deepcopy(rep)
    rep["records"][0].update(changes)
    return rep


def test_identical_records_agree_whatever_the_timestamp():
    # Timestamps and the environment change between runs; only what the checks measured counts.  [num.dtype]
    b = _report()
    b["created"], b["environment"] = "2027-01-01T00:00:00+00:00", {"python": "3.13"}
    b["records"].reverse()  # records are matched by identity, not by position
    assert compare(_report(), b) == []


@pytest.mark.parametrize("field, value", [("verdict", "fail"), ("max_error", 0.75), ("worst_input", [2.0]),
                                          ("examples", 101), ("grade", "faithful")])
def test_a_changed_measurement_is_one_difference(field, value):
    # A layout change must not move a verdict or a measured value by one bit.  [act.sigmoid]
    assert compare(_report(), _report(**{field: value})) == [
        Difference(("act.sigmoid", "numpy", "cpu", "float32", None), field, _report()["records"][0][field], value)]


def test_messages_are_compared_only_on_request():
    # Reworded messages are not a measurement; --text compares them too.  [act.sigmoid]
    a, b = _report(), _report(message="ffnspec 2026.1 [act.sigmoid] reworded")
    assert compare(a, b) == [] and [d.field for d in compare(a, b, fields=MEASURED + TEXT)] == ["message"]


def test_a_record_in_one_report_only():
    # A clause that stopped running (or started) is a difference, not silently ignored.  [act.sigmoid.grad]
    b = _report()
    del b["records"][1]
    (d,) = compare(_report(), b)
    assert d.field is None and str(d) == "act.sigmoid.grad/numpy/cpu/float32/vjp: only in A"


def test_cli_exit_status(tmp_path, capsys):
    # 0 when the records agree, 1 with a line per difference, 2 on unreadable input.  [num.dtype]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "report.json").write_text(json.dumps(_report()), encoding="utf-8")
    (tmp_path / "b.json").write_text(json.dumps(_report(verdict="fail")), encoding="utf-8")
    assert compare_cli.main([str(tmp_path / "a"), str(tmp_path / "a" / "report.json")]) == 0
    assert compare_cli.main([str(tmp_path / "a"), str(tmp_path / "b.json")]) == 1
    assert "act.sigmoid/numpy/cpu/float32: verdict: 'pass' != 'fail'" in capsys.readouterr().out
    assert compare_cli.main([str(tmp_path / "a"), str(tmp_path / "missing.json")]) == 2


def test_a_derandomised_run_repeats_record_for_record(pytester):
    # The ci profile is derandomised: two runs must agree exactly, or no comparison could prove a refactoring.  [act.softplus]
    reports = [run_suite(pytester, "numpy", ("float32",), ("act.softplus*",), cache=False)[1] for _ in range(2)]
    assert reports[0]["records"] and compare(*reports, fields=MEASURED + TEXT) == []
