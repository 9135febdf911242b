"""Plugin mechanics: option validation, declared deviations, report, adapter faults,
missing ops, and the plugin's import footprint."""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ffnspec import spec
from ffnspec.adapters import DTYPES
from tests._inner import run_suite

SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "report-schema.json"


def usage_error(pytester: pytest.Pytester, *args) -> str:
    """Run with bad input; return the one error line after checking there is nothing else."""
    ret, report, out = run_suite(pytester, *args, cache=False)
    assert ret == pytest.ExitCode.USAGE_ERROR, out
    assert report is None
    assert "Traceback" not in out and "INTERNALERROR" not in out, out
    errors = [ln for ln in out.splitlines() if ln.startswith("ERROR:")]
    assert len(errors) == 1 and errors[0].startswith("ERROR: ffnspec: "), out
    return errors[0]


def xfail_file(pytester: pytest.Pytester, text: str) -> str:
    path = pytester.path / "deviations.toml"
    path.write_text(text, encoding="utf-8")
    return f"--ffnspec-xfail-file={path}"


# --------------------------------------------------------------------------- bad input ----
# Bad input is one clear line and a usage-error exit, never a traceback (ARCHITECTURE "Adapters").

# A typo in the backend name must show what could have been meant.  ARCHITECTURE "Adapters"
def test_unknown_backend_lists_registered(pytester):
    line = usage_error(pytester, "no-such-backend")
    assert "unknown backend 'no-such-backend'" in line and "registered:" in line and "numpy" in line


# module:Class loads unregistered adapters; a bad one must say what failed.  ARCHITECTURE "Adapters"
@pytest.mark.parametrize("spec_", ["tests.mutants:NoSuchClass", "no_such_module_xyz:Backend"])
def test_module_class_that_does_not_exist(pytester, spec_):
    assert f"cannot load backend {spec_!r}" in usage_error(pytester, spec_)


# Asking for a dtype the backend lacks must not silently check nothing.  [num.dtype]
def test_dtype_the_backend_lacks(pytester):
    line = usage_error(pytester, "tests.mutants:Float64Only", ("float16",))
    assert "does not support dtype 'float16'" in line and "offers float64" in line


# An unknown dtype name lists the four formats the spec defines.  [num.dtype]
def test_unknown_dtype(pytester):
    line = usage_error(pytester, "numpy", ("float8",))
    assert "unknown dtype 'float8'" in line and all(d in line for d in DTYPES)


# A device that is not there is an error, not an empty (passing) run.  ARCHITECTURE "Adapters"
def test_unknown_device(pytester):
    line = usage_error(pytester, "numpy", ("float32",), (), "--ffnspec-device=tpu9")
    assert line == "ERROR: ffnspec: backend 'numpy' has no device 'tpu9' here; available: cpu"


# A clause glob that selects nothing would make a vacuous green run.  [act.sigmoid]
def test_clauses_matching_nothing(pytester):
    assert "matches no clause id" in usage_error(pytester, "numpy", ("float32",), ("act.no_such*",))


@pytest.mark.parametrize("text, says", [
    ("[[deviation]\nclause = ", "not valid TOML"),
    ('[[deviation]]\nclause = "act.sigmoid"\n', "'reason' is required"),
    ('[[deviation]]\nclause = "act.sigmoid"\nreason = "r"\nplatform = "x"\n', "unknown key(s) ['platform']"),
    ('[[deviations]]\nclause = "act.sigmoid"\nreason = "r"\n', "unknown top-level key(s)"),
    ('[[deviation]]\nclause = "act.sigmoid"\nreason = "r"\ndtype = 32\n', "'dtype' must be a string or a list"),
    ('[[deviation]]\nclause = "act.sigmoid"\nreason = "r"\nceiling = -1\n', "'ceiling' must be a non-negative"),
    ('[[deviation]]\nclause = "act.sigmoid"\nreason = "r"\nregion = [[1, 0]]\n', "'region' must be a list"),
    ('[[deviation]]\nclause = "act.sigmoid"\nreason = "r"\nwhere = "subnormal"\n', "'where' must be one of ['apart_beyond_exp_range', 'label_is_max', 'nonfinite', 'posinf_entry', 'rows_beyond_65504'] or a list of them"),
])
def test_malformed_xfail_file(pytester, text, says):
    # A deviation file that is silently misread would hide a failure.  [act.sigmoid]
    line = usage_error(pytester, "numpy", ("float32",), ("act.sigmoid",), xfail_file(pytester, text))
    assert "malformed xfail file" in line and "deviations.toml" in line and says in line, line


