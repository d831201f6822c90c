"""The batch runner: many domains on one event loop, under one ConnectionGate.

`jobs` domains are in flight at once; every SMTP connection of every domain goes through the
shared gate (one at a time per address, at most `max_open` open, at most `rate` started per
second). Each finished domain is handed to `on_done` at once, so the caller can record it
before the next one finishes: a killed audit loses only the domains in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from probes.audit.inputs import Item
from probes.audit.rows import failed_row, item_options, row_for
from probes.diagnose import diagnose
from probes.model.errors import CheckError
from probes.model.options import Options
from probes.net.gate import ConnectionGate
from probes.report import Report


@dataclass(frozen=True)
class Limits:
    jobs: int = 10  # domains in flight
    max_open: int = 20  # SMTP connections open at once, all domains together
    rate: float | None = 20.0  # SMTP connections started per second; None = no cap


@dataclass
class Done:
    """One finished item: its row, its check document (None when it could not be checked)."""

    item: Item
    row: dict[str, Any]
    doc: dict[str, Any] | None
    started: datetime
    finished: datetime


OptionsFor = Callable[[Item, Options], Options]
OnDone = Callable[[Done], Awaitable[None] | None]


async def check_item(
    item: Item,
    base: Options,
    gate: ConnectionGate,
    *,
    connector: str | None = None,
    options_for: OptionsFor | None = None,
) -> Done:
    started = datetime.now(timezone.utc)
    if item.error:
        return Done(item, failed_row(item, item.error), None, started, started)
    try:
        options = item_options(base, item, connector)
        if options_for is not None:
            options = options_for(item, options)
    except CheckError as exc:
        return Done(item, failed_row(item, str(exc)), None, started, started)
    return await check_prepared(item, options, gate, connector=connector)


async def check_prepared(
    item: Item, options: Options, gate: ConnectionGate, *, connector: str | None
) -> Done:
    """Check one item with its final options (the row's own settings already applied)."""
    started = datetime.now(timezone.utc)
    try:
        report = Report(item.domain, options)
        async for event in diagnose(item.domain, options, gate=gate):
            report.add(event)
        row = row_for(item, report, item.connector or connector)
        doc: dict[str, Any] | None = report.to_json()
    except CheckError as exc:
        row, doc = failed_row(item, str(exc)), None
    except Exception as exc:  # one domain's internal failure must not end the audit
        row, doc = failed_row(item, f"internal error: {type(exc).__name__}: {exc}"), None
    return Done(item, row, doc, started, datetime.now(timezone.utc))


async def run(
    items: Sequence[Item],
    base: Options,
    limits: Limits,
    on_done: OnDone,
    *,
    connector: str | None = None,
    options_for: OptionsFor | None = None,
    gate: ConnectionGate | None = None,
) -> ConnectionGate:
    """Check every item, calling on_done(Done) as each finishes (any order). Returns the gate,
    whose counters tell how many connections were made and how many were open at most."""
    gate = gate or ConnectionGate(limits.max_open, limits.rate)
    queue: asyncio.Queue[Item] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)

    async def worker() -> None:
        while True:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            done = await check_item(item, base, gate, connector=connector, options_for=options_for)
            result = on_done(done)
            if result is not None:
                await result

    workers = [asyncio.create_task(worker()) for _ in range(max(1, min(limits.jobs, len(items))))]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    return gate


class Progress:
    """Counts and rate for the progress bar (rendering is the front end's job)."""

    def __init__(self, total: int, already: int = 0) -> None:
        self.total = total
        self.done = already
        self.started_with = already
        self.t0 = time.monotonic()
        self.by_exit: dict[int, int] = {}

    def add(self, code: int) -> None:
        self.done += 1
        self.by_exit[code] = self.by_exit.get(code, 0) + 1

    def rate(self) -> float:
        elapsed = time.monotonic() - self.t0
        return (self.done - self.started_with) / elapsed if elapsed > 0 else 0.0

    def eta_s(self) -> float | None:
        r = self.rate()
        return (self.total - self.done) / r if r > 0 else None
