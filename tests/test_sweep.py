"""``ffnspec sweep`` and its fast float32 reference (reference/fastref.py): the fast reference
equals the exact one (also where a float64-then-cast reference is wrong), its error bins equal
the exact measure's, its closed-form regions and shortened measure give the general path's
values and cells bit for bit, the sweep finds deliberately broken backends, resumes, merges, and
validates its options before work; docs/accuracy.md matches the committed results."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ffnspec import cli
from ffnspec.conformance.machinery import sweep
from ffnspec.reference import fastref, function, precision
from ffnspec.reference.floatformat import FORMATS, ulp
from tests import mutants_sweep
from tests.test_cli import ffnspec, usage

F32 = FORMATS["float32"]
ROOT = Path(__file__).resolve().parents[1]
NAMES = list(fastref.KERNELS)


def _f32(bits) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # NaN bit patterns: dropped by the callers
        return np.asarray(bits, dtype=np.uint64).astype(np.uint32).view(np.float32).astype(np.float64)


# inputs where the kernels switch branch, saturate, underflow, or meet the subnormal range
REGIONS = [0x00000000, 0x00000001, 0x007FFF00, 0x00800000, 0x2B800000, 0x39800000, 0x3A000000, 0x3EFFFF00,
           0x3F000000, 0x3F7FFF80, 0x3F800000, 0x3FA3A000, 0x40800000, 0x41800000, 0x41A00000, 0x420A0000,
           0x42AE0000, 0x42B00000, 0x42C80000, 0x42D00000, 0x44000000, 0x7F7FFF80]


def _sample(n_random: int = 3000, per_region: int = 60, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bits = np.concatenate([rng.integers(0, 1 << 32, n_random, dtype=np.uint64)]
                          + [np.arange(r, r + per_region, dtype=np.uint64) for r in REGIONS]
                          + [np.arange(r, r + per_region, dtype=np.uint64) | (1 << 31) for r in REGIONS])
    x = _f32(bits)
    return x[np.isfinite(x)]


@pytest.fixture(scope="module")
def sample() -> np.ndarray:
    return _sample()


@pytest.mark.parametrize("name", NAMES)
def test_fast_reference_equals_exact(name, sample):
    """cr of the fast reference is the exact path's RN32(t), signed zeros included."""
    fast, cast = fastref.reference(name, sample)
    _, _, cr = fastref.exact_values(name, sample)
    same = (fast.cr == cr) & (np.signbit(fast.cr) == np.signbit(cr))
    assert same.all(), (name, sample[~same][:5])
    # where casting the float64 kernel is wrong, the filter did not accept the kernel's value
    wrong = cast != cr
    assert not (wrong & ~fast.exact & ~fast.pinned & (np.abs(fast.hi) >= fastref.TINY)).any()
    # the exact path stays the exception (on random inputs: the regions above sit at powers of
    # two, where e.g. sigma'(x) = 1/4 - x^2/16 + ... lies near float32 values for runs of x)
    rand = _sample(n_random=20000, per_region=0, seed=11)
    assert fastref.reference(name, rand)[0].exact.mean() < 2.0 ** -10


def test_cast_wrong_inputs_are_caught():
    """Inputs where RN32(float64 kernel) is not RN32(t) -- found by the committed sweeps (and the
    subnormal SiLU inputs, whose x/2 is a midpoint) -- are all sent past the cast."""
    found = {}
    for path in sorted((ROOT / "docs" / "sweeps").glob("*.json")):
        for r in json.loads(path.read_text())["reference"]:
            found.setdefault(r["reference"], []).extend(r["cast_wrong_inputs"][:200])
    for name, xs in found.items():
        if xs:
            x = np.array(xs)
            fast, cast = fastref.reference(name, x)
            _, _, cr = fastref.exact_values(name, x)
            assert np.array_equal(fast.cr, cr) and (cast != cr).all(), name
    # the odd subnormals: fl64(x sigma(x)) is the midpoint x/2, and its cast rounds to even,
    # the wrong way for every other input
    x = _f32(np.arange(1, 200, 2))
    fast, cast = fastref.reference("act.silu", x)
    _, _, cr = fastref.exact_values("act.silu", x)
    assert np.array_equal(fast.cr, cr) and (cast != cr).sum() >= x.size // 3


