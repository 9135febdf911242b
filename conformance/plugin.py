"""pytest plugin (entry point ``pytest11: ffnspec``).

Loaded in every pytest run of the environment, so it imports nothing heavy until
an ffnspec test is collected or an --ffnspec-* option is used.
"""
from __future__ import annotations

import warnings

import pytest

_KEY = "_ffnspec_session"


class FfnspecWarning(pytest.PytestWarning):
    pass


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("ffnspec", "ffnspec conformance")
    g.addoption("--ffnspec-backend", default=None, metavar="NAME",
                help="backend: entry-point name (numpy, torch, jax, ...) or package.module:Class [numpy]")
    g.addoption("--ffnspec-dtype", default=None, metavar="LIST",
                help="comma-separated dtypes (float16,bfloat16,float32,float64) [all the backend offers]")
    g.addoption("--ffnspec-device", default=None, metavar="LIST", help="comma-separated devices [all available]")
    g.addoption("--ffnspec-clauses", default=None, metavar="GLOBS", help="comma-separated globs on clause ids")
    g.addoption("--ffnspec-xfail-file", action="append", default=[], metavar="PATH",
                help="TOML file of declared deviations (repeatable)")
    g.addoption("--ffnspec-no-declared", action="store_true",
                help="ignore the deviations the adapter itself declares")
    g.addoption("--ffnspec-report", default=None, metavar="DIR", help="write report.json and report.md to DIR")
    g.addoption("--ffnspec-profile", default="fast", metavar="NAME", help="fast (default), ci (derandomised), thorough")
    g.addoption("--ffnspec-cache-dir", default=None, metavar="DIR",
                help="reference-table cache [~/.cache/ffnspec/reference]")


def _explicit(config: pytest.Config) -> bool:
    o = config.option
    return any([o.ffnspec_backend, o.ffnspec_dtype, o.ffnspec_device, o.ffnspec_clauses,
                o.ffnspec_xfail_file, o.ffnspec_report, o.ffnspec_cache_dir, o.ffnspec_profile != "fast"])


def _session(config: pytest.Config):
    sess = config.stash.get(_STASH, None)
    if sess is None:
        from ffnspec.conformance.session import Session
        o = config.option
        sess = Session.from_options(backend=o.ffnspec_backend, dtype=o.ffnspec_dtype, device=o.ffnspec_device,
                                    clauses=o.ffnspec_clauses, xfail_files=o.ffnspec_xfail_file,
                                    profile=o.ffnspec_profile, declared=not o.ffnspec_no_declared,
                                    cache_dir=o.ffnspec_cache_dir)
        config.stash[_STASH] = sess
    return sess


_STASH = pytest.StashKey[object]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ffnspec(kind): a conformance check run for every clause of that kind")
    if _explicit(config):
        _session(config)  # validate options now: bad input is one clear usage error


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("ffnspec")
    if marker is None or "case" not in metafunc.fixturenames:
        return
    cases = _session(metafunc.config).cases(marker.kwargs["kind"])
    metafunc.parametrize("case", cases, ids=[c.id for c in cases])


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    sess = config.stash.get(_STASH, None)
    if sess is None:
        return
    for item in items:
        case = getattr(getattr(item, "callspec", None), "params", {}).get("case")
        if getattr(case, "deviation", None) is not None:
            d = case.deviation
            case.record.deviation = f"{d.reason} (declared in {d.source})"
            item.add_marker(pytest.mark.xfail(reason=f"declared deviation: {d.reason}", strict=True))
    for d in sess.deviations:
        if d.matched == 0:
            warnings.warn(FfnspecWarning(f"ffnspec: declared deviation in {d.source} matches no collected check: "
                                         f"clause={d.clause!r} backend={d.backend!r} dtype={d.dtype!r}"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    case = getattr(getattr(item, "callspec", None), "params", {}).get("case")
    if case is None or not hasattr(case, "record"):
        return
    rec = case.record
    if rep.when == "setup" and rep.failed:
        rec.verdict, rec.message = "error", rep.longreprtext[-2000:]
    if rep.when != "call":
        if rep.when == "setup" and rep.skipped and rec.verdict == "pending":
            rec.verdict = "skipped"
        if rep.when == "teardown":
            config = item.config
            sess = config.stash.get(_STASH, None)
            if sess is not None and rec not in sess.records:
                sess.records.append(rec)
        return
    from ffnspec.conformance.harness import AdapterFault
    xfailed = hasattr(rep, "wasxfail")
    if rep.passed and not xfailed:
        rec.verdict = "pass"
    elif rep.skipped and xfailed:
        rec.verdict = "deviation"
    elif rep.failed and xfailed or (rep.passed and xfailed):
        rec.verdict = "xpass"
        rec.message = "declared deviation did not occur: the declaration is stale"
    elif rep.skipped:
        rec.verdict = rec.verdict if rec.verdict == "not_implemented" else "skipped"
    elif rep.failed:
        is_fault = call.excinfo is not None and call.excinfo.errisinstance(AdapterFault)
        rec.verdict = "error" if is_fault else "fail"
        if rec.message is None and call.excinfo is not None:
            rec.message = str(call.excinfo.value)[-4000:]
    if xfailed and call.excinfo is not None and rec.message is None:
        rec.message = str(call.excinfo.value)[-4000:]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    sess = session.config.stash.get(_STASH, None)
    if sess is None or not sess.records:
        return
    out = session.config.option.ffnspec_report
    if out:
        from ffnspec.conformance import report
        report.write(sess, out)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    sess = config.stash.get(_STASH, None)
    if sess is None or not sess.records:
        return
    from ffnspec.conformance import report
    terminalreporter.write_sep("=", "ffnspec conformance")
    for line in report.summary_lines(sess):
        terminalreporter.write_line(line)
    if config.option.ffnspec_report:
        terminalreporter.write_line(f"report: {config.option.ffnspec_report}/report.json, report.md")
