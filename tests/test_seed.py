"""The shipped reference values (reference/seed/, built by benchmarks/seed_cache.py): every file is
current, and its values regenerate bit for bit (a sample of every file; all with --thorough)."""
from __future__ import annotations

import ast
import json
import re

import numpy as np
import pytest

from ffnspec import spec
from ffnspec.conformance.machinery import prebuild
from ffnspec.reference import store, tables

MANIFEST = tables.SEED / "manifest.json"
FILES = sorted(json.loads(MANIFEST.read_text())["files"]) if MANIFEST.is_file() else []
NAME = re.compile(r"(?P<name>[a-z]+\.\w+)-(?P<rest>.+)-(?P<hash>[0-9a-f]{16})\.npz$")


def _parse(rel: str) -> tuple[str, str, str]:
    m = NAME.fullmatch(rel.split("/")[1])
    assert m, f"unexpected shipped file name {rel}"
    return m["name"], m["rest"], m["hash"]


def _meta(rel: str) -> str:
    name, rest, h = _parse(rel)
    if rel.startswith("tables/"):
        raw = np.load(tables.SEED / rel)["meta"]
        return str(raw).removesuffix(store.FORMAT)
    return f"{rest}|{name}|{h}"


def test_the_seed_ships_and_fits_the_wheel():
    # Shipping values is allowed only small and checked: the wheel stays under ~20 MB.  [issue 15]
    assert FILES, "reference/seed/manifest.json is missing: run python benchmarks/seed_cache.py"
    size = sum((tables.SEED / f).stat().st_size for f in FILES)
    assert size < 19.5e6  # the wheel: 18.0 MB with 19.0 MB of seed
    on_disk = {p.relative_to(tables.SEED).as_posix() for p in tables.SEED.rglob("*.npz")}
    assert on_disk == set(FILES), "reference/seed/ and its manifest differ"


@pytest.mark.parametrize("rel", FILES)
def test_shipped_file_is_current(rel):
    # A file of other sources is never used (the sources hash names it): stale, it is dead weight
    # and the seed must be rebuilt (python benchmarks/seed_cache.py).  [cache layout]
    name, _, h = _parse(rel)
    assert h == tables.sources_hash(name), f"{rel} is stale: run python benchmarks/seed_cache.py"
    assert store.load(tables.SEED / rel, _meta(rel)) is not None


def _requested(names: set[str]) -> dict[tuple[str, str], dict[bytes, tuple]]:
    """(function, kind) -> {key: (mode, args)} for every value of the default run the prebuild
    requests of these functions (the keys as the point stores form them)."""
    out: dict = {}
    clauses = spec.select(patterns=())
    dtypes = ("float16", "bfloat16", "float32", "float64")
    reqs = [r for r in prebuild.requests(clauses, dtypes) if r.function in names]
    reqs += [r for r in prebuild.derivative_requests(clauses, dtypes) if r.function in names]
    for r in reqs:
        if r.args is None:
            continue
        mode = tables.SCALE if r.scale else r.fmt
        arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in r.args]
        if r.items and not tables._elementwise(r.function, arrays):
            kind, args = "items", lambda i, arrays=arrays: tables._item_args(arrays, i)
        else:
            arrays = [np.ascontiguousarray(a).ravel() for a in np.broadcast_arrays(*arrays)]
            kind, args = "points", lambda i, arrays=arrays: tuple(float(a[i]) for a in arrays)
        keys = tables._row_keys(tables._prefix(mode, arrays), arrays)
        rows = np.ascontiguousarray(keys).view(np.dtype((np.void, keys.shape[1]))).ravel().tolist()
        entry = out.setdefault((r.function, kind), {})
        for i, k in enumerate(rows):
            entry.setdefault(k, (mode, args, i))
    return out


@pytest.fixture(scope="module")
def requested(tmp_path_factory):
    # planning the second stage reads first-stage values: from a cache of the shipped files, and
    # what is computed besides is not written (exploring)
    with tables.exploring():
        old = tables.cache_dir()
        tables.set_cache_dir(tmp_path_factory.mktemp("seeded"))
        try:
            yield _requested({_parse(f)[0] for f in FILES if f.startswith("points/")})
        finally:
            tables.set_cache_dir(old)


