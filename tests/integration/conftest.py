"""Fixtures for the integration suite: real Postfix instances behind the lab's DNS and PKI.

One session-wide world: a lab without scenarios (its DNS server, its PKI and the HTTP server
for OCSP / CRL / caIssuers) runs in a background thread, and one private Postfix instance per
case (`CASES`) listens on 127.N.77.k (inside the lab's own 127.N.0.0/16) on a free high port.
Each case has its own domain `<case>.postfix.lab.test` with MX, A, a forward-confirmed PTR and
a TLS-RPT record in a zone the lab DNS signs (AD set), so a correctly configured instance gives
no finding at all, and every finding a test sees comes from the one thing the case changes.

The rule for skips: without Postfix (or without root) the tests skip and say why; under CI
(environment CI=true) a skipped integration test is reported as a failure instead, because CI
runs scripts/install-peers first and a skip there means the suite silently tested nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest

from mxlens_lab.pki import CA, Issued
from mxlens_lab.world import Lab, LabThread
from probes.model.events import Event, TranscriptLine
from probes.model.options import Options
from probes.report import Report
from tests.integration.postfix import Postfix, PostfixError, unavailable_reason
from tests.support.collect import collect

E = TypeVar("E")
ZONE = "postfix.lab.test"
CA_NAME = "postfix-ca"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        if str(item.path).startswith(here + os.sep):
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[Any]
) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and _in_ci() and item.get_closest_marker("integration") is not None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (
            f"integration test skipped under CI (CI=true), which counts as a failure: {reason}. "
            "CI must run scripts/install-peers as root before the tests."
        )


@dataclass(frozen=True)
class Case:
    """One Postfix configuration. cert: "ok", "no-intermediate", "expired", "wrong-name"."""

    name: str
    description: str
    cert: str = "ok"
    main: dict[str, str] = field(default_factory=dict)
    tls: bool = True  # whether a TLS session (and a chain) is expected at all
    # False: MODERN first, then main. True: Postfix's own TLS defaults, then main.
    postfix_defaults: bool = False

    def main_cf(self) -> dict[str, str]:
        return {**({} if self.postfix_defaults else MODERN), **self.main}


# The baseline every case but "defaults" starts from. Postfix 3.7's own default
# (smtpd_tls_protocols = >=TLSv1) still accepts TLS 1.0 and 1.1, which mxlens rightly reports
# as tls.legacy_accepted; the "defaults" case keeps that to show it.
MODERN = {"smtpd_tls_protocols": ">=TLSv1.2", "smtpd_tls_mandatory_protocols": ">=TLSv1.2"}
TLS12_ONLY = ">=TLSv1.2, <=TLSv1.2"
TLS13_ONLY = ">=TLSv1.3"

CASES: dict[str, Case] = {
    c.name: c
    for c in [
        Case("healthy", "STARTTLS offered, full chain, TLS 1.2 and 1.3"),
        Case(
            "defaults",
            "as healthy, with Postfix's default smtpd_tls_protocols (TLS 1.0 and 1.1 accepted)",
            postfix_defaults=True,
        ),
        Case(
            "no-intermediate",
            "the chain file holds the leaf only; the leaf's caIssuers URL serves the intermediate",
            cert="no-intermediate",
        ),
        Case("expired", "the certificate's notAfter was yesterday", cert="expired"),
        Case(
            "wrong-name", "the certificate names www.<domain>, not the MX host", cert="wrong-name"
        ),
        Case(
            "no-starttls",
            "smtpd_tls_security_level = none: STARTTLS is not offered",
            main={"smtpd_tls_security_level": "none"},
            tls=False,
        ),
        Case(
            "tls12-only",
            "TLS 1.2 only",
            main={"smtpd_tls_protocols": TLS12_ONLY, "smtpd_tls_mandatory_protocols": TLS12_ONLY},
        ),
        Case(
            "tls13-only",
            "TLS 1.3 only",
            main={"smtpd_tls_protocols": TLS13_ONLY, "smtpd_tls_mandatory_protocols": TLS13_ONLY},
        ),
        Case(
            "encrypt",
            "smtpd_tls_security_level = encrypt: MAIL before STARTTLS gets 530 5.7.0",
            main={"smtpd_tls_security_level": "encrypt"},
        ),
        Case(
            "rate-limit",
            "anvil allows one connection per client per hour, mynetworks not exempt",
            main={
                "smtpd_client_connection_rate_limit": "1",
                "smtpd_client_event_limit_exceptions": "",
                "anvil_rate_time_unit": "3600s",
            },
            tls=False,
        ),
    ]
}


@dataclass
class Peer:
    """One running case: its Postfix, where it listens and what it presents."""

    case: Case
    domain: str
    mx: str
    postfix: Postfix
    issued: Issued

    @property
    def address(self) -> str:
        return self.postfix.address

    @property
    def port(self) -> int:
        return self.postfix.port


@dataclass
class World:
    lab: Lab
    ca: CA
    peers: dict[str, Peer]
    cache: dict[str, Outcome] = field(default_factory=dict)

    def options(self, name: str, **overrides: Any) -> Options:
        """Options that diagnose case `name` through the lab DNS with the lab roots."""
        peer = self.peers[name]
        base: dict[str, Any] = {"port": peer.port, "timeout": 5.0, "ehlo": "mxlens-test.lab.test"}
        base.update(overrides)
        return self.lab.options(**base)

    async def once(self, name: str) -> Outcome:
        """The diagnosis of case `name` with default options, made once per session: tests
        that read different facts of the same run share it (a run takes seconds)."""
        if name not in self.cache:
            self.cache[name] = await self.diagnose(name)
        return self.cache[name]

    async def diagnose(self, name: str, **overrides: Any) -> Outcome:
        """Run the real engine on case `name`'s domain; every event and the report."""
        peer = self.peers[name]
        options = self.options(name, **overrides)
        events: list[Event] = []
        report = await collect(peer.domain, options, events)
        return Outcome(peer, report, events)


