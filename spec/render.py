"""Render clauses as Markdown pages (docs/clauses/<id>.md) and an index.

The pages are generated, never edited by hand: ``ffnspec docs`` rewrites them and
the completeness test fails when a committed page is out of date.
"""
from __future__ import annotations

from pathlib import Path

from ffnspec.spec import EDITION, Clause, clauses

_CRITERIA = {
    "ulp": "error in ULPs of the exact value, |y - f(z)| / u(f(z)) (docs/measure.md)",
    "mixed": "mixed bound |y - f(z)| <= k (u (|f(z)| + S(z)) + eta) (docs/measure.md)",
    "identity": "residual of the backend's own results <= sum of the terms' allowances (docs/measure.md)",
    "exact": "exact: the relation holds on the backend's results with no tolerance",
    "bound": "a derived bound the check computes from the clause's formula (the derivation gives it)",
    "statistical": "a hypothesis test with a stated false-alarm rate and power (the derivation gives both)",
}


def _notes(c: Clause) -> str:
    """The course notes a clause reflects, by their labels on the provenance page."""
    labels = sorted({f"N{int(s[:3])}" for s in c.source.get("seeds", [])})
    return ", ".join(labels)


def _source(c: Clause) -> str:
    notes = _notes(c)
    return (f"Goodfellow, Bengio & Courville, *Deep Learning* (MIT Press, 2016), {c.source.get('book', '')}"
            + (f"; course notes {notes} ([provenance](../provenance.md))" if notes else ""))


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _term(t: dict) -> str:
    coef = t.get("coef", 1)
    sign = "-" if coef < 0 else "+"
    mag = "" if abs(coef) == 1 else f"{abs(coef):g} "
    if "const" in t:
        body = f"{t['const']}"
    elif "input" in t:
        body = t["input"]
    elif "ref" in t:
        body = f"exact `{t['ref']}`(z)"
    else:
        body = f"`{t['op']}`({', '.join(t['args'])})"
    return f"{sign} {mag}{body}"


