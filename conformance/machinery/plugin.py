"""pytest plugin (entry point ``pytest11: ffnspec``).

Loaded in every pytest run of the environment, so it imports nothing heavy until
an ffnspec test is collected or an --ffnspec-* option is used.

Each check of a clause x dtype x device (x mode) keeps a record; the report folds
a clause's checks (values, special values) into one (``report.merged``).  A
declared deviation marks those checks xfail, non-strict: it is stale (verdict
xpass, and the last of the checks fails) only if none of them deviates.
"""
from __future__ import annotations

import warnings

import pytest

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
    g.addoption("--ffnspec-profile", default="ci", metavar="NAME", help="ci (default: derandomised, the same draws every run), fast (fresh random draws), thorough, strict (ci with accuracy findings failing)")
    g.addoption("--ffnspec-cache-dir", default=None, metavar="DIR",
                help="reference-table cache [~/.cache/ffnspec/reference]")
    g.addoption("--ffnspec-strict", action="store_true",
                help="accuracy findings fail (as the strict profile does)")
    g.addoption("--ffnspec-no-summary", action="store_true",
                help="print no ffnspec summary at the end (the ffnspec CLI prints its own)")
    g.addoption("--ffnspec-jobs", default=None, type=int, metavar="N",
                help="processes computing the reference tables before the tests [every core]; 1: this one")


def _explicit(config: pytest.Config) -> bool:
    o = config.option
    return any([o.ffnspec_backend, o.ffnspec_dtype, o.ffnspec_device, o.ffnspec_clauses,
                o.ffnspec_xfail_file, o.ffnspec_report, o.ffnspec_cache_dir, o.ffnspec_no_declared, o.ffnspec_strict,
                o.ffnspec_jobs,
                o.ffnspec_profile != "ci"])


def _session(config: pytest.Config):
    sess = config.stash.get(_STASH, None)
    if sess is None:
        from ffnspec.conformance.machinery.session import Session
        o = config.option
        sess = Session.from_options(backend=o.ffnspec_backend, dtype=o.ffnspec_dtype, device=o.ffnspec_device,
                                    clauses=o.ffnspec_clauses, xfail_files=o.ffnspec_xfail_file,
                                    profile=o.ffnspec_profile, declared=not o.ffnspec_no_declared,
                                    cache_dir=o.ffnspec_cache_dir, report=o.ffnspec_report,
                                    strict=o.ffnspec_strict)
        config.stash[_STASH] = sess
        _import_ffnspec()
    return sess


def _import_ffnspec() -> None:
    """Import every ffnspec module (tests and optional backends aside) before any example is
    drawn.  Hypothesis also draws literal constants from the source of the project modules
    loaded when it generates (an editable install counts), so the pool must not depend on what
    happened to run before: a pytest-xdist worker must draw what a serial run draws."""
    import importlib
    import pkgutil

    names = ["ffnspec.cli"]
    for top in ("ffnspec.spec", "ffnspec.reference", "ffnspec.conformance", "ffnspec.adapters"):
        package = importlib.import_module(top)  # subpackages are mapped folders: walk each one
        names += [m.name for m in pkgutil.walk_packages(package.__path__, top + ".")]
    for name in names:
        leaf = name.rsplit(".", 1)[-1]
        if leaf.startswith("test_") or (name.startswith("ffnspec.adapters.") and leaf.endswith("_backend")):
            continue
        importlib.import_module(name)


_STASH = pytest.StashKey[object]()


def _xdist_workers(config: pytest.Config) -> bool:
    """Whether this process runs the session for pytest-xdist workers (the controller)."""
    return bool(getattr(config.option, "numprocesses", None)) and getattr(config.option, "dist", "no") != "no"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ffnspec(kind): a conformance check run for every clause of that kind")
    if _xdist_workers(config) and config.option.dist == "load":
        # every check of one record in one worker: a declared deviation is stale only if none of
        # the record's checks shows it (pytest_runtest_makereport); the checks are grouped below
        config.option.dist = "loadgroup"
    if _explicit(config):
        _session(config)  # validate options now: bad input is one clear usage error


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("ffnspec")
    if marker is None or "case" not in metafunc.fixturenames:
        return
    cases = _session(metafunc.config).cases(marker.kwargs["kind"])
    metafunc.parametrize("case", cases, ids=[c.id for c in cases])


