"""report.html: a self-contained page written from report.json's records, checked structurally
(html.parser) and, where Chromium is installed, in a real headless browser."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from ffnspec.conformance.machinery import html_report, plots
from ffnspec.conformance.machinery.records import CURVE_POINTS, Record
from tests._inner import run_suite

BROKEN = "tests.mutants:SigmoidBiased"  # every finite sigmoid 8 grid steps high: fails [act.sigmoid]
CLAUSES = ("act.sigmoid", "act.sigmoid.complement", "act.sigmoid.range")
DTYPES = ("float16", "float32")


class Page(HTMLParser):
    """Every element's attributes, by tag, and the ids on the page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.ids: set[str] = set()
        self.grid_links: list[str] = []
        self._in_grid = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "table" and a.get("id") == "grid":
            self._in_grid = 1
        elif tag == "a" and self._in_grid and a.get("href", "").startswith("#r-"):
            self.grid_links.append(a["href"][1:])

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_grid = 0


def _run(pytester: pytest.Pytester) -> tuple[dict, Path]:
    ret, rep, out = run_suite(pytester, BROKEN, DTYPES, CLAUSES, cache=False)
    assert rep is not None and not rep["summary"]["conforms"], out
    page = next(pytester.path.glob("report*/report.html"))
    return rep, page


def test_page_is_self_contained_with_grid_plots_and_reproducer(pytester: pytest.Pytester) -> None:
    # A user opens report.html offline: one grid cell per record linking to its section, the
    # failing clause plotted against its bound, a copyable reproducer, nothing fetched.  [act.sigmoid]
    rep, path = _run(pytester)
    text = path.read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    anchors = {html_report.anchor(r) for r in rep["records"]}
    assert sorted(page.grid_links) == sorted(anchors)
    assert anchors <= page.ids
    for tag, a in page.tags:  # no CDN, no file beside it: images inline, links within the page
        if "src" in a:
            assert a["src"].startswith("data:"), (tag, a["src"][:80])
        if tag in ("link", "script") and "href" in a:
            pytest.fail(f"external resource {a}")
        if tag == "a":
            assert a.get("href", "#").startswith("#"), a
    failing = [r for r in rep["records"] if r["verdict"] == "fail"]
    assert failing and all(f'id="{html_report.anchor(r)}-repro"' in text for r in failing)
    assert "copyText(" in text and "[act.sigmoid]" in text and rep["summary"]["verdict"] in text
    if plots.available():
        ids = {a.get("id") for tag, a in page.tags if tag == "img" and a.get("class") == "plot"}
        assert {"plot-histogram", "plot-act.sigmoid"} <= ids, ids
        assert "no-plots" not in page.ids


def test_without_matplotlib_the_page_says_how_to_get_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    # Plots are an extra: without matplotlib the page keeps the grid and records and says what to install.
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert not plots.available()
    r = Record(clause="act.sigmoid", backend="numpy", dtype="float16", device="cpu", verdict="fail",
               criterion="ulp", must=1.0, examples=3, violations=1, reproducer="print(1)",
               curve={"x": [0.0, 1.0, 2.0], "error": [0.1, 3.0, 0.2]}, ulp_hist=[2, 0, 0, 1, 0, 0, 0, 0, 0])
    data = {"schema": 2, "ffnspec": "0", "edition": "2026.1", "created": "now", "profile": "fast",
            "backend": {"name": "numpy", "spec": "numpy", "conventions": {}}, "dtypes": ["float16"],
            "devices": ["cpu"], "environment": {"python": "3", "platform": "x", "numpy": "2"},
            "summary": {"verdicts": {"fail": 1}, "conforms": False, "complete": True, "declared_deviations": 0,
                        "accuracy_findings": 0, "verdict": "does not conform"},
            "deviations": [], "records": [r.to_json()]}
    text = html_report.render(data)
    page = Page()
    page.feed(text)
    assert "no-plots" in page.ids and "pip install &#x27;ffnspec[report]&#x27;" in text
    assert page.grid_links == [html_report.anchor(data["records"][0])]
    assert not [a for tag, a in page.tags if tag == "img"]


def test_curve_keeps_the_worst_of_each_slice() -> None:
    # The plotted curve is bounded (report.json stays small) yet keeps every peak: the worst
    # input of each slice survives down-sampling.  [act.sigmoid] (docs/report-schema.json, curve)
    r = Record(clause="act.sigmoid", backend="numpy", dtype="float16", device="cpu")
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.uniform(-10, 10, 5000)
        e = rng.uniform(0, 1, 5000)
        r.observe(inputs=[x], error=e, output=x, exact=x, ulp=e, curve=True)
    r.observe(inputs=[np.array([3.25])], error=np.array([7.0]), output=np.zeros(1), exact=np.zeros(1),
              ulp=np.array([7.0]), curve=True)
    assert len(r.curve["x"]) <= CURVE_POINTS and max(r.curve["error"]) == 7.0
    assert r.curve["x"] == sorted(r.curve["x"])
    assert sum(r.ulp_hist) == r.examples and r.ulp_hist[4] == 1  # 7 ULP in [4, 16)
    json.dumps(r.to_json(), allow_nan=False)


