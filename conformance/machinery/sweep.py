"""Exhaustive sweeps of the act family's unary ops and their derivatives (``ffnspec sweep``).

float32: every finite input (2^32 - 2^24 bit patterns), in chunks of CHUNK consecutive bit
patterns.  Per chunk the reference of each quantity (an op's value, or its derivative) is
computed once, by ``reference.fastref`` (a float64 kernel, the exact path near rounding
boundaries; closed forms where the result is provably a constant, x or +-0), and every backend
asked for is measured against it, every elementwise pass over cache-sized BLOCKs.  float64: a seeded sample of
random bit patterns plus the neighbourhoods of the thresholds (exhaustive is impossible), with
the exact reference throughout (no rigorous fast float64 reference: docs/measure.md).

The measure is the conformance suite's: err = |y - t| / u(t), ``floatformat.ulp_error``, with a
declared flush-to-zero backend's 0 for a subnormal t not counted (``measure.accuracy_error``).
Values come through ``Target.call``, derivatives through ``Target.derivative(mode="vjp")``: the
backend's own autodiff, supervised as in the conformance checks.

Per (backend, quantity, dtype, device) a cell holds a histogram of errors over BIN_LABELS
(0, (0, 1/2], (1/2, 1], (1, 2], ..., (2^19, 2^20], > 2^20, inf/NaN result), the worst inputs with
their exact values (re-measured by the exact path, so the maximum is the conformance measure's
own; where t lies within 2^-106 |t| of a float32 value or midpoint -- the saturated tails -- the
pinned fast value is kept, being more precise than the exact path's 106-bit canonical lo), and
the time.  Fast-path errors are binned exactly: the fast reference lies on the same
side of every comparison point as t (docs/measure.md), and ties with a bin edge are settled by
exact comparisons; a result equal to the correctly rounded value takes that value's bins,
computed once per reference.  Each finished chunk is a JSON file under REPORT/state/: a rerun
skips it.  ``merge`` joins sweeps of disjoint bit ranges.
"""
from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import inspect
import json
import math
import multiprocessing
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

OPS = ("sigmoid", "tanh", "softplus", "log_sigmoid", "silu")
KINDS = ("value", "grad")
DTYPES = ("float32", "float64")
CHUNK = 1 << 20                       # bit patterns per float32 chunk (a state file; one worker task)
BLOCK = 1 << 16                       # elements per pass inside a chunk (intermediates stay in cache)
SAMPLE_CHUNK = 1 << 14                # float64 inputs per chunk
EDGES = [2.0 ** k for k in range(-1, 21)]   # 1/2, 1, 2, ..., 2^20
BIN_LABELS = ["0"] + [f"<={_e:g}" for _e in EDGES] + [f">{EDGES[-1]:g}", "inf/nan"]
THRESHOLDS = (0.5, 1, 2, 4, 16, 256, 2.0 ** 20)
WORST = 5                             # worst inputs kept per cell
CANDIDATES = 32                       # inputs per chunk re-measured by the exact path
CAST_KEEP = 4096                      # inputs where the cast kernel is wrong, kept per chunk
F32_FINITE = (1 << 32) - (1 << 24)


def reference_name(op: str, kind: str) -> str:
    return f"act.{op}" if kind == "value" else f"act.{op}_grad"


