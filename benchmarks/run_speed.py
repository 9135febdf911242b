"""Time full conformance runs: cold (fresh HOME, empty cache), warm, several hypothesis seeds,
and two runs at once sharing one cache.  Not a test: run it and record the numbers, with the
machine load it prints, in benchmarks/RESULTS.md.

    python benchmarks/run_speed.py cold  [--backend numpy] [--profile ci] [--jobs N]
    python benchmarks/run_speed.py warm  --home DIR [--repeat 3]
    python benchmarks/run_speed.py seeds --home DIR --seeds 10      # cache size after N seeds
    python benchmarks/run_speed.py twice --home DIR                  # two runs at once, one cache
    python benchmarks/run_speed.py xdist --workers 2                 # cold, pytest -n 2

Each run prints one JSON line: wall and CPU seconds (user + system of the run's processes, the
prebuild workers included), the load average before and after, the cache size and file count,
and the report's verdicts.  cold and warm run the README's command (``ffnspec run``).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

def _cache_size(home: Path) -> tuple[int, int]:
    root = home / ".cache" / "ffnspec"
    files = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
    return sum(p.stat().st_size for p in files), sum(1 for p in files if p.suffix == ".npz")


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str], home: Path, label: str, report: Path | None = None) -> dict:
    env = dict(os.environ, HOME=str(home))
    load0, cpu0, t0 = os.getloadavg()[0], _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    size, files = _cache_size(home)
    out = dict(run=label, wall_s=round(wall, 1), cpu_s=round(cpu, 1), load_before=load0,
               load_after=os.getloadavg()[0], cache_mb=round(size / 2 ** 20, 1), cache_files=files,
               returncode=proc.returncode)
    if report is not None:
        out["verdicts"] = verdicts(report)
    if proc.returncode not in (0, 1):
        out["tail"] = (proc.stdout + proc.stderr)[-1500:]
    print(json.dumps(out), flush=True)
    return out


def run_cmd(a, report: Path, seed: int | None = None, workers: int = 0) -> list[str]:
    if seed is None and not workers:
        return ["ffnspec", "run", "--backend", a.backend, "--profile", a.profile, "--report", str(report)]
    return ([sys.executable, "-m", "pytest", "--pyargs", "ffnspec.conformance", "-q", "-p", "no:cacheprovider",
             f"--ffnspec-backend={a.backend}", f"--ffnspec-report={report}",
             f"--ffnspec-profile={'fast' if seed is not None else a.profile}"]  # ci ignores seeds
            + ([f"--hypothesis-seed={seed}"] if seed is not None else [])
            + ([f"-n{workers}", f"--ffnspec-jobs={workers}"] if workers else []))


def verdicts(report: Path) -> dict:
    try:
        return json.loads((report / "report.json").read_text())["summary"]["verdicts"]
    except (OSError, KeyError, ValueError):
        return {}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["cold", "warm", "seeds", "twice", "xdist"])
    p.add_argument("--backend", default="numpy")
    p.add_argument("--profile", default="ci")
    p.add_argument("--home", type=Path, help="HOME holding the cache (default: a fresh one)")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--workers", type=int, default=2, help="xdist: pytest -n WORKERS")
    p.add_argument("--report", type=Path, default=Path(tempfile.gettempdir()) / "ffnspec-bench-report")
    a = p.parse_args()
    home = a.home or Path(tempfile.mkdtemp(prefix="ffnspec-home-"))
    print(json.dumps(dict(machine=os.uname().machine, cpus=os.cpu_count(), python=sys.version.split()[0],
                          home=str(home))), flush=True)
    if a.what == "xdist":
        timed(run_cmd(a, a.report, workers=a.workers), home, f"cold, pytest -n {a.workers}", a.report)
    elif a.what in ("cold", "warm"):
        for i in range(a.repeat):
            timed(run_cmd(a, a.report), home, f"{a.what} {a.backend} {a.profile}", a.report)
    elif a.what == "seeds":
        for seed in range(a.seeds):
            timed(run_cmd(a, a.report, seed), home, f"seed {seed}", a.report)
    else:  # two runs at once, one cache; then a third, warm, to show the cache is intact
        env = dict(os.environ, HOME=str(home))
        reports = [a.report.with_name(a.report.name + f"-{i}") for i in (1, 2)]
        t0, cpu0 = time.perf_counter(), _children_cpu()
        procs = [subprocess.Popen(run_cmd(a, r), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for r in reports]
        codes = [pr.wait() for pr in procs]
        print(json.dumps(dict(run="two at once", wall_s=round(time.perf_counter() - t0, 1),
                              cpu_s=round(_children_cpu() - cpu0, 1), returncodes=codes,
                              verdicts=[verdicts(r) for r in reports])), flush=True)
        timed(run_cmd(a, a.report), home, "after, warm", a.report)


if __name__ == "__main__":
    main()
