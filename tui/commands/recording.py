"""Recording a headless check in the history, and saying so when it could not be."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from probes.model.safetext import visible

if TYPE_CHECKING:  # the history (sqlite3 and all) loads when a check is recorded, not for --help
    from probes.history.record import Recorded
    from probes.model.options import Options


def add_history_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-history",
        action="store_true",
        help="do not record this check in the history database ($MXLENS_STATE_DIR)",
    )


def record_check(report: Any, started: datetime, *, source: str = "check") -> Recorded:
    """Record `report`; any trouble goes to stderr as one line each, never changing the exit."""
    from probes.history.record import record_report

    return _said(record_report(report, started, source=source))


def record_check_document(
    doc: dict[str, Any], options: Options, started: datetime, *, source: str
) -> Recorded:
    """Record a finished check's document (explain --run keeps no Report)."""
    from probes.history.record import record_document

    return _said(record_document(doc, options, started, source=source))


def _said(recorded: Recorded) -> Recorded:
    for line in recorded.notices:
        sys.stderr.write(f"mxlens: {visible(line)}\n")
    if recorded.run_id is None:
        sys.stderr.write(
            f"mxlens: this check was not recorded in the history: {visible(recorded.error or '')}\n"
        )
    return recorded
