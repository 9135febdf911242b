"""The documentation site (mkdocs.yml): generated pages current, ids never reused, and a
strict build where mkdocs is installed (the `docs` extra)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ffnspec.conformance.machinery import status
from ffnspec.spec import clauses, render

ROOT = Path(__file__).resolve().parent.parent


def test_editions_changelog_is_current() -> None:
    # The changelog a citation relies on is generated from spec/editions.toml.  (docs/editions.md)
    text = (ROOT / "docs" / "editions.md").read_text(encoding="utf-8")
    assert render.changelog() in text, "docs/editions.md's changelog is stale: run `ffnspec docs`"


def test_retired_ids_are_never_reused() -> None:
    # A citation must never come to mean another clause: a retired id stays out of the spec.  (docs/editions.md)
    retired = [i for e in render.editions() for i in e["retired"]]
    assert not set(retired) & {c.id for c in clauses()}
    assert len(retired) == len(set(retired))


def test_family_pages_are_current() -> None:
    # Family pages are generated from the committed reports in docs/status/.  (docs/families/)
    want = status.pages(status.load_all(ROOT / "docs" / "status"))
    have = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "docs" / "families").glob("*.md")}
    assert have == want, "docs/families/ is stale: run `ffnspec docs`"


def test_clause_pages_carry_their_id_as_anchor() -> None:
    # Citations link to clauses/<id>/#<id>: the anchor is the id itself, whatever the title.
    for c in clauses():
        assert render.clause_page(c).startswith(f'<a id="{c.id}"></a>\n')


@pytest.mark.skipif(shutil.which("mkdocs") is None and not (Path(sys.executable).parent / "mkdocs").exists(),
                    reason="mkdocs is not installed: pip install -e '.[docs]'")
def test_site_builds_strictly(tmp_path: Path) -> None:
    # Broken links or anchors fail the build (strict), as in CI.  (mkdocs.yml)
    exe = shutil.which("mkdocs") or str(Path(sys.executable).parent / "mkdocs")
    res = subprocess.run([exe, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env={"NO_MKDOCS_2_WARNING": "1", "PATH": ""})
    assert res.returncode == 0, res.stdout + res.stderr
    page = (tmp_path / "site" / "clauses" / "act.softplus.grad" / "index.html").read_text(encoding="utf-8")
    assert 'id="act.softplus.grad"' in page and "ffnspec 2026.1 [act.softplus.grad]" in page
