"""The reference values a run needs, computed before its tests in parallel worker processes
(``ffnspec.reference.tables.prebuild``), with a progress line on the terminal.

What is requested, per selected clause and dtype (``requests``):
  elementwise kinds (accuracy, derivative, identity, property, piecewise, subgradient): every
      reference the check rounds or scales with (the clause's, its tolerance's scale, underflow
      and accuracy scale, the references and the ops' accuracy clauses of its relations) --
      complete tables for 16-bit formats (one per fixed slope alpha), the deterministic
      region (z, and -z, 2z for identities) for float32 and float64;
  reductions: the value reference and its error scales at the recipe's deterministic groups
      (with the 16-bit limit rows in the ``thorough`` profile);
  reduction derivatives (a second stage: the domain filter reads the first stage's values):
      each mode's reference and scales (the clause's accuracy scale included) at the groups
      with their seeded directions.
Everything else (hypothesis draws, structured problems) is computed when a check asks, and the
bulk of it is cached for the next run.
"""
from __future__ import annotations

import os

import numpy as np

from ffnspec import spec
from ffnspec.reference.floatformat import get_format, round_array

SIXTEEN = ("float16", "bfloat16")
ELEMENTWISE = ("accuracy", "derivative", "identity", "property", "piecewise", "subgradient")


def _references(c: spec.Clause) -> tuple[set[str], set[str]]:
    """(references an elementwise check rounds to the dtype, references it uses as float64 scales)."""
    t = c.tolerance
    exact = {c.reference} if c.reference else set()
    scales = {s for s in (t.scale, t.underflow, t.accuracy_scale) if s}
    for rel in c.relations:
        for term in rel:
            if "ref" in term:
                exact.add(term["ref"])
            if "op" in term:
                exact |= {a.reference for a in spec.select(kind="accuracy") if a.op == term["op"] and a.args == ("z",)}
    return exact, scales


def requests(clauses: list[spec.Clause], dtypes: tuple[str, ...], *, limits: bool = False) -> list:
    """The bulk reference values of a run over these clauses and dtypes (module docstring)."""
    from ffnspec.conformance.inputs import rows, scalars
    from ffnspec.reference.tables import Request
    out: list = []
    for c in clauses:
        for dtype in dtypes:
            fmt = get_format(dtype)
            if c.kind in ELEMENTWISE:
                exact, scales = _references(c)
                alpha = c.params.get("alpha")
                alphas = [None] if alpha is None else [
                    float(round_array(np.array([float(a)]), fmt)[0]) for a in (alpha if isinstance(alpha, list) else [alpha])]
                for ref in sorted(exact | scales):
                    for ah in alphas:
                        params = () if ah is None else (ah,)
                        if dtype in SIXTEEN:
                            out.append(Request(ref, dtype, params=params))
                            continue
                        z = scalars.region(fmt, c.domain)
                        zs = [z]
                        if c.kind == "identity":
                            zs += [-z, 2 * z[np.abs(z) <= fmt.max_finite / 2]]
                        for arg in zs:
                            out.append(Request(ref, dtype, (arg,) if ah is None else (arg, np.full_like(arg, ah)),
                                               scale=ref in scales))
            elif c.kind == "reduction":
                for group in rows.groups(c.extra["vectors"], fmt, limits=limits):
                    out.append(Request(c.reference, dtype, group, items=True))
                    out += [Request(s, dtype, group, items=True, scale=True)
                            for s in (c.tolerance.scale, c.tolerance.accumulation, c.tolerance.underflow,
                                      c.tolerance.accuracy_scale) if s]
    return out


