"""The ffnspec command as a user meets it: exit codes, one-line errors before any work,
the terminal summary with the verdict last, and the adapter guide's example running as is."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ffnspec import cli

ROOT = Path(__file__).resolve().parents[1]


def ffnspec(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # tests.mutants importable from any folder
    return subprocess.run([sys.executable, "-m", "ffnspec", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def usage(*args: str, cwd: Path | None = None) -> str:
    """Exit status 2 and exactly one line on stderr, before any check ran."""
    p = ffnspec(*args, cwd=cwd)
    assert p.returncode == cli.USAGE, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ffnspec: error: "), p.stderr
    assert "passed" not in p.stdout and "Traceback" not in p.stderr, p.stdout
    return lines[0]


# ------------------------------------------------------------------ validation first ----
# A run must never compute for half an hour and then die on a bad path (issue: first hour).
def test_report_is_a_file(tmp_path):
    f = tmp_path / "taken"
    f.write_text("x")
    assert usage("run", "--report", str(f)).endswith(f"--report {str(f)!r} is a file, not a directory")


def test_report_not_writable(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    line = usage("run", "--report", str(f / "under-a-file"))
    assert "--report" in line and "not writable" in line


@pytest.mark.parametrize("opt", ["--dtype", "--clauses", "--device"])
def test_empty_list_options(opt):
    # An empty list would silently run everything (or nothing).  [num.dtype]
    assert usage("run", opt, "").endswith(f"{opt} '' names no {opt.lstrip('-')}")


def test_clause_glob_names_the_cli_option():
    assert "--clauses 'act.nope*' matches no clause id" in usage("run", "--clauses", "act.nope*")


def test_missing_xfail_file(tmp_path):
    assert usage("run", "--xfail-file", str(tmp_path / "no.toml")).endswith("does not exist")


def test_unknown_backend_and_dtype():
    assert "unknown backend 'nope'" in usage("run", "--backend", "nope")
    assert "unknown dtype 'float8'" in usage("run", "--dtype", "float8")


def test_adapter_deviations_file_missing_or_beside_module(tmp_path):
    # The guide's `deviations = "x.toml"` is a file beside the adapter's module.  [num.dtype]
    (tmp_path / "adp.py").write_text(
        "from ffnspec.adapters.numpy_backend import NumpyBackend\n"
        "class Missing(NumpyBackend):\n    deviations = 'x.toml'\n"
        "class Beside(NumpyBackend):\n    deviations = 'mine.toml'\n"
        "class Bad(NumpyBackend):\n    deviations = 3\n"
        "class StrDevices(NumpyBackend):\n    devices = 'cpu'\n")
    (tmp_path / "mine.toml").write_text('[[deviation]]\nclause = "act.tanh.range"\nreason = "declared"\n')
    assert "declares deviations = 'x.toml', but no such file" in usage(
        "run", "--backend", "adp:Missing", cwd=tmp_path)
    assert "'deviations' must be a TOML file name or path" in usage("run", "--backend", "adp:Bad", cwd=tmp_path)
    assert "not one string" in usage("run", "--backend", "adp:StrDevices", cwd=tmp_path)
    p = ffnspec("run", "--backend", "adp:Beside", "--clauses", "act.tanh.range", "--dtype", "float16",
                "--report", str(tmp_path / "r"), cwd=tmp_path)
    # the entry is stale on a correct backend: read and applied, so the run does not conform
    assert p.returncode == cli.DOES_NOT_CONFORM, p.stdout + p.stderr
    assert "declared deviation did not occur" in (tmp_path / "r" / "report.md").read_text()


def test_docs_out_is_a_file(tmp_path):
    f = tmp_path / "page.md"
    f.write_text("x")
    assert usage("docs", "--out", str(f)).endswith("is a file, not a directory")


def test_version_and_help():
    p = ffnspec("--version")
    assert p.returncode == 0 and re.match(r"ffnspec \d+\.\d+\.\d+ \(edition \d{4}\.\d+\)", p.stdout), p.stdout
    p = ffnspec("run", "--help")
    assert p.returncode == 0 and "exit status:" in p.stdout and "3  internal error" in p.stdout


# ------------------------------------------------------------------------ exit codes ----
def test_exit_0_conforms_and_verdict_last(tmp_path):
    p = ffnspec("run", "--clauses", "act.sigmoid.range", "--dtype", "float16", "--report", str(tmp_path))
    assert p.returncode == cli.CONFORMS, p.stdout + p.stderr
    assert p.stdout.strip().splitlines()[-1] == "ffnspec 2026.1 -- numpy: CONFORMS"
    assert "passes per family: act 1/1" in p.stdout


def test_run_ignores_the_pytest_configuration_of_the_folder_it_stands_in(tmp_path):
    # The README's command run in a source checkout (or any project) must not take that folder's
    # addopts, nor import its tests/conftest.py: pytest would put the folder on sys.path, ahead
    # of the installed package, and the table-building workers then import the checkout.  [CLI]
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --no-such-option\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "__init__.py").write_text("")
    (tmp_path / "tests" / "conftest.py").write_text("raise RuntimeError('a folder conftest was imported')\n")
    p = ffnspec("run", "--clauses", "act.sigmoid.range", "--dtype", "float16", "--report", str(tmp_path / "r"),
                cwd=tmp_path)
    assert p.returncode == cli.CONFORMS, p.stdout + p.stderr


def test_exit_1_does_not_conform_with_criterion_units(tmp_path):
    # tests.mutants:NaiveSigmoid returns 0 where sigma(z) is subnormal.  [act.sigmoid]
    p = ffnspec("run", "--backend", "tests.mutants:NaiveSigmoid", "--clauses", "act.sigmoid",
                "--dtype", "float32", "--report", str(tmp_path), cwd=ROOT)
    assert p.returncode == cli.DOES_NOT_CONFORM, p.stdout + p.stderr
    lines = p.stdout.strip().splitlines()
    assert lines[-1].endswith("DOES NOT CONFORM")
    row = next(ln for ln in lines if ln.startswith("act.sigmoid "))
    assert re.search(r"fail\s+\S+ ULP, MUST ≤ 5\s+worst input:", row), row
    assert json.loads((tmp_path / "report.json").read_text())["summary"]["conforms"] is False


def test_exit_3_internal_error(monkeypatch, capsys):
    # ffnspec's own bug is never reported as the backend's non-conformance.
    def broken(args):
        raise ZeroDivisionError("a bug in ffnspec")
    monkeypatch.setattr(cli, "_backends", broken)
    assert cli.main(["backends"]) == cli.INTERNAL
    assert "ffnspec: internal error: ZeroDivisionError: a bug in ffnspec" in capsys.readouterr().err


# ------------------------------------------------------------------ the adapter guide ----
def test_adapter_guide_example_runs_as_written(tmp_path):
    # docs/adapters.md must suffice on its own: its adapter runs on the first try.
    guide = (ROOT / "docs" / "adapters.md").read_text(encoding="utf-8")
    (tmp_path / "myadapter.py").write_text(re.findall(r"```python\n(.*?)```", guide, re.S)[0])
    command = re.search(r"^    (ffnspec run --backend myadapter:\S+ .*)$", guide, re.M).group(1)
    args = command.replace("'", "").split()[1:]
    p = ffnspec(*args, cwd=tmp_path)
    assert p.returncode in (cli.CONFORMS, cli.DOES_NOT_CONFORM), p.stdout + p.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    verdicts = {r["verdict"] for r in report["records"]}
    assert verdicts <= {"pass", "fail", "skipped", "not_implemented", "deviation"}, verdicts
    assert "pass" in verdicts
