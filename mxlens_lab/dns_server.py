"""The lab's DNS server: answers like a validating recursive resolver for the lab's names.

It serves a flat record table {(name, rtype): [presentation strings]} over UDP and TCP:
NXDOMAIN for names inside the lab that do not exist, NODATA for names that exist with other
types (including empty non-terminals such as `_tcp.mx1.x.lab.test`), the CNAME chain in the
answer section for aliases, the AD flag for names inside `signed_zones` (the lab plays a
validating resolver; there are no RRSIGs), SERVFAIL for names in `servfail` (what a
validating resolver says for a bogus answer), no answer at all for names in `silent`, and
REFUSED for names outside the lab. Over UDP an answer larger than the client's EDNS payload
(512 without EDNS) comes back empty with TC set; the full answer is over TCP.

Entries of `servfail` and `silent` are matched against the query as:
    "name"        that name, any type
    "name/TYPE"   that name and type only (e.g. "_25._tcp.mx1.x.lab.test/TLSA")
    "*.name"      that name and every name below it
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import deque
from collections.abc import Iterable, Mapping
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from probes.model.names import canonical

log = logging.getLogger(__name__)

Records = Mapping[tuple[str, str], Iterable[str]]

TTL = 300
_MAX_CNAME_CHAIN = 8
_TCP_IDLE_TIMEOUT = 10.0
_OUR_EDNS_PAYLOAD = 1232


def _norm(name: str) -> str:
    return canonical(name)


def _under(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


class DnsServer:
    """An in-memory DNS server for the lab. Start with `await start(host, port)`."""

    def __init__(
        self,
        records: Records,
        *,
        signed_zones: Iterable[str] = (),
        servfail: Iterable[str] = (),
        silent: Iterable[str] = (),
        refused_outside: tuple[str, ...] = ("lab.test", "in-addr.arpa", "ip6.arpa"),
    ) -> None:
        self.signed_zones: set[str] = {_norm(z) for z in signed_zones}
        self.servfail: set[str] = set(servfail)
        self.silent: set[str] = set(silent)
        self.refused_outside = tuple(_norm(z) for z in refused_outside)
        self._data: dict[tuple[str, str], list[dns.rdata.Rdata]] = {}
        self._names: set[str] = set()
        self.set_records(records)
        # Every question received, (name, type), oldest first: tests use it to see that a
        # client routed a lookup through the lab resolver.
        self.queries: deque[tuple[str, str]] = deque(maxlen=10000)
        self.host: str | None = None
        self.port: int | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self._tcp_tasks: set[asyncio.Task[None]] = set()

    # ---- data -----------------------------------------------------------------------------
    def set_records(self, records: Records) -> None:
        """Replace the whole record table (takes effect for the next query)."""
        data: dict[tuple[str, str], list[dns.rdata.Rdata]] = {}
        for (name, rtype), values in records.items():
            key = (_norm(name), rtype.upper())
            data.setdefault(key, []).extend(self._parse(key[1], v) for v in values)
        self._data = data
        self._reindex()

    def add(self, name: str, rtype: str, values: Iterable[str]) -> None:
        """Add records to (name, rtype), keeping those already there."""
        key = (_norm(name), rtype.upper())
        self._data.setdefault(key, []).extend(self._parse(key[1], v) for v in values)
        self._reindex()

    def remove(self, name: str, rtype: str | None = None) -> None:
        """Remove the records of name (of one type, or all types)."""
        n = _norm(name)
        for key in [
            k for k in self._data if k[0] == n and (rtype is None or k[1] == rtype.upper())
        ]:
            del self._data[key]
        self._reindex()

    def records(self, name: str, rtype: str) -> list[str]:
        """The records of (name, rtype) in presentation format (empty if none)."""
        return [rd.to_text() for rd in self._data.get((_norm(name), rtype.upper()), [])]

    @staticmethod
    def _parse(rtype: str, text: str) -> dns.rdata.Rdata:
        return dns.rdata.from_text(
            dns.rdataclass.IN, rtype, text, origin=dns.name.root, relativize=False
        )

    def _reindex(self) -> None:
        # A name exists if it owns records or has a descendant that does (empty non-terminal,
        # RFC 8020): `_tcp.mx1.x.lab.test` is NODATA, not NXDOMAIN.
        names: set[str] = set()
        for name, _ in self._data:
            labels = name.split(".")
            for i in range(len(labels)):
                names.add(".".join(labels[i:]))
        self._names = names

    # ---- answering ------------------------------------------------------------------------
    def _matches(self, entries: set[str], name: str, rtype: str) -> bool:
        for entry in entries:
            e = entry.strip().lower()
            if "/" in e:
                ename, etype = e.rsplit("/", 1)
                if _norm(ename) == name and etype.upper() == rtype:
                    return True
            elif e.startswith("*."):
                if _under(name, _norm(e[2:])):
                    return True
            elif _norm(e) == name:
                return True
        return False

    def _signed(self, name: str) -> bool:
        return any(_under(name, z) for z in self.signed_zones)

    def _inside(self, name: str) -> bool:
        return any(_under(name, z) for z in self.refused_outside)

    def answer(self, query: dns.message.Message) -> dns.message.Message | None:
        """The response to a query, or None to stay silent."""
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        response.flags &= ~dns.flags.AA
        if query.edns >= 0:
            response.use_edns(0, query.ednsflags & dns.flags.DO, _OUR_EDNS_PAYLOAD)
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        q = query.question[0]
        qname_text = _norm(q.name.to_text())
        rtype = dns.rdatatype.to_text(q.rdtype)
        self.queries.append((qname_text, rtype))
        if self._matches(self.silent, qname_text, rtype):
            return None
        if q.rdclass != dns.rdataclass.IN or not self._inside(qname_text):
            response.set_rcode(dns.rcode.REFUSED)
            return response
        if self._matches(self.servfail, qname_text, rtype):
            response.set_rcode(dns.rcode.SERVFAIL)
            return response

        owner = q.name
        current = qname_text
        all_signed = self._signed(current)
        rcode = dns.rcode.NOERROR
        for _ in range(_MAX_CNAME_CHAIN):
            wanted = self._data.get((current, rtype))
            if wanted:
                response.answer.append(self._rrset(owner, q.rdtype, wanted))
                break
            alias = self._data.get((current, "CNAME"))
            if alias and q.rdtype != dns.rdatatype.CNAME:
                response.answer.append(self._rrset(owner, dns.rdatatype.CNAME, alias[:1]))
                target = getattr(alias[0], "target")  # noqa: B009 - a CNAME rdata
                owner = target
                current = _norm(target.to_text())
                if not self._inside(current):
                    break  # a real resolver would go on outside; the lab has nothing there
                all_signed = all_signed and self._signed(current)
                if self._matches(self.servfail, current, rtype):
                    response.answer.clear()
                    response.set_rcode(dns.rcode.SERVFAIL)
                    return response
                continue
            if current not in self._names:
                rcode = dns.rcode.NXDOMAIN
            break
        response.set_rcode(rcode)
        if all_signed:
            response.flags |= dns.flags.AD
        return response

    @staticmethod
    def _rrset(
        owner: dns.name.Name, rdtype: dns.rdatatype.RdataType, rdatas: list[dns.rdata.Rdata]
    ) -> dns.rrset.RRset:
        rrset = dns.rrset.RRset(owner, dns.rdataclass.IN, rdtype)
        for rd in rdatas:
            rrset.add(rd, TTL)
        return rrset

    def _wire(self, data: bytes, *, udp: bool) -> bytes | None:
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return self._formerr(data)
        if query.flags & dns.flags.QR:
            return None  # a response sent to us: never answer it
        response = self.answer(query)
        if response is None:
            return None
        if not udp:
            return response.to_wire(max_size=65535)
        limit = max(512, query.payload) if query.edns >= 0 else 512
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            # Tell the client to come back over TCP: same header and question, no records.
            response.answer.clear()
            response.authority.clear()
            response.additional.clear()
            response.flags |= dns.flags.TC
            return response.to_wire(max_size=limit)

    @staticmethod
    def _formerr(data: bytes) -> bytes | None:
        if len(data) < 12:
            return None
        # Echo the id, set QR and FORMERR, no sections: enough for a client to give up.
        (qid, flags) = struct.unpack("!HH", data[:4])
        return struct.pack(
            "!HHHHHH", qid, (flags & 0x7800) | 0x8000 | dns.rcode.FORMERR, 0, 0, 0, 0
        )

    # ---- serving --------------------------------------------------------------------------
    async def start(self, host: str, port: int) -> None:
        """Listen on host:port over UDP and TCP. Port 0 picks a free port for both."""
        loop = asyncio.get_running_loop()
        attempts = 20 if port == 0 else 1
        last_error: OSError | None = None
        for _ in range(attempts):
            udp, _proto = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(host, port)
            )
            chosen = udp.get_extra_info("sockname")[1]
            try:
                tcp = await asyncio.start_server(self._serve_tcp, host, chosen, reuse_address=True)
            except OSError as exc:  # the TCP side of that port is taken: try another
                udp.close()
                last_error = exc
                continue
            self._udp, self._tcp = udp, tcp
            self.host, self.port = host, chosen
            return
        assert last_error is not None
        raise last_error

    async def stop(self) -> None:
        """Stop listening and drop open TCP connections."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for task in list(self._tcp_tasks):
                task.cancel()
            if self._tcp_tasks:
                await asyncio.gather(*self._tcp_tasks, return_exceptions=True)
            await self._tcp.wait_closed()
            self._tcp = None

    async def __aenter__(self) -> DnsServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tcp_tasks.add(task)
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), _TCP_IDLE_TIMEOUT)
                (length,) = struct.unpack("!H", head)
                data = await asyncio.wait_for(reader.readexactly(length), _TCP_IDLE_TIMEOUT)
                out = self._wire(data, udp=False)
                if out is not None:
                    writer.write(struct.pack("!H", len(out)) + out)
                    await asyncio.wait_for(writer.drain(), _TCP_IDLE_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            pass
        except Exception:  # one bad connection must not take the server down
            log.exception("lab DNS: TCP connection failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self._tcp_tasks.discard(task)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector transport does not subclass DatagramTransport, though it is one.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            out = self.server._wire(data, udp=True)
        except Exception:  # one bad datagram must not take the server down
            log.exception("lab DNS: cannot answer a datagram")
            return
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable after a client went away: nothing to do.
        pass
