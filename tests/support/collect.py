"""From a stream of engine events to what tests assert on: a Report, or a plain list."""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import TypeVar

from probes.diagnose import diagnose
from probes.model.events import Event
from probes.model.options import Options
from probes.report import Report

T = TypeVar("T")


async def collect(target: str, options: Options, events: list[Event] | None = None) -> Report:
    """Diagnose `target` and fold every event into a Report, as `mxlens check` does; when
    `events` is given, every event is also appended to it, in order."""
    report = Report(target, options)
    async for event in diagnose(target, options):
        report.add(event)
        if events is not None:
            events.append(event)
    return report


async def gather(stream: AsyncIterable[T]) -> list[T]:
    """Every item of an async stream (one check's or one session's events), in order."""
    return [item async for item in stream]
