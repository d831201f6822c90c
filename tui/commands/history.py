"""`mxlens history [DOMAIN] [--limit N] [--json]`: the recorded runs, newest first."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from probes.history.diff import short_time
from probes.history.store import HistoryStore, mxlens_version
from probes.model.errors import CheckError
from probes.model.safetext import json_escape_hidden, visible

HISTORY_SCHEMA = "mxlens/history/1"


def parser(
    parser_class: type[argparse.ArgumentParser], add_probe_options: Callable[..., None]
) -> argparse.ArgumentParser:
    p = parser_class(
        prog="mxlens history",
        description="List the recorded checks, newest first (all domains, or one).",
    )
    p.add_argument("domain", nargs="?", metavar="DOMAIN")
    p.add_argument("--limit", default="20", metavar="N", help="at most N runs (default 20)")
    p.add_argument("--json", action="store_true", help="print one JSON document (mxlens/history/1)")
    return p


def domain_arg(text: str) -> str:
    """The ASCII form a run is filed under; CheckError for a name that is no domain."""
    from probes.model.names import canonical
    from probes.net.dns import to_ascii

    return canonical(to_ascii(text.strip()))


def limit_arg(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 100_000:
        raise CheckError(f"--limit must be a whole number from 1 to 100000, not {text!r}")
    return int(text)


def open_store() -> HistoryStore:
    store = HistoryStore()
    for line in store.notices:
        sys.stderr.write(f"mxlens: {visible(line)}\n")
    return store


def run(ns: argparse.Namespace, options_from_args: Callable[..., Any]) -> int:
    domain = domain_arg(ns.domain) if ns.domain else None
    limit = limit_arg(ns.limit)
    with open_store() as store:
        runs = store.runs(domain, limit)
        path = store.path
    if ns.json:
        doc = {
            "schema": HISTORY_SCHEMA,
            "version": mxlens_version(),
            "database": str(path),
            "domain": domain,
            "runs": [r.to_json() for r in runs],
        }
        sys.stdout.write(json_escape_hidden(json.dumps(doc, indent=2, ensure_ascii=False)) + "\n")
        return 0
    if not runs:
        what = f"for {domain}" if domain else "yet"
        sys.stdout.write(f"No checks recorded {what} (database {visible(str(path))}).\n")
        return 0
    sys.stdout.write(f"{'run':>6}  {'started':20}  exit  {'worst':7}  {'source':6}  domain\n")
    for r in runs:
        sys.stdout.write(
            f"{r.id:>6}  {short_time(r.started):20}  {r.exit:>4}  {r.worst or '-':7}  "
            f"{r.source:6}  {visible(r.domain)}\n"
        )
    return 0