# A deviation file that cannot be read is an error, not an empty declaration list.  [act.sigmoid]
def test_missing_xfail_file(pytester):
    line = usage_error(pytester, "numpy", ("float32",), ("act.sigmoid",), "--ffnspec-xfail-file=/no/such/dev.toml")
    assert line.endswith("xfail file '/no/such/dev.toml' does not exist"), line


# ------------------------------------------------------------------ declared deviations ----
def test_unmatched_xfail_entry_warns(pytester):
    # An entry that can never match (a typo) or that this run should have used is reported; entries
    # about clauses, dtypes or backends outside the selection are not noise-warned.  [act.sigmoid]
    ret, report, out = run_suite(pytester, "numpy", ("float32",), ("act.sigmoid",), xfail_file(pytester, """
        [[deviation]]
        clause = "act.sigmiod"
        reason = "typo"
        [[deviation]]
        clause = "act.sigmoid"
        mode = "vjp"
        reason = "act.sigmoid has no modes"
        [[deviation]]
        clause = "act.tanh"
        reason = "not selected"
        [[deviation]]
        clause = "act.sigmoid"
        backend = "torch"
        reason = "another backend"
        """), cache=False)
    assert ret == pytest.ExitCode.OK and report["summary"]["conforms"], out
    warned = [ln for ln in out.splitlines() if "FfnspecWarning: ffnspec" in ln]
    assert len(warned) == 2, out
    assert "matches no clause id: clause='act.sigmiod'" in warned[0]
    assert "matches no collected check: clause='act.sigmoid'" in warned[1] and "mode='vjp'" in warned[1]
    # ... and listed in the report, which outlives the terminal
    why = {(d["clause"], d["mode"], d["backend"]): d["unmatched"] for d in report["deviations"]}
    assert why == {("act.sigmiod", None, None): "matches no clause id",
                   ("act.sigmoid", "vjp", None): "matches no collected check",
                   ("act.tanh", None, None): None, ("act.sigmoid", None, "torch"): None}
    md = (Path(re.search(r"^report: (.*)/report\.json", out, re.M)[1]) / "report.md").read_text()
    assert "## Declared deviations that matched nothing" in md and "| act.sigmiod |" in md


def test_declared_deviation_turns_failure_into_deviation(pytester):
    # A backend that genuinely differs declares it; the run passes and the report shows it.  [act.sigmoid]
    ret, report, out = run_suite(pytester, "tests.mutants:NaiveSigmoid", ("float32",), ("act.sigmoid",), xfail_file(
        pytester, '[[deviation]]\nclause = "act.sigmoid"\ndtype = ["float32"]\nreason = "no subnormal tail"\n'
                  'reproducer = "print(sigmoid(-100.0))"\n'), cache=False)
    assert ret == pytest.ExitCode.OK, out
    (rec,) = report["records"]
    assert rec["verdict"] == "deviation" and "no subnormal tail" in rec["deviation"]
    assert rec["deviation_reproducer"] == "print(sigmoid(-100.0))"
    md = (Path(re.search(r"^report: (.*)/report\.json", out, re.M)[1]) / "report.md").read_text()
    assert "Reproducer (from the declaration):" in md and "print(sigmoid(-100.0))" in md
    assert "[act.sigmoid]" in rec["message"]  # the failure it excuses stays on record
    assert report["summary"] == {"verdicts": {"deviation": 1}, "conforms": True, "complete": True,
                                 "declared_deviations": 1, "accuracy_findings": 0, "verdict": "conforms with declared deviations"}


