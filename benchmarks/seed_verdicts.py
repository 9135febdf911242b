"""Do verdicts depend on the hypothesis seed?  Runs the conformance suite N times with seeds
0..N-1 (profile fast: the deterministic inputs plus random draws) and prints every record whose
verdict is not the same in all runs.  Not a test (issue 9: "10 seeds give the same verdict per
record"); record the result in benchmarks/RESULTS.md.

    python benchmarks/seed_verdicts.py --backend numpy --seeds 10 [--clauses 'out.*'] [--dtype float32]

Exit status: 0 if every record has one verdict across the seeds, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path


def run(backend: str, seed: int, out: Path, clauses: str | None, dtype: str | None) -> dict:
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "ffnspec.conformance", "-q", "-p", "no:cacheprovider",
           f"--ffnspec-backend={backend}", f"--ffnspec-report={out}", "--ffnspec-profile=fast",  # ci ignores seeds
           f"--hypothesis-seed={seed}"]
    cmd += [f"--ffnspec-clauses={clauses}"] if clauses else []
    cmd += [f"--ffnspec-dtype={dtype}"] if dtype else []
    subprocess.run(cmd, capture_output=True, text=True)
    return json.loads((out / "report.json").read_text())


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--backend", default="numpy")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--clauses")
    p.add_argument("--dtype")
    a = p.parse_args()
    seen: dict[tuple, dict[int, str]] = defaultdict(dict)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(a.seeds):
            rep = run(a.backend, seed, Path(tmp) / str(seed), a.clauses, a.dtype)
            for r in rep["records"]:
                seen[(r["clause"], r["dtype"], r["device"], r["mode"])][seed] = r["verdict"]
            print(f"seed {seed}: {rep['summary']['verdict']}", flush=True)
    unstable = {k: v for k, v in seen.items() if len(set(v.values())) > 1}
    for (clause, dtype, device, mode), v in sorted(unstable.items(), key=str):
        print(f"UNSTABLE {clause} {dtype} {device} {mode or ''}: " + ", ".join(f"{s}:{x}" for s, x in sorted(v.items())))
    print(f"{len(seen)} records, {a.seeds} seeds, {len(unstable)} with more than one verdict")
    return 1 if unstable else 0


if __name__ == "__main__":
    sys.exit(main())
