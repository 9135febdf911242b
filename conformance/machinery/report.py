"""Reports: JSON (schema in docs/report-schema.json), a Markdown summary and a self-contained
HTML page with plots (machinery/html_report.py), all written only from the records; ``compare`` lists where two reports' records differ."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import platform
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import ffnspec
from ffnspec import spec

FAILING = ("fail", "error", "xpass", "internal_error")
SCHEMA_VERSION = 2
# Worst last.  Within one record, a deviation seen by one check outranks the others' xpass.
RANK = ("pending", "skipped", "pass", "xpass", "deviation", "not_implemented", "fail", "error", "internal_error")


def merged(records) -> list:
    """One record per clause x dtype x device (x mode).  The checks of one clause (values,
    special values) each keep a record; here the worst verdict wins, with its message and
    worst case, gaps are filled from the others, and counts add up."""
    out: dict[tuple, object] = {}
    for r in records:
        k = (r.clause, r.dtype, r.device, r.mode)
        a = out.get(k)
        if a is None:
            out[k] = dataclasses.replace(r, notes=list(r.notes))
            continue
        worst, other = (r, a) if RANK.index(r.verdict) > RANK.index(a.verdict) else (a, r)
        m = dataclasses.replace(worst, examples=a.examples + r.examples, violations=a.violations + r.violations,
                                findings=a.findings + r.findings, notes=a.notes + r.notes,
                                accuracy_error=max((e for e in (a.accuracy_error, r.accuracy_error) if e is not None),
                                                   default=None))
        if other.findings and (not worst.findings or (other.accuracy_error or 0) > (worst.accuracy_error or 0)):
            m.finding = other.finding  # the worst finding, whichever check saw it
        for f in dataclasses.fields(m):
            if getattr(m, f.name) is None:
                setattr(m, f.name, getattr(other, f.name))
        out[k] = m
    return list(out.values())


_VERSIONED = ("numpy", "scipy", "mpmath", "hypothesis", "pytest", "ml_dtypes", "python-flint")


def _environment(sess) -> dict:
    """Python, the platform, the versions of every library that decides a result, and the
    backend's own version under its name."""
    from importlib import metadata
    env = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in _VERSIONED:
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass  # an optional extra, not installed
    version = getattr(sess.backend, "version", None)
    if version:
        env[sess.backend.name] = str(version)
    return env


def environment_text(env: dict) -> str:
    """The environment as one line of text."""
    rest = ", ".join(f"{k} {v}" for k, v in env.items() if k not in ("python", "platform"))
    return f"Python {env['python']} on {env['platform']}; {rest}"


def _deviation_entries(sess) -> list[dict]:
    unmatched = {id(d): why for d, why in sess.unmatched_deviations()}
    return [{"clause": d.clause, "backend": d.backend, "dtype": list(d.dtype) if d.dtype else None,
             "device": d.device, "mode": d.mode, "reason": d.reason, "reproducer": d.reproducer,
             "source": d.source, "matched": d.matched, "unmatched": unmatched.get(id(d))}
            for d in sess.deviations]


def as_dict(sess) -> dict:
    records = merged(sess.records)
    counts = Counter(r.verdict for r in records)
    return {
        "schema": SCHEMA_VERSION,
        "ffnspec": ffnspec.__version__,
        "edition": spec.EDITION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "backend": {"name": sess.backend.name, "spec": sess.backend_spec,
                    "conventions": dict(sess.backend.conventions)},
        "dtypes": list(sess.dtypes),
        "devices": list(sess.devices),
        "profile": sess.profile,
        "environment": _environment(sess),
        "summary": _summary(counts, sum(1 for r in records if r.findings)),
        "deviations": _deviation_entries(sess),
        "records": [r.to_json() for r in records],
    }


def _summary(counts: Counter, findings: int = 0) -> dict:
    conforms = not any(counts[v] for v in FAILING)
    verdict = "does not conform" if not conforms else (
        "conforms with declared deviations" if counts["deviation"] else "conforms")
    if findings:
        verdict += f"; {findings} accuracy finding{'s' if findings > 1 else ''}"
    if counts["not_implemented"]:
        verdict += f"; {counts['not_implemented']} check(s) not implemented"
    return {"verdicts": dict(counts), "conforms": conforms, "complete": not counts["not_implemented"],
            "declared_deviations": counts["deviation"], "accuracy_findings": findings, "verdict": verdict}


REASON_WIDTH = 72  # deviation reasons and failure lines are cut to this in the terminal


def cut(text: str | None, width: int = REASON_WIDTH) -> str:
    """One line of at most ``width`` characters."""
    line = " ".join((text or "").split())
    return line if len(line) <= width else line[: width - 1] + "…"