@pytest.mark.parametrize("scope, verdict", [
    ("region = [[-104.0, -87.0]]\nceiling = 8.4e6\n", "deviation"),  # the subnormal tail, 2^23 ULP at most
    ("region = [[-95.0, -87.0]]\n", "fail"),                          # part of the tail is outside
    ("ceiling = 1e3\n", "fail"),                                      # errors reach 2^21 ULP
    ('where = "nonfinite"\n', "fail"),                                # the violations are at finite z
])
def test_scoped_deviation_excuses_only_its_scope(pytester, scope, verdict):
    # A new defect in an already-declared record must not pass as the old deviation.  [act.sigmoid]
    ret, report, out = run_suite(pytester, "tests.mutants:NaiveSigmoid", ("float32",), ("act.sigmoid",), xfail_file(
        pytester, f'[[deviation]]\nclause = "act.sigmoid"\nreason = "no subnormal tail"\n{scope}'), cache=False)
    (rec,) = report["records"]
    assert rec["verdict"] == verdict, (rec["verdict"], rec["message"])
    if verdict == "fail":
        assert rec["unexcused"] > 0 and "outside the declared deviation's scope" in rec["message"]
        assert ret == pytest.ExitCode.TESTS_FAILED
    else:
        assert rec["unexcused"] == 0 and ret == pytest.ExitCode.OK, out


@pytest.mark.parametrize("second, verdict", [("region = [[-95.0, -87.0]]", "deviation"), ('where = "nonfinite"', "fail")])
def test_scoped_entries_of_one_record_add_up(pytester, second, verdict):
    # Two entries matching one record (each with its own reason) excuse the union of their scopes,
    # and no more: the tail below -95 and the part above it together, not the tail alone.  [act.sigmoid]
    entry = '[[deviation]]\nclause = "act.sigmoid"\nreason = "{}"\n{}\n'
    ret, report, out = run_suite(pytester, "tests.mutants:NaiveSigmoid", ("float32",), ("act.sigmoid",), xfail_file(
        pytester, entry.format("deep tail", "region = [[-inf, -95.0]]") + entry.format("second", second)), cache=False)
    (rec,) = report["records"]
    assert rec["verdict"] == verdict, (rec["verdict"], rec["message"])
    assert (rec["unexcused"] == 0) == (verdict == "deviation") and (ret == pytest.ExitCode.OK) == (verdict == "deviation")
    if verdict == "deviation":
        assert "deep tail" in rec["deviation"] and "second" in rec["deviation"]


@pytest.mark.parametrize("region, verdict", [("[[-40.0, 40.0]]", "deviation"), ("[[20.0, 40.0]]", "fail")])
def test_scoped_deviation_of_a_one_check_record(pytester, region, verdict):
    # The record's only check fails outside the scope: a failure, never "declared deviation did
    # not occur" (softplus(z) = z for z > 20 breaks the reflection at z < -20 too).  [act.softplus.reflection]
    ret, report, out = run_suite(pytester, "tests.mutants:SoftplusThreshold20", ("float64",), ("act.softplus.reflection",),
                                 xfail_file(pytester, '[[deviation]]\nclause = "act.softplus.reflection"\n'
                                                      f'reason = "threshold 20"\nregion = {region}\n'), cache=False)
    (rec,) = report["records"]
    assert rec["verdict"] == verdict, (rec["verdict"], rec["message"])
    assert (ret == pytest.ExitCode.OK) == (verdict == "deviation"), out


@pytest.mark.parametrize("mutant, verdict", [("BCENaNAtInfinity", "deviation"), ("BCEProbabilityForm", "fail")])
def test_deviation_scoped_to_nonfinite_inputs(pytester, mutant, verdict):
    # where = "nonfinite" excuses the special-value table's infinities only; a defect at finite
    # inputs in the same record fails.  [out.bce]
    ret, report, out = run_suite(pytester, f"tests.mutants_out:{mutant}", ("float32",), ("out.bce",), xfail_file(
        pytester, '[[deviation]]\nclause = "out.bce"\nreason = "0 * inf"\nwhere = "nonfinite"\n'), cache=False)
    (rec,) = report["records"]
    assert rec["verdict"] == verdict, (rec["verdict"], rec["message"])


@pytest.mark.parametrize("where, verdict", [("rows_beyond_65504", "deviation"), ("nonfinite", "fail")])
def test_deviation_scoped_to_long_rows(pytester, where, verdict):
    # where = "rows_beyond_65504" excuses a float16 sum overflowing on rows longer than float16's
    # range (torch's logsumexp), and nothing on other rows.  [out.logsumexp]
    ret, report, out = run_suite(pytester, "tests.mutants_out:LogsumexpStorageSum", ("float16",), ("out.logsumexp",),
                                 "--ffnspec-profile=thorough", xfail_file(
        pytester, f'[[deviation]]\nclause = "out.logsumexp"\nreason = "sum in float16"\nwhere = "{where}"\n'), cache=False)
    (rec,) = report["records"]
    assert rec["verdict"] == verdict, (rec["verdict"], rec["message"])