def clause_page(c: Clause) -> str:
    t = c.tolerance
    lines = [f'<a id="{c.id}"></a>', "", f"# [{c.id}] {c.title}", "",
             f"> **Cite as:** `{c.citation}`  ", f"> Edition {EDITION}; this page: `clauses/{c.id}/#{c.id}` "
             "([how ids and editions work](../editions.md))", "",
             "## Statement", "", "$$", c.statement, "$$", "",
             f"- **Kind:** {c.kind}",
             f"- **Source:** {_source(c)}"]
    if c.op:
        lines.append(f"- **Adapter op:** `{c.op}`" + (f" with arguments ({', '.join(c.args)})" if c.args != ("z",) else ""))
    if c.reference:
        lines.append(f"- **Reference:** `ffnspec.reference.{c.reference}`")
    if c.predicate:
        lines.append(f"- **Property check:** `{c.predicate}`")
    if c.check:
        lines.append(f"- **Check:** `{c.check}`" + (f" using ops {', '.join(f'`{o}`' for o in c.ops())}" if c.ops() else ""))
    if c.params:
        lines.append("- **Op parameters:** " + ", ".join(f"`{k}` = {v}" for k, v in c.params.items()))
    if c.domain:
        lines.append(f"- **Domain:** [{c.domain[0]:g}, {c.domain[1]:g}]")
    if "vectors" in c.extra:  # ops over rows and batches (out family): a recipe of conformance/inputs/rows.py
        lines.append(f"- **Inputs:** `ffnspec.conformance.inputs.rows.{c.extra['vectors']}`"
                     + (f"; differentiated w.r.t. argument(s) {c.extra['wrt']}" if "wrt" in c.extra else ""))
    for mode, refs in c.extra.get("modes", {}).items():
        lines.append(f"- **{mode}:** reference `ffnspec.reference.{refs['reference']}`"
                     + "".join(f"; {k} `ffnspec.reference.{refs[k]}`" for k in ("scale", "accumulation", "underflow")
                               if k in refs))
    lines += ["", "## Error criterion", "", f"- **Criterion:** {_CRITERIA[t.criterion]}"]
    if t.must is not None:
        lines.append(f"- **MUST bound:** {t.must:g}" + (" ULP" if t.criterion == "ulp" else " (k)")
                     + (f" + {t.per_term:g} n (n: terms summed, see the derivation)" if t.per_term else ""))
    if t.scale:
        lines.append(f"- **Scale S(z):** `ffnspec.reference.{t.scale}`")
    if t.underflow:
        lines.append(f"- **Underflow factor c(z):** `ffnspec.reference.{t.underflow}`")
    if t.accumulation:
        lines.append(f"- **Accumulation term A:** `ffnspec.reference.{t.accumulation}`, in units of u_acc "
                     "(float32 for 16-bit storage, the format's own u otherwise)")
    if t.accuracy is not None:
        lines.append(f"- **Accuracy (findings):** {t.accuracy:g} ULP of the exact value" if t.accuracy_scale is None else
                     f"- **Accuracy (findings):** mixed, k = {t.accuracy:g} with S_acc(z) = "
                     f"`ffnspec.reference.{t.accuracy_scale}`")
    lines += ["- **Graded beyond MUST:** correctly rounded / faithful / <=2 / <=4 / <=16 / >16 ULP"
              if t.criterion in ("ulp", "mixed") else "", "", "### Derivation", "", "```", t.derivation.strip(), "```"]
    if t.accuracy is not None:
        lines += ["", "### Derivation of the accuracy criterion", "", "```", t.accuracy_derivation.strip(), "```"]
    if c.relations:
        lines += ["", "## Relations checked", ""]
        for rel in c.relations:
            lines.append("- " + " ".join(_term(x) for x in rel).lstrip("+ ") + " = 0")
    if c.special:
        lines += ["", "## Special values", "", "| z | value | sign of zero |", "|---|---|---|"]
        for e in c.special:
            z = e["z"] if "z" in e else f"`{c.op}`(" + ", ".join(str(a) for a in e["args"]) + ")"
            lines.append(f"| {z} | {e['value']} | {'must match' if e.get('signed', True) else 'either'} |")
    if c.conventions and all("allowed" in e for e in c.conventions):  # a kink/tie table (hid.conventions)
        lines += ["", "## Conventions", "", "| convention | op | point | of | preferred | allowed | reason |",
                  "|---|---|---|---|---|---|---|"]
        for e in c.conventions:
            lines.append(f"| {e['name']} | `{e['op']}` | {e['point']} | {e['of']} | {e['preferred']} | "
                         f"{', '.join(e['allowed'])} | {e['reason']} |")
    elif c.conventions:
        lines += ["", "## Conventions", "", "| convention | preferred | reason |", "|---|---|---|"]
        for e in c.conventions:
            lines.append(f"| {e['name']} | {e['preferred']} | {e['reason']} |")
    if c.references:
        lines += ["", "## References", ""] + [f"- {r}" for r in c.references]
    return "\n".join(ln for ln in lines if ln is not None) + "\n"


def index_page() -> str:
    lines = [f"# ffnspec {EDITION} clauses", "", "Generated from `spec/*.toml` by `ffnspec docs`.", "",
             "| clause | kind | title | criterion |", "|---|---|---|---|"]
    for c in clauses():
        crit = c.tolerance.criterion + (f" {c.tolerance.must:g}" if c.tolerance.must is not None else "")
        lines.append(f"| [{c.id}]({c.id}.md) | {c.kind} | {_cell(c.title)} | {crit} |")
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    """File name -> content for every generated page."""
    out = {f"{c.id}.md": clause_page(c) for c in clauses()}
    out["index.md"] = index_page()
    return out


OPS_BEGIN, OPS_END = "<!-- ops table: generated by `ffnspec docs` from spec/ops.toml -->", "<!-- end of ops table -->"


