"""The domain list of `mxlens audit`: one domain per line (`#` starts a comment), or CSV with a
`domain` column and optional per-row `expect_name`, `connector`, `policy`.

A bad line never stops the audit: it becomes an item with an `error`, reported as a row with
exit 3 (the check could not be made) and skipped by the probing.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from probes.model.errors import CheckError
from probes.model.options import POLICIES
from probes.net.dns import to_ascii

MAX_ITEMS = 100_000
CSV_COLUMNS = ("domain", "expect_name", "connector", "policy")


@dataclass(frozen=True)
class Item:
    """One input line: `seq` numbers the items in input order (the audit's key)."""

    seq: int
    line: int
    domain: str
    expect_name: str | None = None
    connector: str | None = None
    policy: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Item:
        return cls(
            seq=int(data["seq"]),
            line=int(data["line"]),
            domain=str(data["domain"]),
            expect_name=data.get("expect_name"),
            connector=data.get("connector"),
            policy=data.get("policy"),
            error=data.get("error"),
        )


def _looks_like_csv(lines: list[str]) -> bool:
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        header = [c.strip().lower() for c in next(csv.reader([text]))]
        return "domain" in header
    return False


def _check_row(
    seq: int, line: int, domain: str, expect: str | None, conn: str | None, pol: str | None
) -> Item:
    from probes.interpret.connectors import PROFILES

    error = None
    try:
        to_ascii(domain)
    except CheckError as exc:
        error = str(exc)
    if error is None and conn and conn not in PROFILES:
        error = f"unknown connector {conn!r}"
    if error is None and pol and pol not in POLICIES:
        error = f"unknown policy {pol!r} (one of {', '.join(POLICIES)})"
    if error is None and pol == "domain" and not expect:
        error = "policy domain needs an expect_name"
    return Item(seq, line, domain, expect or None, conn or None, pol or None, error)


def parse(text: str) -> list[Item]:
    """Every domain line of `text` as an Item, bad ones with their error. CheckError when the
    input has no domain at all or too many."""
    lines = text.splitlines()
    items: list[Item] = []
    if _looks_like_csv(lines):
        start = next(i for i, ln in enumerate(lines) if ln.strip() and not ln.startswith("#"))
        reader = csv.reader(io.StringIO("\n".join(lines[start:])))
        header = [c.strip().lower() for c in next(reader)]
        unknown = [c for c in header if c and c not in CSV_COLUMNS]
        if unknown:
            raise CheckError(
                f"unknown CSV column(s) {', '.join(unknown)}; known: {', '.join(CSV_COLUMNS)}"
            )
        for offset, cells in enumerate(reader, start=start + 2):
            if not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
                continue
            if len(cells) > len(header):
                items.append(
                    Item(
                        len(items),
                        offset,
                        ",".join(cells),
                        error=f"{len(cells)} cells, the header has {len(header)}",
                    )
                )
                continue
            row = dict(zip(header, (c.strip() for c in cells), strict=False))
            items.append(
                _check_row(
                    len(items),
                    offset,
                    row.get("domain", ""),
                    row.get("expect_name"),
                    row.get("connector"),
                    row.get("policy"),
                )
            )
    else:
        for number, raw in enumerate(lines, start=1):
            text_line = raw.split("#", 1)[0].strip()
            if not text_line:
                continue
            if len(text_line.split()) > 1:
                items.append(
                    Item(len(items), number, text_line, error="more than one word on the line")
                )
                continue
            items.append(_check_row(len(items), number, text_line, None, None, None))
    if not items:
        raise CheckError(
            "the audit input has no domain (one per line, or CSV with a domain column)"
        )
    if len(items) > MAX_ITEMS:
        raise CheckError(f"the audit input has more than {MAX_ITEMS} domains")
    return items