def test_deviation_whose_scope_no_input_reaches_is_not_stale(pytester):
    # The default profile draws no row past 65504 entries: the declaration is not exercised, so
    # it is neither stale nor a deviation, and the record is judged on its own.  [out.logsumexp]
    ret, report, out = run_suite(pytester, "tests.mutants_out:LogsumexpStorageSum", ("float16",), ("out.logsumexp",),
                                 xfail_file(pytester, '[[deviation]]\nclause = "out.logsumexp"\nreason = "sum in float16"\n'
                                                      'where = "rows_beyond_65504"\n'), cache=False)
    (rec,) = report["records"]
    assert rec["verdict"] == "pass" and ret == pytest.ExitCode.OK, (rec["verdict"], out)
    assert any(n.startswith("declared deviation not exercised") for n in rec["notes"]), rec["notes"]


def test_deviation_scoped_to_one_mode(pytester):
    # mode = "jvp" excuses forward mode only; reverse mode is still checked.  [act.sigmoid.grad]
    ret, report, out = run_suite(pytester, "tests.mutants:SigmoidGradJvpOnly", ("float32",), ("act.sigmoid.grad",),
                                 xfail_file(pytester, '[[deviation]]\nclause = "act.sigmoid.*"\nmode = "jvp"\n'
                                                      'reason = "forward rule"\n'), cache=False)
    assert ret == pytest.ExitCode.OK, out
    assert {r["mode"]: r["verdict"] for r in report["records"]} == {"vjp": "pass", "jvp": "deviation"}


def test_stale_xfail_entry_is_xpass_and_fails_the_run(pytester):
    # A declaration for a defect that is gone would hide a regression later.  [act.sigmoid]
    ret, report, out = run_suite(pytester, "numpy", ("float32",), ("act.sigmoid",), xfail_file(
        pytester, '[[deviation]]\nclause = "act.sigmoid"\nreason = "fixed long ago"\n'), cache=False)
    assert ret == pytest.ExitCode.TESTS_FAILED, out
    (rec,) = report["records"]
    assert rec["verdict"] == "xpass" and "stale" in rec["message"] and "[act.sigmoid]" in rec["message"]
    assert not report["summary"]["conforms"]
    assert "1 failed" in out


# ---------------------------------------------------------------------------- report ----
def _expected_keys(clauses, dtypes, devices=("cpu",)):
    return sorted((c.id, d, dev, m) for c in clauses for d in dtypes for dev in devices
                  for m in (("vjp", "jvp") if c.kind in spec.MODED_KINDS else (None,)))


def test_report_has_one_record_per_clause_dtype_device_mode(pytester):
    # Reports and tools read records keyed this way; two records for one key would be ambiguous.  [act.sigmoid]
    ret, report, out = run_suite(pytester, "numpy", ("float32", "float64"), ())
    got = sorted((r["clause"], r["dtype"], r["device"], r["mode"]) for r in report["records"])
    assert got == _expected_keys(spec.clauses(), ("float32", "float64"))
    schema = json.loads(SCHEMA.read_text())
    assert set(report) == set(schema["required"])
    for r in report["records"]:
        assert set(r) == set(schema["$defs"]["record"]["required"]) and r["backend"] == "numpy"
        assert r["verdict"] != "pass" or r["examples"] > 0
    verdicts = Counter(r["verdict"] for r in report["records"])
    conforms = not any(verdicts[v] for v in ("fail", "error", "xpass"))
    assert report["summary"] == {"verdicts": dict(verdicts), "conforms": conforms, "complete": True,
                                 "declared_deviations": 0, "accuracy_findings": 0, "verdict": "conforms" if conforms else "does not conform"}
    assert ret == (pytest.ExitCode.OK if conforms else pytest.ExitCode.TESTS_FAILED), out
    from ffnspec.adapters.numpy_backend import NumpyBackend
    assert report["backend"] == {"name": "numpy", "spec": "numpy", "conventions": dict(NumpyBackend.conventions)}
    assert report["profile"] == "ci" and report["dtypes"] == ["float32", "float64"] and report["devices"] == ["cpu"]
    md = (Path(re.search(r"^report: (.*)/report\.json", out, re.M)[1]) / "report.md").read_text()
    assert md.startswith("# ffnspec") and md.count("\n| [") == len(got)


