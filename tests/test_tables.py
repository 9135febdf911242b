"""reference/tables.py and reference/store.py: one table per (function, format[, params]) served by
bit pattern, the same values by every path, a cache that does not grow with hypothesis seeds,
bounded stores, atomic files, parallel prebuild, and two processes sharing one cache.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from ffnspec.reference import precision, store, tables
from ffnspec.reference.floatformat import FORMATS, all_values, round_array

F16, BF16, F32, F64 = (FORMATS[n] for n in ("float16", "bfloat16", "float32", "float64"))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private, unseeded cache directory, restored afterwards (tables keeps module-level
    state); the shipped values would put files in it that these tests do not expect."""
    old = tables.cache_dir()
    tables.set_cache_dir(tmp_path, seeded=False)
    yield tmp_path
    tables.set_cache_dir(old)


def _npz(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.npz"))


def _bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).view(np.int64)


def test_table_serves_every_request_by_bit_pattern(cache):
    z = all_values(F16)
    full = tables.exact("act.silu", (z,), F16)
    assert [p.name.split("-")[1] for p in _npz(cache)] == ["float16"]  # one table, nothing else
    rng = np.random.default_rng(0)
    for n in (1, 7, 17, 600):  # any subset, in any order, any size: the same values, no new files
        i = rng.integers(0, z.size, n)
        e = tables.exact("act.silu", (z[i],), F16)
        assert (_bits(e.cr) == _bits(full.cr[i])).all() and (_bits(e.hi) == _bits(full.hi[i])).all()
    assert len(_npz(cache)) == 1


def test_table_and_point_paths_agree(cache):
    # the same inputs through the 16-bit table and through the point store (no table yet)
    z = round_array(np.random.default_rng(1).standard_normal(300) * 8, BF16)
    by_point = tables.exact("act.softplus", (z,), BF16)
    assert not any("tables" in p.parts for p in _npz(cache))
    tables.table("act.softplus", "bfloat16")
    by_table = tables.exact("act.softplus", (z,), BF16)
    for a, b in ((by_point.hi, by_table.hi), (by_point.lo, by_table.lo), (by_point.cr, by_table.cr)):
        assert (_bits(a) == _bits(b)).all()
    f = tables.function("act.softplus")
    for k in range(0, 300, 37):
        assert precision.evaluate(f, (float(z[k]),), BF16) == (by_table.hi[k], by_table.lo[k], by_table.cr[k])


def test_fixed_parameters_get_their_own_tables(cache):
    z = all_values(F16)
    a = tables.exact("hid.rectifier", (z, np.full_like(z, 0.25)), F16)
    b = tables.exact("hid.rectifier", (z, np.full_like(z, 0.5)), F16)
    assert len([p for p in _npz(cache) if "tables" in p.parts]) == 2
    neg = z < 0
    assert (a.cr[neg] == round_array(0.25 * z[neg], F16)).all() and (b.cr[neg] == round_array(0.5 * z[neg], F16)).all()


def test_cache_does_not_grow_with_seeds(cache):
    # random draws (every hypothesis draw of a random profile runs inside exploring(), as the
    # suite's explorations do) stay in the process: ten "seeds" write nothing
    tables.exact("act.tanh", (all_values(F16),), F16)
    tables.flush()
    before = {p: p.stat().st_size for p in _npz(cache)}
    for seed in range(10):
        rng = np.random.default_rng(seed)
        with tables.exploring():
            tables.exact("act.tanh", (round_array(rng.standard_normal(17) * 5, F32),), F32)
            tables.exact("act.tanh", (round_array(rng.standard_normal(17) * 5, F16),), F16)
            tables.exact_items("out.softmax", (round_array(rng.standard_normal((3, 9)), F32),), F32)
        tables.flush()
    assert {p: p.stat().st_size for p in _npz(cache)} == before


def test_store_is_bounded_least_recently_used_out(cache, monkeypatch):
    monkeypatch.setattr(store, "MAX_ENTRIES", 1000)
    first = round_array(np.linspace(-3, 3, 900), F32)
    tables.exact("act.sigmoid", (first,), F32)
    tables.flush()
    second = round_array(np.linspace(5, 9, 900), F32)
    later = store._now() + 100  # the second set is the more recent use
    monkeypatch.setattr(store, "_now", lambda: later)
    tables.exact("act.sigmoid", (second,), F32)
    tables.flush()
    (path,) = [p for p in _npz(cache) if "points" in p.parts]
    data = store.load(path, tables._store("act.sigmoid", "points").meta)
    assert len(data["stamp"]) == 1000
    tables.set_cache_dir(cache, seeded=False)  # a new process, as far as tables knows
    s = tables._store("act.sigmoid", "points")
    keys = tables._row_keys(tables._prefix("float32", [second]), [second])
    assert (s.find(keys, persist=False) >= 0).all()  # all of the recent set was kept


