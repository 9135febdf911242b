"""Family status pages of the documentation site, from report.json files.

``slim`` keeps of a report what a status page shows (backend, edition, versions, and one
verdict per record); ``ffnspec docs --reports DIR ...`` stores it as docs/status/<backend>.json
(committed, or written by CI from its ci-report/ directories), and ``pages`` renders
docs/families/<family>.md: each clause of the family with its status on every known backend.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from ffnspec.spec import EDITION, clauses

# A clause's status on a backend: the worst verdict of its records, in this order.
_ORDER = ("internal_error", "error", "fail", "xpass", "not_implemented", "deviation", "pass", "skipped", "pending")


def slim(report: dict) -> dict:
    """The part of a report.json a status page shows."""
    env = report["environment"]
    version = env.get(report["backend"]["name"])
    return {"backend": report["backend"]["name"], "version": version, "edition": report["edition"],
            "ffnspec": report["ffnspec"], "created": report["created"], "profile": report["profile"],
            "verdict": report["summary"]["verdict"], "python": env["python"], "platform": env["platform"],
            "records": [[r["clause"], r["dtype"], r["device"], r["mode"], r["verdict"] if not
                         (r["verdict"] == "pass" and r.get("findings")) else "finding"] for r in report["records"]]}


def store(report_dirs: list[str | Path], status_dir: Path) -> list[Path]:
    """docs/status/<backend>.json for each report directory (or report.json) given."""
    from ffnspec.conformance.machinery.report import load
    status_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for d in report_dirs:
        s = slim(load(d))
        p = status_dir / f"{s['backend'].replace(':', '_').replace('/', '_')}.json"
        head = json.dumps({k: v for k, v in s.items() if k != "records"}, indent=1)[:-2]
        rows = ",\n".join("  " + json.dumps(r) for r in s["records"])  # one record a line: readable diffs
        p.write_text(f'{head},\n "records": [\n{rows}\n ]\n}}\n', encoding="utf-8")
        out.append(p)
    return out


def load_all(status_dir: Path) -> list[dict]:
    """The stored statuses, by backend name."""
    if not status_dir.is_dir():
        return []
    return sorted((json.loads(p.read_text(encoding="utf-8")) for p in status_dir.glob("*.json")),
                  key=lambda s: s["backend"])


def _rank(verdict: str) -> int:
    return _ORDER.index(verdict) if verdict in _ORDER else len(_ORDER)  # "finding": a pass with findings


def _cell(verdicts: Counter) -> str:
    if not verdicts:
        return "not run"
    worst = min(verdicts, key=_rank)
    if worst == "pass":
        return f"pass ({verdicts['pass']})" + (f", {verdicts['finding']} finding(s)" if verdicts.get("finding") else "")
    return ", ".join(f"{v} {n}" for v, n in sorted(verdicts.items(), key=lambda kv: _rank(kv[0])))


def pages(statuses: list[dict]) -> dict[str, str]:
    """File name -> content: index.md and one <family>.md per family of the spec."""
    families: dict[str, list] = {}
    for c in clauses():
        families.setdefault(c.id.split(".", 1)[0], []).append(c)
    tallies: list[dict[str, Counter]] = []
    for s in statuses:
        t: dict[str, Counter] = {}
        for clause, _dtype, _device, _mode, verdict in s["records"]:
            t.setdefault(clause, Counter())["finding" if verdict == "finding" else verdict] += 1
        tallies.append(t)
    intro = ["Status from the reports in `docs/status/` (written by `ffnspec docs --reports DIR ...` from "
             "`ffnspec run --report DIR` directories; CI's are `ci-report/<backend>`).  A cell is the worst "
             "verdict of the clause's records (dtype x device x mode) on that backend, with counts.", ""]
    if statuses:
        intro += ["| backend | version | edition | profile | run | verdict |", "|---|---|---|---|---|---|"]
        intro += [f"| {s['backend']} | {s['version'] or ''} | {s['edition']} | {s['profile']} | {s['created']} | "
                  f"{s['verdict']} |" for s in statuses]
        stale = [s["backend"] for s in statuses if s["edition"] != EDITION]
        if stale:
            intro += ["", f"!!! warning \"Reports of another edition\"\n    {', '.join(stale)}: run under edition "
                      f"other than {EDITION}; their verdicts may not apply to this edition's clauses."]
    else:
        intro += ["No reports are stored yet: `ffnspec docs --reports ffnspec-report` adds one."]
    out = {}
    head = "| clause | title | " + " | ".join(s["backend"] for s in statuses) + " |"
    rule = "|---|---|" + "---|" * len(statuses)
    for fam, cs in families.items():
        lines = [f"# Family `{fam}`: clauses and status", "", *intro, "", head, rule]
        for c in cs:
            title = " ".join(c.title.split()).replace("|", "\\|")
            lines.append(f"| [{c.id}](../clauses/{c.id}.md) | {title} | "
                         + " | ".join(_cell(t.get(c.id, Counter())) for t in tallies) + " |")
        out[f"{fam}.md"] = "\n".join(lines) + "\n"
    index = [f"# Families (edition {EDITION})", "", "| family | clauses |", "|---|---|"]
    index += [f"| [{fam}]({fam}.md) | {len(cs)} |" for fam, cs in families.items()]
    out["index.md"] = "\n".join(index + ["", *intro]) + "\n"
    return out


def write(families_dir: Path, status_dir: Path) -> list[Path]:
    """Rewrite docs/families/ from docs/status/; returns the files changed."""
    families_dir.mkdir(parents=True, exist_ok=True)
    want = pages(load_all(status_dir))
    changed = []
    for name, text in want.items():
        p = families_dir / name
        if not p.exists() or p.read_text(encoding="utf-8") != text:
            p.write_text(text, encoding="utf-8")
            changed.append(p)
    for p in families_dir.glob("*.md"):
        if p.name not in want:
            p.unlink()
            changed.append(p)
    return changed
