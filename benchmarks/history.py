"""What the history costs: prints figures, asserts nothing.

    python benchmarks/history.py [-n 200] [--writers 8]

On a real lab report (healthy.lab.test, one diagnosis made at start) this prints:

- the size of one run as stored (the snapshot JSON) against the full `check --json` document;
- the median time of `record_run` (one transaction, WAL) in a single process;
- the database size per run after N runs;
- with W processes writing N/W runs each at once: total wall time, runs per second, and the
  slowest single write (the wait behind other writers' locks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from probes.history.snapshot import snapshot
from probes.history.store import HistoryStore


async def _lab_doc() -> dict[str, Any]:
    from mxlens_lab.world import Lab
    from probes.diagnose import diagnose
    from probes.report import Report

    async with Lab(["healthy"]) as lab:
        domain = lab.domain("healthy")
        options = lab.options("healthy")
        report = Report(domain, options)
        async for event in diagnose(domain, options):
            report.add(event)
        return report.to_json()


def _writer(path: str, doc: dict[str, Any], n: int, out: Any) -> None:
    slowest = 0.0
    with HistoryStore(path, max_runs=1_000_000) as store:
        for _ in range(n):
            t0 = time.perf_counter()
            store.record_run(doc, started=datetime.now(timezone.utc))
            slowest = max(slowest, time.perf_counter() - t0)
    out.put(slowest)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--writers", type=int, default=8)
    args = ap.parse_args()
    doc = asyncio.run(_lab_doc())
    full = len(json.dumps(doc, ensure_ascii=False).encode())
    kept = len(json.dumps(snapshot(doc), ensure_ascii=False).encode())
    print(f"one run: full document {full / 1024:.1f} KiB, stored snapshot {kept / 1024:.1f} KiB")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.sqlite3"
        times = []
        with HistoryStore(path, max_runs=1_000_000) as store:
            for _ in range(args.n):
                t0 = time.perf_counter()
                store.record_run(doc, started=datetime.now(timezone.utc))
                times.append(time.perf_counter() - t0)
        size = path.stat().st_size
        print(
            f"record_run, one process: median {statistics.median(times) * 1000:.2f} ms, "
            f"max {max(times) * 1000:.2f} ms over {args.n} runs; "
            f"database {size / 1024 / 1024:.2f} MiB = {size / args.n / 1024:.1f} KiB per run"
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.sqlite3"
        HistoryStore(path).close()
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        each = max(1, args.n // args.writers)
        procs = [
            ctx.Process(target=_writer, args=(str(path), doc, each, queue))
            for _ in range(args.writers)
        ]
        t0 = time.perf_counter()
        for p in procs:
            p.start()
        slowest = [queue.get(timeout=300) for _ in procs]
        for p in procs:
            p.join()
        wall = time.perf_counter() - t0
        with HistoryStore(path) as store:
            count = store.count()
        print(
            f"{args.writers} processes x {each} runs at once: {count} runs stored in {wall:.2f} s "
            f"(process start-up included), slowest single write {max(slowest) * 1000:.0f} ms, "
            f"exit codes {[p.exitcode for p in procs]}"
        )


if __name__ == "__main__":
    main()
