"""One conformance run: the chosen backend, dtypes, devices, clauses, declared
deviations and hypothesis settings, and the cases (clause x target x mode) that
the test modules are parametrised over.  A case's inputs: the deterministic region
and hypothesis-drawn arrays (scalar clauses), or the groups of the clause's recipe
and hypothesis-drawn groups (clauses over rows and batches)."""
from __future__ import annotations

import contextlib
import functools
import itertools
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable

import pytest

from ffnspec import spec
from ffnspec.adapters import DTYPES, Backend, BackendError, load_backend
from ffnspec.conformance.machinery import draws, registry, xfails
from ffnspec.conformance.machinery.harness import NotImplementedByBackend, Target
from ffnspec.conformance.machinery.records import Record

PROFILES = {
    "fast": dict(max_examples=20),
    "ci": dict(max_examples=20, derandomize=True),
    "thorough": dict(max_examples=400),
    "strict": dict(max_examples=20, derandomize=True),  # ci, with accuracy findings failing
}
LIMIT_PROFILES = ("thorough",)  # profiles whose deterministic groups include the 16-bit limits (inputs/rows.py)
DERIVATIVE_MODES = ("vjp", "jvp")


@dataclass
class Case:
    clause: spec.Clause
    target: Target
    mode: str | None
    record: Record
    settings: Any
    deviation: xfails.Deviation | xfails.Declared | None = None
    limits: bool = False  # the deterministic groups include the 16-bit limits (LIMIT_PROFILES)

    @property
    def id(self) -> str:
        parts = [self.clause.id, self.target.dtype, self.target.device] + ([self.mode] if self.mode else [])
        return "-".join(parts)

    def region(self):
        from ffnspec.conformance.inputs import scalars
        return scalars.region(self.target.fmt, self.clause.domain,
                              dense_runs=self.clause.extra.get("inputs") == "dense-runs")

    @contextlib.contextmanager
    def supervised(self):
        """A missing op or capability becomes a skip marked 'not implemented'."""
        try:
            yield
        except NotImplementedByBackend as e:
            self.record.verdict = "not_implemented"
            self.record.message = str(e)
            pytest.skip(f"not implemented: {e}")

    def run(self, check: Callable, **kw) -> None:
        """``check(clause, target, record, z, **kw)`` on the region, then on hypothesis-drawn
        arrays, supervised (a scalar clause's whole check)."""
        with self.supervised():
            check(self.clause, self.target, self.record, self.region(), **kw)
            self.explore(check, **kw)

    def explore(self, check: Callable, **kw) -> None:
        """Run ``check(clause, target, record, z, **kw)`` on hypothesis-drawn arrays."""
        from hypothesis import given
        # the name ``inputs`` is kept: hypothesis derandomises from the source text of ``explore``
        from ffnspec.conformance.inputs import scalars as inputs
        run = draws.Exploration(("arrays", self.target.fmt.name, self.clause.domain), self.settings)
        body = functools.partial(check, self.clause, self.target, self.record, **kw)
        check = run.recording(check, 3)

        @self.settings
        @given(inputs.arrays(self.target.fmt, self.clause.domain))
        def explore(z):
            check(self.clause, self.target, self.record, z, **kw)

        from ffnspec.reference import tables
        with tables.exploring(repeatable=self.settings.derandomize):  # random draws: not cached (seeds do not grow it)
            if not run.replay(body, self.record):
                explore()
                run.keep()