def test_sigmoid_double_rounding_near_one_half_is_caught():
    """sigma(x) = 1/2 + x/4 - x^3/48 + ...: at x = (2k+1) 2^-23 (2^-24 for x < 0) the term x/4
    puts t just inside a float32 midpoint, within x^3/48 < 2^-54, so the float64 value
    1/(1+e^-x) often *is* the midpoint and its cast rounds to even, the wrong way (the double
    rounding behind the earlier measurement's 81 wrong sigmoid inputs).  The filter sends them
    all to the exact path."""
    k = np.arange(256)
    x = np.concatenate([(2 * k + 1) * 2.0 ** -23, -(2 * k + 1) * 2.0 ** -24])
    fast, cast = fastref.reference("act.sigmoid", x)
    _, _, cr = fastref.exact_values("act.sigmoid", x)
    wrong = cast != cr
    assert np.array_equal(fast.cr, cr)
    assert wrong.sum() >= 20 and fast.exact[wrong].all()


def test_ulp32_is_floatformat_ulp():
    rng = np.random.default_rng(2)
    hi = np.concatenate([_f32(rng.integers(0, 1 << 32, 5000, dtype=np.uint64)),
                         np.ldexp(1.0, np.arange(-160, 128)), -np.ldexp(1.0, np.arange(-160, 128)), [0.0, 5e-324]])
    hi = hi[np.isfinite(hi)]
    for lo in (np.zeros_like(hi), hi * 2.0 ** -60, -hi * 2.0 ** -60, np.full_like(hi, -5e-324)):
        assert np.array_equal(fastref.ulp32(hi, lo), ulp(hi, lo, F32))


def test_conversion_and_libm_assumption():
    """float64 -> float32 conversion rounds correctly here, and NumPy's exp, log1p and tanh stay
    far inside the assumed EPS_LIBM (the proof's one assumption, docs/measure.md)."""
    assert fastref.conversion_ok()
    rng = np.random.default_rng(3)
    args = {"exp": np.concatenate([rng.uniform(-708, 0, 300), -_f32(rng.integers(0, 0x42000000, 300, dtype=np.uint64))]),
            "log1p": np.exp(-np.abs(rng.uniform(-700, 0, 300))),
            "tanh": np.concatenate([rng.uniform(-20, 20, 300), _f32(rng.integers(0, 0x3F800000, 300, dtype=np.uint64))])}
    for fn, a in args.items():
        assert fastref.assumption_error(fn, a) <= fastref.EPS_LIBM / 8, fn


def test_tanh_fifth_derivative_bound():
    """|tanh^(5)| <= 16 (the Lagrange remainder 2|x|^5/15 of the pinned tanh kernel)."""
    ctx = precision.context(80)
    for v in np.linspace(-4, 4, 41):
        assert abs(ctx.diff(ctx.tanh, ctx.mpf(float(v)), 5)) <= 16 + 1e-12


