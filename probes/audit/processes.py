"""`audit --workers N`: the batch spread over N worker processes when one event loop is the
limit (TLS handshakes and certificate parsing are CPU work).

Politeness survives the split: the parent first resolves every domain's MX addresses and puts
domains that share an address into the same worker, so "one connection at a time per address"
still holds across domains; the global caps (open connections, connections per second) are
divided between the workers. Workers are `python -m probes.audit.worker` processes that read
their items and options as JSON on stdin and write one JSON line per finished domain; the
parent records each line in the history as it arrives, so a `kill -9` of the whole process
group loses only the domains in flight.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from probes.audit.inputs import Item
from probes.audit.rows import item_options
from probes.audit.runner import Done, Limits
from probes.model.errors import CheckError
from probes.model.names import canonical
from probes.model.options import MxOverride, Options
from probes.net.dns import Resolver, to_ascii

WORKER_MODULE = "probes.audit.worker"
_LINE_LIMIT = 64 * 1024 * 1024  # one finished domain's document, generously


def options_to_json(options: Options) -> dict[str, Any]:
    data = asdict(options)
    data["given"] = sorted(options.given)
    return data


def options_from_json(data: dict[str, Any]) -> Options:
    fields = dict(data)
    fields["mx"] = tuple(MxOverride(**m) for m in fields.get("mx") or ())
    if fields.get("resolver") is not None:
        fields["resolver"] = tuple(fields["resolver"])
    fields["given"] = frozenset(fields.get("given") or ())
    return Options(**fields)


async def _addresses(item: Item, options: Options, resolver: Resolver) -> set[str]:
    """The addresses a check of `item` will connect to, as far as DNS tells now."""
    if options.mx:
        hosts = [o.host for o in options.mx]
    else:
        try:
            domain = to_ascii(item.domain)
        except CheckError:
            return set()
        answer = await resolver.query(domain, "MX")
        hosts = [canonical(str(getattr(rd, "exchange", ""))) for rd in answer.rdata]
        hosts = [h for h in hosts if h] or [domain]
    found: set[str] = set()
    for host in hosts:
        addrs, _, _ = await resolver.addresses(host)
        found.update(addrs)
    return found


async def shard(
    items: Sequence[Item], options_of: Callable[[Item], Options], workers: int, jobs: int
) -> list[list[Item]]:
    """Split items into at most `workers` groups; items sharing an MX address share a group."""
    resolvers: dict[tuple[tuple[str, int] | None, float], Resolver] = {}
    sem = asyncio.Semaphore(max(1, jobs))

    async def lookup(item: Item) -> set[str]:
        try:
            opts = options_of(item)
        except CheckError:
            return set()
        key = (opts.resolver, opts.timeout)
        if key not in resolvers:
            resolvers[key] = Resolver(opts.resolver, timeout=opts.timeout)
        async with sem:
            return await _addresses(item, opts, resolvers[key])

    found = await asyncio.gather(*(lookup(item) for item in items))
    # Union-find over the items, joined through shared addresses.
    parent = list(range(len(items)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for index, addrs in enumerate(found):
        for addr in addrs:
            if addr in owner:
                parent[root(index)] = root(owner[addr])
            else:
                owner[addr] = index
    groups: dict[int, list[Item]] = {}
    for index, item in enumerate(items):
        groups.setdefault(root(index), []).append(item)
    shards: list[list[Item]] = [[] for _ in range(max(1, min(workers, len(groups))))]
    for group in sorted(groups.values(), key=len, reverse=True):
        min(shards, key=len).extend(group)  # the biggest groups first keeps shards even
    return [sorted(s, key=lambda i: i.seq) for s in shards if s]


def _split(limits: Limits, n: int) -> Limits:
    return Limits(
        jobs=max(1, limits.jobs // n),
        max_open=max(1, limits.max_open // n),
        rate=limits.rate / n if limits.rate else None,
    )


async def _worker(
    batch: list[Item],
    options_of: Callable[[Item], Options],
    limits: Limits,
    connector: str | None,
    on_done: Callable[[Done], None],
    stats: dict[str, int],
) -> None:
    entries: list[dict[str, Any]] = []
    payload = {"limits": asdict(limits), "connector": connector, "items": entries}
    for item in batch:
        try:
            opts: dict[str, Any] | None = options_to_json(options_of(item))
            error = None
        except CheckError as exc:
            opts, error = None, str(exc)
        entries.append({"item": item.to_json(), "options": opts, "error": error})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        WORKER_MODULE,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=_LINE_LIMIT,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(payload).encode("utf-8"))
    await proc.stdin.drain()
    proc.stdin.close()
    try:
        while True:
            line = await proc.stdout.readline()
            if not line:
                break
            msg = json.loads(line)
            if "stats" in msg:
                for key, value in msg["stats"].items():
                    stats[key] = stats.get(key, 0) + int(value)
                continue
            on_done(
                Done(
                    Item.from_json(msg["item"]),
                    msg["row"],
                    msg["doc"],
                    datetime.fromisoformat(msg["started"]),
                    datetime.fromisoformat(msg["finished"]),
                )
            )
    finally:
        if proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                proc.kill()
                await proc.wait()
                raise
    if proc.returncode:
        raise CheckError(f"an audit worker process failed (exit {proc.returncode})")


async def run_in_processes(
    items: Sequence[Item],
    base: Options,
    limits: Limits,
    on_done: Callable[[Done], None],
    *,
    connector: str | None,
    workers: int,
    options_for: Callable[[Item, Options], Options] | None = None,
) -> dict[str, int]:
    """Check items in `workers` processes; returns the summed connection counters."""

    def options_of(item: Item) -> Options:
        opts = item_options(base, item, connector)
        return options_for(item, opts) if options_for is not None else opts

    # Bad lines need no worker: their rows are known now.
    shards = await shard([i for i in items if not i.error], options_of, workers, limits.jobs)
    bad = [i for i in items if i.error]
    if bad:
        from probes.audit.runner import check_item
        from probes.net.gate import ConnectionGate

        for item in bad:
            on_done(await check_item(item, base, ConnectionGate()))
    stats: dict[str, int] = {}
    if shards:
        share = _split(limits, len(shards))
        await asyncio.gather(
            *(_worker(s, options_of, share, connector, on_done, stats) for s in shards)
        )
    return stats
