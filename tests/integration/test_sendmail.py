"""mxlens against a real Sendmail 8.17 (Debian's build), each case with its exact findings and
the fix advice tailored to Sendmail, which the greeting names.

Sendmail puts its intermediate on the wire only from CACertFile: a ServerCertFile holding
leaf + intermediate (what works for Postfix and Exim) still sends one certificate. The
"leaf-only" case is that mistake; mxlens must say cert.incomplete_chain and tell the admin
to move the intermediate into CACertFile, not to append it to the certificate file.

As the Postfix suite does, the cases live in a lab world (LabThread): its DNS serves the MX,
A, PTR and TLS-RPT records (zone marked signed, no TLSA), its PKI issues the certificates and
serves their OCSP, CRL and caIssuers URLs, and the real engine diagnoses each case.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import serialization

from mxlens_lab.pki import Issued
from mxlens_lab.world import Lab, LabThread
from probes.diagnose import diagnose
from probes.model.findings import catalog
from probes.model.server_software import tailored_fix
from probes.report import Report
from tests.integration import sendmail

pytestmark = pytest.mark.integration

ZONE = "sendmail.lab.test"


@dataclass(frozen=True)
class Case:
    name: str
    # Where the intermediate goes: "cacert" (CACertFile, as Sendmail wants) or "certfile"
    # (appended to ServerCertFile, the Postfix/Exim habit).
    intermediate_in: str
    expect: dict[str, str]  # finding id -> severity, exactly
    sent: int  # certificates on the wire


CASES = [
    # CACertFile holds the intermediate and the root: Sendmail sends the chain from there,
    # root included.
    Case("healthy", "cacert", {}, 3),
    Case("leaf-only", "certfile", {"cert.incomplete_chain": "error"}, 1),
]


@dataclass
class Peer:
    case: Case
    domain: str
    mx: str
    server: sendmail.SendmailServer
    leaf: Issued


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[Lab, dict[str, Peer]]]:
    reason = sendmail.unavailable_reason()
    if reason:
        pytest.skip(reason)
    with LabThread([]) as lab:
        assert lab.pki is not None and lab.dns is not None
        ca = lab.pki.intermediate("sendmail-ca", lab.root)
        lab.dns.signed_zones.add(ZONE)
        root_pem = lab.root.cert.public_bytes(serialization.Encoding.PEM)
        peers: dict[str, Peer] = {}
        try:
            for index, case in enumerate(CASES, start=1):
                domain = f"{case.name}.{ZONE}"
                mx = f"mx.{domain}"
                address = f"127.{lab.net}.78.{index}"
                leaf = lab.pki.leaf(ca, [mx])
                leaf_pem = leaf.pem_chain(include_intermediates=False)
                chain_pem = leaf.pem_chain()
                if case.intermediate_in == "cacert":
                    cert, cacert = leaf_pem, chain_pem[len(leaf_pem) :] + root_pem
                else:
                    cert, cacert = chain_pem, root_pem
                server = sendmail.start_sendmail(
                    address,
                    hostname=mx,
                    server_cert_pem=cert,
                    key_pem=leaf.key_pem(),
                    cacert_pem=cacert,
                )
                peers[case.name] = Peer(case, domain, mx, server, leaf)
                rev = ".".join(reversed(address.split("."))) + ".in-addr.arpa"
                lab.dns.add(domain, "MX", [f"10 {mx}."])
                lab.dns.add(mx, "A", [address])
                lab.dns.add(rev, "PTR", [f"{mx}."])
                lab.dns.add(
                    f"_smtp._tls.{domain}", "TXT", [f'"v=TLSRPTv1; rua=mailto:tls@{domain}"']
                )
            yield lab, peers
        finally:
            for peer in peers.values():
                peer.server.stop()


async def _diagnose(lab: Lab, peer: Peer) -> Report:
    options = lab.options(port=peer.server.port, timeout=5.0, ehlo="mxlens-test.lab.test")
    report = Report(peer.domain, options)
    async for event in diagnose(peer.domain, options):
        report.add(event)
    return report


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_sendmail_case(world: tuple[Lab, dict[str, Peer]], case: Case) -> None:
    lab, peers = world
    peer = peers[case.name]
    report = await _diagnose(lab, peer)
    detail = "\n".join(
        [f"{f.severity} {f.id} {f.where}: {f.summary}" for f in report.findings]
        + [peer.server.logs()]
    )
    got = {f.id: f.severity for f in report.findings if f.severity != "ok"}
    assert got == case.expect, detail
    [session] = [s for mx in report.mx.values() for s in mx.sessions.values()]
    greeting = next(t.text for t in session.transcript if t.dir == "S")
    assert greeting.startswith(f"220 {peer.mx} ESMTP Sendmail 8."), greeting  # its own words
    assert session.chain is not None, detail
    sent = [c.sha256 for c in session.chain.certs]
    assert len(sent) == case.sent, detail
    assert sent[0] == hashlib.sha256(peer.leaf.cert_der()).hexdigest()
    if case.name == "leaf-only":
        [finding] = [f for f in report.findings if f.id == "cert.incomplete_chain"]
        # The advice speaks Sendmail: the intermediate belongs in CACertFile.
        assert finding.fix == tailored_fix("cert.incomplete_chain", "sendmail")
        assert "CACertFile" in finding.fix
        assert finding.fix != catalog()["cert.incomplete_chain"]["fix"]
