"""The ``ffnspec`` command.

    ffnspec run --backend NAME [--dtype LIST] [--device LIST] [--clauses GLOBS]
                [--report DIR] [--profile fast|ci|thorough] [--xfail-file PATH]
    ffnspec backends
    ffnspec clauses [GLOB ...] [--show ID]
    ffnspec docs [--out DIR]

Bad input is one line on stderr, ``ffnspec: error: ...``, and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _die(msg: str) -> int:
    print(f"ffnspec: error: {msg}", file=sys.stderr)
    return 2


def _table(headers: list[str], rows: list[list[str]], title: str | None = None) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
        if title:
            print(title)
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
        print("  ".join("-" * w for w in widths))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
        return
    t = Table(title=title)
    for h in headers:
        t.add_column(h)
    for r in rows:
        t.add_row(*r)
    Console().print(t)


def _run(args: argparse.Namespace) -> int:
    import pytest

    from ffnspec.conformance.machinery.session import Session
    try:  # validate before starting pytest, so bad input is one line
        Session.from_options(backend=args.backend, dtype=args.dtype, device=args.device, clauses=args.clauses,
                             xfail_files=args.xfail_file or [], profile=args.profile,
                             declared=not args.no_declared, cache_dir=args.cache_dir)
    except pytest.UsageError as e:
        return _die(str(e).removeprefix("ffnspec: "))
    report = Path(args.report)
    argv = ["--pyargs", "ffnspec.conformance", "-p", "no:cacheprovider", "-q", "--no-header", "-rN",
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
    code = pytest.main(argv)
    path = report / "report.json"
    if not path.exists():
        return _die(f"the run wrote no report (pytest exit status {int(code)})")
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = []
    for r in data["records"]:
        if r["verdict"] == "skipped":
            continue
        err = r["max_ulp"] if r["max_ulp"] is not None else r["max_error"]
        rows.append([r["clause"], r["dtype"], r["device"], r["mode"] or "", r["verdict"],
                     f"{err:.3g}" if isinstance(err, float) else str(err), r["grade"] or ""])
    verdict = data["summary"]["verdict"].upper()
    _table(["clause", "dtype", "device", "mode", "verdict", "max ULP / err", "grade"], rows,
           title=f"ffnspec {data['edition']} -- {data['backend']['name']}: {verdict}")
    print(f"report: {path} and {report / 'report.md'}")
    return int(code)


def _backends(args: argparse.Namespace) -> int:
    from ffnspec.adapters import probe, registered
    rows = []
    for name in sorted(registered()):
        ok, why = probe(name)
        rows.append([name, "yes" if ok else "no", why])
    _table(["backend", "loads here", "details"], rows)
    return 0


def _clauses(args: argparse.Namespace) -> int:
    from ffnspec import spec
    if args.show:
        try:
            c = spec.clause(args.show)
        except KeyError:
            return _die(f"no clause {args.show!r}; list them with 'ffnspec clauses'")
        from ffnspec.spec.render import clause_page
        print(clause_page(c))
        return 0
    chosen = spec.select(patterns=tuple(args.patterns))
    if not chosen:
        return _die(f"no clause matches {' '.join(args.patterns)!r}")
    _table(["clause", "kind", "criterion", "title"],
           [[c.id, c.kind, c.tolerance.criterion + (f" {c.tolerance.must:g}" if c.tolerance.must is not None else ""),
             c.title] for c in chosen])
    return 0


def _docs(args: argparse.Namespace) -> int:
    from ffnspec.spec.render import write
    changed = write(args.out)
    print(f"{len(changed)} page(s) written to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ffnspec", description="Conformance suite for feedforward-network numerics.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the conformance suite against a backend")
    r.add_argument("--backend", default="numpy", help="entry-point name or package.module:Class [numpy]")
    r.add_argument("--dtype", help="comma-separated dtypes [all the backend offers]")
    r.add_argument("--device", help="comma-separated devices [all available]")
    r.add_argument("--clauses", help="comma-separated globs on clause ids")
    r.add_argument("--report", default="ffnspec-report", help="report directory [ffnspec-report]")
    r.add_argument("--profile", default="fast", help="fast, ci (derandomised) or thorough")
    r.add_argument("--xfail-file", action="append", help="declared-deviation TOML file (repeatable)")
    r.add_argument("--no-declared", action="store_true", help="ignore the adapter's own declared deviations")
    r.add_argument("--cache-dir", help="reference-table cache directory")
    r.set_defaults(func=_run)
    b = sub.add_parser("backends", help="list registered backends and whether each loads here")
    b.set_defaults(func=_backends)
    c = sub.add_parser("clauses", help="list clauses, or show one")
    c.add_argument("patterns", nargs="*", help="globs on clause ids")
    c.add_argument("--show", metavar="ID", help="print one clause in full")
    c.set_defaults(func=_clauses)
    d = sub.add_parser("docs", help="regenerate the clause pages")
    d.add_argument("--out", default="docs/clauses")
    d.set_defaults(func=_docs)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
