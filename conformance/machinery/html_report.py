"""report.html: one self-contained page, written only from a report.json's data.

Top: the verdict, backend, versions and profile; a clause x dtype (x mode, x device) grid
coloured by verdict, each cell linking to its record.  Then per clause: its statement
(rendered with matplotlib's mathtext where it parses, else the TeX source), a plot of the
error against the input for the records that carry a curve (every failing, deviating or
finding record, and the exhaustive 16-bit sweeps), and per record the criterion, max error,
worst input, message and reproducer (with a copy button).  A histogram of ULP errors per
dtype sits under the grid.  Plots need matplotlib (the ``report`` extra); without it the page
is complete but for the plots and says how to get them.  No CDN, no network: images are
``data:`` URIs, the style and the copy script are inline.
"""
from __future__ import annotations

import html
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from ffnspec.conformance.machinery import plots
from ffnspec.conformance.machinery.records import CURVE_POINTS, ULP_EDGES
from ffnspec.conformance.machinery.report import FAILING, environment_text, error_cell

SIXTEEN_BIT = ("float16", "bfloat16")
UNITS = {"ulp": "ULP", "mixed": "k of the mixed bound", "identity": "of the allowance", "exact": "grid steps off; 0 required"}
DTYPE_ORDER = {"float16": 0, "bfloat16": 1, "float32": 2, "float64": 3}
COLOURS = {"pass": "#c8e6c9", "fail": "#ef9a9a", "error": "#f48fb1", "internal_error": "#ce93d8",
           "xpass": "#ffcc80", "deviation": "#fff59d", "not_implemented": "#cfd8dc", "skipped": "#eeeeee",
           "pending": "#eeeeee", "finding": "#b3e5fc"}
SHORT = {"pass": "pass", "fail": "FAIL", "error": "ERR", "internal_error": "BUG", "xpass": "XPASS",
         "deviation": "dev", "not_implemented": "n/i", "skipped": "skip", "pending": "…", "finding": "find"}