@dataclass
class Outcome:
    """What one diagnosis of one case said."""

    peer: Peer
    report: Report
    events: list[Event]

    @property
    def ids(self) -> set[str]:
        return {f.id for f in self.report.findings if f.severity != "ok"}

    def describe(self) -> str:
        """The findings and the main transcript, for assertion messages."""
        lines = [f"{f.severity} {f.id} {f.where}: {f.summary}" for f in self.report.findings]
        lines += [f"{t.dir} {t.text}" for t in self.of(TranscriptLine) if t.purpose == "main"]
        return "\n".join(lines) + "\n--- postfix log ---\n" + self.peer.postfix.log()[-3000:]

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    def main(self, kind: type[E]) -> E | None:
        """The one event of this kind from the main session (None if there is none)."""
        found = [e for e in self.of(kind) if getattr(e, "purpose", "main") == "main"]
        return found[-1] if found else None


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def _issue(lab: Lab, ca: CA, case: Case, mx: str, domain: str) -> tuple[Issued, bytes]:
    """The certificate a case presents and the PEM chain file Postfix gets."""
    assert lab.pki is not None
    now = datetime.now(timezone.utc).replace(microsecond=0)
    if case.cert == "expired":
        issued = lab.pki.leaf(
            ca, [mx], not_before=now - timedelta(days=90), not_after=now - timedelta(days=1)
        )
    elif case.cert == "wrong-name":
        issued = lab.pki.leaf(ca, [f"www.{domain}"])
    else:
        issued = lab.pki.leaf(ca, [mx])
    chain = issued.pem_chain(include_intermediates=case.cert != "no-intermediate")
    return issued, chain


@pytest.fixture(scope="session")
def postfix_world() -> Iterator[World]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with LabThread([]) as lab:
        assert lab.pki is not None and lab.dns is not None
        ca = lab.pki.intermediate(CA_NAME, lab.root)
        lab.dns.signed_zones.add(ZONE)
        peers: dict[str, Peer] = {}
        try:
            for index, case in enumerate(CASES.values(), start=1):
                domain = f"{case.name}.{ZONE}"
                mx = f"mx.{domain}"
                address = f"127.{lab.net}.77.{index}"
                issued, chain = _issue(lab, ca, case, mx, domain)
                pf = Postfix(
                    case.name,
                    address=address,
                    port=_free_port(address),
                    hostname=mx,
                    chain_pem=chain,
                    key_pem=issued.key_pem(),
                    main=case.main_cf(),
                )
                peers[case.name] = Peer(case, domain, mx, pf, issued)
                rev = ".".join(reversed(address.split("."))) + ".in-addr.arpa"
                lab.dns.add(domain, "MX", [f"10 {mx}."])
                lab.dns.add(mx, "A", [address])
                lab.dns.add(rev, "PTR", [f"{mx}."])
                lab.dns.add(
                    f"_smtp._tls.{domain}", "TXT", [f'"v=TLSRPTv1; rua=mailto:tls@{domain}"']
                )
            # `postfix start` takes a few seconds (integrity checks): start them side by side.
            with ThreadPoolExecutor(max_workers=len(peers)) as pool:
                list(pool.map(lambda p: p.postfix.start(), peers.values()))
            yield World(lab, ca, peers)
        except PostfixError as exc:
            pytest.skip(f"a private Postfix instance does not start here: {exc}")
        finally:
            for peer in peers.values():
                peer.postfix.cleanup()
