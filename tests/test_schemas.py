"""Every JSON document mxlens prints is described by a schema in docs/schema/, and real
outputs validate against it. The schemas are the contract; docs/cli.md points at them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "docs" / "schema"
CORPUS = json.loads((ROOT / "tests" / "data" / "bounce_corpus.json").read_text("utf-8"))["corpus"]


def schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMAS / name).read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(data)
    return data


def test_every_schema_file_is_a_valid_schema() -> None:
    files = sorted(SCHEMAS.glob("*.json"))
    assert files, "no schemas in docs/schema"
    for path in files:
        schema(path.name)


def explain_json(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "tui.cli", "explain", "--json", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode in (0, 1), proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


@pytest.mark.parametrize(
    "entry", CORPUS[:: max(1, len(CORPUS) // 12)], ids=lambda e: e["text"][:30]
)
def test_explain_documents_follow_their_schema(entry: dict[str, Any]) -> None:
    jsonschema.validate(explain_json(entry["text"]), schema("mxlens-explain-1.json"))


def test_explain_schema_refuses_a_wrong_document() -> None:
    doc = explain_json("550 5.7.1 TLS required")
    doc["stage"] = "not-a-step"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema("mxlens-explain-1.json"))
