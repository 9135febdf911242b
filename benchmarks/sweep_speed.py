"""Time a float32 sweep of one op (reference and backend together) and its memory peak.

    python benchmarks/sweep_speed.py [--backend numpy] [--op sigmoid] [--jobs 2] [--spread K | --bits A:B]

Sweeps K chunks spread evenly over all 2^32 bit patterns (default 32: a sample of every region,
closed-form and general alike; the chunks holding NaNs and infinities excepted) or the bit
patterns A:B into a fresh report directory and prints inputs/s, wall and CPU, the projected time
of the full sweep of 2^32 - 2^24 inputs at that rate, and the largest resident set of one worker
(the sweep's memory bound: jobs x that).
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from ffnspec.conformance.machinery import sweep


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--backend", default="numpy")
    p.add_argument("--op", default="sigmoid")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--bits")
    p.add_argument("--spread", type=int, default=32)
    a = p.parse_args()
    if a.bits:
        bits = (tuple(int(v, 0) for v in a.bits.split(":")),)
    else:
        stride = (1 << 32) // a.spread
        bits = tuple((i * stride + sweep.CHUNK, i * stride + 2 * sweep.CHUNK) for i in range(a.spread))
    with tempfile.TemporaryDirectory() as d:
        cfg = sweep.Config(backends=a.backend.split(","), ops=[a.op], dtype="float32", device="cpu",
                           report=Path(d), jobs=a.jobs, bits=bits, progress=False)
        t0, c0 = time.perf_counter(), _cpu()
        rep = sweep.run(cfg)
        dt, cpu = time.perf_counter() - t0, _cpu() - c0
    n = cfg.covered()
    r = rep["reference"][0]
    print(f"{a.op} on {a.backend}, {a.jobs} jobs: {n} inputs (value + derivative) in {dt:.1f} s wall, {cpu:.1f} s CPU "
          f"= {n / dt:.3g} inputs/s; full sweep projected {sweep.F32_FINITE / (n / dt) / 60:.1f} min wall, "
          f"{sweep.F32_FINITE / (n / cpu) / 60:.1f} min CPU; largest worker RSS {r['max_rss_mb_per_process']:.0f} MB; "
          f"load {os.getloadavg()[0]:.2f}")


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the workers)."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


if __name__ == "__main__":
    main()
