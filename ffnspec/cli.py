"""The ``ffnspec`` command.

    ffnspec run --backend NAME [--dtype LIST] [--device LIST] [--clauses GLOBS]
                [--report DIR] [--profile ci|fast|thorough|strict] [--xfail-file PATH]
    ffnspec backends
    ffnspec clauses [GLOB ...] [--show ID]
    ffnspec docs [--out DIR] [--reports DIR ...]
    ffnspec html REPORT_DIR
    ffnspec sweep --backend NAME[,NAME...] --op OP[,OP...] --dtype float32|float64 [--device D]
                  [--report DIR] [--jobs N] [--samples N]
    ffnspec sweep --table [--results FILE ...] [--out PATH]
    ffnspec sweep --merge FILE FILE ... --out FILE

Every option, path and adapter attribute is validated before any work starts.
Exit status (a contract, also for scripts and CI):
    0  conforms (with or without declared deviations)
    1  does not conform
    2  usage error: one line on stderr, ``ffnspec: error: ...``
    3  internal error of ffnspec itself (or an interrupted run)
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

CONFORMS, DOES_NOT_CONFORM, USAGE, INTERNAL = 0, 1, 2, 3
EXIT_CODES = """exit status:
  0  conforms (with or without declared deviations)
  1  does not conform
  2  usage error (bad option, path, backend or adapter attribute), before any work
  3  internal error of ffnspec (or the run was interrupted)"""


class UsageFailure(Exception):
    """Bad input: one line for the user, exit status 2."""


def _die(msg: str) -> int:
    print(f"ffnspec: error: {msg}", file=sys.stderr)
    return USAGE


def _table(headers: list[str], rows: list[list[str]], title: str | None = None) -> None:
    """Rows as a rich table on a terminal wide enough for them, else as aligned plain text
    (logs, pipes, CI): one line per row either way, the last column cut with an ellipsis."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    try:
        from rich.console import Console
        from rich.table import Table
        console = Console(soft_wrap=False)
        fancy = console.is_terminal and sum(widths[:-1]) + 3 * len(widths) + 16 <= console.width
    except ImportError:
        fancy = False
    if not fancy:
        if title:
            print(title)
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
        print("  ".join("-" * w for w in widths))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        return
    t = Table(title=title)
    for i, h in enumerate(headers):
        last = i == len(headers) - 1
        t.add_column(h, no_wrap=True, overflow="ellipsis", min_width=None if last else widths[i])
    for r in rows:
        t.add_row(*r)
    console.print(t)


def print_summary(data: dict, path: Path) -> None:
    """What a terminal shows after a run: the records that need attention (the full table is
    report.md), passes per family, then the verdict, last."""
    records = [r for r in data["records"] if r["verdict"] != "skipped"]
    order = {"internal_error": 0, "fail": 1, "error": 2, "xpass": 3, "deviation": 4, "not_implemented": 5}
    shown = sorted((r for r in records if r["verdict"] != "pass"),
                   key=lambda r: (order.get(r["verdict"], 9), r["clause"], r["dtype"]))
    from ffnspec.conformance.machinery.report import error_cell, why
    rows = [[r["clause"], "/".join(x for x in (r["dtype"], r["device"], r["mode"]) if x), r["verdict"],
             error_cell(r), why(r)] for r in shown]
    if rows:
        _table(["clause", "target", "verdict", "max error (criterion units)", "worst case / reason"], rows,
               title="records other than a plain pass (every record: report.md)")
    families: dict[str, Counter] = {}
    for r in records:
        families.setdefault(r["clause"].split(".", 1)[0], Counter())[r["verdict"]] += 1
    print("passes per family: " + "; ".join(
        f"{fam} {c['pass']}/{sum(c.values())}" for fam, c in sorted(families.items())))
    print(f"report: {path / 'report.json'}, {path / 'report.md'}, {path / 'report.html'}")
    s = data["summary"]
    print(f"ffnspec {data['edition']} -- {data['backend']['name']}: {s['verdict'].upper()}")


