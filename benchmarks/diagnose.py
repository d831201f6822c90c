"""How long a whole diagnosis takes, against how long its steps take: prints figures, asserts
nothing.

    /work/venv/bin/python benchmarks/diagnose.py [-n 5] [--cli] [SCENARIO ...]

The orchestrator runs independent work at the same time (MX hosts, addresses, policies, CA
endpoints) and keeps one connection at a time per address, so a diagnosis should take about
as long as its longest chain of round trips, not the sum of its steps. For each lab scenario
(default: healthy, pool-inconsistent, tls-non-fs, plaintext-injection) this prints the median
over N runs of:

- wall: `diagnose()` from start to DiagnosisFinished, lab already running (engine time);
- steps: the sum of every step's own time: DNS queries, SMTP sessions (main, version sweep,
  cipher probe, injection test, attempts; from SessionStarted to SessionFinished) and CA
  endpoint fetches: what a strictly serial engine would spend;
- chain: the longest serial chain: for each address, the sum of its sessions (they share a
  lock), plus the DNS answers that must come first (MX, then A/AAAA); the max over addresses;
- wall/steps: how much the concurrency buys (1.0 = fully serial);
- with --cli, also the wall time of the real command `mxlens check --lab DOMAIN` (a new
  process that starts the whole lab first: start-up included).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mxlens_lab.world import Lab  # noqa: E402
from probes.diagnose import diagnose  # noqa: E402
from probes.model.events import (  # noqa: E402
    DiagnosisFinished,
    DnsQuery,
    EndpointChecked,
    SessionFinished,
    SessionStarted,
)

DEFAULT_SCENARIOS = ("healthy", "pool-inconsistent", "tls-non-fs", "plaintext-injection")


async def one_run(lab: Lab, name: str) -> dict[str, float]:
    domain = lab.domain(name)
    options = lab.options(name)
    started: dict[tuple[object, str], float] = {}
    per_address: dict[object, float] = defaultdict(float)
    sessions = 0.0
    dns = 0.0
    dns_first: dict[str, float] = {}
    endpoints = 0.0
    t0 = time.perf_counter()
    async for event in diagnose(domain, options):
        now = time.perf_counter()
        if isinstance(event, SessionStarted):
            started[(event.where, event.purpose)] = now
        elif isinstance(event, SessionFinished):
            begin = started.pop((event.where, event.purpose), now)
            sessions += now - begin
            per_address[(event.where.address, event.where.port)] += now - begin
        elif isinstance(event, DnsQuery):
            dns += event.ms / 1000.0
            if event.rtype in ("MX", "A", "AAAA"):
                dns_first[event.rtype] = max(dns_first.get(event.rtype, 0.0), event.ms / 1000.0)
        elif isinstance(event, EndpointChecked) and event.ms is not None:
            endpoints += event.ms / 1000.0
        elif isinstance(event, DiagnosisFinished):
            break
    wall = time.perf_counter() - t0
    lead = dns_first.get("MX", 0.0) + max(dns_first.get("A", 0.0), dns_first.get("AAAA", 0.0))
    chain = lead + (max(per_address.values()) if per_address else 0.0)
    return {
        "wall": wall,
        "steps": dns + sessions + endpoints,
        "sessions": sessions,
        "dns": dns,
        "endpoints": endpoints,
        "chain": chain,
    }


async def engine(names: list[str], runs: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    async with Lab(scenarios=names) as lab:
        for name in names:
            await one_run(lab, name)  # warm-up: imports, caches, first handshakes
            samples = [await one_run(lab, name) for _ in range(runs)]
            out[name] = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
    return out


def cli(name: str, runs: int) -> float:
    from mxlens_lab.scenarios import SCENARIOS

    domain = SCENARIOS[name].domain
    mxlens = [sys.executable, "-c", "import sys; from tui.cli import main; sys.exit(main())"]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(
            [*mxlens, "check", "--lab", domain],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            timeout=300,
        )
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=5, help="runs per scenario (median; default 5)")
    parser.add_argument("--cli", action="store_true", help="also time `mxlens check --lab DOMAIN`")
    parser.add_argument("scenarios", nargs="*", default=list(DEFAULT_SCENARIOS))
    args = parser.parse_args()
    figures = asyncio.run(engine(args.scenarios, max(1, args.n)))
    print(f"median of {args.n} runs, seconds (lab already running)")
    head = f"{'scenario':22} {'wall':>6} {'steps':>6} {'chain':>6} {'sess':>6} {'dns':>6} {'endp':>6} {'wall/steps':>10}"
    print(head)
    for name, f in figures.items():
        ratio = f["wall"] / f["steps"] if f["steps"] else 0.0
        print(
            f"{name:22} {f['wall']:6.3f} {f['steps']:6.3f} {f['chain']:6.3f} "
            f"{f['sessions']:6.3f} {f['dns']:6.3f} {f['endpoints']:6.3f} {ratio:10.2f}"
        )
    if args.cli:
        print()
        print(
            f"`mxlens check --lab DOMAIN`, median of {args.n} runs, seconds (lab start-up included)"
        )
        for name in args.scenarios:
            print(f"{name:22} {cli(name, max(1, args.n)):6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
