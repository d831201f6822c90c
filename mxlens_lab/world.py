"""`Lab`: the whole local mail world on loopback, built from the scenario table.

One lab owns a /16 of loopback (127.N.0.0/16, N random in 100..250, retried when taken) so
that two labs can run at once:

    127.N.0.1          DNS (UDP+TCP, port 5353 if free)        the resolver mxlens is given
    127.N.0.2          pki.lab.test: OCSP / CRL / caIssuers over HTTP (port 8080 if free)
    127.N.0.3          mta-sts.<domain> for every domain: HTTPS, certificate by SNI
    127.N.1.1 ...      one address per MX host (and per extra host a scenario needs)

Every SMTP server listens on the same port (2525 if free on all of them, else one free port
that binds on all), because mxlens probes one --port for every MX.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import hashlib
import ipaddress
import os
import random
import signal
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography.hazmat.primitives import serialization

from probes.model.errors import CheckError
from probes.model.names import canonical, is_ip_literal
from probes.model.options import Options
from probes.net.dns import to_ascii

from .dns_server import DnsServer
from .http_server import MtaStsServer, PkiHttpServer
from .pki import CA, PKI, Issued
from .scenarios import SCENARIOS, CertSpec, MxSpec, Scenario, find_scenario
from .smtp_server import Behaviour, SmtpServer, server_context

# Options the lab decides: where its resolver, servers and trust store are.
LAB_OWNED = frozenset({"resolver", "port", "ca_file", "trust", "https_port", "implicit_tls"})


def refuse_lab_owned(user: Options) -> None:
    """CheckError when the user set an option the lab decides (its resolver, ports, roots)."""
    clash = sorted(user.given & LAB_OWNED)
    if clash:
        flags = ", ".join("--" + name.replace("_", "-") for name in clash)
        raise CheckError(f"{flags} cannot be used with the lab: the lab sets it")


DNS_PORT = 5353
HTTP_PORT = 8080
HTTPS_PORT = 8443
SMTP_PORT = 2525
PKI_HOST = "pki.lab.test"
DEFAULT_TIMEOUT = 2.0


@dataclass
class HostPlan:
    """One MX host as built: where it is and what serves it."""

    scenario: str
    host: str  # ASCII, no trailing dot
    address: str
    spec: MxSpec
    issued: Issued | None = None
    server: SmtpServer | None = None
    mx_name: str = ""  # the name the MX record gives (differs from host for a CNAME'd MX)


class Lab:
    """The lab as an async context manager: `async with Lab() as lab: ...`."""

    def __init__(self, scenarios: list[str] | None = None, *, partners: int = 0) -> None:
        """`partners`: that many synthetic partner domains besides the scenarios
        (mxlens_lab.partners), for scale runs."""
        names = list(SCENARIOS) if scenarios is None else list(dict.fromkeys(scenarios))
        unknown = [n for n in names if n not in SCENARIOS]
        if unknown:
            raise KeyError(
                f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}"
            )
        self.scenarios: dict[str, Scenario] = {n: SCENARIOS[n] for n in names}
        if partners:
            from .partners import partner_scenarios

            self.scenarios.update({s.name: s for s in partner_scenarios(partners)})
        self.resolver: tuple[str, int] = ("127.0.0.1", 0)
        self.smtp_port = 0
        self.http_port = 0
        self.https_port = 0
        self.ca_file = ""
        self.net = 0  # the N of 127.N.0.0/16
        self.pki: PKI | None = None
        self.dns: DnsServer | None = None
        self.http: PkiHttpServer | None = None
        self.https: MtaStsServer | None = None
        self.hosts: list[HostPlan] = []
        self.addresses: dict[str, str] = {}  # host name -> address, for every lab host
        self.started = False
        self._next_host = 0
        self._cas: dict[str, CA] = {}  # scenario -> the intermediate that issues its leaves
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the servers run on

    # ---- public helpers -------------------------------------------------------------------
    def domain(self, name: str) -> str:
        """The domain of scenario `name`, as a user types it."""
        return self.scenarios[name].domain

    def scenario_for(self, domain: str) -> Scenario | None:
        """The running scenario whose domain is `domain` or a parent of it (any form)."""
        found = find_scenario(domain)
        if found is None and domain.lower().startswith("partner-"):
            wanted = domain.lower().rstrip(".")
            found = next((s for s in self.scenarios.values() if s.domain == wanted), None)
        return found if found is not None and found.name in self.scenarios else None

    def options_for(self, target: str, user: Options) -> Options:
        """Options to diagnose `target` in this lab: the lab's plumbing and the scenario's
        own options, then every option the user set explicitly (`user.given`). The lab owns
        the resolver, ports and trust store; a user who set one of those gets a CheckError."""
        refuse_lab_owned(user)
        scenario = self.scenario_for(target)
        chosen = {name: getattr(user, name) for name in user.given}
        return self.options(scenario.name if scenario is not None else None, **chosen)

    def options(self, scenario: str | None = None, **overrides: Any) -> Options:
        """Options that diagnose a lab domain: the lab resolver, SMTP port, CA file and HTTPS
        port, timeout 2 s, plus the scenario's own options, plus overrides."""
        if not self.started:
            raise RuntimeError("start the lab first")
        opts = Options(
            resolver=self.resolver,
            port=self.smtp_port,
            ca_file=self.ca_file,
            https_port=self.https_port,
            timeout=DEFAULT_TIMEOUT,
            # the lab's CA endpoints live on loopback and high ports, as an internal PKI's do
            private_endpoints=True,
        )
        extra: dict[str, Any] = {}
        if scenario is not None:
            extra.update(self.scenarios[scenario].options)
        extra.update(overrides)
        return replace(opts, **extra) if extra else opts

    def servers(self, scenario: str) -> list[SmtpServer]:
        """The SMTP servers of a scenario (for tests that inspect ServerLog)."""
        return [h.server for h in self.hosts if h.scenario == scenario and h.server is not None]

    def host_plans(self, scenario: str) -> list[HostPlan]:
        return [h for h in self.hosts if h.scenario == scenario]

    def switch(
        self,
        scenario: str,
        *,
        cert: CertSpec | None = None,
        server: dict[str, Any] | None = None,
        new_ca: str | None = None,
        label: str | None = None,
    ) -> list[HostPlan]:
        """Change a running scenario's SMTP servers, as a partner's admin would between two
        checks: a new leaf issued from `cert` (by a new intermediate `new_ca` under the same
        root when given, else by the scenario's own), and/or new Behaviour overrides `server`
        (replacing the spec's). Only MX hosts with this `label` when given. Connections that
        start after the call see the change; DNS (TLSA included) stays as built.

        From another thread (a test driving a LabThread) the change is made on the lab's own
        loop, and this call waits for it, so the servers never see a half-made change."""
        if not self.started or self.pki is None:
            raise RuntimeError("start the lab first")
        loop = self._loop
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if loop is not None and loop is not here and loop.is_running():
            done: concurrent.futures.Future[list[HostPlan]] = concurrent.futures.Future()

            def on_loop() -> None:
                try:
                    done.set_result(
                        self.switch(scenario, cert=cert, server=server, new_ca=new_ca, label=label)
                    )
                except BaseException as exc:  # handed to the calling thread
                    done.set_exception(exc)

            loop.call_soon_threadsafe(on_loop)
            return done.result(timeout=60)
        plans = [
            p
            for p in self.host_plans(scenario)
            if p.server is not None and (label is None or p.spec.label == label)
        ]
        if not plans:
            raise KeyError(f"scenario {scenario!r} has no running SMTP server to switch")
        ca = self._cas[scenario]
        if new_ca is not None:
            if new_ca not in self._cas:
                parent = ca.parent if ca.parent is not None else self.root
                self._cas[new_ca] = self.pki.intermediate(new_ca, parent)
            ca = self._cas[new_ca]
        d = to_ascii(self.scenarios[scenario].domain)
        for plan in plans:
            spec = plan.spec
            if cert is not None:
                spec = replace(spec, cert=cert)
            if server is not None:
                spec = replace(spec, server=dict(server))
            plan.spec = spec
            if cert is not None or new_ca is not None:
                names = self._cert_names(spec.cert, d, plan.host, plan.mx_name or plan.host)
                plan.issued = self._issue(self.pki, ca, spec.cert, names, d, ca.name)
            behaviour = self._behaviour(plan)
            assert plan.server is not None
            # The context first: a session reads the behaviour when it starts and the context
            # at STARTTLS, so a new session never pairs the old context with the new chain.
            plan.server.context = server_context(behaviour)
            plan.server.behaviour = behaviour
        return plans

    def check_command(self, name: str) -> str:
        """The `mxlens check` command line that diagnoses scenario `name` in this lab."""
        return " ".join(
            ["mxlens check", _shell_quote(self.scenarios[name].domain), self.lab_flags()]
            + self.scenario_flags(name)
        )

    def check_args(self) -> list[str]:
        """The arguments that point `mxlens check` at this lab, the same for every domain."""
        ip, port = self.resolver
        return [
            "--resolver",
            f"{ip}:{port}",
            "--port",
            str(self.smtp_port),
            "--ca-file",
            self.ca_file,
            "--https-port",
            str(self.https_port),
            "--timeout",
            f"{DEFAULT_TIMEOUT:g}",
            "--allow-private-endpoints",  # the lab's CA endpoints are on loopback
        ]

    def lab_flags(self) -> str:
        """`check_args()` as one shell-quoted string, for the command lines the lab prints."""
        return " ".join(_shell_quote(arg) for arg in self.check_args())

    def scenario_flags(self, name: str) -> list[str]:
        """The flags scenario `name` needs besides the lab's (a connector's name, attempts)."""
        s = self.scenarios[name]
        parts = []
        if "expect_name" in s.options:
            parts.append(f"--expect-name {_shell_quote(s.options['expect_name'])}")
        if "policy" in s.options:
            parts.append(f"--policy {s.options['policy']}")
        if "attempts" in s.options:
            parts.append(f"--attempts {int(s.options['attempts'])}")
        return parts

    # ---- start / stop ---------------------------------------------------------------------
    async def __aenter__(self) -> Lab:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self.started:
            return
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        self._loop = asyncio.get_running_loop()
        self.started = True

    async def stop(self) -> None:
        """Close every socket and remove the temporary CA file. Safe to call twice."""
        for plan in self.hosts:
            if plan.server is not None:
                with contextlib.suppress(Exception):
                    await plan.server.stop()
        for srv in (self.https, self.http):
            if srv is not None:
                with contextlib.suppress(Exception):
                    await srv.stop()
        if self.dns is not None:
            with contextlib.suppress(Exception):
                await self.dns.stop()
        self.https = self.http = self.dns = None
        if self.ca_file:
            with contextlib.suppress(OSError):
                os.unlink(self.ca_file)
        self.started = False

    async def _start(self) -> None:
        # 1. A /16 of our own: the DNS server's bind on 127.N.0.1 claims it.
        dns = DnsServer({}, refused_outside=("lab.test", "in-addr.arpa", "ip6.arpa"))
        nets = random.sample(range(100, 251), 12)
        for i, net in enumerate(nets):
            try:
                await dns.start(f"127.{net}.0.1", DNS_PORT if i < len(nets) - 1 else 0)
            except OSError:
                continue
            self.net = net
            break
        else:  # pragma: no cover - every /16 taken
            raise OSError("cannot bind the lab DNS server on any 127.N.0.1")
        self.dns = dns
        assert dns.host is not None and dns.port is not None
        self.resolver = (dns.host, dns.port)

        # 2. CA endpoints: the PKI's URLs carry the HTTP port, so bind first, then build.
        http_addr, https_addr = self._addr(0, 2), self._addr(0, 3)
        self.http = PkiHttpServer(PKI("http://unused.invalid"))
        await _start_on(self.http, http_addr, HTTP_PORT)
        assert self.http.port is not None
        self.http_port = self.http.port
        self.pki = pki = PKI(f"http://{PKI_HOST}:{self.http_port}")
        self.http.pki = pki
        self.root = pki.root("mxlens-lab-root")
        self.untrusted_root = pki.root("mxlens-unknown-root", trusted=False)
        web_ca = pki.intermediate("lab-web-ca", self.root)
        default_web = pki.leaf(web_ca, ["default.invalid.lab.test"])
        self.https = MtaStsServer(default_web)
        await _start_on(self.https, https_addr, HTTPS_PORT)
        assert self.https.port is not None
        self.https_port = self.https.port

        records: dict[tuple[str, str], list[str]] = {}
        signed: set[str] = {PKI_HOST}
        servfail: set[str] = set()
        self.addresses[PKI_HOST] = http_addr
        _add(records, PKI_HOST, "A", http_addr)

        # 3. Every scenario: certificates, records, SMTP behaviours (servers start below).
        for s in self.scenarios.values():
            self._build_scenario(s, pki, web_ca, records, signed, servfail)

        # 4. SMTP servers, all on one port.
        await self._start_smtp()
        for s in self.scenarios.values():
            if s.stage.tlsa != "none":
                self._tlsa(s, records, servfail)

        dns.set_records(records)
        dns.signed_zones = signed
        dns.servfail = servfail

        fd, path = tempfile.mkstemp(prefix="mxlens-lab-roots-", suffix=".pem")
        # stop() removes it; this catches the exits that never reach stop() (an exception
        # out of the UI's loop, sys.exit from a signal handler).
        atexit.register(_remove_quietly, path)
        with os.fdopen(fd, "wb") as f:
            f.write(pki.roots_pem())
        self.ca_file = path

    def _addr(self, third: int, fourth: int) -> str:
        return f"127.{self.net}.{third}.{fourth}"

    def _new_address(self) -> str:
        i = self._next_host
        self._next_host += 1
        return self._addr(1 + i // 250, 1 + i % 250)

    def _build_scenario(
        self,
        s: Scenario,
        pki: PKI,
        web_ca: CA,
        records: dict[tuple[str, str], list[str]],
        signed: set[str],
        servfail: set[str],
    ) -> None:
        st = s.stage
        d = to_ascii(s.domain)
        if st.signed:
            signed.add(d)
        if st.mx_record == "nxdomain":
            return  # nothing at all under the domain: not even _mta-sts
        ca_name = f"{s.name}-ca"
        ca_root = (
            self.untrusted_root if any(m.cert.issuer == "untrusted" for m in st.mx) else self.root
        )
        ca = pki.intermediate(ca_name, ca_root)
        self._cas[s.name] = ca
        assert self.http is not None
        for kind, mode in st.endpoints:
            prefix = {
                "ocsp": f"/ocsp/{ca_name}",
                "crl": f"/crl/{ca_name}.crl",
                "aia": f"/aia/{ca_name}.der",
            }[kind]
            self.http.set_behaviour(prefix, mode)

        mx_hosts: list[str] = []  # the names senders match against MTA-STS
        for spec in st.mx if st.mx_record != "null" else ():
            host = f"{spec.label}.{d}" if st.mx_record != "none" else d
            address = self._new_address()
            plan = HostPlan(s.name, host, address, spec)
            self.hosts.append(plan)
            self.addresses[host] = address
            mx_name = host
            if st.mx_record == "cname":
                mx_name = f"mail.{d}"
                _add(records, mx_name, "CNAME", host + ".")
            if st.mx_record == "ip":
                mx_name = address
            mx_hosts.append(mx_name)
            plan.mx_name = mx_name
            if st.mx_record in ("normal", "cname", "servfail"):
                _add(records, d, "MX", f"{spec.preference} {mx_name}.")
            elif st.mx_record == "ip":
                _add(records, d, "MX", f"{spec.preference} {address}.")
            if spec.address != "none" and st.mx_record != "ip":
                _add(records, host, "A", address)
            if spec.address != "none" and st.mx_record != "ip":
                rev = ipaddress.ip_address(address).reverse_pointer
                if spec.ptr == "ok":
                    _add(records, rev, "PTR", host + ".")
                elif spec.ptr == "mismatch":
                    other = f"mail-old.{d}"
                    other_addr = self._new_address()
                    _add(records, rev, "PTR", other + ".")
                    _add(records, other, "A", other_addr)
            # The certificate and the server behaviour.
            names = self._cert_names(spec.cert, d, host, mx_name)
            plan.issued = self._issue(pki, ca, spec.cert, names, d, ca_name)
        if st.mx_record == "null":
            records[(d, "MX")] = ["0 ."]
        if st.mx_record == "servfail":
            servfail.add(f"{d}/MX")

        # Policies.
        if st.tlsrpt is not None:
            _add(records, f"_smtp._tls.{d}", "TXT", _txt(st.tlsrpt.format(domain=d)))
        for rec in st.mtasts_records:
            _add(records, f"_mta-sts.{d}", "TXT", _txt(rec.format(domain=d)))
        sts_host = f"mta-sts.{d}"
        assert self.https is not None
        https_addr = self.https.host
        assert https_addr is not None
        _add(records, sts_host, "A", https_addr)
        if st.mtasts_policy is not None:
            mx_lines = "".join(f"mx: {h}\n" for h in mx_hosts)
            body = st.mtasts_policy.format(mx_lines=mx_lines, domain=d)
            cert_names = [sts_host] if st.mtasts_cert == "ok" else [f"www.{d}"]
            self.https.set_mtasts(
                sts_host, status=st.mtasts_status, body=body, cert=pki.leaf(web_ca, cert_names)
            )

    @staticmethod
    def _cert_names(cert: CertSpec, d: str, host: str, mx_name: str) -> list[str]:
        if cert.names is not None:
            return [n.format(domain=d, mx=host) for n in cert.names]
        names = [host]
        if mx_name != host and not is_ip_literal(mx_name):
            names.insert(0, mx_name)
        return names

    def _issue(
        self, pki: PKI, ca: CA, spec: CertSpec, names: list[str], d: str, ca_name: str
    ) -> Issued:
        now = datetime.now(timezone.utc).replace(microsecond=0)
        nb = (
            now + timedelta(days=spec.not_before_days) if spec.not_before_days is not None else None
        )
        na = now + timedelta(days=spec.not_after_days) if spec.not_after_days is not None else None
        overrides = {
            k: v.format(domain=d, ca=ca_name, http=pki.http_base) for k, v in spec.url_overrides
        }
        issued = pki.leaf(
            None if spec.issuer == "self" else ca,
            names,
            not_before=nb,
            not_after=na,
            key=spec.key,
            sig_hash=spec.sig_hash,
            san=spec.san,
            eku=list(spec.eku) if spec.eku is not None else None,
            ocsp=spec.ocsp,
            crl=spec.crl,
            aia=spec.aia,
            url_overrides=overrides or None,
            self_signed=spec.issuer == "self",
        )
        if spec.revoked:
            ca.revoke(issued.cert)
        return issued

    def _tlsa(
        self, s: Scenario, records: dict[tuple[str, str], list[str]], servfail: set[str]
    ) -> None:
        mode = s.stage.tlsa
        for plan in self.host_plans(s.name):
            names = [f"_25._tcp.{plan.host}", f"_{self.smtp_port}._tcp.{plan.host}"]
            names = list(dict.fromkeys(names))
            for name in names:
                if mode == "servfail":
                    servfail.add(f"{name}/TLSA")
                    continue
                assert plan.issued is not None
                if mode == "match":
                    spki = plan.issued.cert.public_key().public_bytes(
                        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                    )
                    rec = f"3 1 1 {hashlib.sha256(spki).hexdigest()}"
                elif mode == "mismatch":
                    rec = f"3 1 1 {hashlib.sha256(b'not this key: ' + name.encode()).hexdigest()}"
                elif mode == "unusable":
                    root_der = self.root.cert.public_bytes(serialization.Encoding.DER)
                    rec = f"0 0 1 {hashlib.sha256(root_der).hexdigest()}"
                else:
                    raise ValueError(f"unknown tlsa mode {mode!r} in scenario {s.name}")
                _add(records, name, "TLSA", rec)

    async def _start_smtp(self) -> None:
        plans = [p for p in self.hosts if p.spec.address in ("smtp", "blackhole")]
        # An IP-literal MX gets no server: senders look it up as a name and never connect.
        plans = [
            p for p in plans if self.scenarios[p.scenario].stage.mx_record not in ("ip", "nxdomain")
        ]
        behaviours = {id(p): self._behaviour(p) for p in plans}
        ports = [SMTP_PORT] + [0] * 5
        last: OSError | None = None
        for port in ports:
            started: list[SmtpServer] = []
            try:
                chosen = port
                for p in plans:
                    server = SmtpServer(p.address, chosen, behaviours[id(p)])
                    await server.start()
                    started.append(server)
                    chosen = server.port
                for p, server in zip(plans, started, strict=True):
                    p.server = server
                self.smtp_port = chosen if plans else (port or SMTP_PORT)
                return
            except OSError as exc:
                last = exc
                for server in started:
                    await server.stop()
        assert last is not None
        raise last

    def _behaviour(self, plan: HostPlan) -> Behaviour:
        kw = dict(plan.spec.server)
        for key in ("greeting_text",):
            if isinstance(kw.get(key), str):
                kw[key] = kw[key].format(mx=plan.host)
        assert plan.issued is not None
        chain = plan.issued.pem_chain(include_intermediates=plan.spec.cert.send_intermediate)
        return Behaviour(
            hostname=plan.host,
            cert_chain_pem=chain,
            key_pem=plan.issued.key_pem(),
            blackhole=plan.spec.address == "blackhole",
            **kw,
        )


async def _start_on(server: PkiHttpServer | MtaStsServer, host: str, port: int) -> None:
    try:
        await server.start(host, port)
    except OSError:
        await server.start(host, 0)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _add(records: dict[tuple[str, str], list[str]], name: str, rtype: str, value: str) -> None:
    records.setdefault((canonical(name), rtype), []).append(value)


def _txt(text: str) -> str:
    """A TXT record in presentation form: quoted, split into 255-octet strings."""
    data = text.encode("utf-8")
    chunks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
    out = []
    for chunk in chunks:
        s = chunk.decode("utf-8", errors="replace").replace("\\", "\\\\").replace('"', '\\"')
        out.append(f'"{s}"')
    return " ".join(out)


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


# ---- synchronous helpers ------------------------------------------------------------------


def serve_forever(
    scenarios: list[str] | None = None,
    *,
    on_ready: Callable[[Lab], None] | None = None,
    stop: threading.Event | None = None,
    partners: int = 0,
) -> None:
    """Run a lab in this thread until Ctrl+C (KeyboardInterrupt) or until `stop` is set.
    on_ready(lab) is called once everything listens."""

    async def main() -> None:
        ended = asyncio.Event()
        if threading.current_thread() is threading.main_thread():
            # SIGTERM / SIGHUP (a closed SSH session, `timeout`, systemd) end the lab as
            # cleanly as Ctrl+C does: sockets closed, the temporary CA file removed.
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGHUP):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, ended.set)
        async with Lab(scenarios, partners=partners) as lab:
            if on_ready is not None:
                on_ready(lab)
            while not ended.is_set() and (stop is None or not stop.is_set()):
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(ended.wait(), 0.2)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


class LabThread:
    """A lab running on its own event loop in a background thread, for synchronous code:

    with LabThread(["healthy"]) as lab:
        subprocess.run(lab.check_command("healthy"), shell=True)
    """

    def __init__(
        self, scenarios: list[str] | None = None, *, start_timeout: float = 30.0, partners: int = 0
    ) -> None:
        self._scenarios = scenarios
        self._partners = partners
        self._timeout = start_timeout
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._lab: Lab | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        def ready(lab: Lab) -> None:
            self._lab = lab
            self._ready.set()

        try:
            serve_forever(self._scenarios, on_ready=ready, stop=self._stop, partners=self._partners)
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
        finally:
            self._ready.set()

    def __enter__(self) -> Lab:
        self._thread = threading.Thread(target=self._run, name="mxlens-lab", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._timeout) or self._lab is None:
            self._stop.set()
            raise RuntimeError(f"the lab did not start: {self._error!r}")
        return self._lab

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