MATH_LIMIT = 30  # statements rendered with mathtext (~60 ms each); the rest show their TeX source

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;color:#222;max-width:80em}
h1{font-size:1.5em} h2{font-size:1.25em;border-bottom:1px solid #ccc} h3{font-size:1.05em;margin-bottom:.3em}
.verdict{font-size:1.3em;font-weight:bold;padding:.3em .6em;display:inline-block;border-radius:4px}
table{border-collapse:collapse;font-size:.85em} td,th{border:1px solid #ccc;padding:2px 5px;text-align:left}
table.grid td.cell{text-align:center;min-width:3.2em} table.grid td.cell a{color:#000;text-decoration:none;display:block}
table.grid th.clause{font-weight:normal;font-family:monospace;white-space:nowrap}
pre{background:#f6f8fa;padding:.6em;overflow-x:auto;font-size:.85em;white-space:pre-wrap}
.record{border-left:6px solid #ccc;padding:.2em .8em;margin:.8em 0}
.clause{margin-top:2em} .muted{color:#666;font-size:.9em} .tex{font-family:monospace;background:#f6f8fa;padding:.2em}
button.copy{float:right;font-size:.8em} dl{display:grid;grid-template-columns:max-content auto;gap:.1em 1em;margin:.3em 0}
dt{font-weight:bold} dd{margin:0} img.plot{max-width:100%;display:block} img.math{max-width:100%;vertical-align:middle}
.note{background:#fff8e1;border:1px solid #ffe082;padding:.5em} table.passes{margin:.5em 0}
"""
_SCRIPT = """
function copyText(id, button){
  var text = document.getElementById(id).innerText;
  function done(){ button.textContent = 'copied'; setTimeout(function(){ button.textContent = 'copy'; }, 1500); }
  if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(text).then(done); return; }
  var t = document.createElement('textarea'); t.value = text; document.body.appendChild(t); t.select();
  try { document.execCommand('copy'); done(); } finally { document.body.removeChild(t); }
}
"""


def anchor(r: dict) -> str:
    """A record's anchor: r-<clause>-<dtype>-<device>[-<mode>]."""
    return "r-" + "-".join(str(x) for x in (r["clause"], r["dtype"], r["device"], r["mode"]) if x)


def shown_verdict(r: dict) -> str:
    """The verdict a cell shows: a pass with accuracy findings shows as a finding."""
    return "finding" if r["verdict"] == "pass" and r.get("findings") else r["verdict"]


def bound(r: dict) -> float | None:
    """The violation threshold of a curve, in the criterion's unit (Record._check_scope's)."""
    return {"ulp": r["must"], "mixed": r["must"], "identity": 1.0}.get(r["criterion"])


def plotted(r: dict) -> bool:
    """Records whose curve is drawn: failing, deviating or finding records, and 16-bit sweeps."""
    return bool(r.get("curve")) and (r["verdict"] in FAILING or r["verdict"] == "deviation"
                                      or bool(r.get("findings")) or r["dtype"] in SIXTEEN_BIT)


def _e(text: Any) -> str:
    return html.escape("" if text is None else str(text))


def _clause_info(clause_id: str):
    """The clause of this ffnspec's spec (statement, title, criterion text), or None for a
    clause this edition does not have (a report from another edition)."""
    from ffnspec import spec
    try:
        return spec.clause(clause_id)
    except KeyError:
        return None


def _columns(records: list[dict]) -> list[tuple]:
    """Grid columns: (dtype, device, mode) in the report's order of dtypes, then modes."""
    seen: dict[tuple, None] = {}
    for r in records:
        seen.setdefault((r["dtype"], r["device"], r["mode"]), None)
    return sorted(seen, key=lambda k: (DTYPE_ORDER.get(k[0], 9), k[1], {None: 0, "vjp": 1, "jvp": 2}.get(k[2], 3)))


def _grid(data: dict) -> str:
    records = data["records"]
    cols = _columns(records)
    multi_device = len({c[1] for c in cols}) > 1
    cells: dict[tuple, dict] = {(r["clause"], r["dtype"], r["device"], r["mode"]): r for r in records}
    clauses = list(dict.fromkeys(r["clause"] for r in records))
    head = "".join(f"<th>{_e(d)}{'/' + _e(dev) if multi_device else ''}{'<br>' + _e(m) if m else ''}</th>"
                   for d, dev, m in cols)
    rows = []
    for c in clauses:
        tds = []
        for d, dev, m in cols:
            r = cells.get((c, d, dev, m))
            if r is None:
                tds.append('<td class="cell" style="background:#fafafa"></td>')
                continue
            v = shown_verdict(r)
            tip = f"{r['verdict']}; {error_cell(r)}".strip("; ")
            tds.append(f'<td class="cell" style="background:{COLOURS.get(v, "#fff")}" title="{_e(tip)}">'
                       f'<a href="#{anchor(r)}">{SHORT.get(v, _e(v))}</a></td>')
        rows.append(f'<tr><th class="clause"><a href="#c-{_e(c)}">{_e(c)}</a></th>{"".join(tds)}</tr>')
    legend = " ".join(f'<span style="background:{COLOURS[v]};padding:0 .4em">{SHORT[v]}</span> {v.replace("_", " ")}'
                      for v in ("pass", "finding", "deviation", "xpass", "not_implemented", "fail", "error",
                                "internal_error", "skipped"))
    return (f'<p class="muted">{legend}</p><table class="grid" id="grid"><thead><tr><th>clause</th>{head}</tr>'
            f'</thead><tbody>{"".join(rows)}</tbody></table>')


def _histogram(records: list[dict], with_plots: bool) -> str:
    per: dict[str, list[int]] = {}
    for r in records:
        h = r.get("ulp_hist")
        if h:
            acc = per.setdefault(r["dtype"], [0] * len(h))
            per[r["dtype"]] = [a + b for a, b in zip(acc, h)]
    if not per:
        return ""
    per = dict(sorted(per.items(), key=lambda kv: DTYPE_ORDER.get(kv[0], 9)))
    labels = [f"[{a:g}, {b:g})" for a, b in zip(ULP_EDGES, ULP_EDGES[1:])] + [f"≥ {ULP_EDGES[-1]:g}", "non-finite"]
    table = ("<table><tr><th>dtype</th>" + "".join(f"<th>{_e(x)}</th>" for x in labels) + "</tr>"
             + "".join(f"<tr><td>{_e(d)}</td>" + "".join(f"<td>{v}</td>" for v in c) + "</tr>" for d, c in per.items())
             + "</table>")
    img = (f'<img class="plot" id="plot-histogram" alt="ULP error histogram per dtype" '
           f'src="{plots.ulp_histogram(per, ULP_EDGES)}">' if with_plots else "")
    return f'<h2 id="histogram">ULP errors per dtype</h2>{img}{table}'


def _kv(pairs: list[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in pairs if v) + "</dl>"


def _code(text: str, ident: str, label: str) -> str:
    return (f'<div><b>{label}</b> <button class="copy" type="button" onclick="copyText(\'{ident}\', this)">copy</button>'
            f'<pre id="{ident}">{_e(text)}</pre></div>')


def finding_reproducer(finding: str) -> str | None:
    """The reproducer inside a finding's text (records.assess_accuracy: its last block, indented)."""
    lines = finding.splitlines()
    if "  reproducer:" not in lines:
        return None
    return "\n".join(ln[4:] for ln in lines[lines.index("  reproducer:") + 1:])


def _passing(recs: list[dict]) -> str:
    """Plain passes, one row each (the row is the record's anchor)."""
    rows = "".join(
        f'<tr id="{anchor(r)}"><td>{" / ".join(_e(x) for x in (r["dtype"], r["device"], r["mode"]) if x)}</td>'
        f'<td>{_e(error_cell(r))}</td><td>{_e(r["max_ulp"]) if r["max_ulp"] is not None else ""}</td>'
        f'<td>{_e(r["grade"])}</td><td>{r["examples"]}</td></tr>' for r in recs)
    return ('<table class="passes"><tr><th>passed on</th><th>max error (criterion)</th><th>max ULP</th>'
            f'<th>grade</th><th>examples</th></tr>{rows}</table>')


def _record(r: dict) -> str:
    v = shown_verdict(r)
    a = anchor(r)
    where = " / ".join(_e(x) for x in (r["dtype"], r["device"], r["mode"]) if x)
    worst = ", ".join(_e(x) for x in r["worst_input"][:8]) + (", …" if len(r["worst_input"]) > 8 else "") \
        if r.get("worst_input") else ""
    parts = [f'<div class="record" id="{a}" style="border-left-color:{COLOURS.get(v, "#ccc")}">',
             f'<h3>{where} — {_e(r["verdict"])}{" (accuracy findings)" if v == "finding" else ""}</h3>',
             _kv([("criterion", _e(r["criterion"]) + (f", MUST ≤ {r['must']:g}" if r["must"] is not None else "")),
                  ("max error", _e(error_cell(r))),
                  ("max ULP", _e(r["max_ulp"]) if r["max_ulp"] is not None else ""),
                  ("grade", _e(r["grade"])), ("worst input", worst),
                  ("got / exact", f"{_e(r['worst_output'])} / {_e(r['worst_exact'])}" if r.get("worst_output") is not None
                   and r["verdict"] != "pass" else ""),
                  ("examples", f"{r['examples']} ({r['violations']} violating)"),
                  ("deviation", _e(r["deviation"])),
                  ("notes", "<br>".join(_e(n) for n in r["notes"]))])]
    if r.get("message") and r["verdict"] != "pass":
        parts.append(f"<details{' open' if r['verdict'] in FAILING else ''}><summary>message</summary>"
                     f"<pre>{_e(r['message'])}</pre></details>")
    if r.get("finding"):
        parts.append(f"<details><summary>accuracy finding</summary><pre>{_e(r['finding'])}</pre></details>")
        repro = finding_reproducer(r["finding"])
        if repro and not r.get("reproducer"):
            parts.append(_code(repro, a + "-repro", "reproducer (worst finding)"))
    if r.get("reproducer"):
        parts.append(_code(r["reproducer"], a + "-repro", "reproducer"))
    if r.get("deviation_reproducer"):
        parts.append(_code(r["deviation_reproducer"], a + "-devrepro", "reproducer (from the declaration)"))
    parts.append("</div>")
    return "".join(parts)


def _clause_section(cid: str, recs: list[dict], with_plots: bool, render_math: bool) -> str:
    c = _clause_info(cid)
    parts = [f'<section class="clause" id="c-{_e(cid)}"><h2>[{_e(cid)}] {_e(c.title) if c else ""}</h2>']
    if c is not None:
        img = plots.statement_image(c.statement) if render_math else None
        tex = " ".join(c.statement.split())
        parts.append(f'<p><img class="math" alt="{_e(tex)}" src="{img}"></p>' if img else
                     f'<p class="tex">{_e(tex)}</p>')
        parts.append(f'<p class="muted">Cite as <code>{_e(c.citation)}</code>; kind {_e(c.kind)}; source '
                     f'§{_e(c.source.get("book", "").lstrip("§"))}</p>')
    drawn = [r for r in recs if plotted(r)]
    if drawn and with_plots:
        series: dict[str, list] = {}
        for r in sorted(drawn, key=lambda r: DTYPE_ORDER.get(r["dtype"], 9)):
            label = "/".join(x for x in (r["mode"], r["device"] if len({q["device"] for q in recs}) > 1 else None) if x)
            series.setdefault(r["dtype"], []).append((label, r["curve"]["x"], r["curve"]["error"]))
        unit = UNITS.get(drawn[0]["criterion"], "criterion units")
        what = "16-bit: every input; " if any(r["dtype"] in SIXTEEN_BIT for r in drawn) else ""
        img = plots.error_curve(series, bound(drawn[0]), title=f"[{cid}] error against the input ({what}"
                                f"the worst of ≤{CURVE_POINTS} input slices)", unit=unit)
        parts.append(f'<img class="plot" id="plot-{_e(cid)}" alt="error against the input for {_e(cid)}" src="{img}">')
    plain = [r for r in recs if r["verdict"] == "pass" and not r.get("findings")]
    parts += [_record(r) for r in recs if not (r["verdict"] == "pass" and not r.get("findings"))]
    if plain:
        parts.append(_passing(plain))
    parts.append("</section>")
    return "".join(parts)


def render(data: dict, *, with_plots: bool | None = None) -> str:
    """The page for one report.json's data.  ``with_plots``: default, whether matplotlib imports."""
    with_plots = plots.available() if with_plots is None else with_plots
    b, s = data["backend"], data["summary"]
    records = data["records"]
    by_clause: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_clause[r["clause"]].append(r)
    colour = COLOURS["fail"] if not s["conforms"] else COLOURS["deviation"] if s["declared_deviations"] else COLOURS["pass"]
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(s["verdicts"].items()))
    attention = [r for r in records if r["verdict"] not in ("pass", "skipped") or r.get("findings")]
    # mathtext is slow: render the statements of the clauses needing attention first, up to MATH_LIMIT
    math_for = list(dict.fromkeys([r["clause"] for r in attention] + list(by_clause)))[:MATH_LIMIT] if with_plots else []
    note = "" if with_plots else (f'<p class="note" id="no-plots">Plots are not included: matplotlib is not installed. '
                                  f'{_e(plots.INSTALL_HINT)}.</p>')
    head = [f"<h1>ffnspec {_e(data['edition'])} conformance: {_e(b['name'])}</h1>",
            f'<p><span class="verdict" id="verdict" style="background:{colour}">{_e(s["verdict"])}</span></p>',
            f"<p>{_e(counts)}</p>",
            _kv([("backend", f"{_e(b['name'])} (<code>{_e(b['spec'])}</code>)"),
                 ("ffnspec", f"{_e(data['ffnspec'])}, edition {_e(data['edition'])}, report schema {_e(data['schema'])}"),
                 ("profile", _e(data["profile"])), ("dtypes", _e(", ".join(data["dtypes"]))),
                 ("devices", _e(", ".join(data["devices"]))), ("created", _e(data["created"])),
                 ("environment", _e(environment_text(data["environment"]))),
                 ("conventions", _e(", ".join(f"{k} = {v}" for k, v in b["conventions"].items()) or "none"))]),
            note]
    body = head + ["<h2>Clauses × dtypes</h2>", _grid(data)]
    if attention:
        body.append(f"<details{' open' if len(attention) <= 20 else ''}><summary><b>{len(attention)} records need "
                    "attention</b> (not a plain pass)</summary><ul>" + "".join(
                        f'<li><a href="#{anchor(r)}">[{_e(r["clause"])}] '
                        f'{" / ".join(_e(x) for x in (r["dtype"], r["device"], r["mode"]) if x)}</a>: '
                        f'{_e(shown_verdict(r))} {_e(error_cell(r))}</li>' for r in attention) + "</ul></details>")
    body += [_histogram(records, with_plots), "<h2>Records</h2>"]
    body += [_clause_section(cid, recs, with_plots, cid in math_for) for cid, recs in by_clause.items()]
    title = f"ffnspec {data['edition']}: {b['name']} — {s['verdict']}"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style>'
            f'<script>{_SCRIPT}</script></head><body>{"".join(body)}</body></html>\n')


def write(data: dict, directory: str | Path, *, with_plots: bool | None = None) -> tuple[Path, float]:
    """Write report.html into ``directory``; returns its path and the seconds it took."""
    start = time.perf_counter()
    path = Path(directory) / "report.html"
    path.write_text(render(data, with_plots=with_plots), encoding="utf-8")
    plots.save_images()
    return path, time.perf_counter() - start
