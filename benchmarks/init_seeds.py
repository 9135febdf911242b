"""Run the init family's statistical clauses against a backend's correct initialisers under many
seed bases (conformance/init.py SEED_BASE), every dtype, and count alarms: with a family-wise
false-alarm rate <= 1e-6 a run, 20 runs should raise none.

    python benchmarks/init_seeds.py numpy torch jax --runs 20
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from ffnspec import spec
from ffnspec.adapters import load_backend
from ffnspec.conformance.checks import composites
from ffnspec.conformance.init import SEED_BASE
from ffnspec.conformance.machinery.harness import Target
from ffnspec.conformance.machinery.records import ConformanceFailure, Record

CLAUSES = [c for c in spec.clauses() if c.tolerance.criterion == "statistical"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("backends", nargs="+")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--first", type=int, default=1)
    a = ap.parse_args()
    for name in a.backends:
        backend = load_backend(name)
        alarms, tests, t0 = [], 0, time.perf_counter()
        for run in range(a.first, a.first + a.runs):
            SEED_BASE["base"] = 20261202 + 100_000 * run
            for dtype in sorted(backend.dtypes):
                target = Target(backend, name, dtype, "cpu")
                for c in CLAUSES:
                    rec = Record(c.id, name, dtype, "cpu")
                    try:
                        composites.run(c, target, rec, np.zeros(1))
                    except ConformanceFailure as e:
                        alarms.append((run, dtype, c.id, str(e).splitlines()[1:3]))
                    tests += rec.examples if c.id != "init.orthogonal" else 1
        print(f"{name}: {a.runs} runs (seed bases {20261202 + 100_000 * a.first} ...), {tests} tests, "
              f"{len(alarms)} alarms, {time.perf_counter() - t0:.0f} s")
        for al in alarms:
            print("   ", al)


if __name__ == "__main__":
    main()