# ------------------------------------------------------------------ configuration ----
@dataclass
class Config:
    backends: list[str]
    ops: list[str]
    dtype: str
    device: str
    report: Path
    jobs: int = 1
    bits: tuple[tuple[int, int], ...] = ((0, 1 << 32),)  # float32: bit-pattern ranges [lo, hi) swept
    samples: int = 100_000                 # float64: random inputs (neighbourhoods are added)
    seed: int = 0
    chunk: int = CHUNK
    progress: bool = True
    unavailable: dict = field(default_factory=dict)   # (backend, op, kind) -> reason

    def chunks(self) -> list[int]:
        if self.dtype == "float32":
            out = set()
            for lo, hi in self.bits:
                for i in range(lo // self.chunk, -(-hi // self.chunk)):
                    a, b = self.chunk_range(i)
                    if a < b and _finite_patterns(a, b):
                        out.add(i)
            return sorted(out)
        return list(range(-(-self.samples // SAMPLE_CHUNK) + 1))  # the last: the neighbourhoods

    def chunk_range(self, index: int) -> tuple[int, int]:
        """The bit patterns [a, b) of float32 chunk ``index`` inside the swept ranges (ranges
        are disjoint; a chunk meets at most one unless they share a chunk, which is refused)."""
        a, b = index * self.chunk, (index + 1) * self.chunk
        parts = [(max(a, lo), min(b, hi)) for lo, hi in self.bits if lo < b and hi > a]
        if len(parts) > 1:
            raise ValueError(f"bit ranges {self.bits} share chunk {index}: align them to {self.chunk}")
        return parts[0] if parts else (a, a)

    def covered(self) -> int:
        """How many finite float32 inputs the ranges hold."""
        n = 0
        for lo, hi in self.bits:
            for flo, fhi in ((0, 0x7F800000), (0x80000000, 0xFF800000)):
                n += max(0, min(hi, fhi) - max(lo, flo))
        return n


def _finite_patterns(a: int, b: int) -> bool:
    """Whether [a, b) holds a finite float32 bit pattern (exponent field not all ones)."""
    for lo, hi in ((0, 0x7F800000), (0x80000000, 0xFF800000)):
        if a < hi and b > lo:
            return True
    return False


def inputs(cfg: Config, index: int) -> np.ndarray:
    """The chunk's inputs as float64 holding dtype values, finite, in a fixed order."""
    if cfg.dtype == "float32":
        a, b = cfg.chunk_range(index)
        x = np.arange(a, b, dtype=np.uint64).astype(np.uint32).view(np.float32)
        return x[np.isfinite(x)].astype(np.float64)
    last = -(-cfg.samples // SAMPLE_CHUNK)
    if index == last:
        return neighbourhoods()
    n = min(SAMPLE_CHUNK, cfg.samples - index * SAMPLE_CHUNK)
    rng = np.random.default_rng([cfg.seed, index])
    x = rng.integers(0, 1 << 64, size=2 * n, dtype=np.uint64).view(np.float64)
    return x[np.isfinite(x)][:n]


def neighbourhoods(k: int = 256) -> np.ndarray:
    """float64 inputs within k ulps of the thresholds: 0, +-1, where sigma saturates
    ((p+1) ln 2), exp's overflow and underflow (709.78, 708.40, 745.13), 15, 20, 33 (hard-coded
    by libraries), the zero of SiLU's derivative; and the extremes of the range."""
    from ffnspec.reference.floatformat import FORMATS, from_ordinal, ordinal
    f64 = FORMATS["float64"]
    centres = [0.0, 1.0, 54 * math.log(2), 709.782712893384, 708.3964185322641, 745.1332191019411,
               15.0, 20.0, 33.0, 1.2784645427610738, 36.7368005696771, f64.max_finite]
    centres = centres + [-c for c in centres]
    pos = ordinal(np.array(centres), f64)
    idx = (pos[:, None] + np.arange(-k, k + 1)[None, :]).ravel()
    idx = np.clip(idx, -ordinal(np.array([f64.max_finite]), f64)[0], ordinal(np.array([f64.max_finite]), f64)[0])
    return np.unique(from_ordinal(idx, f64))


@functools.lru_cache(maxsize=None)
def _sources() -> str:
    from ffnspec.reference import act, balls, fastref, floatformat, precision
    return "".join(inspect.getsource(m) for m in (act, balls, fastref, floatformat, precision))


def config_key(cfg: Config) -> str:
    """What a chunk's results depend on besides the backend and the chunk's own range (which its
    file names): the reference code, the bins and the float64 sample."""
    text = _sources() + f"{cfg.dtype}|{cfg.samples}|{cfg.seed}|{BIN_LABELS}|{CANDIDATES}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ------------------------------------------------------------------ measuring ----
def blocks(n: int) -> list[slice]:
    """Consecutive slices of BLOCK elements covering range(n): every elementwise pass of a chunk
    runs block by block, so its intermediates stay in cache."""
    return [slice(a, min(a + BLOCK, n)) for a in range(0, n, BLOCK)] or [slice(0, 0)]


def reference(cfg: Config, name: str, x: np.ndarray):
    """(hi, lo, cr, bound, exact mask, cast, pinned mask) for reference ``name`` at x."""
    from ffnspec.reference import fastref
    from ffnspec.reference.floatformat import get_format
    fmt = get_format(cfg.dtype)
    if cfg.dtype == "float32":
        out = [np.empty(x.size) for _ in range(4)] + [np.empty(x.size, bool), np.empty(x.size), np.empty(x.size, bool)]
        for s in blocks(x.size):
            fast, cast = fastref.reference(name, x[s], fmt)
            for a, v in zip(out, (fast.hi, fast.lo, fast.cr, fast.bound, fast.exact, cast, fast.pinned)):
                a[s] = v
        return tuple(out)
    hi, lo, cr = fastref.exact_values(name, x, fmt)
    return hi, lo, cr, np.zeros_like(x), np.ones(x.shape, bool), cr, np.zeros(x.shape, bool)


@dataclass
class Shared:
    """What every backend's measure against one reference reuses: the reference, 1/u(t), the
    floor added to fast-path errors, bound / u, and lo / u (float32: exact, a power-of-two
    scaling; it spares each backend a multiplication of a subnormal lo, which costs ~40x a
    normal one on x86)."""
    x: np.ndarray
    hi: np.ndarray
    lo: np.ndarray
    cr: np.ndarray
    exact: np.ndarray
    pinned: np.ndarray
    u: np.ndarray
    inv_u: np.ndarray | None   # 1/u where it is a float64 (float32: u >= 2^-149), else None
    floor: np.ndarray
    slack: np.ndarray
    lo_u: np.ndarray | None = None   # lo * inv_u (float32)

    def take(self, s) -> "Shared":
        """The elements at s (a slice or an index array)."""
        return Shared(*(None if v is None else v[s] for v in (self.x, self.hi, self.lo, self.cr, self.exact,
                                                             self.pinned, self.u, self.inv_u, self.floor,
                                                             self.slack, self.lo_u)))

    def at_cr(self) -> tuple[np.ndarray, np.ndarray]:
        """``bins`` of the correctly rounded result itself, computed once per reference: a backend
        result equal to cr (as a number) has exactly these bins and errors."""
        if not hasattr(self, "_at_cr"):
            self._at_cr = bins(self.cr, self)
        return self._at_cr


def shared(cfg: Config, x: np.ndarray, ref) -> Shared:
    from ffnspec.reference import fastref
    from ffnspec.reference.floatformat import get_format, ulp
    hi, lo, cr, bound, exact, _, pinned = ref
    if cfg.dtype != "float32":
        u = ulp(hi, lo, get_format(cfg.dtype))
        return Shared(x, hi, lo, cr, exact, pinned, u, None, np.where(exact, 0.0, 5e-324), bound / u * 1.01)
    u, inv_u, floor, slack, lo_u = (np.empty(x.size) for _ in range(5))
    with np.errstate(under="ignore"):
        for s in blocks(x.size):
            u[s] = fastref.ulp32(hi[s], lo[s])
            inv_u[s] = 1 / u[s]            # a power of two: multiplying by it is exact
            floor[s] = np.where(exact[s], 0.0, 5e-324)  # t is off the grid on the fast path: err > 0
            slack[s] = bound[s] / u[s] * 1.01
            lo_u[s] = lo[s] * inv_u[s]
    return Shared(x, hi, lo, cr, exact, pinned, u, inv_u, floor, slack, lo_u)


def bins(y: np.ndarray, sh: Shared, ftz_zero: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(bin index into BIN_LABELS, err) of each result y.  Exact-path elements are binned by the
    float64 err, as the conformance measure computes it; fast-path elements exactly (an err
    within rounding of an edge E is settled by comparing lo with (y -+ E u) - hi, both exact).
    Block by block (``blocks``)."""
    b, err = np.empty(y.size, np.int64), np.empty(y.size)
    for s in blocks(y.size):
        b[s], err[s] = _bins_block(y[s], sh.take(s), None if ftz_zero is None else ftz_zero[s])
    return b, err


def _bins_block(y: np.ndarray, sh: Shared, ftz_zero: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", over="ignore"):
        if sh.inv_u is not None:
            # |(y - hi) - lo| / u as |(y - hi)/u - lo/u|, bit for bit: for u <= 1 both scalings are
            # exact and commute with the rounding (a subnormal difference is exact); for u >= 2,
            # y - hi is 0 or >= 2^-29 in magnitude, and a lo whose lo/u is inexact is below half
            # an ulp of it in both forms
            err = np.abs((y - sh.hi) * sh.inv_u - sh.lo_u)
        else:
            err = np.abs((y - sh.hi) - sh.lo)
            err /= sh.u
        np.maximum(err, sh.floor, out=err)
        if ftz_zero is not None:
            err[ftz_zero] = 0.0
        bits = err.view(np.int64)
        b = ((bits - 1) >> 52) - (1022 - 2)          # ceil(log2 err) + 2, for err > 0
        np.clip(b, 1, len(EDGES) + 1, out=b)
        near = np.flatnonzero(((bits + (1 << 23)) & ((1 << 52) - 1)) < (1 << 24))  # within 2^-29 of 2^k
        if near.size:
            near = near[~sh.exact[near] & (err[near] > 0) & np.isfinite(err[near])]
            if ftz_zero is not None:
                near = near[~ftz_zero[near]]
        if near.size:
            en = ((bits[near] + (1 << 51)) >> 52) - 1023  # the edge 2^en nearest err
            ok = (en >= -1) & (en <= 20)
            E = np.ldexp(1.0, en) * sh.u[near]
            yn, hn, ln = y[near], sh.hi[near], sh.lo[near]
            le = ((yn - E) - hn <= ln) & (ln <= (yn + E) - hn)
            b[near] = np.where(ok, np.clip(np.where(le, en + 2, en + 3), 1, len(EDGES) + 1), b[near])
        zero = err == 0
        if zero.any():
            b[zero] = 0
        bad = ~np.isfinite(err)
        if bad.any():
            b[bad] = len(BIN_LABELS) - 1
    return b, err


def measure_cell(cfg: Config, name: str, y: np.ndarray, sh: Shared, ftz: bool) -> dict:
    """Histogram and worst inputs of one backend's results y against the chunk's reference."""
    from ffnspec.reference import fastref
    from ffnspec.reference.floatformat import get_format, ulp_error
    fmt = get_format(cfg.dtype)
    b, err = (a.copy() for a in sh.at_cr())
    off = np.flatnonzero(y != sh.cr)   # where the backend is not correctly rounded: binned afresh
    if off.size:
        b[off], err[off] = bins(y[off], sh.take(off))
    if ftz:
        ftz_zero = np.flatnonzero((np.abs(sh.hi) < fmt.min_normal) & (y == 0))
        b[ftz_zero], err[ftz_zero] = 0, 0.0
    hist = np.bincount(b, minlength=len(BIN_LABELS))
    # worst inputs: every input whose err may reach the chunk's certain maximum, re-measured exactly
    with np.errstate(invalid="ignore", over="ignore"):
        bad = np.flatnonzero(~np.isfinite(err))
        if bad.size:
            cand = bad[:CANDIDATES]
            truncated = bad.size > CANDIDATES
        else:
            top_err = float(np.max(err)) if err.size else 0.0
            floor = float(np.max(err - sh.slack)) - top_err * 2.0 ** -39 if err.size else 0.0
            cand = np.flatnonzero(err + sh.slack >= floor)
            truncated = cand.size > CANDIDATES
            if truncated:
                cand = cand[np.argpartition(-err[cand], CANDIDATES)[:CANDIDATES]]
    top = np.argpartition(-np.nan_to_num(err, nan=np.inf), WORST)[:WORST] if err.size > WORST else np.arange(err.size)
    cand = np.unique(np.concatenate([cand, top]))
    chi, clo, ccr = sh.hi[cand].copy(), sh.lo[cand].copy(), sh.cr[cand].copy()
    fast = ~sh.exact[cand] & ~sh.pinned[cand]  # a pinned (hi, lo) is t to CLAIM |c|: kept (module docstring)
    if fast.any():
        ehi, elo, ecr = fastref.exact_values(name, sh.x[cand][fast], fmt)
        chi[fast], clo[fast], ccr[fast] = ehi, elo, ecr
    cerr = ulp_error(y[cand], chi, clo, fmt)
    if ftz:
        cerr = np.where((np.abs(chi) < fmt.min_normal) & (y[cand] == 0), 0.0, cerr)
    worst = [{"x": float(sh.x[i]), "y": float(y[i]), "hi": float(h), "lo": float(l), "cr": float(c), "ulp": float(v)}
             for i, h, l, c, v in zip(cand, chi, clo, ccr, cerr)]
    worst.sort(key=lambda w: (-w["ulp"], w["x"]))
    return {"hist": hist.tolist(), "worst": worst[:WORST], "tie_truncated": bool(truncated)}


# ------------------------------------------------------------------ workers ----
_targets: dict = {}


def _load_targets(cfg: Config) -> dict:
    from ffnspec.adapters import load_backend
    from ffnspec.conformance.machinery.harness import Target
    key = (tuple(cfg.backends), cfg.dtype, cfg.device)
    if key not in _targets:
        _targets.clear()
        _targets[key] = {spec: Target(load_backend(spec), spec, cfg.dtype, cfg.device) for spec in cfg.backends}
    return _targets[key]


def _backend_values(target, op: str, kind: str, x: np.ndarray) -> np.ndarray:
    if kind == "value":
        return target.call(op, x)
    return target.derivative(op, x, mode="vjp")


def state_dir(cfg: Config, op: str) -> Path:
    return cfg.report / "state" / f"{cfg.dtype}-{cfg.device}-{op}"


def chunk_path(cfg: Config, op: str, index: int) -> Path:
    return state_dir(cfg, op) / f"chunk-{index:05d}.json"


def run_chunk(cfg: Config, op: str, index: int) -> dict:
    """Measure every (backend, kind) of op on one chunk; written to its state file."""
    targets = _load_targets(cfg)
    x = inputs(cfg, index)
    out = {"key": config_key(cfg), "index": index, "range": _range(cfg, index), "n": int(x.size), "cells": {},
           "reference": {}}
    for kind in KINDS:
        name = reference_name(op, kind)
        t0 = time.perf_counter()
        ref = reference(cfg, name, x)
        sh = shared(cfg, x, ref)
        cast_wrong = np.flatnonzero(ref[5] != ref[2])
        out["reference"][kind] = {"seconds": time.perf_counter() - t0, "exact_path": int(ref[4].sum()),
                                  "cast_wrong": int(cast_wrong.size),
                                  "cast_wrong_inputs": x[cast_wrong[:CAST_KEEP]].tolist()}
        for spec, target in targets.items():
            if (spec, op, kind) in cfg.unavailable:
                continue
            t0 = time.perf_counter()
            y = np.empty(x.size)
            for s in blocks(x.size):
                y[s] = _backend_values(target, op, kind, x[s])
            seconds = time.perf_counter() - t0
            cell = measure_cell(cfg, name, y, sh, target.ftz)
            cell["backend_seconds"] = seconds
            cell["seconds"] = time.perf_counter() - t0
            out["cells"].setdefault(spec, {})[kind] = cell
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    path = chunk_path(cfg, op, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    os.replace(tmp, path)
    return {"index": index, "n": out["n"]}


def _range(cfg: Config, index: int) -> list[int]:
    return list(cfg.chunk_range(index)) if cfg.dtype == "float32" else [cfg.chunk, index]


def _worker_init(cfg: Config) -> None:
    _load_targets(cfg)


def _worker(args) -> dict:
    cfg, op, index = args
    return run_chunk(cfg, op, index)


def _done(cfg: Config, op: str, index: int, key: str) -> bool:
    p = chunk_path(cfg, op, index)
    if not p.is_file():
        return False
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return False
    if data.get("key") != key or data.get("range") != _range(cfg, index):
        return False
    wanted = {(s, k) for s in cfg.backends for k in KINDS if (s, op, k) not in cfg.unavailable}
    have = {(s, k) for s, cells in data.get("cells", {}).items() for k in cells}
    return wanted <= have


def _progress(op: str, done: int, total: int, skipped: int, n: int, t0: float) -> None:
    dt = max(time.perf_counter() - t0, 1e-9)
    work = done - skipped
    rate = n / dt
    eta = (total - done) * dt / work if work else float("nan")
    eta_s = f"{int(eta // 60)}m{int(eta % 60):02d}s" if math.isfinite(eta) else "?"
    sys.stderr.write(f"\rsweep {op}: chunks {done}/{total} ({skipped} resumed), {rate:.3g} inputs/s, ETA {eta_s}   ")
    sys.stderr.flush()


def run(cfg: Config) -> dict:
    """Sweep every op of cfg (resuming from its state), then aggregate and write the report."""
    key = config_key(cfg)
    results = {}
    env_set = {v: "1" for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")} if cfg.jobs > 1 else {}
    for op in cfg.ops:
        chunks = cfg.chunks()
        todo = [i for i in chunks if not _done(cfg, op, i, key)]
        skipped = len(chunks) - len(todo)
        t0 = time.perf_counter()
        n = 0
        done = skipped
        if cfg.progress:
            _progress(op, done, len(chunks), skipped, 0, t0)
        if cfg.jobs <= 1 or len(todo) <= 1:
            for i in todo:
                n += run_chunk(cfg, op, i)["n"]
                done += 1
                if cfg.progress:
                    _progress(op, done, len(chunks), skipped, n, t0)
        else:
            old = {v: os.environ.get(v) for v in env_set}
            os.environ.update(env_set)
            try:
                ctx = multiprocessing.get_context("spawn")
                with concurrent.futures.ProcessPoolExecutor(cfg.jobs, mp_context=ctx, initializer=_worker_init,
                                                            initargs=(cfg,)) as pool:
                    for r in pool.map(_worker, [(cfg, op, i) for i in todo]):
                        n += r["n"]
                        done += 1
                        if cfg.progress:
                            _progress(op, done, len(chunks), skipped, n, t0)
            finally:
                for v, val in old.items():
                    if val is None:
                        os.environ.pop(v, None)
                    else:
                        os.environ[v] = val
        if cfg.progress:
            sys.stderr.write("\n")
        results[op] = aggregate(cfg, op, chunks)
    flush = {spec: t.ftz for spec, t in _load_targets(cfg).items()}
    for c in (c for op in cfg.ops for c in results[op]["cells"]):
        c["flush_to_zero"] = flush[c["backend"]]
    report = {"schema": "ffnspec-sweep/1", "dtype": cfg.dtype, "device": cfg.device, "inputs": _inputs_text(cfg),
              "command": command(cfg), "bits": [list(r) for r in cfg.bits] if cfg.dtype == "float32" else None,
              "chunk": cfg.chunk if cfg.dtype == "float32" else SAMPLE_CHUNK, "exhaustive": cfg.dtype == "float32" and cfg.covered() == F32_FINITE,
              "bin_labels": BIN_LABELS, "environment": environment(cfg),
              "cells": [c for op in cfg.ops for c in results[op]["cells"]],
              "reference": [r for op in cfg.ops for r in results[op]["reference"]]}
    write_report(cfg, report)
    return report


def command(cfg: Config) -> str:
    """The ``ffnspec sweep`` command line that reproduces cfg's measurements."""
    parts = ["ffnspec sweep", f"--backend {','.join(cfg.backends)}", f"--op {','.join(cfg.ops)}",
             f"--dtype {cfg.dtype}", f"--device {cfg.device}"]
    if cfg.dtype == "float32":
        if cfg.bits != ((0, 1 << 32),):
            parts.append("--bits " + ",".join(f"{lo:#010x}:{hi:#010x}" for lo, hi in cfg.bits))
        if cfg.chunk != CHUNK:
            parts.append(f"--chunk-bits {cfg.chunk.bit_length() - 1}")
    else:
        parts.append(f"--samples {cfg.samples} --seed {cfg.seed}")
    return " ".join(parts)


def _inputs_text(cfg: Config) -> str:
    if cfg.dtype == "float32":
        if cfg.covered() == F32_FINITE:
            return f"every finite float32 ({F32_FINITE} inputs)"
        ranges = ", ".join(f"[{lo:#010x}, {hi:#010x})" for lo, hi in cfg.bits)
        return f"PARTIAL: {cfg.covered()} of the {F32_FINITE} finite float32 inputs, bit patterns {ranges}"
    return (f"{cfg.samples} random float64 bit patterns (seed {cfg.seed}) + {neighbourhoods().size} inputs within "
            f"256 ulps of the thresholds")


def aggregate(cfg: Config, op: str, chunks: Iterable[int]) -> dict:
    """Sum the chunk files of op (in chunk order: a resumed sweep aggregates identically)."""
    cells: dict = {}
    refs: dict = {}
    rss = 0.0
    for i in sorted(chunks):
        data = json.loads(chunk_path(cfg, op, i).read_text())
        rss = max(rss, data.get("max_rss_mb", 0.0))
        for kind, r in data["reference"].items():
            a = refs.setdefault(kind, {"op": op, "kind": kind, "reference": reference_name(op, kind), "inputs": 0,
                                       "exact_path": 0, "cast_wrong": 0, "cast_wrong_inputs": [], "seconds": 0.0})
            a["inputs"] += data["n"]
            a["exact_path"] += r["exact_path"]
            a["cast_wrong"] += r["cast_wrong"]
            a["cast_wrong_inputs"] += r["cast_wrong_inputs"]
            a["seconds"] += r["seconds"]
        for spec in cfg.backends:
            for kind in KINDS:
                c = data["cells"].get(spec, {}).get(kind)
                if c is None:
                    continue
                a = cells.setdefault((spec, kind), {"backend": spec, "op": op, "kind": kind, "dtype": cfg.dtype,
                                                    "device": cfg.device, "inputs": 0,
                                                    "hist": [0] * len(BIN_LABELS), "worst": [],
                                                    "tie_truncated": False, "seconds": 0.0, "backend_seconds": 0.0})
                a["inputs"] += data["n"]
                a["hist"] = [p + q for p, q in zip(a["hist"], c["hist"])]
                a["worst"] = sorted(a["worst"] + c["worst"], key=lambda w: (-w["ulp"], w["x"]))[:WORST]
                a["tie_truncated"] |= c["tie_truncated"]
                a["seconds"] += c["seconds"]
                a["backend_seconds"] += c["backend_seconds"]
    out = []
    for spec in cfg.backends:
        for kind in KINDS:
            if (spec, op, kind) in cfg.unavailable:
                out.append({"backend": spec, "op": op, "kind": kind, "dtype": cfg.dtype, "device": cfg.device,
                            "unavailable": cfg.unavailable[(spec, op, kind)]})
                continue
            a = cells[(spec, kind)]
            a["max_ulp"] = a["worst"][0]["ulp"] if a["worst"] else 0.0
            a["above"] = {f"{t:g}": sum(n for n, lo in zip(a["hist"], [0.0, 0.0] + EDGES + [math.inf]) if lo >= t)
                          for t in THRESHOLDS}
            out.append(a)
    for r in refs.values():
        r["cast_wrong_inputs"] = r["cast_wrong_inputs"][:CAST_KEEP]
        r["max_rss_mb_per_process"] = rss
    return {"cells": out, "reference": list(refs.values())}


def report_bits(rep: dict) -> list[tuple[int, int]]:
    """The float32 bit-pattern ranges a report covers (older reports: from their command)."""
    if rep.get("bits"):
        return [tuple(r) for r in rep["bits"]]
    cmd = rep.get("command", "").split()
    if "--bits" in cmd:
        return [tuple(int(v, 0) for v in r.split(":")) for r in cmd[cmd.index("--bits") + 1].split(",")]
    return [(0, 1 << 32)]


def merge(reports: list[dict]) -> dict:
    """One float32 report from sweeps of disjoint bit ranges, same dtype, device and versions:
    a cell's histogram and time are the sums, its worst inputs the WORST largest of all, its
    inputs the sum (a cell is exhaustive when that is every finite float32).  The cells of one
    (backend, op, kind) are summed wherever they occur; a cell missing from some parts covers
    fewer inputs (and is marked partial in the table)."""
    if not reports:
        raise ValueError("nothing to merge")
    first = reports[0]
    versions: dict = {}
    for rep in reports:
        if rep["dtype"] != "float32" or rep["device"] != first["device"]:
            raise ValueError("merge: float32 reports of one device only")
        for k, v in rep["environment"]["versions"].items():
            if versions.setdefault(k, v) != v:
                raise ValueError(f"merge: versions differ: {k} {versions[k]} vs {v}")
    bits = [r for rep in reports for r in report_bits(rep)]
    cover = Config([], [], "float32", first["device"], Path("."), bits=tuple(bits)).covered()
    if cover != sum(Config([], [], "float32", first["device"], Path("."), bits=tuple(report_bits(rep))).covered()
                    for rep in reports) or any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(bits) for b in bits[i + 1:]):
        raise ValueError("merge: the reports' bit ranges overlap")
    cells: dict = {}
    for rep in reports:
        for c in rep["cells"]:
            key = (c["backend"], c["op"], c["kind"])
            if key not in cells:
                cells[key] = json.loads(json.dumps(c))
                continue
            a = cells[key]
            if "unavailable" in c or "unavailable" in a:
                continue
            a["inputs"] += c["inputs"]
            a["hist"] = [p + q for p, q in zip(a["hist"], c["hist"])]
            a["worst"] = sorted(a["worst"] + c["worst"], key=lambda w: (-w["ulp"], w["x"]))[:WORST]
            a["tie_truncated"] |= c["tie_truncated"]
            a["seconds"] += c["seconds"]
            a["backend_seconds"] += c["backend_seconds"]
    for a in cells.values():
        if "unavailable" not in a:
            a["max_ulp"] = a["worst"][0]["ulp"] if a["worst"] else 0.0
            a["above"] = {f"{t:g}": sum(n for n, lo in zip(a["hist"], [0.0, 0.0] + EDGES + [math.inf]) if lo >= t)
                          for t in THRESHOLDS}
    refs: dict = {}
    for rep in reports:
        for r in rep["reference"]:
            if r["reference"] not in refs:
                refs[r["reference"]] = dict(r)
                continue
            a = refs[r["reference"]]
            for k in ("inputs", "exact_path", "cast_wrong", "seconds"):
                a[k] += r[k]
            a["cast_wrong_inputs"] = (a["cast_wrong_inputs"] + r["cast_wrong_inputs"])[:CAST_KEEP]
            a["max_rss_mb_per_process"] = max(a["max_rss_mb_per_process"], r["max_rss_mb_per_process"])
    every = all(c.get("inputs") == F32_FINITE for c in cells.values() if "unavailable" not in c)
    parts = "; ".join(f"{rep['inputs']} ({rep['environment']['date']})" for rep in reports)
    return {**first, "environment": {**first["environment"], "versions": versions},
            "inputs": f"every finite float32 ({F32_FINITE} inputs)" if every else
            f"per cell (merged from {len(reports)} sweeps: {parts})", "command": " + ".join(r["command"] for r in reports),
            "bits": [list(r) for r in sorted(bits)], "exhaustive": every,
            "merged_from": [{"inputs": r["inputs"], "command": r["command"], "date": r["environment"]["date"]}
                            for r in reports],
            "cells": list(cells.values()), "reference": list(refs.values())}


def cell_exhaustive(c: dict) -> bool:
    """Whether a float32 cell covers every finite float32 input."""
    return c["dtype"] == "float32" and c.get("inputs") == F32_FINITE


def environment(cfg: Config) -> dict:
    """Date, versions and machine of a sweep."""
    from importlib import metadata
    import ffnspec
    versions = {"ffnspec": ffnspec.__version__, "numpy": np.__version__, "python": platform.python_version()}
    for spec in cfg.backends:
        for dist in {"numpy": ["numpy"], "torch": ["torch"], "jax": ["jax", "jaxlib"], "scipy": ["scipy"]}.get(spec, [spec]):
            try:
                versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                pass
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "versions": versions, "cpu": cpu,
            "jobs": cfg.jobs, "fast_reference": "float64 kernel + boundary filter (reference/fastref.py)"
            if cfg.dtype == "float32" else "exact path (ball engine / mpmath) at every input"}


# ------------------------------------------------------------------ output ----
def _fmt_ulp(v: float) -> str:
    if math.isinf(v):
        return "inf"
    return f"{v:.3g}" if v < 1000 else f"{v:.4g}"


def cell_text(c: dict) -> str:
    """A table cell: max ULP and the worst input."""
    if "unavailable" in c:
        return f"n/a ({c['unavailable']})"
    if not c["worst"]:
        return "0"
    w = c["worst"][0]
    x = float(np.float32(w["x"])) if c["dtype"] == "float32" else w["x"]
    return f"{_fmt_ulp(c['max_ulp'])} ({x:.9g})" if c["dtype"] == "float32" else f"{_fmt_ulp(c['max_ulp'])} ({x!r})"


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"# ffnspec sweep: {report['dtype']} on {report['device']}", "",
             f"Inputs: {report['inputs']}. Date {env['date']}; {', '.join(f'{k} {v}' for k, v in env['versions'].items())}; "
             f"CPU {env['cpu']}. Reference: {env['fast_reference']}.", "",
             "err = |y - f(x)| / u(f(x)), the ulp of the exact value (docs/measure.md).", ""]
    for c in report["cells"]:
        lines.append(f"## {c['backend']}: {c['op']} {c['kind']}")
        lines.append("")
        if "unavailable" in c:
            lines += [f"n/a: {c['unavailable']}", ""]
            continue
        lines.append(f"max ULP {_fmt_ulp(c['max_ulp'])}" + (" (near-ties of the maximum were re-measured in part)"
                                                          if c["tie_truncated"] else "") +
                     f"; {c['inputs']} inputs; {c['seconds']:.1f} s (backend {c['backend_seconds']:.1f} s)")
        lines.append("")
        lines.append("| x | backend | exact value (hi + lo) | correctly rounded | ULP |")
        lines.append("|---|---|---|---|---|")
        for w in c["worst"]:
            lines.append(f"| {w['x']!r} | {w['y']!r} | {w['hi']!r} + {w['lo']!r} | {w['cr']!r} | {_fmt_ulp(w['ulp'])} |")
        lines.append("")
        lines.append("| " + " | ".join(report["bin_labels"]) + " |")
        lines.append("|" + "---|" * len(report["bin_labels"]))
        lines.append("| " + " | ".join(str(n) for n in c["hist"]) + " |")
        lines.append("")
        lines.append("above: " + ", ".join(f"> {t} ULP: {n}" for t, n in c["above"].items()))
        lines.append("")
    lines.append("## Reference")
    lines.append("")
    lines.append("| reference | inputs | exact path | float64 kernel cast to float32 wrong | seconds |")
    lines.append("|---|---|---|---|---|")
    for r in report["reference"]:
        lines.append(f"| {r['reference']} | {r['inputs']} | {r['exact_path']} | {r['cast_wrong']} | {r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def write_report(cfg: Config, report: dict) -> None:
    cfg.report.mkdir(parents=True, exist_ok=True)
    stem = f"sweep-{cfg.dtype}-{cfg.device}"
    (cfg.report / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (cfg.report / f"{stem}.md").write_text(markdown(report))
    from ffnspec.conformance.machinery import plots
    if plots.available():
        for op in cfg.ops:
            cells = [c for c in report["cells"] if c["op"] == op and "hist" in c]
            if cells:
                (cfg.report / f"{stem}-{op}.svg").write_bytes(plots.sweep_histogram(
                    f"{op} ({cfg.dtype}, {cfg.device})", report["bin_labels"],
                    [(f"{c['backend']} {c['kind']}", c["hist"]) for c in cells]))


# ------------------------------------------------------------------ accuracy table ----
QUANTITY_NAMES = {"value": "{op}", "grad": "{op}'"}


def table(results: list[dict]) -> str:
    """docs/accuracy.md from committed sweep results: rows op/derivative, columns backend x dtype
    x device, cells max ULP (worst input).  A column from a partial sweep is marked and its
    coverage said: its maxima are lower bounds of the exhaustive ones."""
    cols: list[tuple[str, str, str]] = []
    cells: dict = {}
    for rep in results:
        for c in rep["cells"]:
            col = (c["backend"], c["dtype"], c["device"])
            if col not in cols:
                cols.append(col)
            cells[(c["op"], c["kind"], col)] = c
    part = {key: "unavailable" not in c and not cell_exhaustive(c) for key, c in cells.items()}
    partial = {col for col in cols if all(part[k] for k in cells if k[2] == col and "unavailable" not in cells[k])}
    mixed = {col for col in cols if col not in partial and any(part[k] for k in cells if k[2] == col)}
    lines = ["# Accuracy of activation functions", "",
             "Generated by `ffnspec sweep --table` from the committed sweep results in docs/sweeps/; do not edit.",
             "", "Each cell: the largest error in ULPs of the exact value, err = |y - f(x)| / u(f(x)) "
             "(the conformance measure; see measure.md, \"Exhaustive float32 sweeps\"), over the inputs swept, "
             "and in parentheses the input where it occurs (the smallest such input when several tie). Derivatives "
             "come from the backend's own reverse mode (vjp), as in the conformance suite. n/a: the adapter does "
             "not offer the op; not measured: no committed sweep has the cell. SiLU' has a zero at x = -1.27846..., "
             "where the ULP error of any implementation grows without bound (the conformance clause uses a mixed "
             "criterion there); a large SiLU' maximum at that input says where the cancellation is, not a defect.", ""]
    for rep in results:
        env = rep["environment"]
        lines.append(f"- {rep['dtype']}, {rep['device']}, {', '.join(sorted({c['backend'] for c in rep['cells']}))}: "
                     f"{rep['inputs']}; swept {env['date']} on {env['cpu']}; "
                     + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
                     + (f"; rerun with `{rep['command']}`" if rep.get("command") else ""))
    ftz = sorted({c["backend"] for rep in results for c in rep["cells"] if c.get("flush_to_zero")})
    if ftz:
        lines += ["", f"Declared flush-to-zero ({', '.join(ftz)}): a 0 where the exact value is subnormal is "
                  "not counted as an error, as in the conformance records."]
    if partial or mixed:
        lines += ["", "Columns marked (partial), and cells marked (partial) in the other columns, come from a "
                  "partial sweep: their maxima are over the inputs listed above only, lower bounds of the "
                  "exhaustive maxima. Every other float32 cell is over every finite float32 input."]
    lines.append("")
    lines.append("| function | " + " | ".join(f"{b} {d} {v}" + (" (partial)" if (b, d, v) in partial else "")
                                           for b, d, v in cols) + " |")
    lines.append("|---|" + "---|" * len(cols))
    for op in OPS:
        for kind in KINDS:
            row = [QUANTITY_NAMES[kind].format(op=op)]
            for col in cols:
                c = cells.get((op, kind, col))
                row.append("not measured" if c is None else cell_text(c)
                           + (" (partial)" if col in mixed and part[(op, kind, col)] else ""))
            lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    return "\n".join(lines)
