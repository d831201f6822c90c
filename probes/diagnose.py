"""The orchestrator: diagnose one domain, streaming events in arrival order.

`diagnose(target, options)` is the one entry point both front ends use. It runs independent
work concurrently (every MX host, every address, policy lookups, CA endpoint fetches) while
keeping at most one SMTP connection at a time per server address, so a whole diagnosis takes
about as long as its longest chain of round trips.

A hostile domain cannot make it exhaust the host: at most MAX_MX_HOSTS MX hosts and
MAX_ADDRESSES_PER_HOST addresses each are probed (Postfix's smtp_mx_session_limit and
smtp_mx_address_limit are the model; the rest are listed in dns.mx_not_probed), at most
MAX_SESSIONS SMTP connections are open at once, the findings catalog is loaded before any
socket is opened, and one overall deadline (options.deadline_for) bounds the whole run.

Findings are graded for the sender policy before they are yielded. Grading depends on what the
domain publishes (MTA-STS enforce, usable DANE), so findings that arrive before those lookups
finish are held back until they have, then flow as they come.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from probes.model.errors import CheckError, NetworkError
from probes.model.events import (
    AddressesResolved,
    ChainLink,
    ChainReceived,
    ChainValidated,
    DaneChecked,
    DiagnosisFinished,
    Event,
    Finding,
    FindingRaised,
    GradingSettled,
    MtaStsChecked,
    MxHost,
    MxResolved,
    PtrResolved,
    SessionFinished,
    SessionStarted,
    TlsNegotiated,
    TranscriptLine,
    Where,
)
from probes.model.findings import GradeContext, catalog, grade, raise_finding, worst
from probes.model.names import canonical, is_ip_literal
from probes.model.options import Options, deadline_for
from probes.model.server_software import identify, tailored_fix
from probes.net.dns import Answer, Resolver, local_fqdn, to_ascii
from probes.net.gate import ConnectionGate, GatedSlots

if TYPE_CHECKING:
    from probes.checks.dane import TlsaLookup
    from probes.checks.side_probes import MainFacts
    from probes.net.http import Fetcher
    from probes.net.trust import Roots

_END = object()
MAX_MX_HOSTS = 10
MAX_ADDRESSES_PER_HOST = 5
MAX_SESSIONS = 16  # SMTP connections open at once over the whole diagnosis


class _AddressSlot:
    """The right to connect to one server address: its lock (one connection at a time per
    address, held in the gate, so every diagnosis sharing the gate shares it) and one of the
    diagnosis's MAX_SESSIONS connection slots (each also one of the gate's)."""

    def __init__(self, lock: asyncio.Lock, slots: asyncio.Semaphore) -> None:
        self._lock = lock
        self._slots = slots

    async def __aenter__(self) -> None:
        await self._lock.acquire()
        try:
            await self._slots.acquire()
        except BaseException:
            self._lock.release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._slots.release()
        self._lock.release()

    @property
    def exclusive(self) -> asyncio.Lock:
        """The address alone, without a slot: the side probes, which run up to three
        connections at once, take one slot per connection themselves."""
        return self._lock


@dataclass
class _SessionFacts:
    """What the pool comparison needs to know about one address."""

    where: Where
    starttls: bool | None = None
    outcome: str = ""
    version: str | None = None
    cipher: str | None = None
    forward_secrecy: bool | None = None
    leaf: str | None = None
    leaf_subject: str | None = None
    throttled: bool = False
    trusted: bool | None = None
    problems: set[str] = field(default_factory=set)

    def signature(self) -> tuple[object, ...]:
        return (self.starttls, self.outcome, self.version, self.trusted, frozenset(self.problems))

    def attempt_signature(self) -> tuple[object, ...]:
        # Attempts hit the same address: a different leaf there means a different node.
        return (self.starttls, self.outcome, self.version, self.leaf)

    def describe_attempt(self) -> str:
        if self.outcome not in ("ok", ""):
            return f"stopped at {self.outcome}" + (
                "" if self.starttls is not False else " (no STARTTLS)"
            )
        parts = ["STARTTLS" if self.starttls else "no STARTTLS"]
        if self.version:
            parts.append(self.version)
        if self.leaf:
            parts.append(f"leaf {self.leaf_subject or '?'} (sha256 {self.leaf[:16]}...)")
        return "; ".join(parts)

    def describe(self) -> str:
        if self.outcome != "ok" and self.outcome:
            return f"stopped at {self.outcome}"
        parts = ["STARTTLS" if self.starttls else "no STARTTLS"]
        if self.version:
            parts.append(self.version)
        if self.trusted is not None:
            parts.append("trusted chain" if self.trusted else "untrusted chain")
        if self.problems:
            parts.append(", ".join(sorted(self.problems)))
        return "; ".join(parts)


def _prepare(options: Options, roots: Roots | None) -> Roots:
    """What the checks after the first SMTP session need: their modules (cryptography and
    httpx are the heavy ones) and the trust roots. Run in a thread while the first DNS
    answers and the main session are awaited, so start-up does not wait for it."""
    import probes.checks.chain
    import probes.checks.dane
    import probes.checks.endpoints
    import probes.checks.mtasts
    import probes.checks.side_probes
    import probes.checks.tlsrpt  # noqa: F401
    from probes.net.trust import load_roots

    catalog()  # read findings.json here too

    return roots if roots is not None else load_roots(options)


class _Run:
    def __init__(
        self,
        target: str,
        domain_ascii: str,
        options: Options,
        roots: Roots | None = None,
        gate: ConnectionGate | None = None,
    ) -> None:
        self.target = target
        self.domain = domain_ascii
        self.options = options
        self._given_roots = roots
        self._prepared: asyncio.Future[Roots] | None = None
        # Set once the first main session is connecting (or when there is none): the thread
        # then works while the network is awaited, not while DNS answers are parsed.
        self._may_prepare = asyncio.Event()
        self._fetcher: Fetcher | None = None
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.resolver = Resolver(options.resolver, timeout=options.timeout, on_query=self.put)
        self.ehlo = options.ehlo or local_fqdn()
        self.gate = gate or ConnectionGate()
        # Every connection of the run takes one of these, and through them one of the gate's.
        self.session_slots: asyncio.Semaphore = GatedSlots(self.gate, MAX_SESSIONS)
        self.locks: dict[tuple[str, int], _AddressSlot] = {}
        self.endpoint_cache: dict[str, object] = {}
        self.findings: list[Finding] = []
        self.pending: list[Finding] = []
        self.context_ready = False
        self.mtasts_enforce = False
        self.dane_active: set[str] = set()  # MX hosts with validated, usable TLSA records
        self.dane_ee: set[Where] = set()  # sessions whose leaf matched a DANE-EE record
        self.facts: dict[Where, _SessionFacts] = {}
        # The software each address's greeting names (None: it names none we know).
        self.software: dict[Where, str | None] = {}
        self.tlsa: dict[str, asyncio.Task[TlsaLookup]] = {}
        self.started = time.monotonic()

    # ------------------------------------------------------------------ plumbing

    def start_preparing(self) -> None:
        if self._prepared is not None:
            return
        loop = asyncio.get_running_loop()
        self._prepared = loop.run_in_executor(None, _prepare, self.options, self._given_roots)

    def allow_preparing(self) -> None:
        self._may_prepare.set()
        self.start_preparing()

    async def roots(self) -> Roots:
        """The trust roots, once the preparing thread has them (and the heavy modules)."""
        if self._prepared is None:
            await self._may_prepare.wait()
            self.start_preparing()
        assert self._prepared is not None
        return await asyncio.shield(self._prepared)

    async def fetcher(self) -> Fetcher:
        roots = await self.roots()
        if self._fetcher is None:
            from probes.net.http import Fetcher

            self._fetcher = Fetcher(self.resolver, self.options, roots)
        return self._fetcher

    async def _first_error(self, exc: Exception) -> Exception:
        """An unusable --ca-file or trust store is the error to report, whatever failed
        after it (the roots load in a thread, so a lookup may fail first)."""
        self.allow_preparing()
        assert self._prepared is not None
        await asyncio.wait({self._prepared})
        failed = None if self._prepared.cancelled() else self._prepared.exception()
        return failed if isinstance(failed, CheckError) else exc

    async def aclose(self) -> None:
        if self._fetcher is not None:
            await self._fetcher.aclose()
        if self._prepared is not None and not self._prepared.done():
            # The thread cannot be stopped; let it finish so nothing outlives the run.
            await asyncio.wait({self._prepared})

    def put(self, event: object) -> None:
        self.queue.put_nowait(event)

    def slot(self, address: str, port: int) -> _AddressSlot:
        key = (address, port)
        if key not in self.locks:
            self.locks[key] = _AddressSlot(
                self.gate.address_lock(address, port), self.session_slots
            )
        return self.locks[key]

    def finding(self, finding: Finding) -> None:
        if self.context_ready or finding.id.startswith(("dns.", "pool.")):
            self._emit(finding)
        else:
            self.pending.append(finding)

    def _emit(self, finding: Finding) -> None:
        host = finding.where.host
        ctx = GradeContext(
            policy=self.options.policy,
            mtasts_enforce=self.mtasts_enforce,
            dane_active=host in self.dane_active,
            dane_ee_matched=finding.where in self.dane_ee,
        )
        graded = grade(finding, ctx)
        fix = tailored_fix(graded.id, self.software.get(finding.where))
        if fix is not None:
            graded = replace(graded, fix=fix)
        self.findings.append(graded)
        self.put(FindingRaised(graded))

    def release_findings(self) -> None:
        if not self.context_ready:
            self.put(
                GradingSettled(
                    self.options.policy, self.mtasts_enforce, tuple(sorted(self.dane_active))
                )
            )
        self.context_ready = True
        pending, self.pending = self.pending, []
        for finding in pending:
            self._emit(finding)

    async def pump(self, events: AsyncIterator[Event]) -> list[Event]:
        """Forward a probe's events (findings through grading) and return them too."""
        seen: list[Event] = []
        async for event in events:
            seen.append(event)
            if isinstance(event, FindingRaised):
                self.finding(event.finding)
            else:
                if (
                    isinstance(event, TranscriptLine)
                    and event.dir == "S"
                    and event.where not in self.software
                ):
                    self.software[event.where] = identify(event.text)  # the greeting
                self.put(event)
        return seen

    # ------------------------------------------------------------------ the run

    async def run(self) -> None:
        background: list[asyncio.Task[Any]] = []
        try:
            hosts = await self.mail_route()
            if hosts:
                # A task: the roots it reads load once the first main session is under way.
                roots_task = asyncio.create_task(self.provider_roots([h.host for h in hosts]))
                background.append(roots_task)
                policy_task = asyncio.create_task(self.policies([h.host for h in hosts]))
                background.append(policy_task)
                for mx in hosts:
                    if not mx.is_ip_literal:
                        self.tlsa[mx.host] = asyncio.create_task(
                            self.lookup_tlsa(mx.host, self.port_for(mx.host))
                        )
                        background.append(self.tlsa[mx.host])
                context_task = asyncio.create_task(self.settle_context(policy_task))
                background.append(context_task)
                await asyncio.gather(*(self.mx_host(mx) for mx in hosts))
                self.allow_preparing()
                if self.facts and all(
                    "smtp.not_tested_from_here" in f.problems for f in self.facts.values()
                ):
                    raise NetworkError(
                        "no MX address could be tested from this host: they are IPv6 only "
                        "and this host has no IPv6 route; run mxlens where IPv6 works"
                    )
                await context_task
                await policy_task
                await roots_task
                self.compare_pool()
            # Even a run that never needed them fails on an unusable --ca-file (exit 3).
            self.allow_preparing()
            await self.roots()
            self.release_findings()
            self.put(
                DiagnosisFinished(
                    target=self.target,
                    elapsed_ms=round((time.monotonic() - self.started) * 1000, 1),
                    worst=worst(self.findings),
                )
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # handed to the consumer, which re-raises it
            self.put(await self._first_error(exc))
        finally:
            # Nothing may outlive the diagnosis: a policy fetch still running after the
            # fetcher is closed would open a client that nobody closes.
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            self.put(_END)

    def side_probes_wanted(self) -> bool:
        return self.options.extra_probes and not self.options.quick

    async def provider_roots(self, mx_hosts: list[str]) -> None:
        """A provider's MX checked with a trust store that lacks the root its chains need."""
        roots = await self.roots()
        from cryptography.hazmat.primitives import hashes

        from probes.interpret.providers import missing_root_findings

        sha1s = {c.fingerprint(hashes.SHA1()).hex().upper() for c in roots.certs}
        for finding in missing_root_findings(mx_hosts, sha1s, roots.description):
            self.finding(finding)

    def port_for(self, host: str) -> int:
        for override in self.options.mx:
            if override.host == host and override.port is not None:
                return override.port
        return self.options.port

    async def lookup_tlsa(self, host: str, port: int) -> TlsaLookup:
        await self.roots()  # the module is loaded by then
        from probes.checks.dane import lookup_tlsa

        return await lookup_tlsa(host, port, self.resolver)

    async def settle_context(self, policy_task: asyncio.Task[None]) -> None:
        """Learn what the domain publishes, then let held-back findings through."""
        from probes.checks.dane import is_usable

        await policy_task
        for host, task in self.tlsa.items():
            lookup = await task
            if lookup.authenticated and any(is_usable(r) for r in lookup.records):
                self.dane_active.add(host)
        self.release_findings()

    async def policies(self, mx_hosts: list[str]) -> None:
        fetcher = await self.fetcher()
        from probes.checks.mtasts import check_mtasts
        from probes.checks.tlsrpt import check_tlsrpt

        async def mtasts() -> None:
            for event in await self.pump(
                check_mtasts(self.domain, mx_hosts, self.resolver, fetcher)
            ):
                if isinstance(event, MtaStsChecked):
                    self.mtasts_enforce = event.mode == "enforce" and event.error is None

        await asyncio.gather(mtasts(), self.pump(check_tlsrpt(self.domain, self.resolver)))

    async def mail_route(self) -> list[MxHost]:
        """The MX hosts a sender would use, in preference order (or the --mx overrides)."""
        where = Where(self.domain)
        if self.options.mx:
            overrides = tuple(
                MxHost(canonical(o.host), 0, is_ip_literal=is_ip_literal(o.host))
                for o in self.options.mx
            )
            self.put(MxResolved(self.target, self.domain, overrides, overridden=True))
            return list(overrides)
        answer = await self.resolver.query(self.domain, "MX")
        if answer.status == "TIMEOUT" or answer.status.startswith("ERROR"):
            why = (
                f"no reply in {self.options.timeout:g} s"
                if answer.status == "TIMEOUT"
                else answer.status
            )
            raise NetworkError(
                f"the resolver {self.resolver.describe()} does not answer ({why}); "
                "check --resolver or the network"
            )
        if answer.status == "NXDOMAIN":
            self.put(MxResolved(self.target, self.domain, ()))
            self.finding(
                raise_finding("dns.nxdomain", where, f"{self.domain} does not exist (NXDOMAIN)")
            )
            return []
        if answer.status not in ("NOERROR", "NODATA"):
            self.put(MxResolved(self.target, self.domain, ()))
            self.finding(
                raise_finding(
                    "dns.lookup_failed", where, f"MX lookup for {self.domain}: {answer.status}"
                )
            )
            return []
        if answer.status == "NODATA":
            return await self.implicit_mx(answer)
        hosts = self.parse_mx(answer)
        if hosts is None:
            self.put(
                MxResolved(
                    self.target, self.domain, (), null_mx=True, authenticated=answer.authenticated
                )
            )
            self.finding(
                raise_finding("dns.null_mx", where, f"{self.domain} publishes a null MX (0 .)")
            )
            return []
        checked = []
        for mx in hosts:
            if mx.is_ip_literal:
                self.finding(
                    raise_finding(
                        "dns.mx_is_ip",
                        Where(mx.host),
                        f"MX target {mx.host} is an IP address, not a host name",
                    )
                )
            checked.append(mx)
        if len(checked) > MAX_MX_HOSTS:
            rest = checked[MAX_MX_HOSTS:]
            checked = checked[:MAX_MX_HOSTS]
            names = ", ".join(mx.host for mx in rest[:3])
            more = f" and {len(rest) - 3} more" if len(rest) > 3 else ""
            self.finding(
                raise_finding(
                    "dns.mx_not_probed",
                    where,
                    f"{self.domain} lists {len(checked) + len(rest)} MX hosts; the first "
                    f"{MAX_MX_HOSTS} by preference were probed, not {names}{more}",
                )
            )
        self.put(
            MxResolved(self.target, self.domain, tuple(checked), authenticated=answer.authenticated)
        )
        return [mx for mx in checked if not mx.is_ip_literal]

    async def implicit_mx(self, answer: Answer) -> list[MxHost]:
        addrs, _, _ = await self.resolver.addresses(self.domain)
        host = MxHost(self.domain, 0)
        self.put(
            MxResolved(
                self.target, self.domain, (host,), implicit=True, authenticated=answer.authenticated
            )
        )
        summary = f"{self.domain} has no MX record"
        summary += "; senders use its A/AAAA" if addrs else " and no A/AAAA: mail cannot be routed"
        self.finding(raise_finding("dns.no_mx", Where(self.domain), summary))
        return [host]

    @staticmethod
    def parse_mx(answer: Answer) -> list[MxHost] | None:
        """MX records in preference order; None for a null MX."""
        entries: list[tuple[int, int, str]] = []
        for index, rd in enumerate(answer.rdata):
            pref = int(getattr(rd, "preference", 0))
            exchange = canonical(str(getattr(rd, "exchange", "")))
            entries.append((pref, index, exchange))
        if len(entries) == 1 and entries[0][2] == "":
            return None
        hosts = []
        seen: set[str] = set()
        for pref, _, exchange in sorted(entries):
            if not exchange:
                continue  # a "0 ." among real MX: ignore it as senders do
            if exchange in seen:
                # The same host twice (two preferences, or two spellings): senders try it
                # once, at its best preference; probing it twice would double its findings.
                continue
            seen.add(exchange)
            hosts.append(MxHost(exchange, pref, is_ip_literal=is_ip_literal(exchange)))
        return hosts

    async def mx_host(self, mx: MxHost) -> None:
        where = Where(mx.host)
        if mx.is_ip_literal:  # `--mx ADDR[:PORT]`: probe that address, no A/AAAA lookup
            self.put(AddressesResolved(mx.host, (mx.host,)))
            await self.address(mx.host, mx.host, self.port_for(mx.host))
            return
        addrs, a, aaaa = await self.resolver.addresses(mx.host)
        cname = a.cname or aaaa.cname
        self.put(AddressesResolved(mx.host, addrs, cname, a.authenticated))
        if cname:
            self.finding(
                raise_finding(
                    "dns.mx_is_cname", where, f"MX target {mx.host} is an alias (CNAME) of {cname}"
                )
            )
        if not addrs:
            failed = [x for x in (a, aaaa) if x.status not in ("NOERROR", "NODATA", "NXDOMAIN")]
            if failed:
                self.finding(
                    raise_finding(
                        "dns.lookup_failed",
                        where,
                        f"address lookup for {mx.host}: {failed[0].status}",
                    )
                )
            else:
                self.finding(
                    raise_finding(
                        "dns.mx_unresolvable",
                        where,
                        f"MX host {mx.host} has no A or AAAA record ({a.status})",
                    )
                )
            return
        if len(addrs) > MAX_ADDRESSES_PER_HOST:
            rest = addrs[MAX_ADDRESSES_PER_HOST:]
            addrs = addrs[:MAX_ADDRESSES_PER_HOST]
            more = f" and {len(rest) - 3} more" if len(rest) > 3 else ""
            self.finding(
                raise_finding(
                    "dns.mx_not_probed",
                    where,
                    f"{mx.host} has {len(addrs) + len(rest)} addresses; the first "
                    f"{MAX_ADDRESSES_PER_HOST} were probed, not {', '.join(rest[:3])}{more}",
                )
            )
        port = self.port_for(mx.host)
        await asyncio.gather(*(self.address(mx.host, addr, port) for addr in addrs))

    async def address(self, host: str, address: str, port: int) -> None:
        where = Where(host, address, port)
        await asyncio.gather(self.ptr(host, address), self.sessions(where))

    async def ptr(self, host: str, address: str) -> None:
        answer = await self.resolver.ptr(address)
        names = tuple(canonical(r) for r in answer.records)
        confirmed: bool | None = None
        where = Where(host, address)
        if names:
            confirmed = False
            for name in names:
                addrs, _, _ = await self.resolver.addresses(name)
                if address in addrs:
                    confirmed = True
                    break
        self.put(PtrResolved(address, names, confirmed))
        if not names:
            self.finding(
                raise_finding(
                    "dns.ptr_missing", where, f"{address} has no PTR record ({answer.status})"
                )
            )
        elif not confirmed:
            self.finding(
                raise_finding(
                    "dns.ptr_mismatch",
                    where,
                    f"PTR of {address} is {names[0]}, which does not resolve back to {address}",
                )
            )

    async def sessions(self, where: Where) -> None:
        from probes.checks.session import smtp_session

        facts = self.facts.setdefault(where, _SessionFacts(where))
        lock = self.slot(where.address or where.host, where.port or 25)
        async with lock:
            events = await self.pump(
                self._connecting(
                    smtp_session(where, self.options, purpose="main", ehlo_name=self.ehlo)
                )
            )
        chain: ChainReceived | None = None
        handshake_index: int | None = None
        main_lines = [e for e in events if isinstance(e, TranscriptLine)]
        for index, line in enumerate(main_lines):
            if line.dir == "TLS" and line.text.startswith("handshake done"):
                handshake_index = index
        for event in events:
            if isinstance(event, FindingRaised):
                facts.problems.add(event.finding.id)
            elif isinstance(event, SessionFinished):
                facts.starttls = event.starttls
                facts.outcome = event.outcome
            elif isinstance(event, TlsNegotiated):
                facts.version = event.version
                facts.cipher = event.cipher
                facts.forward_secrecy = event.forward_secrecy
            elif isinstance(event, ChainReceived):
                chain = event
        if chain is not None and chain.certs:
            facts.leaf = chain.certs[0].sha256
            facts.leaf_subject = chain.certs[0].subject
        if self.options.attempts > 1:
            await self.attempts(where, lock, facts)
        if chain is None or not chain.certs:
            return
        if self.side_probes_wanted() and facts.version and facts.cipher:
            from probes.checks.side_probes import MainFacts

            main = MainFacts(
                facts.version, facts.cipher, handshake_index or 0, chain.certs[0].key_type
            )
            await asyncio.gather(
                self.extra_probes(where, lock, main),
                self.chain(where, chain, facts, yield_first=True),
            )
        else:
            await self.chain(where, chain, facts)

    async def _connecting(self, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        """The main session's events; once it starts, the preparing thread may start too
        (call_soon: after the session's first step, its TCP connect, is under way)."""
        async for event in events:
            if isinstance(event, SessionStarted):
                asyncio.get_running_loop().call_soon(self.allow_preparing)
            yield event

    async def attempts(self, where: Where, lock: _AddressSlot, first: _SessionFacts) -> None:
        """--attempts N: N-1 more main sessions, one after another. A load balancer whose
        nodes differ (another leaf certificate, no STARTTLS on one node) shows as attempts
        that disagree; pool.inconsistent names the odd ones. Only the first attempt is judged
        in full; the others are compared, and a throttle on them is reported as such."""
        from probes.checks.session import smtp_session

        runs: list[tuple[int, _SessionFacts]] = [(1, first)]
        total = self.options.attempts
        for number in range(2, total + 1):
            facts = _SessionFacts(where)
            async with lock:
                async for event in smtp_session(
                    where, self.options, purpose="attempt", ehlo_name=self.ehlo
                ):
                    if isinstance(event, FindingRaised):
                        if event.finding.id == "smtp.rate_limited":
                            facts.throttled = True
                            finding = event.finding
                            self.finding(
                                replace(finding, summary=f"attempt {number}: {finding.summary}")
                            )
                        continue  # judged on the first attempt; compared below
                    if isinstance(event, TlsNegotiated):
                        facts.version = event.version
                        continue  # the report keeps the first attempt's handshake
                    elif isinstance(event, ChainReceived):
                        if event.certs:
                            facts.leaf = event.certs[0].sha256
                            facts.leaf_subject = event.certs[0].subject
                        continue  # the report keeps the first attempt's chain
                    elif isinstance(event, SessionFinished):
                        facts.starttls = event.starttls
                        facts.outcome = event.outcome
                    self.put(event)
            if facts.throttled and facts.outcome != "ok":
                continue  # a throttle says nothing about the node behind it
            runs.append((number, facts))
        groups: dict[tuple[object, ...], list[tuple[int, _SessionFacts]]] = defaultdict(list)
        for number, facts in runs:
            groups[facts.attempt_signature()].append((number, facts))
        if len(groups) < 2:
            return
        # The majority is the reference; on a tie, the group with the first attempt.
        ordered = sorted(groups.values(), key=lambda g: (-len(g), g[0][0]))
        ref_number, ref = ordered[0][0]
        for group in ordered[1:]:
            for number, odd in group:
                self.finding(
                    raise_finding(
                        "pool.inconsistent",
                        where,
                        f"attempt {number} of {total} at {where} differs from attempt "
                        f"{ref_number}: {odd.describe_attempt()} (vs {ref.describe_attempt()}); "
                        "a load balancer with nodes that differ",
                    )
                )

    async def extra_probes(self, where: Where, lock: _AddressSlot, main: MainFacts) -> None:
        """The side probes, after the main session (and any attempts) so that a connection
        limit they trip can never taint the verdict; they overlap among themselves."""
        from probes.checks.side_probes import side_probes

        async with lock.exclusive:
            await self.pump(
                side_probes(
                    where,
                    self.options,
                    ehlo_name=self.ehlo,
                    main=main,
                    slots=self.session_slots,
                )
            )

    async def chain(
        self, where: Where, chain: ChainReceived, facts: _SessionFacts, *, yield_first: bool = False
    ) -> None:
        if yield_first:
            # Path validation is CPU work that holds the loop: let the side probes, started
            # just before, send their connects first so it overlaps their round trips.
            await asyncio.sleep(0)
        # DANE first: a DANE-EE match makes the certificate's names and dates moot, and the
        # certificate findings below are graded with that knowledge.
        roots = await self.roots()
        fetcher = await self.fetcher()
        from probes.checks.chain import validate_chain
        from probes.checks.dane import judge_dane
        from probes.checks.endpoints import check_endpoints

        task = self.tlsa.get(where.host)
        if task is not None:
            lookup = await task
            for event in judge_dane(where, lookup, [c.der for c in chain.certs]):
                if (
                    isinstance(event, DaneChecked)
                    and event.matched is not None
                    and event.matched.usage == 3
                ):
                    self.dane_ee.add(where)
                if isinstance(event, FindingRaised):
                    self.finding(event.finding)
                else:
                    self.put(event)
        names = [where.host]
        events = await self.pump(
            validate_chain(
                where,
                list(chain.certs),
                self.options,
                names=names,
                fetcher=fetcher,
                roots=roots,
            )
        )
        path: list[ChainLink] = []
        for event in events:
            if isinstance(event, ChainValidated):
                facts.trusted = event.trusted
                path = list(event.path)
            elif isinstance(event, FindingRaised):
                facts.problems.add(event.finding.id)
        if self.options.endpoints and path:
            await self.pump(
                check_endpoints(path, fetcher, self.options, where=where, cache=self.endpoint_cache)
            )

    def compare_pool(self) -> None:
        """pool.inconsistent: name the addresses whose results differ from the majority.
        Addresses this host could not test (no IPv6 route here) say nothing about the pool."""
        facts = [f for f in self.facts.values() if "smtp.not_tested_from_here" not in f.problems]
        if len(facts) < 2:
            return
        groups: dict[tuple[object, ...], list[_SessionFacts]] = defaultdict(list)
        for fact in facts:
            groups[fact.signature()].append(fact)
        if len(groups) < 2:
            return
        ordered = sorted(groups.values(), key=len, reverse=True)
        majority = ordered[0][0]
        for group in ordered[1:]:
            for odd in group:
                self.finding(
                    raise_finding(
                        "pool.inconsistent",
                        odd.where,
                        f"{odd.where} differs from {majority.where}: {odd.describe()} "
                        f"(vs {majority.describe()})",
                    )
                )


async def _stop_at_deadline(
    run: _Run, task: asyncio.Task[None], limit: float
) -> AsyncIterator[Event]:
    """Stop what is still running, then end the diagnosis with what it has: the events
    already queued, the held-back findings graded, check.deadline_reached, and the end."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    run.release_findings()
    run._emit(
        raise_finding(
            "check.deadline_reached",
            Where(run.domain),
            f"the diagnosis stopped at its {limit:g} s deadline; probes still running then "
            "were not finished",
        )
    )
    while not run.queue.empty():
        item = run.queue.get_nowait()
        if item is _END or isinstance(item, BaseException):
            continue
        yield item  # type: ignore[misc]
    yield DiagnosisFinished(
        target=run.target,
        elapsed_ms=round((time.monotonic() - run.started) * 1000, 1),
        worst=worst(run.findings),
    )


async def diagnose(
    target: str, options: Options, *, gate: ConnectionGate | None = None
) -> AsyncIterator[Event]:
    """Diagnose mail delivery over TLS to `target`; yield events as they happen.

    `gate` is shared by diagnoses that must be polite together (an audit): one connection at
    a time per address across all of them, and its caps on open and new connections.

    Raises CheckError for bad input (before the first event) and when the check cannot be
    made at all (the resolver does not answer).
    """
    domain_ascii = to_ascii(target)
    if not options.timeout > 0:
        raise CheckError("--timeout must be a positive number of seconds")
    # Every file the run needs is read before its first socket: with the descriptors used up
    # by a hostile domain, a lazily opened catalog would end the run in "internal error".
    # (The trust roots load in the preparing thread; an unusable --ca-file is still a
    # CheckError, exit 3, raised when the run first needs them.)
    catalog()
    run = _Run(target, domain_ascii, options, gate=gate)
    task = asyncio.create_task(run.run())
    limit = deadline_for(options)
    deadline = time.monotonic() + limit
    try:
        while True:
            remaining = deadline - time.monotonic()
            item: object = None
            if remaining > 0 and not run.queue.empty():
                # Events come in bursts: take what is queued without wait_for, which costs a
                # task and a timer per event (a tenth of an audit's CPU time).
                item = run.queue.get_nowait()
            elif remaining > 0:
                try:
                    item = await asyncio.wait_for(run.queue.get(), timeout=remaining)
                except asyncio.TimeoutError:
                    remaining = 0
            if remaining <= 0:
                async for event in _stop_at_deadline(run, task, limit):
                    yield event
                break
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        if not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        await run.aclose()