def derivative_requests(clauses: list[spec.Clause], dtypes: tuple[str, ...]) -> list:
    """Stage two: what ``checks.derivatives.reduction`` asks for at the deterministic groups
    (the same groups, filter, salts and directions)."""
    from ffnspec.conformance.checks.derivatives import domain, reference_args
    from ffnspec.conformance.inputs import rows
    from ffnspec.reference.tables import Request
    out: list = []
    for c in clauses:
        if c.kind != "reduction_derivative":
            continue
        for dtype in dtypes:
            fmt = get_format(dtype)
            for salt, group in enumerate(rows.groups(c.extra["vectors"], fmt)):
                group = domain(c, group, fmt)
                if group[0].shape[0] == 0:
                    continue
                for mode, ref in c.extra["modes"].items():
                    args = reference_args(c, dtype, group, mode, salt)
                    out.append(Request(ref["reference"], dtype, args, items=True))
                    out += [Request(ref[s], dtype, args, items=True, scale=True)
                            for s in ("scale", "accumulation", "underflow") if ref.get(s)]
                    if c.tolerance.accuracy_scale:  # the accuracy tier's S_acc at the same arguments
                        out.append(Request(c.tolerance.accuracy_scale, dtype, args, items=True, scale=True))
    return out


def jobs(option: int | None) -> int:
    """Worker processes: the option, or every core this process may use."""
    if option:
        return max(1, option)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class TerminalLine:
    """Progress of the build on pytest's terminal: one line rewritten in place, and a last
    line with what was computed."""

    def __init__(self, reporter):
        self.tr = reporter
        self.last = 0.0

    def __call__(self, p) -> None:
        import time
        now = time.perf_counter()
        if self.tr.isatty and p.done < p.total and now - self.last < 0.25:
            return
        self.last = now
        eta = f", ETA {p.eta:.0f} s" if p.eta is not None and p.done < p.total else ""
        line = (f"ffnspec reference values: [{p.units_done}/{p.units_total}] {p.unit}: "
                f"{p.unit_done}/{p.unit_total}; {p.done}/{p.total} in all, {p.elapsed:.0f} s{eta}")
        if self.tr.isatty:
            self.tr.rewrite(line[:150], erase=True)
            if p.done >= p.total:
                self.tr.write_line("")
        elif p.done >= p.total or p.unit_done >= p.unit_total:
            self.tr.write_line(line)


def fingerprint(clauses: list[spec.Clause], dtypes: tuple[str, ...], *, limits: bool = False) -> str:
    """What decides a run's requests: the clauses, the dtypes and the source of the spec, the
    reference and the conformance package (inputs, checks, this planner)."""
    import hashlib
    from pathlib import Path
    from ffnspec import conformance, reference
    h = hashlib.blake2b(repr(([c.id for c in clauses], dtypes, limits)).encode(), digest_size=16)
    for pkg in (spec, reference, conformance):
        root = Path(pkg.__file__).parent
        for f in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".toml")):
            h.update(f.relative_to(root).as_posix().encode() + f.read_bytes())
    return h.hexdigest()


def run(config, session) -> None:
    """Prebuild what the session's clauses and dtypes need, unless an earlier run with the same
    fingerprint built it all (then planning is skipped; values evicted since are computed when
    a check asks, so the stamp decides speed, never results)."""
    from ffnspec.conformance.machinery.session import LIMIT_PROFILES
    from ffnspec.reference import tables
    clauses = spec.select(patterns=session.patterns)
    limits = session.profile in LIMIT_PROFILES
    n = jobs(config.option.ffnspec_jobs)
    tables.set_jobs(n)  # the checks' own large requests may use the workers too
    stamp = None
    if tables.cache_dir() is not None:
        stamp = tables.cache_dir() / "prebuilt" / fingerprint(clauses, session.dtypes, limits=limits)
        if stamp.exists():
            return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    progress = TerminalLine(reporter) if reporter is not None else None
    summary = tables.prebuild(requests(clauses, session.dtypes, limits=limits), jobs=n, progress=progress)
    second = tables.prebuild(derivative_requests(clauses, session.dtypes), jobs=n, progress=progress)
    summary = tables.Summary(summary.units + second.units, summary.values + second.values,
                             summary.seconds + second.seconds, n)
    if stamp is not None:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
    if summary.units and reporter is not None:
        reporter.write_line(f"ffnspec reference values: {summary.values} computed in {summary.seconds:.0f} s "
                            f"by {summary.jobs} process(es); cached in {tables.cache_dir() or 'memory'}")