def _browser() -> str | None:
    return next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


# Loaded, scripted and painted in a real browser: the grid and the plots render.  [act.sigmoid]
@pytest.mark.skipif(_browser() is None, reason="no headless browser: install Debian's `chromium` package "
                    "(chromium, chromium-browser or google-chrome on PATH) to run the browser test")
def test_report_renders_in_headless_chromium(pytester: pytest.Pytester, tmp_path: Path) -> None:
    rep, path = _run(pytester)
    probe = tmp_path / "probe.html"  # the page plus a script recording what the browser laid out
    probe.write_text(path.read_text(encoding="utf-8").replace("</body>", """<script>
window.addEventListener('load', function () {
  var grid = document.getElementById('grid').getBoundingClientRect();
  var shown = Array.prototype.filter.call(document.querySelectorAll('img.plot'),
      function (i) { return i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().height > 0; });
  document.body.setAttribute('data-probe', JSON.stringify({grid: grid.height, cells: document.querySelectorAll('#grid td.cell a').length, plots: shown.length}));
});
</script></body>"""), encoding="utf-8")
    base = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--virtual-time-budget=10000", "--window-size=1280,2000"]
    dom = subprocess.run(base + ["--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
    marker = 'data-probe="'
    assert marker in dom, dom[-2000:]
    found = json.loads(dom.split(marker, 1)[1].split('"', 1)[0].replace("&quot;", '"'))
    assert found["grid"] > 0 and found["cells"] == len(rep["records"])
    if plots.available():
        assert found["plots"] >= 1, found
    shot = tmp_path / "report.png"
    subprocess.run(base + [f"--screenshot={shot}", path.as_uri()], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000  # a painted page, not a blank one


def test_html_command_needs_a_report_directory(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # `ffnspec html DIR` re-renders from DIR/report.json; a directory without one is a usage error (exit 2).
    from ffnspec.cli import main
    assert main(["html", str(tmp_path)]) == 2
    assert "has no report.json" in capsys.readouterr().err


def _page_data(errors: list[float]) -> dict:
    r = Record(clause="act.sigmoid", backend="numpy", dtype="float16", device="cpu", verdict="fail",
               criterion="ulp", must=1.0, examples=3, violations=1, reproducer="print(1)",
               curve={"x": [0.0, 1.0, 2.0], "error": errors}, ulp_hist=[2, 0, 0, 1, 0, 0, 0, 0, 0])
    return {"schema": 2, "ffnspec": "0", "edition": "2026.1", "created": "now", "profile": "ci",
            "backend": {"name": "numpy", "spec": "numpy", "conventions": {}}, "dtypes": ["float16"],
            "devices": ["cpu"], "environment": {"python": "3", "platform": "x", "numpy": "2"},
            "summary": {"verdicts": {"fail": 1}, "conforms": False, "complete": True, "declared_deviations": 0,
                        "accuracy_findings": 0, "verdict": "does not conform"},
            "deviations": [], "records": [r.to_json()]}


@pytest.mark.skipif(not plots.available(), reason="needs matplotlib (the report extra)")
def test_a_warm_report_draws_nothing_and_is_the_same_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Plots are functions of the records: the next report of the same records takes them from
    # the cache (drawing was a tenth of a warm run) and the page is byte for byte the same;
    # changed records are drawn again.
    from ffnspec.reference import tables
    monkeypatch.setattr(tables, "_cache_dir", tmp_path)
    monkeypatch.setattr(plots, "_images", None)
    monkeypatch.setattr(plots, "_used", {})
    first = tmp_path / "a"
    first.mkdir()
    html_report.write(_page_data([0.1, 3.0, 0.2]), first)
    assert (tmp_path / "plots" / "images.json").exists()
    drawn = []
    monkeypatch.setattr(plots, "_figure", lambda *a: drawn.append(a) or pytest.fail("drew a kept plot"))
    monkeypatch.setattr(plots, "_images", None)  # a new process: read back from the cache
    second = tmp_path / "b"
    second.mkdir()
    html_report.write(_page_data([0.1, 3.0, 0.2]), second)
    assert (first / "report.html").read_bytes() == (second / "report.html").read_bytes()
    monkeypatch.setattr(plots, "_figure", lambda *a: drawn.append(a) or pytest.fail("drawn"))
    with pytest.raises(pytest.fail.Exception, match="drawn"):
        html_report.render(_page_data([0.1, 4.0, 0.2]))
