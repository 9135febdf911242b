"""Time a float32 sweep of one op (reference and backend together) and its memory peak.

    python benchmarks/sweep_speed.py [--backend numpy] [--op sigmoid] [--jobs 2] [--bits A:B]

Sweeps the bit patterns A:B (default: 2^25 patterns around 1.0) into a fresh report directory
and prints inputs/s, the projected time of the full sweep of 2^32 - 2^24 inputs at that rate, and
the largest resident set of one worker (the sweep's memory bound: jobs x that).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ffnspec.conformance.machinery import sweep


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--backend", default="numpy")
    p.add_argument("--op", default="sigmoid")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--bits", default=f"{0x3F000000}:{0x3F000000 + (1 << 25)}")
    a = p.parse_args()
    lo, hi = (int(v, 0) for v in a.bits.split(":"))
    with tempfile.TemporaryDirectory() as d:
        cfg = sweep.Config(backends=a.backend.split(","), ops=[a.op], dtype="float32", device="cpu",
                           report=Path(d), jobs=a.jobs, bits=((lo, hi),), progress=False)
        t0 = time.perf_counter()
        rep = sweep.run(cfg)
        dt = time.perf_counter() - t0
    n = cfg.covered()
    r = rep["reference"][0]
    print(f"{a.op} on {a.backend}, {a.jobs} jobs: {n} inputs (value + derivative) in {dt:.1f} s = {n / dt:.3g} inputs/s;"
          f" full sweep projected {sweep.F32_FINITE / (n / dt) / 60:.1f} min; largest worker RSS "
          f"{r['max_rss_mb_per_process']:.0f} MB")


if __name__ == "__main__":
    main()