@pytest.mark.parametrize("rel", [f for f in FILES if f.startswith("points/")])
def test_shipped_points_regenerate_bit_for_bit(rel, requested, request):
    # Every shipped entry is a value the default run asks for, and recomputing it gives the same
    # triple (hi, lo, sgn) bit for bit: shipped values are never trusted unchecked.  [cache layout]
    name, kind, _ = _parse(rel)
    data = store.load(tables.SEED / rel, _meta(rel))
    keys = store._keys(data)
    asked = requested.get((name, kind), {})
    unexplained = [k for k in keys if k not in asked]
    assert not unexplained, f"{rel}: {len(unexplained)} of {len(keys)} entries are no value of the default run"
    every = request.config.getoption("--thorough")
    pick = np.arange(len(keys)) if every else np.random.default_rng(0).choice(len(keys), min(12, len(keys)), replace=False)
    offset = np.concatenate([[0], np.cumsum(data["count"], dtype=np.int64)])
    for i in pick.tolist():
        mode, args, j = asked[keys[i]]
        (want,) = tables._compute(name, mode, [args(j)])
        got = [tuple(c[offset[i] + m] for c in (data["hi"], data["lo"], data["sgn"])) for m in range(data["count"][i])]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert (np.float64(g[0]).tobytes(), np.float64(g[1]).tobytes(), int(g[2])) == \
                   (np.float64(w[0]).tobytes(), np.float64(w[1]).tobytes(), int(w[2])), f"{rel}: entry {i} at {args(j)}"


@pytest.mark.parametrize("rel", [f for f in FILES if f.startswith("tables/")])
def test_shipped_tables_regenerate_bit_for_bit(rel, request):
    # A table's every bit pattern (a sample by default) recomputes to the same triple.  [cache layout]
    meta = _meta(rel)
    _, name, fmt_name, params, _ = meta.split("|")
    params = tuple(float.fromhex(p) for p in ast.literal_eval(params))
    data = store.load(tables.SEED / rel, meta)
    idx, args = tables._table_inputs((name, fmt_name, params))
    every = request.config.getoption("--thorough")
    pick = np.arange(len(idx)) if every else np.random.default_rng(1).choice(len(idx), 64, replace=False)
    want = tables._compute(name, fmt_name, [args[i] for i in pick.tolist()])
    for i, (w,) in zip(pick.tolist(), want):
        b = idx[i]
        assert (data["hi"][b].tobytes(), data["lo"][b].tobytes(), int(data["sgn"][b])) == \
               (np.float64(w[0]).tobytes(), np.float64(w[1]).tobytes(), int(w[2])), f"{rel}: pattern {b}"
    assert np.isnan(np.delete(data["hi"], idx)).all()


def test_a_fresh_cache_takes_shipped_files_and_computes_none_of_their_values(tmp_path, monkeypatch):
    # A new user's first run starts from the shipped values: a table that ships is copied into
    # the cache, whole, and looking it up computes nothing; unseeded, it is computed.  [issue 15]
    rel = next(f for f in FILES if f.startswith("tables/"))
    meta = _meta(rel)
    _, name, fmt_name, params, _ = meta.split("|")
    assert params == "[]"
    old = tables.cache_dir()
    computed = []
    compute = tables._compute
    monkeypatch.setattr(tables, "_compute", lambda *a: computed.append(a) or compute(*a))
    try:
        tables.set_cache_dir(tmp_path / "seeded")
        got = tables.table(name, fmt_name)
        assert not computed
        assert (tmp_path / "seeded" / rel).read_bytes() == (tables.SEED / rel).read_bytes()
        tables.set_cache_dir(tmp_path / "unseeded", seeded=False)
        assert tables._load_table((name, fmt_name, ())) is None  # nothing there: it would compute
        assert not (tmp_path / "unseeded" / rel).exists()
    finally:
        tables.set_cache_dir(old)
    data = store.load(tables.SEED / rel, meta)
    assert np.array_equal(got.hi, data["hi"], equal_nan=True)
