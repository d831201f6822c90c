"""mxlens, sslyze and openssl s_client side by side against a real Postfix behind a chosen
round-trip time: prints figures, asserts nothing.

    sudo .venv/bin/python benchmarks/real_postfix.py [--rtt-ms 50] [-n 5] [--key rsa2048|ec]
                                                    [--sslyze PATH] [--postfix-defaults]

What runs (all on loopback, nothing leaves the machine):

- the lab without scenarios in a thread: its DNS server (a signed zone for the benchmark
  domain: MX, A, PTR, TLS-RPT), its private PKI and its HTTP server answering the OCSP, CRL
  and caIssuers URLs the certificates carry;
- a private Postfix from the Debian package (tests/integration/postfix.py: its own config
  directory, queue and log; the system Postfix is never touched) with a leaf from that PKI
  (RSA by default, as most Postfix installations have; `--key ec` for an EC leaf), TLS 1.2
  and 1.3 (`--postfix-defaults`: Postfix's own protocol defaults);
- a TCP proxy in front of it that delays every chunk by half the RTT in each direction; the
  MX name resolves to the proxy, so every tool pays the RTT on every round trip;
- each tool as a new process, in turn, N times after one warm-up:
  `mxlens check` (full), `mxlens check --quick`, `mxlens check --no-history` (without the
  history database write), sslyze's reduced scan
  (`--starttls smtp --certinfo --tlsv1_2 --tlsv1_3`, in a venv of its own: see --sslyze) and
  one `openssl s_client -starttls smtp` handshake.

For each tool: the median wall time (and min-max), the ratio to sslyze's median, SMTP
connections per check, the "warning:" lines and all the lines a refused handshake leaves
("SSL_accept error", "warning: TLS library problem", "lost connection after STARTTLS") per
check (all read from
Postfix's own log), and the peak RSS of the process (getrusage of the child).

sslyze is not a dependency of mxlens: install it apart, e.g.
`python3 -m venv benchmarks/.venv-sslyze && benchmarks/.venv-sslyze/bin/pip install sslyze`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mxlens_lab.world import Lab, LabThread  # noqa: E402
from tests.integration.postfix import Postfix, unavailable_reason  # noqa: E402

ZONE = "bench.lab.test"
DOMAIN = f"postfix.{ZONE}"
MX = f"mx.{DOMAIN}"
# MXLENS_BENCH_SAVE=DIR keeps the last JSON document of each mxlens row there (to read
# the transcript's timings).
SAVE_DIR = os.environ.get("MXLENS_BENCH_SAVE", "")
SSLYZE_CANDIDATES = (
    ROOT / "benchmarks" / ".venv-sslyze" / "bin" / "sslyze",
    Path("/tmp/venv-sslyze/bin/sslyze"),
)


# --------------------------------------------------------------------------- delay proxy


class DelayProxy:
    """TCP proxy that forwards each chunk after `delay` seconds, in each direction: one round
    trip through it costs 2 x delay more. Runs its own event loop in a thread."""

    def __init__(self, listen: str, target: tuple[str, int], delay: float) -> None:
        self.listen = listen
        self.target = target
        self.delay = delay
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delay-proxy", daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def __enter__(self) -> DelayProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the delay proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        done = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        done.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._client, self.listen, 0)
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        # The same delay for every chunk keeps them in order: call_later is FIFO per deadline.
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                loop.call_later(self.delay, _write, writer, data)
        except (ConnectionError, OSError):
            pass
        loop.call_later(self.delay, _close, writer)


def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    if not writer.is_closing():
        writer.write(data)


def _close(writer: asyncio.StreamWriter) -> None:
    if writer.can_write_eof() and not writer.is_closing():
        try:
            writer.write_eof()
        except OSError:
            pass
    writer.close()


# --------------------------------------------------------------------------- measuring


@dataclass
class Tool:
    name: str
    argv: list[str]
    walls: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    connections: list[int] = field(default_factory=list)
    warnings: list[int] = field(default_factory=list)
    noise: list[int] = field(default_factory=list)  # warning + SSL_accept error + lost connection
    exits: list[int] = field(default_factory=list)
    engine: list[float] = field(default_factory=list)  # mxlens's own elapsed_ms, in s
    cpu: list[float] = field(default_factory=list)  # user + system seconds of the process
    env: dict[str, str] | None = None
    cwd: str | None = None  # `python -m` finds the package in the working directory first


def run_once(tool: Tool, log: Callable[[], str], *, keep: bool) -> None:
    before = log()
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            tool.argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.DEVNULL,
            env=tool.env,
            cwd=tool.cwd,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        printed = out.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    # postlogd writes asynchronously: give it a moment before reading what this run caused.
    time.sleep(0.5)
    added = log()[len(before) :].splitlines()
    if not keep:
        return
    tool.walls.append(wall)
    tool.rss_kib.append(int(usage.ru_maxrss))
    tool.cpu.append(usage.ru_utime + usage.ru_stime)
    tool.exits.append(proc.returncode)
    tool.connections.append(
        sum(1 for line in added if "smtpd[" in line and " connect from " in line)
    )
    tool.warnings.append(sum(1 for line in added if "warning:" in line))
    tool.noise.append(sum(1 for line in added if any(m in line for m in _NOISE)))
    if tool.name.startswith("mxlens"):
        if SAVE_DIR:
            name = tool.name.replace(" ", "_").replace("-", "")
            (Path(SAVE_DIR) / f"{name}.json").write_bytes(printed)
        try:
            tool.engine.append(float(json.loads(printed)["elapsed_ms"]) / 1000.0)
        except (ValueError, KeyError, TypeError):
            pass


# What a refused handshake leaves in Postfix's log: "SSL_accept error from ...", "warning: TLS
# library problem: ..." and "lost connection after STARTTLS from ...".
_NOISE = ("warning:", "SSL_accept error", "lost connection")


def median(values: list[float] | list[int]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def report(tools: list[Tool], rtt_ms: float, runs: int, postfix: str, key: str) -> str:
    ref = next((t for t in tools if t.name.startswith("sslyze") and t.walls), None)
    lines = [
        f"Postfix {postfix}, {key} leaf, {rtt_ms:g} ms RTT through the delay proxy, "
        f"{runs} runs each after one warm-up (medians; min-max in brackets)",
        "",
        "| tool | wall s | x sslyze | CPU s | connections / check | Postfix warning lines / check "
        "| log-noise lines / check | peak RSS MiB | exit |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for tool in tools:
        if not tool.walls:
            lines.append(f"| {tool.name} | not run | | | | | | | |")
            continue
        wall = median(tool.walls)
        ratio = f"{wall / median(ref.walls):.2f}" if ref is not None else "-"
        lines.append(
            f"| {tool.name} | {wall:.2f} ({min(tool.walls):.2f}-{max(tool.walls):.2f}) "
            f"| {ratio} | {median(tool.cpu):.2f} | {median(tool.connections):g} "
            f"| {median(tool.warnings):g} | {median(tool.noise):g} "
            f"| {median(tool.rss_kib) / 1024:.0f} | {sorted(set(tool.exits))} |"
        )
    for tool in tools:
        if tool.engine:
            lines.append(
                f"\n{tool.name}: the diagnosis itself (JSON elapsed_ms) {median(tool.engine):.2f} s;"
                f" start-up and output the rest of {median(tool.walls):.2f} s"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------- the world


def free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def find_sslyze(given: str | None) -> str | None:
    if given:
        return given if Path(given).exists() else None
    for candidate in SSLYZE_CANDIDATES:
        if candidate.exists():
            return str(candidate)
    return shutil.which("sslyze")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rtt-ms", type=float, default=50.0)
    parser.add_argument("-n", "--runs", type=int, default=5)
    parser.add_argument("--key", default="rsa2048", choices=("rsa2048", "ec"))
    parser.add_argument("--sslyze", help="the sslyze command (default: a venv of its own)")
    parser.add_argument(
        "--postfix-defaults", action="store_true", help="Postfix's own smtpd_tls_protocols"
    )
    parser.add_argument("--only", action="append", help="run only the tools named (repeatable)")
    parser.add_argument(
        "--compare-with",
        metavar="DIR",
        help="also run `mxlens check` from the source tree DIR (another checkout) in turn",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="also run one diagnosis in this process and print when each step ended",
    )
    args = parser.parse_args(argv)

    reason = unavailable_reason()
    if reason is not None:
        print(f"not run: {reason}")
        return 0
    from tests.integration.postfix import postfix_version

    with LabThread([]) as lab:
        return _bench(lab, args, postfix_version())


def _bench(lab: Lab, args: argparse.Namespace, version: str) -> int:
    assert lab.pki is not None and lab.dns is not None
    ca = lab.pki.intermediate("bench-postfix-ca", lab.root)
    issued = lab.pki.leaf(ca, [MX], key=args.key)
    postfix_address = f"127.{lab.net}.78.1"
    proxy_address = f"127.{lab.net}.78.2"
    main_cf = (
        {}
        if args.postfix_defaults
        else {"smtpd_tls_protocols": ">=TLSv1.2", "smtpd_tls_mandatory_protocols": ">=TLSv1.2"}
    )
    postfix = Postfix(
        "bench",
        address=postfix_address,
        port=free_port(postfix_address),
        hostname=MX,
        chain_pem=issued.pem_chain(),
        key_pem=issued.key_pem(),
        main=main_cf,
    )
    delay = args.rtt_ms / 2000.0
    state_dir = tempfile.mkdtemp(prefix="mxbench-state-")
    try:
        postfix.start()
        with DelayProxy(proxy_address, (postfix_address, postfix.port), delay) as proxy:
            rev = ".".join(reversed(proxy_address.split("."))) + ".in-addr.arpa"
            lab.dns.signed_zones.add(ZONE)
            lab.dns.add(DOMAIN, "MX", [f"10 {MX}."])
            lab.dns.add(MX, "A", [proxy_address])
            lab.dns.add(rev, "PTR", [f"{MX}."])
            lab.dns.add(f"_smtp._tls.{DOMAIN}", "TXT", [f'"v=TLSRPTv1; rua=mailto:tls@{DOMAIN}"'])
            tools = _tools(lab, args, proxy.port, proxy_address, state_dir)
            log_path = Path(postfix.base) / "maillog"

            def log() -> str:
                try:
                    return log_path.read_text(errors="replace")
                except OSError:
                    return ""

            for tool in tools:
                run_once(tool, log, keep=False)  # warm-up: caches, page cache, pyc
            for _ in range(args.runs):
                for tool in tools:  # in turn, so a drift of the machine hits all alike
                    run_once(tool, log, keep=True)
            print(report(tools, args.rtt_ms, args.runs, version, args.key))
            if args.trace:
                asyncio.run(trace(lab, proxy.port))
            own = resource.getrusage(resource.RUSAGE_SELF)
            print(f"\n(benchmark process itself: {own.ru_maxrss / 1024:.0f} MiB peak RSS)")
    finally:
        postfix.cleanup()
        shutil.rmtree(state_dir, ignore_errors=True)
    return 0


async def trace(lab: Lab, port: int) -> None:
    """One diagnosis in this process: when each session and endpoint check ended."""
    from probes.diagnose import diagnose
    from probes.model.events import (
        ChainValidated,
        DiagnosisFinished,
        EndpointChecked,
        SessionFinished,
        SessionStarted,
    )
    from probes.model.options import MxOverride

    options = replace(lab.options(), mx=(MxOverride(MX, port),), ehlo="bench.lab.test")
    started = time.perf_counter()
    print("\none diagnosis in this process, ms since it started:")
    async for event in diagnose(DOMAIN, options):
        at = (time.perf_counter() - started) * 1000
        if isinstance(event, (SessionStarted, SessionFinished)):
            print(f"  {at:7.1f} {type(event).__name__} {event.purpose}")
        elif isinstance(event, EndpointChecked):
            print(f"  {at:7.1f} endpoint {event.kind} ({event.ms} ms)")
        elif isinstance(event, (ChainValidated, DiagnosisFinished)):
            print(f"  {at:7.1f} {type(event).__name__}")


def _tools(
    lab: Lab, args: argparse.Namespace, port: int, address: str, state_dir: str
) -> list[Tool]:
    resolver_ip, resolver_port = lab.resolver
    mxlens = [
        sys.executable,
        "-m",
        "tui.cli",
        "check",
        DOMAIN,
        "--json",
        "--resolver",
        f"{resolver_ip}:{resolver_port}",
        "--mx",
        f"{MX}:{port}",
        "--ca-file",
        lab.ca_file,
        "--https-port",
        str(lab.https_port),
        "--ehlo",
        "bench.lab.test",
        "--timeout",
        "5",
    ]
    # Each check is recorded in the history database, as by default, but in a directory of
    # the benchmark's own, not the user's.
    env = dict(os.environ, MXLENS_STATE_DIR=state_dir)
    tools = [
        Tool("mxlens check", mxlens, env=env),
        Tool("mxlens check --quick", [*mxlens, "--quick"], env=env),
        Tool("mxlens check --no-history", [*mxlens, "--no-history"], env=env),
    ]
    if args.compare_with:
        tree = str(Path(args.compare_with).resolve())
        other = dict(env, PYTHONPATH=tree)
        tools.append(Tool(f"mxlens check ({args.compare_with})", mxlens, env=other, cwd=tree))
    sslyze = find_sslyze(args.sslyze)
    if sslyze is not None:
        tools.append(
            Tool(
                "sslyze --certinfo --tlsv1_2 --tlsv1_3",
                [
                    sslyze,
                    "--starttls",
                    "smtp",
                    "--certinfo",
                    "--certinfo_ca_file",
                    lab.ca_file,
                    "--tlsv1_2",
                    "--tlsv1_3",
                    f"{MX}:{port}{{{address}}}",
                ],
            )
        )
    else:
        print("sslyze not found (see the module docstring); its row stays empty")
        tools.append(Tool("sslyze --certinfo --tlsv1_2 --tlsv1_3", []))
    openssl = shutil.which("openssl")
    if openssl is not None:
        tools.append(
            Tool(
                "openssl s_client (one handshake)",
                [
                    openssl,
                    "s_client",
                    "-starttls",
                    "smtp",
                    "-connect",
                    f"{address}:{port}",
                    "-servername",
                    MX,
                    "-brief",
                ],
            )
        )
    wanted = args.only
    return [t for t in tools if t.argv and (not wanted or any(w in t.name for w in wanted))]


if __name__ == "__main__":
    sys.exit(main())
