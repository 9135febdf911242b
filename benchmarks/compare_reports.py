"""Compare two report.json files record by record: the records each lacks, and per record the
fields that differ (verdict, worst error, worst input, examples, violations, findings).

    python benchmarks/compare_reports.py BEFORE/report.json AFTER/report.json [--fields a,b,...]

Exit status 1 if any record differs.  Not a test: how "zero change in verdicts" is checked
between two versions (with benchmarks/no_local_constants.py when their sources differ in numbers).
"""
from __future__ import annotations

import argparse
import json
import sys

FIELDS = ("verdict", "max_error", "max_ulp", "worst_input", "examples", "violations", "findings",
          "accuracy_error", "unexcused")


def records(path: str) -> dict[tuple, dict]:
    with open(path) as f:
        return {(r["clause"], r["dtype"], r["device"], r["mode"]): r for r in json.load(f)["records"]}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--fields", default=",".join(FIELDS))
    a = p.parse_args()
    fields = a.fields.split(",")
    x, y = records(a.before), records(a.after)
    print(f"records: {len(x)} and {len(y)}; only in the first {len(x.keys() - y.keys())}, "
          f"only in the second {len(y.keys() - x.keys())}")
    differ = 0
    for key in sorted(x.keys() & y.keys(), key=str):
        changed = {f: (x[key].get(f), y[key].get(f)) for f in fields if x[key].get(f) != y[key].get(f)}
        if changed:
            differ += 1
            print(key, changed)
    print(f"records that differ: {differ}")
    return 1 if differ or x.keys() != y.keys() else 0


if __name__ == "__main__":
    sys.exit(main())