def test_prune_keeps_the_directory_under_its_bound(tmp_path):
    for i in range(6):
        store.save(tmp_path / "tables" / f"t{i}.npz", {"meta": np.array("x"), "v": np.random.default_rng(i).random(20000)})
        os.utime(tmp_path / "tables" / f"t{i}.npz", (1000 + i, 1000 + i))
    size = sum(p.stat().st_size for p in _npz(tmp_path))
    store.prune(tmp_path, max_bytes=size // 2)
    left = _npz(tmp_path)
    assert sum(p.stat().st_size for p in left) <= size // 2
    assert [p.name for p in left] == [f"t{i}.npz" for i in range(6)][-len(left):]  # the oldest went first


def test_a_corrupt_file_is_recomputed(cache):
    z = all_values(F16)
    want = tables.exact("act.tanh", (z,), F16)
    (path,) = _npz(cache)
    path.write_bytes(path.read_bytes()[:1000])  # truncated, as by a crash of a non-atomic writer
    tables.set_cache_dir(cache, seeded=False)
    got = tables.exact("act.tanh", (z,), F16)
    assert (_bits(got.cr) == _bits(want.cr)).all()
    assert store.load(path, tables._table_meta(("act.tanh", "float16", ()))) is not None  # rewritten whole


def test_prebuild_in_parallel_equals_serial(cache, tmp_path_factory):
    z32 = round_array(np.linspace(-40, 40, 1500), F32)
    reqs = [tables.Request("act.sigmoid_grad", "bfloat16"), tables.Request("act.tanh", "float32", (z32,)),
            tables.Request("act.tanh_grad_scale", "float32", (z32,), scale=True),
            tables.Request("out.logsumexp", "float32", (round_array(np.random.default_rng(2).standard_normal((600, 3)), F32),),
                           items=True)]
    seen = []
    s = tables.prebuild(reqs, jobs=2, progress=seen.append)
    assert s.units == 4 and s.jobs == 2 and seen and seen[-1].done == seen[-1].total == s.values
    assert all(0 <= p.unit_done <= p.unit_total for p in seen)
    assert tables.prebuild(reqs, jobs=2).units == 0  # everything cached now: no workers, no work
    parallel = [tables.exact("act.sigmoid_grad", (all_values(BF16),), BF16), tables.exact("act.tanh", (z32,), F32),
                tables.approximate("act.tanh_grad_scale", (z32,))]
    tables.set_cache_dir(None)
    serial = [tables.exact("act.sigmoid_grad", (all_values(BF16),), BF16), tables.exact("act.tanh", (z32,), F32),
              tables.approximate("act.tanh_grad_scale", (z32,))]
    for a, b in zip(parallel[:2], serial[:2]):
        assert (_bits(a.cr) == _bits(b.cr)).all() and (_bits(a.lo) == _bits(b.lo)).all()
    assert (_bits(parallel[2]) == _bits(serial[2])).all()


def test_a_checks_large_request_uses_the_runs_workers(monkeypatch):
    # A check's own requests (structured problems, derived rows) are no prebuild's: spread over the
    # run's workers they give the very triples the run's process computes.  [issue 15, cold run]
    args = [(float(z), 0.5) for z in round_array(np.linspace(-30, 30, 9000), F32)]  # >= PARALLEL_MIN numbers
    monkeypatch.setattr(tables, "_jobs", [1])
    serial = tables._compute("out.logaddexp", "float32", args)
    monkeypatch.setattr(tables, "_jobs", [2])
    calls = []
    real = tables._executor
    monkeypatch.setattr(tables, "_executor", lambda jobs: calls.append(jobs) or real(jobs))
    parallel = tables._compute("out.logaddexp", "float32", args)
    assert calls == [2] and parallel == serial
    small = tables._compute("out.logaddexp", "float32", args[:3])  # too small to send
    assert calls == [2] and small == serial[:3]
    tables.release_workers()


def _concurrent_run(args) -> bytes:
    """One 'run' in a fresh process: prebuild and look up values in the shared cache."""
    cache_dir, seed = args
    tables.set_cache_dir(cache_dir, seeded=False)
    z16 = all_values(F16)
    z32 = round_array(np.random.default_rng(seed).standard_normal(2000) * 10, F32)
    shared = round_array(np.linspace(-20, 20, 1000), F32)
    tables.prebuild([tables.Request("act.silu", "float16"), tables.Request("act.silu", "float32", (shared,))], jobs=1)
    out = [tables.exact("act.silu", (z16,), F16), tables.exact("act.silu", (z32,), F32),
           tables.exact("act.silu", (shared,), F32), tables.exact_items("out.softmax", (z32.reshape(-1, 4),), F32)]
    tables.flush()
    return b"".join(np.concatenate([e.hi.ravel(), e.lo.ravel(), e.cr.ravel()]).tobytes() for e in out)


def test_two_processes_sharing_a_cache(tmp_path):
    # Two runs at once on one cache directory: both get exactly the values a private,
    # in-memory run gets, and afterwards every file loads and serves both runs' points.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        got = pool.map(_concurrent_run, [(str(tmp_path), 1), (str(tmp_path), 2)])
    with ctx.Pool(1) as pool:
        want = pool.map(_concurrent_run, [(None, 1), (None, 2)])
    assert got == want
    files = _npz(tmp_path)
    assert files and not list(tmp_path.rglob("*.tmp"))
    old = tables.cache_dir()
    try:
        tables.set_cache_dir(tmp_path, seeded=False)
        for p in files:
            assert np.load(p)["meta"].size == 1
        for seed in (1, 2):  # both runs' bulk points are on disk: a third run computes nothing
            z32 = round_array(np.random.default_rng(seed).standard_normal(2000) * 10, F32)
            keys = tables._row_keys(tables._prefix("float32", [z32]), [z32])
            assert (tables._store("act.silu", "points").find(keys, persist=False) >= 0).all()
    finally:
        tables.set_cache_dir(old)


@pytest.mark.parametrize("widths", [(9,), (9, 17, 33)])
def test_store_round_trips_shuffled_and_reads_the_unshuffled_layout(tmp_path, widths):
    # The file stores numbers and fixed-width keys byte-shuffled; every key and value must come
    # back bit for bit, and a file written before the shuffle still loads.  [cache layout]
    rng = np.random.default_rng(0)
    keys = [bytes(rng.integers(0, 256, widths[i % len(widths)], dtype=np.uint8)) for i in range(500)]
    values = [((float(x), float(x) * 2.0 ** -60, int(np.sign(x))),) for x in rng.standard_normal(500)]
    s = store.PointStore(tmp_path / "a.npz", "m")
    s.add(keys, values, persist=True)
    s.flush()
    t = store.PointStore(tmp_path / "a.npz", "m")
    ids = t.find(keys, persist=False)
    assert (ids >= 0).all()
    hi, lo, sgn = t.gather(ids)
    assert hi[:, 0].tolist() == [v[0][0] for v in values] and lo[:, 0].tolist() == [v[0][1] for v in values]
    assert sgn[:, 0].tolist() == [v[0][2] for v in values]
    data = store.load(tmp_path / "a.npz", "m")
    plain = {k: v for k, v in data.items() if k != "keys"}
    plain["keys"] = np.frombuffer(b"".join(keys), dtype=np.uint8)
    np.savez_compressed(tmp_path / "b.npz", **plain)  # unshuffled arrays, variable-width keys
    u = store.PointStore(tmp_path / "b.npz", "m")
    assert (u.find(keys, persist=False) == np.arange(500)).all()
    np.savez_compressed(tmp_path / "c.npz", **{**plain, "meta": np.array("m")})  # an earlier version's file
    assert store.load(tmp_path / "c.npz", "m") is None
    assert (store.PointStore(tmp_path / "c.npz", "m").find(keys, persist=False) == -1).all()


def test_random_draws_stay_in_the_process_and_derandomised_ones_are_kept(cache):
    # fresh random draws must not grow the cache with seeds; derandomised draws repeat every run,
    # so keeping them is what makes a warm run cheap.  [cache layout]
    z = round_array(np.linspace(-3, 3, 4099), F32)
    with tables.exploring():
        tables.exact("act.tanh", (z,), F32)
    tables.flush()
    assert not _npz(cache)
    with tables.exploring(repeatable=True):
        tables.exact("act.tanh", (z[:5] + 0.5,), F32)
    tables.flush()
    assert [p.parent.name for p in _npz(cache)] == ["points", "requests"]  # the values, and the request whole


@pytest.mark.parametrize("repeatable", [True, None])
def test_a_kept_request_is_served_whole_in_a_later_run(cache, monkeypatch, repeatable):
    # A warm run's small requests, derandomised draws' (True) and deterministic ones (None: not
    # exploring), skip planning: the whole answer comes from the requests store, bit for bit,
    # for values and for rows.  [cache layout]
    z = round_array(np.array([0.1, -2.5, 7.0]), F32)
    rows = round_array(np.array([[1.0, -np.inf, 3.0], [0.5, 0.25, -1.0]]), F32)
    scope = (lambda: tables.exploring(repeatable=True)) if repeatable else contextlib.nullcontext
    with scope():
        want = tables.exact("act.sigmoid", (z,), F32), tables.exact_items("out.softmax", (rows,), F32)
    tables.flush()
    tables.set_cache_dir(cache, seeded=False)  # a new process: nothing in memory
    monkeypatch.setattr(tables, "_values_of", lambda *a: pytest.fail("planned a kept request"))
    monkeypatch.setattr(tables, "_items_of", lambda *a: pytest.fail("planned a kept request"))
    with scope():
        got = tables.exact("act.sigmoid", (z,), F32), tables.exact_items("out.softmax", (rows,), F32)
    for w, g in zip(want, got):
        for a, b in ((w.hi, g.hi), (w.lo, g.lo), (w.cr, g.cr)):
            assert a.shape == b.shape and np.array_equal(_bits(a), _bits(b))


@pytest.mark.parametrize("collide", [False, True])
def test_store_index_finds_every_key_across_levels_and_hash_collisions(tmp_path, monkeypatch, collide):
    # The index orders keys by a 64-bit hash but must confirm every match on the whole key: a
    # collision must never serve another input's value.  [cache layout]
    if collide:
        monkeypatch.setattr(store, "_hash", lambda w: (w[:, 0] & np.uint64(3)).astype(np.uint64))
    rng = np.random.default_rng(1)
    s = store.PointStore(tmp_path / "a.npz", "m")
    n = 600 if collide else 6000  # colliding keys are confirmed one by one
    keys = rng.integers(0, 256, (n, 12), dtype=np.uint8)
    for part in np.array_split(np.arange(n), 7):  # several additions: the recent level merges into the main one
        vals = [((float(i), 0.0, 1),) for i in part.tolist()]
        s.add(keys[part], vals, persist=True)
        s.add(keys[part[:3]], [((-1.0, 0.0, 1),)] * 3, persist=True)  # present already: the first value stays
    ids = s.find(keys, persist=False)
    assert (s.gather(ids)[0][:, 0] == np.arange(n)).all()
    other = rng.integers(0, 256, (500, 12), dtype=np.uint8)
    other[:, 0] = 7  # absent keys (the first byte differs from most, the hash from none when colliding)
    fresh = ~(other[:, None, :] == keys[None, :, :]).all(axis=2).any(axis=1)
    assert (s.find(other[fresh], persist=False) == -1).all()
    s.flush()
    t = store.PointStore(tmp_path / "a.npz", "m")
    assert (t.gather(t.find(keys, persist=False))[0][:, 0] == np.arange(n)).all()


def test_the_runs_workers_end_with_the_run(pytester, tmp_path, monkeypatch):
    # Workers kept past their run would be shut down at exit, after pytester has restored the
    # modules they were started with: the resource tracker then prints KeyError tracebacks.  [issue 15]
    from tests._inner import run_suite
    monkeypatch.setattr(tables, "SEED", tmp_path / "no-seed")  # compute, so that workers start
    ret, report, out = run_suite(pytester, "numpy", ("bfloat16",), ("act.sigmoid.grad",),
                                 f"--ffnspec-cache-dir={tmp_path}", "--ffnspec-jobs=2", cache=False)
    assert ret == 0 and report["summary"]["conforms"], out
    assert "computed in" in out and "by 2 process(es)" in out  # the run did start its workers
    assert not tables._pool and tables._jobs == [1]
