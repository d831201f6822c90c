"""One audit worker process (see processes.py): items and options as JSON on stdin, one JSON
line per finished domain on stdout, then one line of connection counters."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from probes.audit.inputs import Item
from probes.audit.processes import options_from_json
from probes.audit.rows import failed_row
from probes.audit.runner import Done, Limits, check_prepared
from probes.history.snapshot import snapshot
from probes.net.gate import ConnectionGate


def _emit(done: Done) -> None:
    msg = {
        "item": done.item.to_json(),
        "row": done.row,
        # The history keeps the snapshot only; sending less keeps the pipe and parent light.
        "doc": snapshot(done.doc) if done.doc is not None else None,
        "started": done.started.isoformat(),
        "finished": done.finished.isoformat(),
    }
    try:
        sys.stdout.write(json.dumps(msg, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # The parent is gone (killed): nobody records this domain, so stop probing at once.
        os._exit(1)


async def main(payload: dict[str, Any]) -> None:
    limits = Limits(**payload["limits"])
    connector = payload.get("connector")
    gate = ConnectionGate(limits.max_open, limits.rate)
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for entry in payload["items"]:
        queue.put_nowait(entry)

    async def work() -> None:
        while not queue.empty():
            entry = queue.get_nowait()
            item = Item.from_json(entry["item"])
            if entry.get("error") or entry.get("options") is None:
                now = _now()
                _emit(
                    Done(item, failed_row(item, entry.get("error") or "no options"), None, now, now)
                )
                continue
            options = options_from_json(entry["options"])
            _emit(await check_prepared(item, options, gate, connector=item.connector or connector))

    await asyncio.gather(*(work() for _ in range(max(1, limits.jobs))))
    sys.stdout.write(
        json.dumps({"stats": {"gated": gate.opened, "peak_open": gate.peak_open}}) + "\n"
    )
    sys.stdout.flush()


def _now() -> Any:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.stdin.buffer.read())))