def ops_table() -> str:
    """Every adapter op: signature (ffnspec's argument order), result shape, the clauses that
    call it, and whether its derivative is checked (the derivative kinds run vjp and jvp)."""
    from ffnspec.spec import MODED_KINDS, ops
    users: dict[str, list[Clause]] = {}
    for c in clauses():
        for o in c.ops():
            users.setdefault(o, []).append(c)
    lines = [OPS_BEGIN, "", "| op | signature | result | labels | derivative checked | clauses | like |",
             "|---|---|---|---|---|---|---|"]
    for name, op in ops().items():
        cs = users.get(name, [])
        deriv = "vjp, jvp" if any(c.kind in MODED_KINDS for c in cs) else "no"
        cited = ", ".join(f"[{c.id}](clauses/{c.id}.md)" for c in cs) or "(composite programs)"
        lines.append(f"| `{name}`{' (optional)' if op.optional else ''} | `{_cell(op.signature)}` | "
                     f"{op.shape}: {_cell(op.meaning)} | {', '.join(op.labels)} | {deriv} | {cited} | {_cell(op.like)} |")
    return "\n".join(lines + ["", OPS_END])


def with_ops_table(guide: str) -> str:
    """docs/adapters.md with its generated ops table replaced by the current one."""
    return _replace_between(guide, OPS_BEGIN, OPS_END, ops_table())


EDITIONS_BEGIN, EDITIONS_END = "<!-- changelog: generated by `ffnspec docs` from spec/editions.toml -->", "<!-- end of changelog -->"


def editions() -> list[dict]:
    """The changelog (spec/editions.toml), oldest edition first."""
    import tomllib
    from importlib import resources
    return tomllib.loads(resources.files("ffnspec.spec").joinpath("editions.toml").read_text(encoding="utf-8"))["edition"]


def changelog() -> str:
    """Per edition: the clauses added, those whose criterion changed, those retired."""
    lines = [EDITIONS_BEGIN, ""]
    for e in reversed(editions()):
        added = [c.id for c in clauses()] if e["added"] == "all" else list(e["added"])
        families = ", ".join(dict.fromkeys(f"`{i.split('.', 1)[0]}`" for i in added))
        lines += [f"### {e['name']}", "", e.get("summary", "") + (f" Families: {families}." if added else ""), "",
                  f"- **Added ({len(added)}):** " + ", ".join(f"[{i}](clauses/{i}.md)" for i in added),
                  "- **Changed criterion:** " + ("; ".join(f"[{c['id']}](clauses/{c['id']}.md): {c['what']}"
                                                          for c in e["changed"]) or "none"),
                  "- **Retired:** " + (", ".join(f"`{i}`" for i in e["retired"]) or "none"), ""]
    return "\n".join(lines + [EDITIONS_END])


def _replace_between(text: str, begin: str, end: str, new: str) -> str:
    start, stop = text.index(begin), text.index(end) + len(end)
    return text[:start] + new + text[stop:]


def source_docs_dir() -> Path | None:
    """docs/clauses of the source checkout this ffnspec runs from, or None for an installed copy."""
    root = Path(__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if (root / "docs").is_dir() and pyproject.is_file() and 'name = "ffnspec"' in pyproject.read_text(encoding="utf-8"):
        return root / "docs" / "clauses"
    return None


def write(directory: str | Path) -> list[Path]:
    """Write the clause pages (and, in a checkout's docs/, the ops table of adapters.md and the
    changelog of editions.md)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in pages().items():
        p = d / name
        if not p.exists() or p.read_text(encoding="utf-8") != text:
            p.write_text(text, encoding="utf-8")
            written.append(p)
    for stale in set(x.name for x in d.glob("*.md")) - set(pages()):
        (d / stale).unlink()
        written.append(d / stale)
    for name, begin, end, make in (("adapters.md", OPS_BEGIN, OPS_END, ops_table),
                                   ("editions.md", EDITIONS_BEGIN, EDITIONS_END, changelog)):
        guide = d.parent / name
        if guide.is_file() and begin in guide.read_text(encoding="utf-8"):
            old = guide.read_text(encoding="utf-8")
            new = _replace_between(old, begin, end, make())
            if new != old:
                guide.write_text(new, encoding="utf-8")
                written.append(guide)
    return written
