"""Validate the fast float32 reference (reference/fastref.py) against ffnspec's exact path.

    python benchmarks/fastref_validate.py [--inputs N] [--names act.sigmoid,...] [--seed S]

For each act reference: N random float32 bit patterns (finite ones; 10^7 by default), the fast
reference's correctly rounded value and sign compared bit for bit with the exact path's
(``precision.values_many``); the inputs the filter sent to the exact path are counted, and the
plain float64 kernel cast to float32 is compared too (how often a cast alone would be wrong).
Also the measured relative error of NumPy's float64 exp, log1p and tanh (the proof's one
assumption, EPS_LIBM).  Exit status 1 on any mismatch.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from ffnspec.reference import fastref


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--inputs", type=int, default=10 ** 7)
    p.add_argument("--names", default=",".join(fastref.KERNELS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--block", type=int, default=1 << 18)
    a = p.parse_args()
    bad = 0
    for name in a.names.split(","):
        rng = np.random.default_rng([a.seed, len(name)])
        n = exact_n = cast_wrong = mismatches = 0
        t0 = time.perf_counter()
        while n < a.inputs:
            with np.errstate(invalid="ignore"):
                x = rng.integers(0, 1 << 32, min(a.block, a.inputs - n), dtype=np.uint64).astype(np.uint32)
                x = x.view(np.float32)
            x = x[np.isfinite(x)].astype(np.float64)
            fast, cast = fastref.reference(name, x)
            _, _, cr = fastref.exact_values(name, x)
            mismatches += int(np.count_nonzero((fast.cr != cr) | (np.signbit(fast.cr) != np.signbit(cr))))
            exact_n += int(fast.exact.sum())
            cast_wrong += int(np.count_nonzero(cast != cr))
            n += x.size
        print(f"{name:22} {n} inputs: {mismatches} mismatches; {exact_n} on the exact path; "
              f"cast of the float64 kernel wrong at {cast_wrong}; {time.perf_counter() - t0:.0f} s", flush=True)
        bad += mismatches
    rng = np.random.default_rng(a.seed)
    for fn, args in (("exp", rng.uniform(-708, 0, 20000)), ("log1p", np.exp(-rng.uniform(0, 700, 20000))),
                     ("tanh", rng.uniform(-20, 20, 20000))):
        e = fastref.assumption_error(fn, args)
        print(f"numpy float64 {fn}: max relative error {e:.3g} = 2^{np.log2(e):.1f} (assumed <= 2^-46)")
        bad += e > fastref.EPS_LIBM
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
