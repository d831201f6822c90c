"""A real DNS responder on 127.0.0.1 for the MTA-STS, TLS-RPT, DANE and HTTP tests.

The `dns_server` fixture (tests/conftest.py) starts one per test.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

import dns.flags
import dns.message
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset

Zone = dict[tuple[str, str], Any]


def txt(*records: str | bytes) -> list[dns.rdata.Rdata]:
    """TXT rdatas, one per record; a record is one string (split at 255 bytes)."""
    out: list[dns.rdata.Rdata] = []
    for rec in records:
        data = rec.encode("utf-8") if isinstance(rec, str) else rec
        chunks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
        out.append(dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks))
    return out


@dataclass
class DnsResponder:
    """A tiny authoritative-looking UDP responder on 127.0.0.1.

    zone maps (name, type) to a list of rdatas or presentation strings, or to an rcode name
    ("SERVFAIL"); names absent from the zone get NXDOMAIN (NODATA when the name exists with
    another type). Names in `authenticated` get the AD bit. `drop` names get no answer.
    `asked` records every question as "name/TYPE"."""

    zone: Zone = field(default_factory=dict)
    authenticated: set[str] = field(default_factory=set)
    drop: set[str] = field(default_factory=set)
    asked: list[str] = field(default_factory=list)
    port: int = 0
    _transport: asyncio.DatagramTransport | None = None

    async def start(self) -> DnsResponder:
        loop = asyncio.get_running_loop()
        responder = self

        class Proto(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                # create_datagram_endpoint hands over a datagram transport, typed as its base
                self.transport = cast(asyncio.DatagramTransport, transport)

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                reply = responder.answer(data)
                if reply is not None:
                    self.transport.sendto(reply, addr)

        transport, _ = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        return self

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def answer(self, wire: bytes) -> bytes | None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        rtype = dns.rdatatype.to_text(question.rdtype)
        self.asked.append(f"{name}/{rtype}")
        if name in self.drop:
            return None
        response = dns.message.make_response(query)
        response.flags &= ~dns.flags.AD
        if name in self.authenticated:
            response.flags |= dns.flags.AD
        entry = self.zone.get((name, rtype))
        if isinstance(entry, str):
            response.set_rcode(dns.rcode.from_text(entry))
        elif entry is not None:
            rdatas = [
                dns.rdata.from_text(dns.rdataclass.IN, question.rdtype, r)
                if isinstance(r, str)
                else r
                for r in entry
            ]
            rrset = dns.rrset.from_rdata_list(question.name, 300, rdatas)
            response.answer.append(rrset)
        elif not any(n == name for n, _ in self.zone):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()
