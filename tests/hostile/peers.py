"""Hostile peers on loopback: a DNS server, SMTP servers that send what a test chooses, and an
HTTP server that answers every request with an endless body (or never answers), each on a
127.x address of its own so that tests can run side by side.

`HostileWorld` starts them and hands back the Options that aim mxlens at them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mxlens_lab.dns_server import DnsServer
from mxlens_lab.smtp_server import Behaviour, SmtpServer
from probes.model.options import Options


def loopback_base() -> str:
    """A random 127.a.b. prefix, so two runs never share addresses."""
    return f"127.{random.randint(64, 250)}.{random.randint(1, 250)}."


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class EndlessHttp:
    """Answers every request with 200 and a body that never ends ("endless"), or accepts and
    never says a word ("silent"). Counts connections, so a test can tell whether mxlens
    connected at all."""

    def __init__(self, mode: str = "endless") -> None:
        self.mode = mode
        self.connections = 0
        self.heads: list[bytes] = []  # the request heads received, oldest first
        self.host = ""
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, reuse_address=True)
        self.host = host
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.connections += 1
        try:
            if self.mode == "silent":
                await asyncio.sleep(3600)
                return
            with contextlib.suppress(asyncio.TimeoutError):
                self.heads.append(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/pkix-crl\r\n\r\n")
            chunk = b"\x30" * 65536
            while True:
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._server = None


@dataclass
class HostileWorld:
    """A domain whose MX hosts are the given SMTP behaviours (one address each, mx1., mx2.,
    ... under the domain), served by a DNS server of its own. `records` adds or replaces
    DNS records ({(name, type): [values]})."""

    domain: str = "hostile.test"
    behaviours: list[Behaviour] = field(default_factory=list)
    records: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    silent_names: Iterable[str] = ()
    base: str = field(default_factory=loopback_base)
    dns: DnsServer | None = None
    smtp: list[SmtpServer] = field(default_factory=list)
    resolver: tuple[str, int] = ("127.0.0.1", 53)
    smtp_port: int = 0

    def address(self, n: int) -> str:
        return f"{self.base}{n}"

    async def __aenter__(self) -> HostileWorld:
        dns_host = self.address(1)
        self.smtp_port = free_port(self.address(2))
        records: dict[tuple[str, str], list[str]] = {}
        mx = []
        for i, behaviour in enumerate(self.behaviours, start=1):
            name = f"mx{i}.{self.domain}"
            ip = self.address(1 + i)
            mx.append(f"{10 * i} {name}.")
            records[(name, "A")] = [ip]
            server = SmtpServer(ip, self.smtp_port, behaviour)
            await server.start()
            self.smtp.append(server)
        if mx:
            records[(self.domain, "MX")] = mx
        records.update(self.records)
        self.dns = DnsServer(
            records,
            silent=self.silent_names,
            refused_outside=(self.domain, "in-addr.arpa", "ip6.arpa"),
        )
        port = free_port(dns_host)
        await self.dns.start(dns_host, port)
        self.resolver = (dns_host, port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for server in self.smtp:
            await server.stop()
        if self.dns is not None:
            await self.dns.stop()

    def options(self, **overrides: Any) -> Options:
        base: dict[str, Any] = {
            "resolver": self.resolver,
            "port": self.smtp_port,
            "timeout": 1.0,
            "extra_probes": False,
        }
        base.update(overrides)
        return Options(**base)


def key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    return bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))


def served_leaf(mx: str, ca_dir: Any, **issue_args: Any) -> tuple[Behaviour, str]:
    """An SMTP behaviour presenting a leaf for mx from a private root (issue_args go to
    tests.support.pki.issue: ocsp=, crl=, ca_issuers= URLs...), and the root's CA file path."""
    from tests.support.pki import issue

    root = issue("Hostile Test Root", ca=True)
    leaf = issue(mx, root, **issue_args)
    ca_file = ca_dir / "hostile-root.pem"
    ca_file.write_bytes(root.pem)
    behaviour = Behaviour(hostname=mx, cert_chain_pem=leaf.pem, key_pem=key_pem(leaf.key))
    return behaviour, str(ca_file)


class SpoofingDns:
    """A DNS server in front of a real one that, for every question, first sends an answer
    with the wrong query id, then one from another port, then garbage, and only then the
    real answer (as an off-path attacker racing the resolver would)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.spoofed = 0
        self.host = ""
        self.port = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._other: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str) -> None:
        loop = asyncio.get_running_loop()
        server = self

        class Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                task = loop.create_task(server._answer(data, addr))
                server._tasks.add(task)
                task.add_done_callback(server._tasks.discard)

        transport, _ = await loop.create_datagram_endpoint(Protocol, local_addr=(host, 0))
        self._transport = transport
        self.host, self.port = transport.get_extra_info("sockname")[:2]
        self._other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._other.bind((host, 0))

    async def _answer(self, data: bytes, addr: tuple[str, int]) -> None:
        import dns.asyncquery
        import dns.message

        query = dns.message.from_wire(data)
        real = await dns.asyncquery.udp(query, self.upstream[0], port=self.upstream[1], timeout=2)
        assert self._transport is not None and self._other is not None
        wrong_id = dns.message.from_wire(real.to_wire())
        wrong_id.id = (real.id + 1) % 65536
        wrong_id.answer = []
        self._transport.sendto(wrong_id.to_wire(), addr)
        self._other.sendto(real.to_wire(), addr)  # the right answer, from the wrong port
        self._transport.sendto(b"\x00\x01garbage", addr)
        self.spoofed += 3
        await asyncio.sleep(0.05)
        self._transport.sendto(real.to_wire(), addr)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._transport is not None:
            self._transport.close()
        if self._other is not None:
            self._other.close()
