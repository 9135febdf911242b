"""Compare two conformance reports record by record.

    python -m ffnspec.conformance.machinery.compare A B [--text] [--fields F,...]

A and B are report.json files or report directories.  Records are matched by clause,
backend, device, dtype and mode and compared on the verdict and the measured values
(``report.MEASURED``; ``--text`` adds messages, reproducers and notes).  Exit status 0 when
the records agree, 1 with one line per difference, 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import sys

from ffnspec.conformance.machinery import report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ffnspec.conformance.machinery.compare",
                                description="Compare two conformance reports record by record.")
    p.add_argument("a", help="report.json or report directory")
    p.add_argument("b", help="report.json or report directory")
    p.add_argument("--text", action="store_true", help="also compare messages, reproducers, notes, deviations")
    p.add_argument("--fields", help=f"comma-separated record fields [{','.join(report.MEASURED)}]")
    args = p.parse_args(argv)
    fields = tuple(f.strip() for f in args.fields.split(",")) if args.fields else report.MEASURED
    if args.text:
        fields += report.TEXT
    try:
        a, b = report.load(args.a), report.load(args.b)
        diffs = report.compare(a, b, fields=fields)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        print(f"compare: error: {e}", file=sys.stderr)
        return 2
    for d in diffs:
        print(d)
    print(f"{len(a['records'])} records in A, {len(b['records'])} in B, compared on {', '.join(fields)}: "
          f"{len(diffs)} difference(s)")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
