"""Compute the reference tables of a full conformance run, alone, to time the build (what the
plugin does at session start, ``ffnspec.conformance.machinery.prebuild``).

    python benchmarks/prebuild.py [--jobs N] [--dtype LIST] [--clauses GLOBS] [--cache-dir DIR]
"""
from __future__ import annotations

import argparse
import time

from ffnspec import spec
from ffnspec.conformance.machinery import prebuild
from ffnspec.reference import tables


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=None, help="worker processes [every core]")
    p.add_argument("--dtype", default="float16,bfloat16,float32,float64")
    p.add_argument("--clauses", default="", help="comma-separated globs on clause ids [all]")
    p.add_argument("--cache-dir", default=None)
    a = p.parse_args()
    if a.cache_dir:
        tables.set_cache_dir(a.cache_dir)
    t0 = time.perf_counter()
    clauses, dtypes = spec.select(patterns=tuple(x for x in a.clauses.split(",") if x)), tuple(a.dtype.split(","))
    for stage, plan in (("values", prebuild.requests), ("reduction derivatives", prebuild.derivative_requests)):
        t0 = time.perf_counter()
        reqs = plan(clauses, dtypes)
        print(f"{stage}: {len(reqs)} requests planned in {time.perf_counter() - t0:.1f} s")
        s = tables.prebuild(reqs, jobs=prebuild.jobs(a.jobs), progress=True)
        print(f"{stage}: {s.units} units, {s.values} values, {s.seconds:.1f} s wall, {s.jobs} jobs")


if __name__ == "__main__":
    main()
