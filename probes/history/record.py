"""Recording a finished check: the one place every front end goes through.

`record_report()` never raises for a history problem: a check that could be made must still
report, so the caller gets a `Recorded` saying whether the run was stored, and the lines to show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from probes.model.errors import CheckError
from probes.model.options import Options

from .diff import RunDiff, diff_runs
from .store import HistoryStore, options_json


@dataclass
class Recorded:
    run_id: int | None  # None: not recorded
    notices: list[str] = field(default_factory=list)  # e.g. a corrupt file moved aside
    error: str | None = None  # why it was not recorded
    # What changed since the domain's previous recorded run (None: no previous run, or not
    # recorded): the UI's "changed since the last check" marks and the ticket's section.
    diff: RunDiff | None = None


def record_report(
    report: Any,
    started: datetime,
    *,
    source: str = "check",
    path: Path | None = None,
) -> Recorded:
    """Store a finished probes.report.Report in the history."""
    return record_document(report.to_json(), report.options, started, source=source, path=path)


def record_document(
    doc: dict[str, Any],
    options: Options | None,
    started: datetime,
    *,
    source: str = "check",
    path: Path | None = None,
) -> Recorded:
    """Store a finished check's `check --json` document in the history."""
    finished = datetime.now(timezone.utc)
    try:
        store = HistoryStore(path)
    except CheckError as exc:
        return Recorded(None, error=str(exc))
    with store:
        try:
            run_id = store.record_run(
                doc,
                started=started,
                finished=finished,
                source=source,
                options=options_json(options) if options is not None else None,
            )
            current = store.run(run_id)
            previous = store.previous(current)
        except CheckError as exc:
            return Recorded(None, list(store.notices), str(exc))
        diff = diff_runs(previous, current) if previous is not None else None
        return Recorded(run_id, list(store.notices), diff=diff)
