"""scripts/gen_findings_doc.py: docs/findings.md is generated from the findings catalog, is up
to date, shows every finding in its own words, and keeps Markdown placeholders visible."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.scripts import load_script

ROOT = Path(__file__).resolve().parent.parent
CATALOG_PATH = ROOT / "probes" / "data" / "findings.json"
DOC_PATH = ROOT / "docs" / "findings.md"


@pytest.fixture(scope="module")
def entries() -> dict[str, dict[str, str]]:
    data: dict[str, dict[str, str]] = json.loads(CATALOG_PATH.read_text(encoding="utf-8"))
    return data


GEN = load_script("gen_findings_doc")


def test_doc_is_up_to_date_with_the_catalog() -> None:
    assert DOC_PATH.exists(), "docs/findings.md is missing: run scripts/gen_findings_doc.py"
    expected = GEN.render(GEN.load_catalog())
    assert DOC_PATH.read_text(encoding="utf-8") == expected, (
        "docs/findings.md is stale: run /work/venv/bin/python scripts/gen_findings_doc.py"
    )
    assert GEN.main(["--check"]) == 0


def test_doc_shows_every_finding_with_its_words(entries: dict[str, dict[str, str]]) -> None:
    doc = DOC_PATH.read_text(encoding="utf-8")
    for fid, e in entries.items():
        block = doc.split(f"\n### {fid}\n", 1)
        assert len(block) == 2, f"no section for {fid} in docs/findings.md"
        body = block[1].split("\n### ", 1)[0]
        assert f"**{e['severity']}**" in body
        assert GEN.md(e["detail"]) in body and GEN.md(e["fix"]) in body
        if e["sender_error"]:
            assert "Typical sender error: " + GEN.md(e["sender_error"]) in body


def test_check_mode_catches_a_stale_doc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = tmp_path / "findings.md"
    monkeypatch.setattr(GEN, "DOC", doc)
    assert GEN.main(["--check"]) == 1  # missing
    doc.write_text(GEN.render(GEN.load_catalog()).replace("**Fix:**", "**Fix (old):**", 1))
    assert GEN.main(["--check"]) == 1  # stale
    assert GEN.main([]) == 0
    assert GEN.main(["--check"]) == 0


def test_markdown_keeps_placeholders_and_code_visible() -> None:
    text = "Publish `_mta-sts.<domain>` and check mta-sts.<domain> for *.example.org | _x_."
    out = GEN.md(text)
    assert "`_mta-sts.<domain>`" in out  # code spans are left alone
    assert "mta-sts.\\<domain\\>" in out  # not swallowed as an HTML tag
    assert "\\*.example.org \\| \\_x\\_." in out
    assert GEN.md("an `unpaired backtick <mx>") == "an `unpaired backtick \\<mx\\>"