def _case(item):
    return getattr(getattr(item, "callspec", None), "params", {}).get("case")


def _key(rec) -> tuple:
    return rec.clause, rec.dtype, rec.device, rec.mode


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    sess = config.stash.get(_STASH, None)
    if sess is None:
        return
    if hasattr(config, "workerinput"):
        for item in items:
            case = _case(item)
            if case is not None and hasattr(case, "record"):
                item.add_marker(pytest.mark.xdist_group(name="|".join(map(str, _key(case.record)))))
    for item in items:
        case = _case(item)
        if getattr(case, "deviation", None) is not None:
            d = case.deviation
            case.record.deviation = f"{d.reason} (declared in {d.source})"
            case.record.deviation_reproducer = d.reproducer
            # not strict: a record is stale only if none of its checks shows the deviation (see below)
            item.add_marker(pytest.mark.xfail(reason=f"declared deviation: {d.reason}", strict=False))
    for d, why in sess.unmatched_deviations():
        warnings.warn(FfnspecWarning(f"ffnspec: declared deviation in {d.source} {why}: clause={d.clause!r} "
                                     f"backend={d.backend!r} dtype={d.dtype!r} mode={d.mode!r}"))


_PREBUILT = pytest.StashKey[bool]()


def _prebuild(config: pytest.Config) -> None:
    """Compute the run's bulk reference values before any test, once, in the process that
    starts the run (under pytest-xdist the controller; workers then find them cached)."""
    sess = config.stash.get(_STASH, None)
    if sess is None or config.stash.get(_PREBUILT, False) or hasattr(config, "workerinput"):
        return
    config.stash[_PREBUILT] = True
    from ffnspec.conformance.machinery import prebuild
    prebuild.run(config, sess)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _prebuild(session.config)  # before pytest-xdist starts its workers