def _positive(text: str) -> int:
    """An integer >= 1 (argparse type)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return n


def _validate_run(args: argparse.Namespace):
    """Every option, path and adapter attribute, before pytest starts."""
    import pytest

    from ffnspec.conformance.machinery.session import Session
    try:
        return Session.from_options(backend=args.backend, dtype=args.dtype, device=args.device, clauses=args.clauses,
                                    xfail_files=args.xfail_file or [], profile=args.profile,
                                    declared=not args.no_declared, cache_dir=args.cache_dir, report=args.report,
                                    flag="--")
    except pytest.UsageError as e:
        raise UsageFailure(str(e).removeprefix("ffnspec: ")) from None


def _run(args: argparse.Namespace) -> int:
    import pytest
    _validate_run(args)
    report = Path(args.report)
    argv = ["--pyargs", "ffnspec.conformance", "-p", "no:cacheprovider", "-q", "--no-header", "-rN",
            "--ffnspec-no-summary",  # the CLI prints its own summary, verdict last
            "--tb=no", "-W", "ignore::pytest.PytestAssertRewriteWarning",  # the CLI imported ffnspec first
            f"--ffnspec-backend={args.backend}", f"--ffnspec-report={report}",
            f"--ffnspec-profile={args.profile}"]
    for opt in ("dtype", "device", "clauses", "cache_dir"):
        v = getattr(args, opt)
        if v:
            argv.append(f"--ffnspec-{opt.replace('_', '-')}={v}")
    for f in args.xfail_file or []:
        argv.append(f"--ffnspec-xfail-file={f}")
    if args.no_declared:
        argv.append("--ffnspec-no-declared")
    if args.strict:
        argv.append("--ffnspec-strict")
    if args.jobs:
        argv.append(f"--ffnspec-jobs={args.jobs}")
    with tempfile.TemporaryDirectory(prefix="ffnspec-run-") as own:
        # ffnspec's own configuration, never that of the directory the user stands in: its pytest
        # settings (addopts) are not the run's, and its conftest.py files (pytest imports the cwd's
        # and its test*/ directories' when the arguments are --pyargs) would put the cwd on
        # sys.path ahead of the installed package, so that a source checkout shadows it in the
        # table-building worker processes.
        ini = Path(own) / "pytest.ini"
        ini.write_text("[pytest]\n", encoding="utf-8")
        code = pytest.main(["-c", str(ini), f"--rootdir={Path.cwd()}", "--noconftest", *argv])
    if code == pytest.ExitCode.INTERRUPTED:
        print("ffnspec: the run was interrupted; no verdict", file=sys.stderr)
        return INTERNAL
    if code == pytest.ExitCode.USAGE_ERROR:
        return USAGE  # pytest printed the one-line error
    path = report / "report.json"
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) or not path.exists():
        print(f"ffnspec: internal error: the run ended with pytest status {int(code)} and "
              f"{'a' if path.exists() else 'no'} report", file=sys.stderr)
        return INTERNAL
    data = json.loads(path.read_text(encoding="utf-8"))
    print_summary(data, report)
    if data["summary"]["verdicts"].get("internal_error"):
        print("ffnspec: internal error: some checks raised inside ffnspec itself (records with verdict "
              "'internal_error' in report.md); please report it", file=sys.stderr)
        return INTERNAL
    return CONFORMS if data["summary"]["conforms"] else DOES_NOT_CONFORM


def _backends(args: argparse.Namespace) -> int:
    from ffnspec.adapters import probe, registered
    rows = []
    for name in sorted(registered()):
        ok, why = probe(name)
        rows.append([name, "yes" if ok else "no", why])
    _table(["backend", "loads here", "details"], rows)
    return CONFORMS


def _clauses(args: argparse.Namespace) -> int:
    from ffnspec import spec
    if args.show:
        try:
            c = spec.clause(args.show)
        except KeyError:
            raise UsageFailure(f"--show: no clause {args.show!r}; list them with 'ffnspec clauses'") from None
        from ffnspec.spec.render import clause_page
        print(clause_page(c))
        return CONFORMS
    chosen = spec.select(patterns=tuple(args.patterns))
    if not chosen:
        raise UsageFailure(f"no clause matches {' '.join(args.patterns)!r}; list them with 'ffnspec clauses'")
    _table(["clause", "kind", "criterion", "title"],
           [[c.id, c.kind, c.tolerance.criterion + (f" {c.tolerance.must:g}" if c.tolerance.must is not None else ""),
             c.title] for c in chosen])
    return CONFORMS


def _docs(args: argparse.Namespace) -> int:
    from ffnspec.spec.render import source_docs_dir, write
    out = Path(args.out) if args.out else source_docs_dir()
    if out is None:
        raise UsageFailure("--out DIR is required outside an ffnspec source checkout "
                           "(the pages go to the checkout's docs/clauses/ by default)")
    if out.exists() and not out.is_dir():
        raise UsageFailure(f"--out {str(out)!r} is a file, not a directory")
    from ffnspec.conformance.machinery.session import check_writable_dir
    import pytest
    try:
        check_writable_dir(str(out), "--out")
    except pytest.UsageError as e:
        raise UsageFailure(str(e).removeprefix("ffnspec: ")) from None
    changed = write(out)
    print(f"{len(changed)} page(s) written to {out}")
    if args.out is None or args.reports:  # the site's family pages, from docs/status/*.json
        from ffnspec.conformance.machinery import status
        for d in args.reports or []:
            if not (Path(d) / "report.json").is_file() and not (Path(d).is_file() and d.endswith(".json")):
                raise UsageFailure(f"--reports: {d!r} has no report.json")
        stored = status.store(args.reports or [], out.parent / "status")
        pages = status.write(out.parent / "families", out.parent / "status")
        print(f"{len(stored)} report(s) stored in {out.parent / 'status'}; {len(pages)} family page(s) written")
    return CONFORMS


def _html(args: argparse.Namespace) -> int:
    from ffnspec.conformance.machinery import html_report, plots
    from ffnspec.conformance.machinery.report import load
    d = Path(args.report_dir)
    if not (d / "report.json").is_file():
        raise UsageFailure(f"{str(d)!r} has no report.json (give the directory of an `ffnspec run --report`)")
    try:
        data = load(d)
    except ValueError as e:
        raise UsageFailure(f"{str(d / 'report.json')!r} is not JSON: {e}") from None
    path, seconds = html_report.write(data, d)
    print(f"{path} written in {seconds:.1f} s" + ("" if plots.available() else f" (no plots: {plots.INSTALL_HINT})"))
    return CONFORMS


def _sweep_config(args: argparse.Namespace):
    """Validate every sweep option (backends load, ops and dtype known) before any work."""
    from ffnspec.adapters import BackendError, load_backend
    from ffnspec.conformance.machinery import sweep
    from ffnspec.conformance.machinery.harness import Target
    if not args.backend or not args.op or not args.dtype:
        raise UsageFailure("sweep needs --backend, --op and --dtype (or --table)")
    ops = [o.strip() for o in args.op.split(",") if o.strip()]
    bad = [o for o in ops if o not in sweep.OPS]
    if bad or not ops:
        raise UsageFailure(f"--op: unknown op {(bad or [args.op])[0]!r}; sweepable: {', '.join(sweep.OPS)}")
    if args.dtype not in sweep.DTYPES:
        raise UsageFailure(f"--dtype: {args.dtype!r} is not sweepable; choose one of {', '.join(sweep.DTYPES)}")
    specs = [b.strip() for b in args.backend.split(",") if b.strip()]
    if not specs or len(set(specs)) != len(specs):
        raise UsageFailure(f"--backend: give distinct backend names, got {args.backend!r}")
    if Path(args.report).exists() and not Path(args.report).is_dir():
        raise UsageFailure(f"--report {args.report!r} is a file, not a directory")
    bits = ((0, 1 << 32),)
    if args.bits:
        ranges = []
        for part in args.bits.split(","):
            try:
                lo, hi = (int(p, 0) for p in part.split(":"))
            except ValueError:
                lo = hi = -1
            if not 0 <= lo < hi <= 1 << 32:
                raise UsageFailure(f"--bits: expected START:STOP[,START:STOP...] with 0 <= START < STOP <= 2^32, "
                                   f"got {args.bits!r}")
            ranges.append((lo, hi))
        ranges.sort()
        chunk = 1 << args.chunk_bits
        if any(a[1] > b[0] or (a[1] - 1) // chunk == b[0] // chunk for a, b in zip(ranges, ranges[1:])):
            raise UsageFailure(f"--bits: ranges must be disjoint and not share a chunk of {chunk} patterns")
        bits = tuple(ranges)
    unavailable = {}
    for spec in specs:
        try:
            backend = load_backend(spec)
        except BackendError as e:
            raise UsageFailure(str(e)) from None
        if args.dtype not in backend.dtypes:
            raise UsageFailure(f"backend {spec!r} does not offer {args.dtype} (it offers {', '.join(sorted(backend.dtypes))})")
        device = args.device or backend.devices[0]
        if device not in backend.devices:
            raise UsageFailure(f"backend {spec!r} has no device {device!r} (it has {', '.join(backend.devices)})")
        target = Target(backend, spec, args.dtype, device)
        for op in ops:
            if not target.offers(op):
                unavailable[(spec, op, "value")] = unavailable[(spec, op, "grad")] = \
                    f"the {spec} adapter has no {op} in {args.dtype}"
            elif not callable(getattr(backend, "vjp", None)):
                unavailable[(spec, op, "grad")] = f"the {spec} adapter has no reverse mode"
    devices = {args.device} if args.device else set()
    if not args.device:
        devices = {load_backend(s).devices[0] for s in specs}
    if len(devices) != 1:
        raise UsageFailure("--device: the backends' default devices differ; give --device")
    return sweep.Config(backends=specs, ops=ops, dtype=args.dtype, device=devices.pop(), report=Path(args.report),
                        jobs=args.jobs or 1, bits=bits, samples=args.samples, seed=args.seed, chunk=1 << args.chunk_bits,
                        progress=not args.quiet, unavailable=unavailable)


def _sweep(args: argparse.Namespace) -> int:
    from ffnspec.conformance.machinery import sweep
    if args.table:
        paths = [Path(p) for p in (args.results or sorted(str(p) for p in (_docs_dir() / "sweeps").glob("*.json")))]
        if not paths:
            raise UsageFailure("--table: no sweep results (give --results FILE, or commit them in docs/sweeps/)")
        results = []
        for p in paths:
            try:
                results.append(json.loads(p.read_text()))
            except (OSError, ValueError) as e:
                raise UsageFailure(f"--results: cannot read {str(p)!r}: {e}") from None
        out = Path(args.out) if args.out else _docs_dir() / "accuracy.md"
        out.write_text(sweep.table(results))
        print(f"{out} written from {len(paths)} result file(s)")
        return CONFORMS
    if args.merge:
        try:
            merged = sweep.merge([json.loads(Path(p).read_text()) for p in args.merge])
        except (OSError, ValueError) as e:
            raise UsageFailure(f"--merge: {e}") from None
        if not args.out:
            raise UsageFailure("--merge needs --out FILE")
        Path(args.out).write_text(json.dumps(merged, indent=1) + "\n")
        print(f"{args.out} written from {len(args.merge)} sweep(s)")
        return CONFORMS
    cfg = _sweep_config(args)
    t0 = __import__("time").perf_counter()
    report = sweep.run(cfg)
    for c in report["cells"]:
        print(f"{c['backend']:8} {c['op']:12} {c['kind']:5}  {sweep.cell_text(c)}")
    print(f"{cfg.report}/sweep-{cfg.dtype}-{cfg.device}.json written in {__import__('time').perf_counter() - t0:.1f} s")
    return CONFORMS


def _docs_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "docs"


def parser() -> argparse.ArgumentParser:
    import ffnspec
    p = argparse.ArgumentParser(prog="ffnspec", epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Conformance suite for feedforward-network numerics.")
    p.add_argument("--version", action="version", version=f"ffnspec {ffnspec.__version__} (edition "
                   f"{_edition()})")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the conformance suite against a backend", epilog=EXIT_CODES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--backend", default="numpy", help="entry-point name or package.module:Class [numpy]")
    r.add_argument("--dtype", help="comma-separated dtypes [all the backend offers]")
    r.add_argument("--device", help="comma-separated devices [all available]")
    r.add_argument("--clauses", help="comma-separated globs on clause ids")
    r.add_argument("--report", default="ffnspec-report", help="report directory [ffnspec-report]")
    r.add_argument("--profile", default="ci", help="ci (default: derandomised), fast (fresh random draws each run), thorough or strict (ci, findings fail)")
    r.add_argument("--xfail-file", action="append", help="declared-deviation TOML file (repeatable)")
    r.add_argument("--no-declared", action="store_true", help="ignore the adapter's own declared deviations")
    r.add_argument("--cache-dir", help="reference-table cache directory [~/.cache/ffnspec/reference]")
    r.add_argument("--strict", action="store_true", help="accuracy findings fail (exit 1), as --profile strict")
    r.add_argument("--jobs", type=_positive, metavar="N", help="processes computing reference values [every core]")
    r.set_defaults(func=_run)
    b = sub.add_parser("backends", help="list registered backends and whether each loads here")
    b.set_defaults(func=_backends)
    c = sub.add_parser("clauses", help="list clauses, or show one")
    c.add_argument("patterns", nargs="*", help="globs on clause ids")
    c.add_argument("--show", metavar="ID", help="print one clause in full")
    c.set_defaults(func=_clauses)
    d = sub.add_parser("docs", help="regenerate the clause pages")
    d.add_argument("--out", help="directory [docs/clauses of the source checkout]")
    d.add_argument("--reports", nargs="+", metavar="DIR", help="report directories to store in docs/status/ "
                   "(the family pages' status columns, one per backend)")
    d.set_defaults(func=_docs)
    h = sub.add_parser("html", help="(re)write report.html from a report directory's report.json")
    h.add_argument("report_dir", help="a directory written by `ffnspec run --report`")
    h.set_defaults(func=_html)
    w = sub.add_parser("sweep", help="exhaustive float32 (sampled float64) accuracy sweep of act ops and derivatives",
                       epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    w.add_argument("--backend", help="comma-separated backends (entry-point names or package.module:Class)")
    w.add_argument("--op", help="comma-separated ops: sigmoid, tanh, softplus, log_sigmoid, silu")
    w.add_argument("--dtype", help="float32 (exhaustive) or float64 (sampled)")
    w.add_argument("--device", help="device [the backends' first]")
    w.add_argument("--report", default="ffnspec-sweep", help="report directory, also holding the resumable state "
                   "[ffnspec-sweep]")
    w.add_argument("--jobs", type=_positive, metavar="N", help="worker processes [1]")
    w.add_argument("--samples", type=_positive, default=100_000, metavar="N", help="float64: random inputs [100000]")
    w.add_argument("--seed", type=int, default=0, help="float64: sample seed [0]")
    w.add_argument("--bits", metavar="START:STOP[,...]", help="float32: sweep only these bit patterns (a partial "
                   "sweep, said so in the results)")
    w.add_argument("--chunk-bits", type=int, choices=range(10, 25), default=20, metavar="K",
                   help="float32: 2^K bit patterns per chunk (the memory bound; a resumed sweep needs the same K) [20]")
    w.add_argument("--quiet", action="store_true", help="no progress line")
    w.add_argument("--table", action="store_true", help="write docs/accuracy.md from committed sweep results")
    w.add_argument("--results", nargs="+", metavar="FILE", help="--table: sweep JSON files [docs/sweeps/*.json]")
    w.add_argument("--out", help="--table: output path [docs/accuracy.md]; --merge: the merged JSON")
    w.add_argument("--merge", nargs="+", metavar="FILE", help="float32 sweep JSON files of disjoint bit ranges to "
                   "merge into one (--out FILE)")
    w.set_defaults(func=_sweep)
    return p


def _edition() -> str:
    from ffnspec.spec import EDITION
    return EDITION


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # argparse: --help/--version exit 0, bad usage exits 2
        return int(e.code or 0)
    try:
        return args.func(args)
    except UsageFailure as e:
        return _die(str(e))
    except KeyboardInterrupt:
        print("ffnspec: interrupted", file=sys.stderr)
        return INTERNAL
    except Exception as e:  # ffnspec's own bug: say so, with the trace for the bug report
        import traceback
        traceback.print_exc()
        print(f"ffnspec: internal error: {type(e).__name__}: {e} (please report it)", file=sys.stderr)
        return INTERNAL


if __name__ == "__main__":
    sys.exit(main())