def test_report_validates_against_schema(pytester):
    # docs/report-schema.json is the contract for report consumers.  [act.softplus] [act.sigmoid]
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    ok = run_suite(pytester, "numpy", ("float32", "float64"), ())[1]
    bad = run_suite(pytester, "tests.mutants:NaiveSoftplus", ("float32",), ("act.softplus*",))[1]  # inf, messages
    for report in (ok, bad):
        jsonschema.validate(report, schema, format_checker=jsonschema.FormatChecker())
    assert any(isinstance(r["max_error"], str) for r in bad["records"])  # the non-finite spelling is exercised


# ------------------------------------------------------------------- adapter behaviour ----
def test_raising_op_is_a_clause_failure_not_a_crash(pytester):
    # An adapter exception is the backend's fault, reported against the clause checked.  [act.softplus] [num.dtype]
    ret, report, out = run_suite(pytester, "tests.mutants:RaisingSoftplus", ("float32",),
                                 ("act.softplus", "act.sigmoid", "num.dtype"))
    assert ret == pytest.ExitCode.TESTS_FAILED and "INTERNALERROR" not in out, out
    v = {r["clause"]: r for r in report["records"]}
    assert v["act.sigmoid"]["verdict"] == "pass"
    assert v["act.softplus"]["verdict"] == "error"
    assert v["act.softplus"]["message"].startswith("ffnspec 2026.1 [act.softplus]")
    assert "raised RuntimeError: kernel launch failed" in v["act.softplus"]["message"]
    # the raise is charged to the clauses that call softplus; num.dtype notes it and holds
    assert v["num.dtype"]["verdict"] == "pass" and any("softplus" in n and "raised" in n for n in v["num.dtype"]["notes"])


def test_missing_op_is_not_implemented_not_pass(pytester):
    # A missing op is "not implemented", never a pass.  ARCHITECTURE "Adapters"  [act.log_sigmoid]
    ret, report, out = run_suite(pytester, "tests.mutants:MissingLogSigmoid", ("float32",),
                                 ("act.log_sigmoid*", "act.softplus.logsigmoid", "act.sigmoid"))
    v = {(r["clause"], r["mode"]): r for r in report["records"]}
    for key in [("act.log_sigmoid", None), ("act.log_sigmoid.grad", "vjp"), ("act.log_sigmoid.grad", "jvp"),
                ("act.softplus.logsigmoid", None)]:
        assert v[key]["verdict"] == "not_implemented" and "log_sigmoid" in v[key]["message"], (key, v[key])
    assert v[("act.sigmoid", None)]["verdict"] == "pass"
    assert report["summary"]["verdicts"] == {"not_implemented": 4, "pass": 1}
    assert not report["summary"]["complete"] and "4 check(s) not implemented" in report["summary"]["verdict"]
    assert ret == pytest.ExitCode.OK, out
    md = (Path(re.search(r"^report: (.*)/report\.json", out, re.M)[1]) / "report.md").read_text()
    assert "## Not implemented" in md and "does not implement op(s): log_sigmoid" in md


def test_op_unavailable_in_a_dtype_is_not_implemented(pytester):
    # A library without a float16 version of an op declares it (op_dtypes); never a pass.  [act.tanh]
    ret, report, out = run_suite(pytester, "tests.mutants:TanhWithoutFloat16", ("float16", "float32"), ("act.tanh",))
    v = {r["dtype"]: r for r in report["records"]}
    assert v["float16"]["verdict"] == "not_implemented" and "unavailable in float16" in v["float16"]["message"]
    assert v["float32"]["verdict"] == "pass" and ret == pytest.ExitCode.OK, out


def test_missing_forward_mode_is_not_implemented(pytester):
    # A backend without forward mode gets "not implemented" for jvp, and reverse mode still runs.  [act.tanh.grad]
    ret, report, out = run_suite(pytester, "tests.mutants:NoForwardMode", ("float32",), ("act.tanh.grad",))
    assert ret == pytest.ExitCode.OK, out
    assert {r["mode"]: r["verdict"] for r in report["records"]} == {"vjp": "pass", "jvp": "not_implemented"}


