"""Every float32 input in a bit range where casting the float64 kernel to float32 is wrong.

    python benchmarks/cast_census.py [--name act.sigmoid] [--bits A:B[,C:D]] [--jobs 2]

The fast reference alone (no backend), chunk by chunk: prints the count and the inputs where
RN32(float64 kernel) != RN32(t), and checks that the filter sent each of them past the cast.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing

import numpy as np

from ffnspec.reference import fastref

CHUNK = 1 << 22


def _chunk(args):
    name, a, b = args
    with np.errstate(invalid="ignore"):
        x = np.arange(a, b, dtype=np.uint64).astype(np.uint32).view(np.float32)
    x = x[np.isfinite(x)].astype(np.float64)
    fast, cast = fastref.reference(name, x)
    wrong = cast != fast.cr
    accepted_plain = ~fast.exact & ~fast.pinned & (np.abs(fast.hi) >= fastref.TINY)
    return x[wrong].tolist(), int(np.count_nonzero(wrong & accepted_plain)), int(fast.exact.sum())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--name", default="act.sigmoid")
    p.add_argument("--bits", default=f"0:{0x3B800000},{0x80000000}:{0xBB800000}")
    p.add_argument("--jobs", type=int, default=2)
    a = p.parse_args()
    tasks = []
    for part in a.bits.split(","):
        lo, hi = (int(v, 0) for v in part.split(":"))
        tasks += [(a.name, s, min(s + CHUNK, hi)) for s in range(lo, hi, CHUNK)]
    found, missed, exact = [], 0, 0
    with concurrent.futures.ProcessPoolExecutor(a.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for xs, m, e in pool.map(_chunk, tasks):
            found += xs
            missed += m
            exact += e
    print(f"{a.name}, bits {a.bits}: cast wrong at {len(found)} inputs; accepted by the filter anyway: {missed}; "
          f"exact path: {exact}")
    print(sorted(found))


if __name__ == "__main__":
    main()