def _true_bins(name: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bins of err = |y - t| / u(t) with t at 3000 bits (no 106-bit truncation)."""
    ctx = precision.context(3000)
    f = function(name)
    out = []
    for xi, yi in zip(x.tolist(), y.tolist()):
        t = f(ctx, ctx.mpf(xi))
        if not math.isfinite(yi):
            out.append(len(sweep.BIN_LABELS) - 1)
            continue
        if t == 0:
            e = F32.emin
        else:
            sign, man, exp, bc = t._mpf_
            e = max(exp + bc - 1, F32.emin)
        err = abs(ctx.mpf(yi) - t) / ctx.ldexp(1, e - F32.p + 1)
        if err == 0:
            out.append(0)
            continue
        j = next((k for k, edge in enumerate(sweep.EDGES) if err <= edge), None)
        out.append(len(sweep.EDGES) + 1 if j is None else j + 1)
    return np.array(out)


@pytest.mark.parametrize("name", NAMES)
def test_fast_bins_are_exact(name):
    """Error bins from the fast reference equal the bins of the exact err, for the correctly
    rounded result and its two neighbours, in saturated, subnormal and branch-switch regions."""
    x = _sample(n_random=40, per_region=6, seed=7)
    x = x[np.abs(x) <= 700]  # t to 3000 bits is then beyond every float32 decision
    ref = sweep.reference(sweep.Config([], [], "float32", "cpu", Path(".")), name, x)
    fast = fastref.Fast(*ref[:5], ref[6])
    sh = sweep.shared(sweep.Config([], [], "float32", "cpu", Path(".")), x, ref)
    c32 = fast.cr.astype(np.float32)
    for y in (fast.cr, np.nextafter(c32, np.float32(np.inf)).astype(np.float64),
              np.nextafter(c32, np.float32(-np.inf)).astype(np.float64)):
        b, _ = sweep.bins(y, sh)
        want = _true_bins(name, x, y)
        # exact-path elements are binned as the conformance measure does (106-bit t)
        keep = ~fast.exact
        assert np.array_equal(b[keep], want[keep]), (name, x[keep][b[keep] != want[keep]][:4])


# ------------------------------------------------------------------ closed-form regions ----
def _region_inputs(name: str, k: int, n_random: int, seed: int) -> np.ndarray:
    """k consecutive float32 on each side of every closed-form region's ends (and of +-0), and
    n_random random bit patterns."""
    rng = np.random.default_rng(seed)
    ends = [v for r in fastref.REGIONS[name] for v in (r.lo, r.hi)] + [0.0, -0.0]
    bits = [rng.integers(0, 1 << 32, n_random, dtype=np.uint64)]
    for v in ends:
        b = int(np.float32(v).view(np.uint32))
        bits.append(np.arange(b - k, b + k + 1, dtype=np.int64).astype(np.uint64) % (1 << 32))
    x = _f32(np.concatenate(bits))
    return x[np.isfinite(x)]


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("name", NAMES)
def test_closed_regions_equal_the_general_path(name):
    """The closed-form regions give bit for bit the general path's (hi, lo, cr, bound, exact,
    pinned) and the same cast (as numbers), at 2^14 inputs on each side of every region end and
    2^18 random ones; and no region input fails its criterion there (a threshold is never wrong)."""
    x = _region_inputs(name, 1 << 14, 1 << 18, seed=11)
    fast, cast = fastref.reference(name, x)
    full, fcast = fastref.reference(name, x, closed=False)
    for f in ("hi", "lo", "cr", "bound", "exact", "pinned"):
        assert _same(getattr(fast, f), getattr(full, f)), (name, f)
    assert np.array_equal(cast, fcast)
    for r in fastref.REGIONS[name]:
        at = fastref._select(x, r.lo, r.hi)
        todo = np.ones(x.size, bool)
        out = {k: np.empty(x.size) for k in ("hi", "lo", "cr", "bound", "cast")} | {"pinned": np.zeros(x.size, bool)}
        fastref._fill(r, x[at], out, at, todo)
        assert not todo[at].any(), (name, r.lo, r.hi)


def test_closed_regions_cover_most_patterns():
    """The share of finite float32 inputs each reference answers in closed form (the speed of a
    sweep): 86-93 %, softplus and log-sigmoid 48 % (near 0 their value is ln 2, no float32)."""
    finite = sweep.F32_FINITE
    for name, regions in fastref.REGIONS.items():
        n = 0
        for r in regions:
            lo, hi = sorted(int(np.float32(v).view(np.uint32)) for v in (r.lo, r.hi))
            n += hi - lo + 1
        assert n / finite > (0.48 if name in ("act.softplus", "act.log_sigmoid") else 0.85), name


@pytest.mark.parametrize("op", ["sigmoid", "tanh", "softplus", "log_sigmoid", "silu"])
def test_sweep_cells_equal_the_general_path(op):
    """A sweep chunk's cells (histogram, worst inputs, near-tie flag) are those of the general
    path (no closed forms, every result binned afresh) for every backend result the tests can
    make: the correctly rounded one, its neighbours, a float16 rounding and a 0, at every region
    end and at random inputs."""
    cfg = sweep.Config([], [op], "float32", "cpu", Path("."))
    for kind in sweep.KINDS:
        name = sweep.reference_name(op, kind)
        x = _region_inputs(name, 1 << 12, 1 << 16, seed=13)
        new = sweep.shared(cfg, x, sweep.reference(cfg, name, x))
        ref_old = fastref.reference(name, x, closed=False)
        old = sweep.shared(cfg, x, (ref_old[0].hi, ref_old[0].lo, ref_old[0].cr, ref_old[0].bound,
                                    ref_old[0].exact, ref_old[1], ref_old[0].pinned))
        c32 = new.cr.astype(np.float32)
        with np.errstate(over="ignore"):
            ys = [new.cr, np.nextafter(c32, np.float32(np.inf)).astype(np.float64),
                  np.nextafter(c32, np.float32(-np.inf)).astype(np.float64),
                  new.cr.astype(np.float16).astype(np.float64), np.where(np.arange(x.size) % 3 == 0, 0.0, new.cr)]
        for y in ys:
            for ftz in (False, True):
                got = sweep.measure_cell(cfg, name, y, new, ftz)
                want = sweep.measure_cell(cfg, name, y, old, ftz)
                b, _ = sweep.bins(y, old, ((np.abs(old.hi) < F32.min_normal) & (y == 0)) if ftz else None)
                assert got == want, (name, ftz)
                assert got["hist"] == np.bincount(b, minlength=len(sweep.BIN_LABELS)).tolist(), (name, ftz)


# ------------------------------------------------------------------ the sweep itself ----
def _config(tmp_path, backends, ops=("sigmoid",), bits=((0x3F1FF000, 0x3F201400),), chunk=2048) -> sweep.Config:
    return sweep.Config(backends=list(backends), ops=list(ops), dtype="float32", device="cpu", report=tmp_path,
                        bits=bits, chunk=chunk, progress=False)


def _cells(report) -> dict:
    return {(c["backend"], c["op"], c["kind"]): c for c in report["cells"]}


def test_sweep_finds_broken_backends(tmp_path):
    specs = ["numpy", "tests.mutants_sweep:SigmoidViaFloat16", "tests.mutants_sweep:BumpedGrad"]
    report = sweep.run(_config(tmp_path, specs))
    c = _cells(report)
    good_v, good_g = c[("numpy", "sigmoid", "value")], c[("numpy", "sigmoid", "grad")]
    half = c[(specs[1], "sigmoid", "value")]
    bump = c[(specs[2], "sigmoid", "grad")]
    assert good_v["max_ulp"] <= 0.5 and good_v["above"]["0.5"] == 0
    assert half["max_ulp"] > 1000 and half["above"]["256"] > 0
    # the derivative bumped on [BUMP_LO, BUMP_HI): exactly those inputs moved by one ulp
    n_bumped = mutants_sweep.BUMP_HI - mutants_sweep.BUMP_LO
    assert bump["max_ulp"] > good_g["max_ulp"] and 1 < bump["max_ulp"] <= good_g["max_ulp"] + 1
    assert bump["above"]["1"] >= n_bumped // 2 and good_g["above"]["2"] == 0
    assert mutants_sweep.BUMP_LO <= int(np.float32(bump["worst"][0]["x"]).view(np.uint32)) < mutants_sweep.BUMP_HI
    assert c[(specs[2], "sigmoid", "value")]["hist"] == good_v["hist"]
    assert sum(good_v["hist"]) == good_v["inputs"] == 0x201400 - 0x1FF000
    worst = half["worst"][0]  # the worst input's exact value is the exact path's
    _, _, cr = fastref.exact_values("act.sigmoid", np.array([worst["x"]]))
    assert worst["cr"] == cr[0]
    md = (tmp_path / "sweep-float32-cpu.md").read_text()
    assert f"| {worst['x']!r} | {worst['y']!r} |" in md and "PARTIAL" in md
    import importlib.util
    if importlib.util.find_spec("matplotlib") is not None:  # the plots need the report extra
        assert (tmp_path / "sweep-float32-cpu-sigmoid.svg").read_bytes().startswith(b"<?xml")


def _stable(report) -> str:
    """The report without timings (a resumed sweep must give the same measurements)."""
    drop = {"seconds", "backend_seconds", "date", "environment", "max_rss_mb_per_process"}

    def clean(v):
        if isinstance(v, dict):
            return {k: clean(w) for k, w in v.items() if k not in drop}
        if isinstance(v, list):
            return [clean(w) for w in v]
        return v
    return json.dumps(clean(report), sort_keys=True)


def test_sweep_resumes(tmp_path):
    cfg = _config(tmp_path, ["numpy"], ops=("tanh",))
    first = sweep.run(cfg)
    files = sorted(sweep.state_dir(cfg, "tanh").glob("chunk-*.json"))
    assert len(files) == 5
    files[1].unlink()  # interrupted before this chunk was written
    stamps = {p: p.stat().st_mtime_ns for p in files if p.exists()}
    second = sweep.run(cfg)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # finished chunks were skipped
    assert files[1].exists()
    assert _stable(first) == _stable(second)


def test_sweep_jobs_give_the_same_results(tmp_path):
    one = sweep.run(_config(tmp_path / "a", ["numpy"], ops=("silu",)))
    cfg = _config(tmp_path / "b", ["numpy"], ops=("silu",))
    cfg.jobs = 2
    assert _stable(sweep.run(cfg)) == _stable(one)


def test_sweep_merge_equals_one_sweep(tmp_path):
    """Sweeps of disjoint bit ranges merge into the sweep of their union (histograms, worst
    inputs, counts); overlapping ranges and other versions are refused; a table of a merged
    report marks each cell that is not exhaustive."""
    a, b = (0x3F1FF000, 0x3F200000), (0xBF1FF000, 0xBF201000)
    whole = sweep.run(_config(tmp_path / "w", ["numpy"], bits=(a, b)))
    parts = [sweep.run(_config(tmp_path / n, ["numpy"], bits=(r,))) for n, r in (("a", a), ("b", b))]
    merged = sweep.merge(parts)
    key = lambda c: (c["backend"], c["op"], c["kind"])
    for c, m in zip(sorted(whole["cells"], key=key), sorted(merged["cells"], key=key)):
        assert {k: c[k] for k in ("inputs", "hist", "worst", "max_ulp", "above")} == \
            {k: m[k] for k in ("inputs", "hist", "worst", "max_ulp", "above")}
    assert sweep.report_bits(merged) == [a, b]
    with pytest.raises(ValueError, match="overlap"):
        sweep.merge([parts[0], parts[0]])
    other = json.loads(json.dumps(parts[1]))
    other["environment"]["versions"]["numpy"] = "0"
    with pytest.raises(ValueError, match="versions"):
        sweep.merge([parts[0], other])
    full = json.loads(json.dumps(merged))
    for c in full["cells"]:
        if c["kind"] == "value":
            c["inputs"] = sweep.F32_FINITE  # as if the value were swept exhaustively, the derivative not
    rows = {line.split(" | ")[0]: line for line in sweep.table([full]).splitlines() if line.startswith("| sigmoid")}
    assert "(partial)" not in rows["| sigmoid"] and rows["| sigmoid'"].endswith("(partial) |")


def test_sweep_float64_sample(tmp_path):
    cfg = sweep.Config(backends=["numpy"], ops=["sigmoid"], dtype="float64", device="cpu", report=tmp_path,
                       samples=300, progress=False)
    c = _cells(sweep.run(cfg))[("numpy", "sigmoid", "value")]
    assert c["inputs"] == 300 + sweep.neighbourhoods().size and c["max_ulp"] < 4


def test_sweep_cli_and_unavailable_cells(tmp_path):
    p = ffnspec("sweep", "--backend", "scipy", "--op", "silu,sigmoid", "--dtype", "float32", "--bits",
                "0x3f800000:0x3f800400", "--report", str(tmp_path), "--quiet")
    assert p.returncode == cli.CONFORMS, p.stderr
    assert "n/a (the scipy adapter has no silu in float32)" in p.stdout
    data = json.loads((tmp_path / "sweep-float32-cpu.json").read_text())
    assert {c["op"] for c in data["cells"] if "max_ulp" in c} == {"sigmoid"}


@pytest.mark.parametrize("args, says", [
    (["--backend", "nosuch", "--op", "sigmoid", "--dtype", "float32"], "unknown backend 'nosuch'"),
    (["--backend", "numpy", "--op", "relu", "--dtype", "float32"], "unknown op 'relu'"),
    (["--backend", "numpy", "--op", "sigmoid", "--dtype", "float16"], "'float16' is not sweepable"),
    (["--backend", "numpy", "--op", "sigmoid"], "needs --backend, --op and --dtype"),
    (["--backend", "numpy", "--op", "sigmoid", "--dtype", "float32", "--bits", "9:3"], "--bits"),
    (["--backend", "numpy", "--op", "sigmoid", "--dtype", "float32", "--device", "tpu"], "no device 'tpu'"),
])
def test_sweep_options_are_validated(tmp_path, args, says):
    line = usage("sweep", *args, "--report", str(tmp_path / "r"))
    assert says in line
    assert not (tmp_path / "r").exists()


def test_accuracy_table_matches_committed_results():
    paths = sorted((ROOT / "docs" / "sweeps").glob("*.json"))
    assert paths, "no committed sweep results in docs/sweeps/"
    results = [json.loads(p.read_text()) for p in paths]
    assert (ROOT / "docs" / "accuracy.md").read_text() == sweep.table(results), \
        "docs/accuracy.md is stale: run `ffnspec sweep --table`"
    text = (ROOT / "docs" / "accuracy.md").read_text()
    for op in sweep.OPS:
        assert f"| {op} |" in text and f"| {op}' |" in text
    for backend in ("numpy", "torch", "jax", "scipy"):
        assert any(c["backend"] == backend for r in results for c in r["cells"])