def error_cell(r: dict) -> str:
    """The measured error in the criterion's own unit, against its MUST bound."""
    if not r["examples"]:
        return ""
    if r["verdict"] == "pass" and r.get("findings"):
        unit = " ULP" if r["accuracy"] is not None and "ULP" in (r.get("finding") or "") else " (k)"
        err = r["accuracy_error"]
        return f"{err if isinstance(err, str) else format(err, '.3g')}{unit}, accuracy ≤ {r['accuracy']:g}"
    err, must, crit = r["max_error"], r["must"], r["criterion"]
    if crit == "exact":
        return f"{r['violations']} of {r['examples']} wrong"
    text = err if isinstance(err, str) else f"{float(err):.3g}"
    bound = "" if must is None else f" ULP, MUST ≤ {must:g}" if crit == "ulp" else f" (k), MUST ≤ {must:g}"
    return text + (bound or (" ULP" if crit == "ulp" else " of the allowance" if crit == "identity" else ""))


def why(r: dict) -> str:
    """One line on a record: a deviation's reason, a failure's or a finding's worst case."""
    if r["verdict"] == "deviation":
        return cut(r["deviation"])
    text = r["finding"] if r["verdict"] == "pass" and r.get("finding") else r["message"]
    lines = [ln.strip() for ln in (text or "").splitlines()]
    for key in ("worst input:", "got "):
        hit = next((ln for ln in lines if ln.startswith(key)), None)
        if hit:
            return cut(hit)
    return cut(lines[-1] if lines else "")