def check_writable_dir(path: str, option: str) -> None:
    """A directory that exists or can be made, and that can be written: checked before any
    work, so a run never computes for half an hour and then fails to write its results."""
    import os
    import tempfile
    from pathlib import Path
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise pytest.UsageError(f"ffnspec: {option} {path!r} is a file, not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=p, prefix=".ffnspec-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise pytest.UsageError(f"ffnspec: {option} {path!r} is not writable: {e.strerror or e}") from None


def _adapter_deviations(b: Backend, spec_name: str) -> list[xfails.Deviation]:
    """The adapter's own declared deviations: its ``deviations`` attribute names a TOML file,
    absolute, beside the adapter's module, or shipped in ffnspec.adapters/deviations/."""
    import inspect
    from pathlib import Path
    shipped = getattr(b, "deviations", None)
    if shipped is None:
        return []
    if not isinstance(shipped, (str, Path)) or not str(shipped).strip():
        raise xfails.XfailFileError(f"backend {spec_name!r}: attribute 'deviations' must be a TOML file "
                                    f"name or path, or None; got {shipped!r}")
    try:
        module_file: str | None = inspect.getfile(type(b))
    except TypeError:  # a class without a source file
        module_file = None
    candidates = [Path(shipped)] if Path(shipped).is_absolute() else (
        ([Path(module_file).parent / shipped] if module_file else [])
        + [Path(str(resources.files("ffnspec.adapters").joinpath("deviations", str(shipped))))])
    for c in candidates:
        if c.is_file():
            return xfails.load(c)
    raise xfails.XfailFileError(f"backend {spec_name!r} declares deviations = {str(shipped)!r}, but no such file: "
                                f"looked for {', '.join(str(c) for c in candidates)}")

def groups(case: Case) -> list[tuple]:
    """The deterministic groups of the clause's recipe (clauses over rows and batches)."""
    from ffnspec.conformance.inputs import rows
    return rows.groups(case.clause.extra["vectors"], case.target.fmt,
                       limits=case.limits and case.clause.kind == "reduction")


def explore_groups(case: Case, check: Callable, **kw) -> None:
    """The check again on hypothesis-drawn groups of the clause's recipe.  A drawn group is up to
    3 rows of up to 17 entries, each needing its own reference evaluation, so these checks draw
    2/5 of the profile's examples (8 of 20 in the default profile); the deterministic groups
    carry the lengths, spreads and special rows."""
    from hypothesis import given, settings
    from ffnspec.conformance.inputs import rows
    strategy = rows.strategy(case.clause.extra["vectors"], case.target.fmt)
    if strategy is None:
        return

    chosen = settings(case.settings, max_examples=max(1, case.settings.max_examples * 2 // 5))
    run = draws.Exploration(("groups", case.clause.extra["vectors"], case.target.fmt.name), chosen)
    body = functools.partial(check, case.clause, case.target, case.record, **kw)
    check = run.recording(check, 3)

    @settings(case.settings, max_examples=max(1, case.settings.max_examples * 2 // 5))
    @given(strategy)
    def explore(group):
        check(case.clause, case.target, case.record, group, **kw)

    from ffnspec.reference import tables
    with tables.exploring(repeatable=case.settings.derandomize):  # random draws: not cached (seeds do not grow it)
        if not run.replay(body, case.record):
            explore()
            run.keep()


@dataclass
class Session:
    backend_spec: str
    backend: Backend
    dtypes: tuple[str, ...]
    devices: tuple[str, ...]
    patterns: tuple[str, ...]
    profile: str
    deviations: list[xfails.Deviation] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)  # one per check run; report.merged() folds them
    record_items: list[int] = field(default_factory=list)  # each record's test item, by collection position
    pending: dict[tuple, int] = field(default_factory=dict)  # record key -> checks not yet run
    excused: set[tuple] = field(default_factory=set)        # keys where a declared deviation showed (or no op)
    reached: set[tuple] = field(default_factory=set)        # keys where some input lay in a scoped deviation's scope
    strict: bool = False                                     # accuracy findings fail

    def __post_init__(self) -> None:
        registry.load_families()  # before the first draw: see registry.load_families

    @classmethod
    def from_options(cls, *, backend: str | None, dtype: str | None, device: str | None, clauses: str | None,
                     xfail_files: list[str], profile: str, declared: bool, cache_dir: str | None,
                     report: str | None = None, flag: str = "--ffnspec-", strict: bool = False) -> "Session":
        """Validate every option before any work; raises pytest.UsageError with one clear line.
        ``flag`` is the prefix of the options as the user typed them (``--`` for the CLI)."""
        spec_name = backend or "numpy"
        for opt, value in (("dtype", dtype), ("device", device), ("clauses", clauses)):
            if value is not None and not value.replace(",", "").strip():
                raise pytest.UsageError(f"ffnspec: {flag}{opt} {value!r} names no {opt}")
        if report is not None:
            check_writable_dir(report, f"{flag}report")
        if cache_dir is not None:
            check_writable_dir(cache_dir, f"{flag}cache-dir")
        if cache_dir:  # before the backend: an adapter may keep its own compiled code there (jax)
            from ffnspec.reference import tables
            tables.set_cache_dir(cache_dir)
        try:
            b = load_backend(spec_name)
        except BackendError as e:
            raise pytest.UsageError(f"ffnspec: {e}") from None
        offered = [d for d in DTYPES if d in b.dtypes]
        if dtype:
            wanted = tuple(d.strip() for d in dtype.split(",") if d.strip())
            for d in wanted:
                if d not in DTYPES:
                    raise pytest.UsageError(f"ffnspec: unknown dtype {d!r}; known: {', '.join(DTYPES)}")
                if d not in b.dtypes:
                    raise pytest.UsageError(f"ffnspec: backend {b.name!r} does not support dtype {d!r}; "
                                            f"it offers {', '.join(offered)}")
        else:
            wanted = tuple(offered)
        if device:
            devs = tuple(d.strip() for d in device.split(",") if d.strip())
            for d in devs:
                if d not in b.devices:
                    raise pytest.UsageError(f"ffnspec: backend {b.name!r} has no device {d!r} here; "
                                            f"available: {', '.join(b.devices)}")
        else:
            devs = tuple(b.devices)
        patterns = tuple(p.strip() for p in clauses.split(",") if p.strip()) if clauses else ()
        if patterns and not spec.select(patterns=patterns):
            raise pytest.UsageError(f"ffnspec: {flag}clauses {clauses!r} matches no clause id "
                                    "(list them with 'ffnspec clauses')")
        if profile not in PROFILES:
            raise pytest.UsageError(f"ffnspec: unknown profile {profile!r}; known: {', '.join(PROFILES)}")
        devs_decl: list[xfails.Deviation] = []
        try:
            if declared:
                devs_decl += _adapter_deviations(b, spec_name)
            for path in xfail_files:
                devs_decl += xfails.load(path)
        except xfails.XfailFileError as e:
            raise pytest.UsageError(f"ffnspec: {e}") from None
        return cls(spec_name, b, wanted, devs, patterns, profile, devs_decl, strict=strict or profile == "strict")

    def unmatched_deviations(self) -> list[tuple[xfails.Deviation, str]]:
        """Declared entries that matched no check of this run, with why: a typo (no clause id
        matches) or an entry this run should have used.  Entries about other backends, dtypes or
        clauses than the ones selected are not listed (a shipped file covers them all)."""
        import fnmatch
        selected = spec.select(patterns=self.patterns)
        out = []
        for d in self.deviations:
            if d.matched:
                continue
            typo = not any(fnmatch.fnmatchcase(c.id, d.clause) for c in spec.clauses())
            in_scope = (d.backend in (None, self.backend.name) and (d.dtype is None or set(d.dtype) & set(self.dtypes))
                        and any(fnmatch.fnmatchcase(c.id, d.clause) for c in selected))
            if typo or in_scope:
                out.append((d, "matches no clause id" if typo else "matches no collected check"))
        return out

    @property
    def hypothesis_settings(self):
        from hypothesis import HealthCheck, settings
        return settings(deadline=None, database=None, print_blob=True,
                        suppress_health_check=list(HealthCheck), **PROFILES[self.profile])

    def cases(self, kind: str) -> list[Case]:
        out = []
        modes: tuple[str | None, ...] = DERIVATIVE_MODES if kind in spec.MODED_KINDS else (None,)
        for clause, dtype, device, mode in itertools.product(
                spec.select(kind=kind, patterns=self.patterns), self.dtypes, self.devices, modes):
            target = Target(self.backend, self.backend_spec, dtype, device, strict=self.strict)
            rec = Record(clause=clause.id, backend=self.backend.name, dtype=dtype, device=device, mode=mode,
                         criterion=clause.tolerance.criterion, must=clause.tolerance.must)
            case = Case(clause, target, mode, rec, self.hypothesis_settings, limits=self.profile in LIMIT_PROFILES)
            case.deviation = rec.scope = xfails.declared(self.deviations, clause=clause.id, backend=self.backend.name,
                                                         dtype=dtype, device=device, mode=mode)
            out.append(case)
        return out