def test_declared_flush_to_zero_is_judged_as_such(pytester):
    # The same flushing fails undeclared (tests/mutants.py FlushesSubnormals) and passes declared:
    # FTZ results are judged with subnormal references replaced by zero.  [act.sigmoid] [act.silu]
    ret, report, out = run_suite(pytester, "tests.mutants:FlushesSubnormalsDeclared", ("float32",),
                                 ("act.sigmoid", "act.silu"))
    assert ret == pytest.ExitCode.OK and report["summary"]["conforms"], out
    assert report["backend"]["conventions"] == {"flush_to_zero": "yes"}
    # a convention that changes results is a declared deviation, never a silent pass
    assert report["summary"]["verdict"] == "conforms with declared deviations"
    for r in report["records"]:
        assert r["verdict"] == "deviation" and r["conventions_used"]["flush_to_zero"] > 0, r
        assert "declared convention flush_to_zero = 'yes' changed" in r["deviation"]


_REPRO = [("tests.mutants:NaiveSigmoid", "act.sigmoid", None),
          ("tests.mutants:SigmoidGradJvpOnly", "act.sigmoid.grad", "jvp"),
          ("tests.mutants:SigmoidGradNaNAtInfinityJvpOnly", "act.sigmoid.grad", "jvp")]


@pytest.mark.parametrize("backend, clause, mode", _REPRO)
def test_reproducer_reproduces(pytester, backend, clause, mode):
    # The copy-paste reproducer must show the failing output, or it sends users down a wrong path.  [act.sigmoid]
    ret, report, out = run_suite(pytester, backend, ("float32",), (clause,))
    (rec,) = [r for r in report["records"] if r["clause"] == clause and r["mode"] == mode]
    assert rec["verdict"] == "fail" and rec["reproducer"] in rec["message"].replace("\n    ", "\n")
    shown = []  # run it as pasted, catching what it prints (print itself shows only 8 digits)
    exec(rec["reproducer"], {"print": shown.append})
    (got,) = np.asarray(shown[0], dtype=np.float64)
    want = float(rec["worst_output"])
    assert got == want or (math.isnan(got) and math.isnan(want)), (got, want)


# -------------------------------------------------------------------- import footprint ----
def test_plugin_imports_nothing_heavy_when_unused(pytester):
    # The plugin loads in every pytest run of the environment; unrelated suites must not pay for
    # mpmath or a deep-learning framework (other installed plugins may import what they like).  ARCHITECTURE "Layout"
    pytester.makepyfile(test_unrelated="""
        import sys

        def test_nothing_heavy():
            assert "ffnspec.conformance.machinery.plugin" in sys.modules  # the plugin did load
            ours = {m for m in sys.modules if m.startswith("ffnspec")}
            assert ours == {"ffnspec", "ffnspec.conformance", "ffnspec.conformance.machinery",
                            "ffnspec.conformance.machinery.plugin"}, ours
            assert not {"mpmath", "torch", "jax"} & set(sys.modules)
    """)
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    res.assert_outcomes(passed=1)


def test_citations_in_failure_output(pytester):
    # The terminal shows the citation, not a traceback into the checks.  [act.softplus.lse]
    ret, _, out = run_suite(pytester, "tests.mutants:LogaddexpMaxPlus5", ("float32",), ("act.softplus.lse",),
                            "--tb=auto", cache=False)
    assert ret == pytest.ExitCode.TESTS_FAILED
    assert "ffnspec 2026.1 [act.softplus.lse]" in out and "reproducer:" in out
    assert not re.search(r"^\s*raise ConformanceFailure", out, re.M), out


def test_shape_reproducer_shows_the_fault(pytester):
    # A reproducer at a 1-element input would not show a fault of 2-D inputs.  [num.shape]
    ret, report, out = run_suite(pytester, "tests.mutants:TanhFlattens2D", ("float32",), ("num.shape",))
    (rec,) = report["records"]
    assert rec["verdict"] == "fail" and "exact None" not in rec["message"] and " of 0 " not in rec["message"]
    shown = []
    exec(rec["reproducer"], {"print": lambda *a: shown.append(a)})
    assert shown and shown[-1][1] == (4,), shown  # flattened: the 2x2 input came back with shape (4,)