def markdown(data: dict) -> str:
    b = data["backend"]
    s = data["summary"]
    verdict = s["verdict"]
    lines = [f"# ffnspec {data['edition']} conformance: {b['name']}", "",
             f"**{verdict}** -- " + ", ".join(f"{k}: {v}" for k, v in sorted(s["verdicts"].items())), "",
             f"dtypes {', '.join(data['dtypes'])}; devices {', '.join(data['devices'])}; profile {data['profile']}", "",
             f"Environment: {environment_text(data['environment'])}", "",
             "Conventions declared: " + (", ".join(f"{k} = {v}" for k, v in b["conventions"].items()) or "none"), "",
             "| clause | dtype | device | mode | verdict | max error (criterion) | max ULP | grade | examples |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in data["records"]:
        lines.append(f"| [{r['clause']}] | {r['dtype']} | {r['device']} | {r['mode'] or ''} | {r['verdict']} | "
                     f"{r['max_error'] if r['examples'] else ''} | {r['max_ulp'] if r['max_ulp'] is not None else ''} | "
                     f"{r['grade'] or ''} | {r['examples']} |")
    lines += _conventions_table(data)
    devs = [r for r in data["records"] if r["verdict"] in ("deviation", "xpass")]
    if devs:
        lines += ["", "## Declared deviations", ""]
        for r in devs:
            lines += [f"### [{r['clause']}] {r['dtype']} {r['device']} {r['mode'] or ''} -- {r['verdict']}", "",
                      r["deviation"] or "", ""]
            if r.get("deviation_reproducer"):
                lines += ["Reproducer (from the declaration):", "", "```python", r["deviation_reproducer"], "```", ""]
            if r["message"]:
                lines += ["What this run measured:", "", "```", r["message"], "```", ""]
    stale = [d for d in data.get("deviations", []) if d["unmatched"]]
    if stale:
        lines += ["", "## Declared deviations that matched nothing", "",
                  "Each entry below was read but applied to no check of this run: a typo in its clause, or a "
                  "dtype, mode or device this run did not check.", "",
                  "| clause | backend | dtype | mode | source | why |", "|---|---|---|---|---|---|"]
        for d in stale:
            lines.append(f"| {d['clause']} | {d['backend'] or 'any'} | {', '.join(d['dtype'] or ['any'])} | "
                         f"{d['mode'] or 'any'} | {d['source']} | {d['unmatched']} |")
    missing = [r for r in data["records"] if r["verdict"] == "not_implemented"]
    if missing:
        lines += ["", "## Not implemented", "",
                  "The backend lacks the op or capability these clauses need (an op missing from its OpTable, "
                  "an op declared unavailable in a dtype through op_dtypes, or no vjp/jvp).  They are neither "
                  "passed nor failed, and the verdict counts them: the run is incomplete.", "",
                  "| clause | dtype | device | mode | what is missing |", "|---|---|---|---|---|"]
        for r in missing:
            lines.append(f"| [{r['clause']}] | {r['dtype']} | {r['device']} | {r['mode'] or ''} | "
                         f"{cut(r['message'], 200)} |")
    found = [r for r in data["records"] if r.get("findings")]
    if found:
        lines += ["", "## Accuracy findings", "",
                  "Each record below meets its clause's MUST bound but not its accuracy criterion, what a good "
                  "implementation achieves (docs/measure.md, \"Tiers and grades\"): a real loss of accuracy. "
                  "`--strict` makes these fail.", ""]
        for r in found:
            lines += [f"### [{r['clause']}] {r['dtype']} {r['device']} {r['mode'] or ''} -- {r['findings']} finding(s), "
                      f"worst {r['accuracy_error']} (bound {r['accuracy']:g})", "", "```", r["finding"] or "", "```", ""]
    bad = [r for r in data["records"] if r["verdict"] in ("fail", "error", "internal_error")]
    if bad:
        lines += ["", "## Failures", ""]
        for r in bad:
            lines += [f"### [{r['clause']}] {r['dtype']} {r['device']} {r['mode'] or ''} -- {r['verdict']}", "",
                      "```", r["message"] or "", "```", ""]
    return "\n".join(lines) + "\n"


def _conventions_table(data: dict) -> list[str]:
    """Kink and tie conventions ([hid.conventions]): declared against preferred, when the run
    checked any hid clause."""
    if not any(r["clause"].startswith("hid.") for r in data["records"]):
        return []
    declared = data["backend"]["conventions"]
    lines = ["", "## Kink and tie conventions ([hid.conventions])", "",
             "| convention | declared | preferred | allowed | status |", "|---|---|---|---|---|"]
    for row in spec.clause("hid.conventions").conventions:
        d = declared.get(row["name"])
        status = ("undeclared (fails)" if d is None else "not allowed (fails)" if d not in row["allowed"]
                  else "preferred" if d == row["preferred"] else "declared deviation")
        lines.append(f"| {row['name']} | {d if d is not None else ''} | {row['preferred']} | "
                     f"{', '.join(row['allowed'])} | {status} |")
    return lines


def write(sess, directory: str) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    data = as_dict(sess)
    (d / "report.json").write_text(json.dumps(data, indent=1, allow_nan=False), encoding="utf-8")
    (d / "report.md").write_text(markdown(data), encoding="utf-8")
    from ffnspec.conformance.machinery import html_report  # plots import matplotlib lazily
    html_report.write(data, d)
    return d


def summary_lines(sess) -> list[str]:
    """The terminal summary of a pytest run: the records other than a plain pass, one line
    each in criterion units, then the verdict, last."""
    data = as_dict(sess)
    lines = []
    for r in data["records"]:
        if r["verdict"] in FAILING or r["verdict"] in ("deviation", "not_implemented") or r.get("findings"):
            where = "/".join(x for x in (r["dtype"], r["device"], r["mode"]) if x)
            shown = "FINDING" if r["verdict"] == "pass" else r["verdict"].upper()
            lines.append(f"  {shown:15} [{r['clause']}] {where}  {error_cell(r)}  {why(r)}".rstrip())
    s = data["summary"]
    counts = ", ".join(f"{k} {v}" for k, v in sorted(s["verdicts"].items()))
    return lines + [f"ffnspec {data['edition']} -- {sess.backend.name}: {s['verdict'].upper()} ({counts})"]


# ---------------------------------------------------------------- comparison ----
IDENTITY = ("clause", "backend", "device", "dtype", "mode")
# What a check measured: at a fixed seed (--ffnspec-profile ci) a run repeats these exactly.
MEASURED = ("verdict", "examples", "violations", "max_error", "max_ulp", "max_distance", "grade",
            "worst_input", "worst_output", "worst_exact")
# What it said about it: the same unless messages, reproducers or declarations were reworded.
TEXT = ("criterion", "must", "deviation", "notes", "message", "reproducer")


class Difference(NamedTuple):
    """One record present in only one report (``field`` None), or one field that differs."""
    key: tuple
    field: str | None
    a: Any
    b: Any

    def __str__(self) -> str:
        where = "/".join(str(k) for k in self.key if k is not None)
        if self.field is None:
            return f"{where}: only in {'A' if self.a is not None else 'B'}"
        return f"{where}: {self.field}: {self.a!r} != {self.b!r}"


def load(path: str | Path) -> dict:
    """A report.json, given as the file or the report directory."""
    p = Path(path)
    return json.loads((p / "report.json" if p.is_dir() else p).read_text(encoding="utf-8"))


def compare(a: dict | str | Path, b: dict | str | Path, *, fields: Sequence[str] = MEASURED) -> list[Difference]:
    """The differences between two reports' records (report dicts, report.json files or report
    directories): records are matched by IDENTITY (clause, backend, device, dtype, mode) and
    compared on ``fields`` (default MEASURED: verdict and measured values; add TEXT for
    messages and reproducers).  Timings, timestamps and the environment are not compared.
    Empty when the records agree."""
    ra, rb = (_by_identity(load(r) if not isinstance(r, dict) else r) for r in (a, b))
    out = []
    for key in sorted(ra.keys() | rb.keys(), key=lambda k: tuple("" if v is None else str(v) for v in k)):
        x, y = ra.get(key), rb.get(key)
        if x is None or y is None:
            out.append(Difference(key, None, x, y))
            continue
        out += [Difference(key, f, x.get(f), y.get(f)) for f in fields if x.get(f) != y.get(f)]
    return out


def _by_identity(report: dict) -> dict[tuple, dict]:
    recs: dict[tuple, dict] = {}
    for r in report["records"]:
        key = tuple(r.get(k) for k in IDENTITY)
        if key in recs:
            raise ValueError(f"two records for {key} in one report")
        recs[key] = r
    return recs
