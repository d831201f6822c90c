"""The audit table as JSON (`mxlens/audit/1`), CSV, Markdown or aligned text."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from probes.audit.rows import COLUMNS
from probes.model.safetext import visible

SCHEMA = "mxlens/audit/1"


def _cell(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def to_json(audit_id: str, version: str, rows: Sequence[dict[str, Any]], **extra: Any) -> str:
    doc = {"schema": SCHEMA, "audit": audit_id, "version": version, **extra, "rows": list(rows)}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*COLUMNS, "detail"])
    for row in rows:
        # A cell starting with = + - @ is a formula to a spreadsheet; network text must not be.
        cells = [_cell(row, key) for key in (*COLUMNS, "detail")]
        writer.writerow([("'" + c) if c[:1] in ("=", "+", "@") else c for c in cells])
    return out.getvalue()


def _md_cell(text: str) -> str:
    return visible(text).replace("|", "\\|")


def to_markdown(rows: Sequence[dict[str, Any]], title: str | None = None) -> str:
    out = [f"## {_md_cell(title)}", ""] if title else []
    out.append("| " + " | ".join(COLUMNS) + " |")
    out.append("|" + "|".join("---" for _ in COLUMNS) + "|")
    for row in rows:
        out.append("| " + " | ".join(_md_cell(_cell(row, key)) for key in COLUMNS) + " |")
    return "\n".join(out) + "\n"


def to_text(rows: Sequence[dict[str, Any]]) -> str:
    """Aligned columns for a terminal, with the detail of every row that is not OK below."""
    keys = ("domain", "verdict", "worst", "first_failure", "tls_version", "leaf_days_left")
    table = [list(keys)] + [[visible(_cell(row, k)) or "-" for k in keys] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(keys))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    problems = [row for row in rows if row.get("exit") != 0]
    if problems:
        lines.append("")
        for row in problems:
            lines.append(f"{visible(_cell(row, 'domain'))}: {visible(_cell(row, 'detail'))}")
    return "\n".join(lines) + "\n"
