"""Build the shipped reference values (``reference/seed/``): compute every deterministic value of
a full default run into an empty cache, one process, timing each file's computation; then ship
the files that cost the most CPU per byte, up to a byte budget.

    python benchmarks/seed_cache.py [--budget-mb 19] [--dry-run]

Run it after editing a reference formula or the precision code (their sources hash names the
files: tests/test_seed.py fails while a shipped file is stale).  It takes about 5 minutes of CPU.
It writes reference/seed/manifest.json: per file, the seconds it took and its size.
"""
from __future__ import annotations

import argparse
import collections
import json
import shutil
import tempfile
import time
from pathlib import Path

from ffnspec import spec
from ffnspec.conformance.machinery import prebuild
from ffnspec.reference import tables

DTYPES = ("float16", "bfloat16", "float32", "float64")


def build(cache: Path) -> dict[Path, float]:
    """Seconds of computation per cache file, computing the default run's values into ``cache``."""
    tables.set_cache_dir(cache, seeded=False)  # compute everything, take nothing shipped
    owner: dict[int, Path] = {}
    cost: dict[Path, float] = collections.defaultdict(float)
    tasks, work = tables._tasks, tables._work

    def timed_tasks(unit):
        out = tasks(unit)
        path = tables._table_path(unit.key) if isinstance(unit, tables._TableUnit) else unit.store.path
        for t in out:
            owner[id(t)] = path
        return out

    def timed_work(task):
        t0 = time.process_time()
        try:
            return work(task)
        finally:
            cost[owner[id(task)]] += time.process_time() - t0

    tables._tasks, tables._work = timed_tasks, timed_work
    try:
        clauses = spec.select(patterns=())
        for plan in (prebuild.requests, prebuild.derivative_requests):
            tables.prebuild(plan(clauses, DTYPES), jobs=1)
    finally:
        tables._tasks, tables._work = tasks, work
        tables.flush()
    return dict(cost)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--budget-mb", type=float, default=19.0)  # the wheel stays under ~20 MB (tests/test_seed.py)
    p.add_argument("--dry-run", action="store_true", help="report the selection, write nothing")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        t0 = time.perf_counter()
        cost = build(cache)
        print(f"built {len(cost)} files in {time.perf_counter() - t0:.0f} s, {sum(cost.values()):.0f} s of CPU")
        files = [(c, f.stat().st_size, f) for f, c in cost.items() if f.is_file()]
        files.sort(key=lambda x: -x[0] / x[1])
        budget, chosen, used = a.budget_mb * 1e6, [], 0
        for c, size, f in files:
            if used + size <= budget:
                chosen.append((c, size, f))
                used += size
        saved = sum(c for c, _, _ in chosen)
        print(f"shipping {len(chosen)} of {len(files)} files, {used / 1e6:.1f} MB: {saved:.0f} of "
              f"{sum(c for c, _, _ in files):.0f} s of CPU")
        if a.dry_run:
            return
        seed = tables.SEED
        shutil.rmtree(seed, ignore_errors=True)
        manifest = {}
        for c, size, f in sorted(chosen, key=lambda x: str(x[2])):
            rel = f.relative_to(cache)
            (seed / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, seed / rel)
            manifest[rel.as_posix()] = {"cpu_seconds": round(c, 2), "bytes": size}
        (seed / "manifest.json").write_text(json.dumps(
            {"built": time.strftime("%Y-%m-%d"), "cpu_seconds_saved": round(saved, 1), "files": manifest},
            indent=1) + "\n")
        print(f"wrote {seed}")


if __name__ == "__main__":
    main()
