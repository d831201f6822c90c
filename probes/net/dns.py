"""DNS lookups through one resolver object.

Every name the tool looks up (MX, A/AAAA, PTR, TXT, TLSA, and the host names in OCSP, CRL,
caIssuers and MTA-STS URLs) goes through one `Resolver`, so `--resolver` routes everything.
Queries go over UDP with EDNS0 and the DO bit (to read the AD bit of a validating resolver),
and are retried over TCP when the answer is truncated.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.reversename
import idna

from probes.model.errors import CheckError
from probes.model.events import DnsQuery
from probes.model.names import canonical, is_ip_literal, split_host_port


@dataclass(frozen=True)
class Answer:
    """The answer to one question. status is NOERROR (with records), NODATA, NXDOMAIN,
    SERVFAIL, REFUSED, TIMEOUT or ERROR. records are presentation-format strings of the
    answers of the asked type; cname is the alias target when the name was a CNAME."""

    name: str
    rtype: str
    status: str
    records: tuple[str, ...]
    authenticated: bool
    cname: str | None = None
    rdata: tuple[object, ...] = ()  # the dnspython rdata objects, same order as records


def to_ascii(domain: str) -> str:
    """Validate a domain name as typed and return its IDNA 2008 A-label form (no trailing dot).

    Raises CheckError with a one-line reason for anything that is not a usable domain name.
    """
    text = domain.strip()
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise CheckError("empty domain name")
    if any(ch.isspace() for ch in text) or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise CheckError(f"not a domain name: {domain!r} contains spaces or control characters")
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        pass
    else:
        raise CheckError(f"{text} is an IP address; give the recipient domain (or use --mx)")
    if "@" in text:
        raise CheckError(f"{text} looks like a mail address; give the domain after the @")
    if "://" in text or "/" in text:
        host = text.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1].split(":", 1)[0]
        raise CheckError(
            f"{text} is a URL or a path; give the domain (e.g. {host or 'example.org'})"
        )
    if text.count(":") == 1 and text.rsplit(":", 1)[1].isdigit():
        host, port = text.rsplit(":", 1)
        raise CheckError(
            f"{text} has a port; give the domain ({host}) and the port with --port {port} "
            f"(or probe that host with --mx {text})"
        )
    for label in text.split("."):
        if not label:
            raise CheckError(f"not a valid domain name: {domain!r} has an empty label")
        if len(label) > 63:
            raise CheckError(
                f"not a valid domain name: label {label[:20]}... is over 63 characters"
            )
    try:
        ascii_name = idna.encode(text, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise CheckError(f"not a valid domain name: {domain!r} ({exc})") from None
    labels = ascii_name.split(".")
    if len(ascii_name) > 253:
        raise CheckError(f"domain name longer than 253 characters: {domain[:40]}...")
    for label in labels:
        if not label:
            raise CheckError(f"not a valid domain name: {domain!r} has an empty label")
        if len(label) > 63:
            raise CheckError(
                f"not a valid domain name: label {label[:20]}... is over 63 characters"
            )
        if (
            not all(c.isalnum() or c in "-_" for c in label)
            or label.startswith("-")
            or label.endswith("-")
        ):
            raise CheckError(f"not a valid domain name: {domain!r}")
    if len(labels) < 2:
        raise CheckError(f"not a fully qualified domain name: {domain!r}")
    return ascii_name.lower()


def parse_resolver(text: str) -> tuple[str, int]:
    """Parse `--resolver IP[:PORT]` ("127.0.0.1", "127.0.0.1:5353", "[::1]:53", "::1")."""
    try:
        host, port = split_host_port(text)
    except ValueError as exc:
        raise CheckError(f"bad --resolver {text!r}: {exc}") from None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise CheckError(f"bad --resolver {text!r}: give an IP address, optionally :PORT") from None
    return host, port if port is not None else 53


MAX_QUERIES = 32  # DNS queries in flight at once per Resolver


class Resolver:
    """An async stub resolver with a fixed list of servers.

    `on_query` is called with a DnsQuery event for every question asked, so the orchestrator
    can stream the DNS log. Answers are cached for the life of the object (one diagnosis).
    """

    def __init__(
        self,
        server: tuple[str, int] | None = None,
        timeout: float = 5.0,
        on_query: Callable[[DnsQuery], None] | None = None,
    ) -> None:
        servers: list[tuple[str, int]]
        if server is None:
            try:
                system = dns.resolver.Resolver(configure=True)
                servers = [(str(ip), 53) for ip in system.nameservers]
            except (dns.resolver.NoResolverConfiguration, OSError):
                servers = []
            if not servers:
                servers = [("127.0.0.1", 53)]
        else:
            servers = [server]
        self.servers: list[tuple[str, int]] = servers
        self.timeout = timeout
        self.on_query = on_query
        self._cache: dict[tuple[str, str], Answer] = {}
        # Questions on the wire: a second asker awaits the first one's answer instead of
        # sending the same question again (the TLSA lookup asks the MX host's A/AAAA too).
        self._inflight: dict[tuple[str, str], asyncio.Future[Answer]] = {}
        # Each query holds a socket: a domain with 1,000 MX must not open 1,000 at once.
        self._slots = asyncio.Semaphore(MAX_QUERIES)

    def describe(self) -> str:
        return ", ".join(f"{ip}:{port}" for ip, port in self.servers)

    async def query(self, name: str, rtype: str) -> Answer:
        """Ask one question. Never raises for DNS failures: the status says what happened."""
        key = (canonical(name), rtype.upper())
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        pending = self._inflight.get(key)
        if pending is not None:
            # wait() rather than await: the first asker's cancellation is not ours.
            await asyncio.wait({pending})
            if pending.cancelled():
                return await self.query(name, rtype)
            return pending.result()
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        started = time.monotonic()
        try:
            async with self._slots:
                answer = await self._ask(key[0], key[1])
        except BaseException as exc:
            # Cancelled or broken: whoever waits on this question asks it again itself.
            del self._inflight[key]
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # retrieved: a lone asker must not log "never retrieved"
            raise
        del self._inflight[key]
        self._cache[key] = answer
        future.set_result(answer)
        if self.on_query is not None:
            self.on_query(
                DnsQuery(
                    name=key[0],
                    rtype=key[1],
                    status=answer.status,
                    answers=answer.records,
                    authenticated=answer.authenticated,
                    ms=round((time.monotonic() - started) * 1000, 1),
                )
            )
        return answer

    async def _ask(self, name: str, rtype: str) -> Answer:
        try:
            qname = dns.name.from_text(name)
        except (dns.exception.DNSException, ValueError) as exc:
            return Answer(name, rtype, f"ERROR: {exc}", (), False)
        msg = dns.message.make_query(qname, rtype, want_dnssec=True, use_edns=0, payload=1232)
        msg.flags |= dns.flags.AD
        last_status = "TIMEOUT"
        for ip, port in self.servers:
            try:
                # A datagram from another source, with another id or question, or that does
                # not parse is not the answer: keep waiting for it (one spoofed packet must
                # not end the lookup).
                response = await dns.asyncquery.udp(
                    msg,
                    ip,
                    port=port,
                    timeout=self.timeout,
                    ignore_unexpected=True,
                    ignore_errors=True,
                )
                if response.flags & dns.flags.TC:
                    response = await dns.asyncquery.tcp(msg, ip, port=port, timeout=self.timeout)
            except dns.exception.Timeout:
                last_status = "TIMEOUT"
                continue
            except (OSError, dns.exception.DNSException) as exc:
                last_status = f"ERROR: {exc}"
                continue
            return self._answer(name, rtype, qname, response)
        return Answer(name, rtype, last_status, (), False)

    @staticmethod
    def _answer(
        name: str, rtype: str, qname: dns.name.Name, response: dns.message.Message
    ) -> Answer:
        rcode = response.rcode()
        ad = bool(response.flags & dns.flags.AD)
        if rcode == dns.rcode.NXDOMAIN:
            return Answer(name, rtype, "NXDOMAIN", (), ad)
        if rcode != dns.rcode.NOERROR:
            return Answer(name, rtype, dns.rcode.to_text(rcode), (), ad)
        want = dns.rdatatype.from_text(rtype)
        cname: str | None = None
        current = qname
        records: list[str] = []
        rdata: list[object] = []
        # Follow the CNAME chain inside the answer section.
        for _ in range(10):
            found = False
            for rrset in response.answer:
                if rrset.name != current:
                    continue
                if rrset.rdtype == want:
                    for rd in rrset:
                        records.append(rd.to_text())
                        rdata.append(rd)
                    found = True
                elif rrset.rdtype == dns.rdatatype.CNAME and want != dns.rdatatype.CNAME:
                    target = rrset[0].target
                    cname = canonical(target.to_text())
                    current = target
                    found = True
                    break
            if not found or records:
                break
        status = "NOERROR" if records else "NODATA"
        return Answer(name, rtype, status, tuple(records), ad, cname, tuple(rdata))

    async def addresses(self, host: str) -> tuple[tuple[str, ...], Answer, Answer]:
        """A and AAAA of host, asked together. Returns (addresses, a_answer, aaaa_answer)."""
        a, aaaa = await asyncio.gather(self.query(host, "A"), self.query(host, "AAAA"))
        return a.records + aaaa.records, a, aaaa

    async def resolve_host(self, host: str) -> list[str]:
        """Addresses to connect to for a URL host (an IP literal is returned as is).
        Raises OSError("DNS: <status>") when the name does not resolve."""
        if is_ip_literal(host):
            return [host.strip("[]")]
        addrs, a, aaaa = await self.addresses(host)
        if not addrs:
            status = a.status if a.status not in ("NOERROR", "NODATA") else aaaa.status
            raise OSError(f"DNS: {host} {status}")
        return list(addrs)

    async def ptr(self, address: str) -> Answer:
        rev = dns.reversename.from_address(address).to_text().rstrip(".")
        return await self.query(rev, "PTR")


def local_fqdn() -> str:
    """This host's name for EHLO when it is fully qualified, else a syntactically valid
    stand-in (`--ehlo` sets a real one). Deliberately no DNS lookup (socket.getfqdn would ask
    the system resolver, bypassing --resolver, and can block on a jump host's broken DNS)."""
    name = socket.gethostname().rstrip(".")
    if "." not in name or name.startswith("localhost"):
        return "mxlens.invalid"
    return name