def test_all_inputs_failing_names_the_argument_order(pytester):
    # A swapped argument order fails every input; the message says what order ffnspec uses.  [out.gaussian_nll]
    ret, report, out = run_suite(pytester, "tests.mutants:GaussianNllSwapped", ("float64",), ("out.gaussian_nll",))
    (rec,) = report["records"]
    assert rec["verdict"] == "fail" and "ffnspec calls gaussian_nll(mu, y, beta)" in rec["message"], rec["message"]


def test_reproducer_names_the_library_function():
    # A user's module:Class adapter gets a reproducer line calling the library itself.
    import scipy.special
    from ffnspec.conformance.machinery.reproduce import library_name
    assert library_name(np.tanh) == "numpy.tanh"
    assert library_name(scipy.special.expit, near=type("A", (), {"__module__": "scipy.special"})())
    assert library_name(lambda z: z) is None


def test_findings_survive_the_merge_with_a_failing_check():
    # A record's value check found accuracy losses while its special-value check failed: the
    # merged record must keep both, or a deviation would hide the finding.  [out.bce]
    from ffnspec.conformance.machinery.records import Record
    from ffnspec.conformance.machinery.report import merged
    common = dict(clause="out.bce", backend="b", dtype="float32", device="cpu", mode=None)
    value = Record(**common, verdict="pass", examples=100, findings=7, accuracy_error=1e7, finding="lost tail")
    special = Record(**common, verdict="deviation", examples=8, violations=1, findings=0)
    (m,) = merged([value, special])
    assert (m.verdict, m.examples, m.violations, m.findings, m.accuracy_error, m.finding) == (
        "deviation", 108, 1, 7, 1e7, "lost tail")


def test_storage_accumulation_is_a_declared_deviation(pytester):
    # A 16-bit reduction evaluated in the storage format meets MUST but not the float32 policy:
    # undeclared it is an accuracy finding (test_mutants), declared it makes the record a
    # deviation named in the verdict, never a silent pass.  [out.softmax]
    ret, report, out = run_suite(pytester, "tests.mutants_out:SoftmaxStorageDeclared", ("bfloat16",), ("out.softmax",))
    (rec,) = report["records"]
    assert ret == pytest.ExitCode.OK, out
    assert rec["verdict"] == "deviation" and rec["findings"] == 0 and "accumulation" in rec["deviation"], rec
    assert report["summary"]["verdict"] == "conforms with declared deviations"


def test_label_is_max_covers_only_rows_whose_label_leads():
    # JO1's scope: the composed logsumexp(z) - z_y cancels where the label's logit is the largest;
    # a wrong loss on any other row must stay a failure.  [out.ce]
    import numpy as np
    from ffnspec.conformance.machinery import xfails
    (d,) = xfails.parse('[[deviation]]\nclause = "out.ce"\nreason = "r"\nwhere = "label_is_max"\n', "t.toml")
    z = np.array([[3.0, 1.0], [3.0, 1.0], [0.5, 0.5], [-np.inf, 2.0]])
    y = np.array([0.0, 1.0, 1.0, 1.0])
    assert d.covers([z, y], np.full(4, 9.0)).tolist() == [True, False, True, True]
    assert not d.covers([z], np.full(4, 9.0)).any()  # no labels: nothing


def test_apart_beyond_exp_range_uses_the_records_format():
    # torch's logaddexp derivative loses the smaller partial once e^|a - b| overflows: the scope is
    # |a - b| > log(max_finite) of the record's dtype, so a loss closer in stays a failure.  [out.logaddexp.grad]
    import numpy as np
    from ffnspec.conformance.machinery import xfails
    (d,) = xfails.parse('[[deviation]]\nclause = "out.logaddexp.grad"\nreason = "r"\n'
                        'where = "apart_beyond_exp_range"\n', "t.toml")
    a, b, c = np.array([-5.75, -5.5, -100.0, 720.0]), np.array([5.75, 5.5, 0.0, 0.0]), np.ones(4)
    assert d.covers([a, b, c], np.full(4, 9.0), "float16").tolist() == [True, False, True, True]
    assert d.covers([a, b, c], np.full(4, 9.0), "float32").tolist() == [False, False, True, True]
    assert d.covers([a, b, c], np.full(4, 9.0), "float64").tolist() == [False, False, False, True]
    assert not d.covers([a, b, c], np.full(4, 9.0)).any()  # no format: nothing
