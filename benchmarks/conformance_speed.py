"""Wall time of a conformance run of the act family against a backend, cold (empty
reference cache) and warm.  Not a test: run it and record the numbers in
benchmarks/RESULTS.md with the machine they came from.

    python benchmarks/conformance_speed.py [--backend numpy] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time


def run(backend: str, cache: str, report: str, clauses: str | None = None, profile: str = "ci") -> float:
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "ffnspec.conformance", "-q", "-p", "no:cacheprovider",
           f"--ffnspec-backend={backend}", f"--ffnspec-cache-dir={cache}", f"--ffnspec-report={report}",
           f"--ffnspec-profile={profile}"] + ([f"--ffnspec-clauses={clauses}"] if clauses else [])
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if proc.returncode not in (0, 1):
        sys.exit(f"run failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--backend", default="numpy")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--clauses", default=None, help="globs on clause ids, e.g. 'out.*' (default: all)")
    p.add_argument("--profile", default="ci", help="ci (derandomised, default) or fast (the default run)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as report:
        cold = run(a.backend, cache, report, a.clauses, a.profile)
        warm = [run(a.backend, cache, report, a.clauses, a.profile) for _ in range(a.repeat)]
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}")
    print(f"backend {a.backend}, clauses {a.clauses or 'all'}, profile {a.profile}: cold {cold:.1f} s; warm median {statistics.median(warm):.1f} s "
          f"(min {min(warm):.1f}, max {max(warm):.1f}, n={len(warm)})")


if __name__ == "__main__":
    main()
