"""`mxlens audit FILE|-`: check many domains into one table, the history and monitoring.

The engine (probes/audit) decides every row; this module reads the input, creates or resumes
the audit in the history database, draws the progress bar on a terminal, and writes the table.
On a terminal without an output flag it opens the UI's audit screen instead (`--no-ui` keeps
it headless).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from probes.model.errors import CheckError
from probes.model.options import Options


def parser(
    parser_class: type[argparse.ArgumentParser], add_probe_options: Callable[..., None]
) -> argparse.ArgumentParser:
    p = parser_class(
        prog="mxlens audit",
        description="Check many domains politely; one row per domain, recorded in the history "
        "(--resume ID continues). Exit status: the worst domain's.",
    )
    p.add_argument(
        "file",
        nargs="?",
        metavar="FILE|-",
        help="domains, one per line (# comments), or CSV with a domain column and optional "
        "expect_name, connector, policy; - reads stdin",
    )
    p.add_argument("--jobs", default="10", metavar="N", help="domains checked at once (default 10)")
    p.add_argument(
        "--max-connections",
        default="20",
        metavar="N",
        help="SMTP connections open at once, all domains together (default 20); one at a time per address always",
    )
    p.add_argument(
        "--rate",
        default="20",
        metavar="R",
        help="SMTP connections started per second at most (default 20; 0 = no cap)",
    )
    p.add_argument(
        "--workers",
        default="1",
        metavar="N",
        help="processes sharing the work (default 1); domains on one MX address stay in one process",
    )
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON document (mxlens/audit/1)")
    fmt.add_argument("--csv", action="store_true", help="CSV, one row per domain")
    fmt.add_argument("--md", action="store_true", help="a Markdown table")
    p.add_argument("--out", metavar="FILE", help="write the table to FILE instead of stdout")
    p.add_argument("--resume", metavar="ID", help="continue audit ID (after a crash or kill)")
    p.add_argument(
        "--connector",
        dest="audit_connector",  # per row, not cli's check-wide --connector
        metavar="NAME",
        help="judge every domain as this sender/connector (a CSV connector column overrides it)",
    )
    p.add_argument(
        "--no-ui", action="store_true", help="stay headless on a terminal (text table on stdout)"
    )
    from tui.commands.monitoring import add_prometheus_option

    add_prometheus_option(p)
    add_probe_options(p)
    return p


def _int(text: str, flag: str, low: int, high: int) -> int:
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise CheckError(f"{flag} must be a whole number from {low} to {high}, not {text!r}")
    return int(text)


def _rate(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        raise CheckError(
            f"--rate must be a number of connections per second, not {text!r}"
        ) from None
    if not math.isfinite(value) or value < 0 or value > 100_000:
        raise CheckError(f"--rate must be between 0 and 100000, not {text}")
    return value or None


def _read_input(arg: str) -> str:
    if arg == "-":
        try:
            return sys.stdin.buffer.read().decode("utf-8", errors="replace")
        except (OSError, ValueError, AttributeError) as exc:
            raise CheckError(f"cannot read the domain list from stdin: {exc}") from None
    try:
        return Path(arg).read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise CheckError(f"cannot read {arg}: {exc.strerror or exc}") from None


def _progress_line(progress: Any) -> str:
    width = 30
    frac = progress.done / progress.total if progress.total else 1.0
    bar = "#" * int(frac * width)
    eta = progress.eta_s()
    eta_text = f" ETA {int(eta // 60)}m{int(eta % 60):02d}s" if eta is not None else ""
    bad = sum(n for code, n in progress.by_exit.items() if code)
    return (
        f"\r[{bar:<{width}}] {progress.done}/{progress.total} domains"
        f"  {progress.rate():.1f}/s  {bad} not OK{eta_text}\x1b[K"
    )


def _render(
    ns: argparse.Namespace, journal: Any, rows: list[dict[str, Any]], stats: dict[str, Any]
) -> str:
    from probes.audit import outputs
    from probes.history.store import mxlens_version

    if ns.json:
        return outputs.to_json(journal.audit_id, mxlens_version(), rows, stats=stats)
    if ns.csv:
        return outputs.to_csv(rows)
    if ns.md:
        return outputs.to_markdown(rows, title=f"mxlens audit {journal.audit_id}")
    return outputs.to_text(rows)


def wants_ui(ns: argparse.Namespace) -> bool:
    if ns.no_ui or ns.json or ns.csv or ns.md or ns.out or ns.prometheus == "-":
        return False
    return sys.stdin.isatty() and sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


def open_journal(ns: argparse.Namespace, options_from_args: Any) -> tuple[Any, Options]:
    """Create the audit from FILE, or resume ID with the probe options it was started with
    (kept whole in the audit, so a resumed audit probes the rest exactly as it began).
    Returns (journal, options)."""
    from probes.audit.inputs import parse
    from probes.audit.journal import AuditJournal
    from probes.audit.processes import options_from_json, options_to_json

    if ns.resume:
        journal = AuditJournal.resume(ns.resume)
        try:
            if ns.file is not None:
                fresh = [item.to_json() for item in parse(_read_input(ns.file))]
                if fresh != [item.to_json() for item in journal.items]:
                    raise CheckError(f"{ns.file} is not the input of audit {ns.resume}")
            stored = journal.meta.get("probe_options")
            if not isinstance(stored, dict):
                raise CheckError(f"audit {ns.resume} was not started by this mxlens")
            options = options_from_json(stored)
        except (TypeError, ValueError) as exc:
            journal.close()
            raise CheckError(f"audit {ns.resume} has unreadable options: {exc}") from None
        except BaseException:
            journal.close()
            raise
        return journal, options
    if ns.file is None:
        raise CheckError("give the domain list (FILE, or - for stdin), or --resume ID")
    items = parse(_read_input(ns.file))
    options = options_from_args(ns)
    if ns.audit_connector:
        from probes.interpret.connectors import get_profile

        get_profile(ns.audit_connector)  # an unknown name is bad input, before anything is recorded
    meta = {
        "probe_options": options_to_json(options),
        "connector": ns.audit_connector,
        "lab": bool(ns.lab),
    }
    return AuditJournal.create(items, meta, options), options


class AuditSettings:
    def __init__(
        self, options: Options, limits: Any, connector: str | None, lab: bool, workers: int
    ) -> None:
        self.options = options
        self.limits = limits
        self.connector = connector
        self.lab = lab
        self.workers = workers


def run(ns: argparse.Namespace, options_from_args: Any) -> int:
    """The headless audit (or the UI screen on a terminal); probe options are parsed by
    `options_from_args(ns)` exactly as `check` parses them."""
    from probes.audit.runner import Limits

    limits = Limits(
        jobs=_int(ns.jobs, "--jobs", 1, 1000),
        max_open=_int(ns.max_connections, "--max-connections", 1, 10_000),
        rate=_rate(ns.rate),
    )
    workers = _int(ns.workers, "--workers", 1, 64)
    journal, options = open_journal(ns, options_from_args)
    try:
        for notice in journal.notices:
            sys.stderr.write(f"mxlens: {notice}\n")
        sys.stderr.write(f"audit {journal.audit_id}\n")
        sys.stderr.flush()
        settings = AuditSettings(
            options, limits, journal.meta.get("connector"), bool(journal.meta.get("lab")), workers
        )
        t0 = time.monotonic()
        before = set(journal.rows)
        already = len(before)
        if wants_ui(ns):
            from tui.screens.audit_screen import run_audit_app

            counters = run_audit_app(journal, settings)
        else:
            counters = asyncio.run(run_headless(journal, settings))
        elapsed = time.monotonic() - t0
        rows = journal.ordered_rows()
        if len(rows) == len(journal.items):
            journal.finish()
        checked = len(rows) - already
        stats: dict[str, Any] = {
            **counters,
            # Counted from the reports: a TLS version sweep is four connections in one turn.
            "connections": sum(
                int(row.get("connections") or 0)
                for seq, row in journal.rows.items()
                if seq not in before
            ),
            "domains": checked,
            "seconds": round(elapsed, 3),
            "domains_per_second": round(checked / elapsed, 2) if elapsed > 0 else None,
        }
        sys.stderr.write(
            f"audit {journal.audit_id}: {checked} domains checked in {elapsed:.1f} s"
            f" ({stats['domains_per_second']}/s), {stats.get('connections', 0)} SMTP connections"
            + (f", {already} already done" if already else "")
            + "\n"
        )
        if ns.prometheus:
            _write_prometheus(ns.prometheus, journal, rows)
        text = _render(ns, journal, rows, stats)
        if ns.out:
            try:
                Path(ns.out).write_text(text, encoding="utf-8")
            except OSError as exc:
                raise CheckError(f"cannot write --out {ns.out}: {exc.strerror or exc}") from None
        elif ns.prometheus != "-":
            sys.stdout.write(text)
        return max((int(r["exit"]) for r in rows), default=0)
    finally:
        journal.close()


def _write_prometheus(target: str, journal: Any, rows: list[dict[str, Any]]) -> None:
    from probes.monitoring.facts import CheckFacts, facts_from_doc
    from tui.commands.monitoring import write_prometheus

    facts = [facts_from_doc(doc) for doc in journal.documents()]
    checked = {f.domain for f in facts}
    facts += [
        CheckFacts(domain=r["domain"], exit=3, elapsed_s=None)
        for r in rows
        if r["exit"] == 3 and r["domain"] not in checked
    ]
    write_prometheus(target, facts)


@contextlib.asynccontextmanager
async def _lab_options(settings: AuditSettings, pending: list[Any]) -> AsyncIterator[Any]:
    """With --lab: a lab staging the listed lab domains, and the per-domain options into it."""
    if not settings.lab:
        yield None
        return
    from mxlens_lab.scenarios import find_scenario
    from mxlens_lab.world import Lab

    names = sorted({s.name for s in (find_scenario(i.domain) for i in pending) if s})
    async with Lab(scenarios=names) as lab:

        def options_for(item: Any, opts: Options) -> Options:
            if lab.scenario_for(item.domain) is None:
                raise CheckError(f"{item.domain} is not a lab domain (`mxlens lab` lists them)")
            return lab.options_for(item.domain, opts)

        yield options_for


async def run_items(
    journal: Any,
    settings: AuditSettings,
    on_done: Any,
    *,
    on_ready: Any = None,
    hold: asyncio.Event | None = None,
) -> dict[str, int]:
    """Run the journal's pending items (in this process, or in worker processes), calling
    on_done(Done) for each once it is recorded. Returns the connection counters.
    on_ready(options_for) gets the lab's per-domain options (None without --lab); with
    `hold`, the lab stays up after the batch until the event is set (the UI opens domains)."""
    pending = journal.pending()

    def record(done: Any) -> None:
        journal.record(done)
        on_done(done)

    async with _lab_options(settings, pending) as options_for:
        if on_ready is not None:
            on_ready(options_for)
        stats = await _run_pending(pending, settings, record, options_for)
        if hold is not None:
            await hold.wait()
        return stats


async def _run_pending(
    pending: list[Any], settings: AuditSettings, record: Any, options_for: Any
) -> dict[str, int]:
    from probes.audit.runner import run as run_batch

    if settings.workers > 1 and len(pending) > 1:
        from probes.audit.processes import run_in_processes

        return await run_in_processes(
            pending,
            settings.options,
            settings.limits,
            record,
            connector=settings.connector,
            workers=settings.workers,
            options_for=options_for,
        )
    gate = await run_batch(
        pending,
        settings.options,
        settings.limits,
        record,
        connector=settings.connector,
        options_for=options_for,
    )
    return {"gated": gate.opened, "peak_open": gate.peak_open}


async def run_headless(journal: Any, settings: AuditSettings) -> dict[str, int]:
    from probes.audit.runner import Progress

    progress = Progress(len(journal.items), len(journal.rows))
    tty = sys.stderr.isatty()
    last = 0.0

    def on_done(done: Any) -> None:
        nonlocal last
        progress.add(int(done.row["exit"]))
        now = time.monotonic()
        if tty and (now - last > 0.1 or progress.done == progress.total):
            last = now
            sys.stderr.write(_progress_line(progress))
            sys.stderr.flush()

    try:
        return await run_items(journal, settings, on_done)
    finally:
        if tty:
            sys.stderr.write("\n")