def pytest_collection_finish(session: pytest.Session) -> None:
    sess = session.config.stash.get(_STASH, None)
    if sess is None:
        return
    _prebuild(session.config)  # a run whose session was made at collection (no --ffnspec-* option)
    sess.pending.clear()
    sess.item_order = {item.nodeid: i for i, item in enumerate(session.items)}
    for item in session.items:  # how many checks (values, special values, ...) share each record key
        case = _case(item)
        if case is not None and hasattr(case, "record"):
            sess.pending[_key(case.record)] = sess.pending.get(_key(case.record), 0) + 1


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    case = _case(item)
    if case is None or not hasattr(case, "record"):
        return
    rec = case.record
    sess = item.config.stash.get(_STASH, None)
    if rep.when == "setup" and rep.failed:
        rec.verdict, rec.message = "error", rep.longreprtext[-2000:]
    if rep.when != "call":
        if rep.when == "setup" and rep.skipped and rec.verdict == "pending":
            rec.verdict = "skipped"
        if rep.when == "teardown" and sess is not None and not any(r is rec for r in sess.records):
            sess.records.append(rec)
            sess.record_items.append(getattr(sess, "item_order", {}).get(item.nodeid, len(sess.records)))
        return
    from ffnspec.conformance.machinery.harness import AdapterFault
    from ffnspec.conformance.machinery.records import ConformanceFailure
    exc = call.excinfo.value if call.excinfo is not None else None
    if isinstance(exc, AdapterFault):  # cite the clause being checked, not only the num.* rule
        rec.message = f"{case.clause.citation} {case.clause.title}\n  {exc}"
    elif exc is not None and rec.message is None and not isinstance(exc, pytest.skip.Exception):
        rec.message = f"{case.clause.citation} {case.clause.title}\n  {type(exc).__name__}: {str(exc)[-4000:]}"
    if (rep.failed and isinstance(exc, (AdapterFault, ConformanceFailure)) and rec.message
            and item.config.option.tbstyle == "auto"):
        rep.longrepr = rec.message  # the message carries clause, criterion, worst input and reproducer
    xfailed = hasattr(rep, "wasxfail")
    if xfailed and rep.skipped and rec.unexcused:
        # a violation outside the declared deviation's scope is a failure, not the old deviation
        d = case.deviation
        err, *where = rec.unexcused_worst
        rec.verdict = "fail"
        rec.message = (f"{case.clause.citation}: {rec.unexcused} violation(s) outside the declared deviation's "
                       f"scope ({d.scope_text()}; declared in {d.source}): worst error {err:.4g} at input "
                       f"({', '.join(repr(w) for w in where)})\n" + (rec.message or ""))
        rep.outcome, rep.longrepr = "failed", rec.message
        del rep.wasxfail
        xfailed = False
    if rep.passed and not xfailed and rec.conventions_used:
        rec.verdict = "deviation"  # passed only under a declared convention that changes results
        rec.deviation = "declared convention " + "; ".join(
            f"{k} = {case.target.backend.conventions.get(k)!r} changed {n} result(s)"
            for k, n in rec.conventions_used.items()) + " (the adapter's conventions)"
    elif rep.passed and not xfailed:
        rec.verdict = "pass"
    elif rep.skipped and xfailed:
        rec.verdict = "deviation"
    elif rep.passed and xfailed:
        rec.verdict = "pass"  # stale (xpass) only if no check of the record deviates: decided below
    elif rep.skipped:
        rec.verdict = rec.verdict if rec.verdict == "not_implemented" else "skipped"
    elif rep.failed:
        # an adapter fault is the backend's; any other exception that is not a check's
        # assertion is ffnspec's own bug, never charged to the backend
        rec.verdict = ("error" if isinstance(exc, AdapterFault) else
                       "fail" if isinstance(exc, AssertionError) else "internal_error")
    key, d = _key(rec), case.deviation
    if sess is None or d is None or key not in sess.pending:
        return
    sess.pending[key] -= 1
    if rec.verdict in ("deviation", "not_implemented"):
        sess.excused.add(key)
    if rec.scope_reached:
        sess.reached.add(key)
    if sess.pending[key] == 0 and key not in sess.excused and rec.verdict == "pass":
        if d.scoped and key not in sess.reached:
            # no input of this run reached the scope (e.g. rows only the thorough profile draws):
            # the declaration is not exercised, not stale, and the record passed on its own
            rec.notes.append(f"declared deviation not exercised: no input in its scope ({d.scope_text()}; "
                             f"declared in {d.source})")
            return
        # the last check of a record under a declared deviation, and none of them deviated: stale
        rec.verdict = "xpass"
        rec.message = (f"{case.clause.citation}: declared deviation did not occur, the declaration is stale: "
                       f"{d.reason} (declared in {d.source})")
        rep.outcome, rep.longrepr = "failed", rec.message
        if hasattr(rep, "wasxfail"):
            del rep.wasxfail  # else pytest counts it as an xpass, not a failure


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """pytest-xdist controller: a worker's records, with their items' collection positions."""
    data = getattr(node, "workeroutput", {}).get("ffnspec_records")
    if data is None:
        return
    import pickle
    from ffnspec.conformance.machinery.records import Record
    sess = _session(node.config)
    for position, fields in pickle.loads(data):
        sess.records.append(Record(**fields))
        sess.record_items.append(position)


def pytest_unconfigure(config: pytest.Config) -> None:
    if config.stash.get(_PREBUILT, False):  # the run's kept workers end with the run
        from ffnspec.reference import tables
        tables.release_workers()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    sess = session.config.stash.get(_STASH, None)
    if sess is None or not sess.records:
        return
    config = session.config
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: the controller writes the report
        import dataclasses
        import pickle
        config.workeroutput["ffnspec_records"] = pickle.dumps([
            (i, {f.name: getattr(r, f.name) for f in dataclasses.fields(r) if f.name != "scope"})
            for i, r in zip(sess.record_items, sess.records)])
        return
    if len(sess.record_items) == len(sess.records):  # the serial order, whoever ran them
        order = sorted(range(len(sess.records)), key=sess.record_items.__getitem__)
        sess.records[:] = [sess.records[i] for i in order]
        sess.record_items[:] = [sess.record_items[i] for i in order]
    out = session.config.option.ffnspec_report
    if out:
        from ffnspec.conformance.machinery import report
        report.write(sess, out)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    sess = config.stash.get(_STASH, None)
    if sess is None or not sess.records or config.option.ffnspec_no_summary:
        return
    from ffnspec.conformance.machinery import report
    terminalreporter.write_sep("=", "ffnspec conformance")
    lines = report.summary_lines(sess)
    for line in lines[:-1]:
        terminalreporter.write_line(line)
    if config.option.ffnspec_report:
        terminalreporter.write_line(f"report: {config.option.ffnspec_report}/report.json, report.md")
    terminalreporter.write_line(lines[-1])
