"""CA endpoints (OCSP, CRL, caIssuers) against a real loopback HTTP server."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from probes.checks.endpoints import check_endpoints
from probes.model.events import ChainLink, EndpointChecked, Evidence, FindingRaised, Where
from probes.model.options import Options
from tests.support.http import Route, Server, closed_port, fetcher
from tests.support.pki import DAY, NOW, Issued, issue

WHERE = Where("mx.example.test", "127.0.0.1", 25)
OPTS = Options(timeout=3, private_endpoints=True)  # the test servers are on loopback
HOUR = timedelta(hours=1)


# --------------------------------------------------------------------------- CA helpers


def ocsp_answer(
    cert: Issued,
    issuer: Issued,
    *,
    status: ocsp.OCSPCertStatus = ocsp.OCSPCertStatus.GOOD,
    signer: Issued | None = None,
    next_update: Any = None,
    include_signer: bool = False,
) -> bytes:
    signer = signer or issuer
    builder = ocsp.OCSPResponseBuilder().add_response(
        cert=cert.cert,
        issuer=issuer.cert,
        algorithm=hashes.SHA1(),
        cert_status=status,
        this_update=NOW - HOUR,
        next_update=next_update or NOW + 3 * DAY,
        revocation_time=NOW - DAY if status == ocsp.OCSPCertStatus.REVOKED else None,
        revocation_reason=x509.ReasonFlags.key_compromise
        if status == ocsp.OCSPCertStatus.REVOKED
        else None,
    )
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, signer.cert)
    if include_signer:
        builder = builder.certificates([signer.cert])
    resp = builder.sign(signer.key, hashes.SHA256())
    return resp.public_bytes(serialization.Encoding.DER)


def crl_of(
    issuer: Issued,
    *,
    revoked: tuple[int, ...] = (),
    next_update: Any = None,
    signer_key: Any = None,
    pem: bool = False,
) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(NOW - DAY)
        .next_update(next_update or NOW + 6 * DAY)
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(NOW - DAY)
            .build()
        )
    crl = builder.sign(signer_key or issuer.key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.PEM if pem else serialization.Encoding.DER)


class Ca:
    """root -> inter -> leaf; leaf has OCSP, CRL and caIssuers on the test server, inter has a
    CRL signed by the root (so the intermediate is covered too)."""

    def __init__(self, srv: Server, **leaf_urls: tuple[str, ...]) -> None:
        self.srv = srv
        self.root = issue("Endpoint Root", ca=True)
        self.inter = issue("Endpoint Intermediate", self.root, ca=True, crl=(srv.url("/root.crl"),))
        urls = {
            "ocsp": (srv.url("/ocsp"),),
            "crl": (srv.url("/inter.crl"),),
            "ca_issuers": (srv.url("/inter.der"),),
        }
        urls.update(leaf_urls)
        self.leaf = issue("mx.example.test", self.inter, **urls)
        srv.routes["/root.crl"] = Route(body=crl_of(self.root))
        srv.routes["/inter.crl"] = Route(body=crl_of(self.inter))
        srv.routes["/inter.der"] = Route(body=self.inter.der)
        self.ocsp_requests: list[bytes] = []
        self.ocsp_body = ocsp_answer(self.leaf, self.inter)

        def answer(body: bytes) -> tuple[int, str, bytes]:
            self.ocsp_requests.append(body)
            return 200, "application/ocsp-response", self.ocsp_body

        srv.routes["/ocsp"] = Route(handler=answer)

    @property
    def path(self) -> list[ChainLink]:
        return [
            ChainLink(self.leaf.info, "sent"),
            ChainLink(self.inter.info, "sent"),
            ChainLink(self.root.info, "store"),
        ]


async def run(
    path: list[ChainLink], cache: dict[str, Any] | None = None
) -> tuple[list[EndpointChecked], list[str], list[FindingRaised]]:
    f = fetcher()
    try:
        events = [
            e
            async for e in check_endpoints(
                path, f, OPTS, where=WHERE, cache={} if cache is None else cache
            )
        ]
    finally:
        await f.aclose()
    checked = [e for e in events if isinstance(e, EndpointChecked)]
    findings = [e for e in events if isinstance(e, FindingRaised)]
    return checked, sorted(x.finding.id for x in findings), findings


def by_kind(checked: list[EndpointChecked], kind: str, cert: Issued) -> EndpointChecked:
    sha = cert.info.sha256
    (found,) = [c for c in checked if c.kind == kind and c.for_cert == sha]
    return found


# --------------------------------------------------------------------------- OCSP


async def test_all_good(srv: Server) -> None:
    ca = Ca(srv)
    checked, ids, _ = await run(ca.path)
    assert ids == []
    assert len(checked) == 4  # leaf: ocsp, crl, aia; inter: crl; the root is skipped
    assert all(c.ok for c in checked)
    ocsp_ev = by_kind(checked, "ocsp", ca.leaf)
    assert ocsp_ev.cert_status == "good" and ocsp_ev.status == 200
    assert ocsp_ev.detail is not None and ocsp_ev.detail.startswith("good")
    assert ocsp_ev.host == "127.0.0.1" and ocsp_ev.addresses == ("127.0.0.1",)
    # a real OCSP request for the leaf went out
    request = ocsp.load_der_ocsp_request(ca.ocsp_requests[0])
    assert request.serial_number == ca.leaf.cert.serial_number
    assert by_kind(checked, "crl", ca.leaf).cert_status == "good"
    assert by_kind(checked, "crl", ca.inter).cert_status == "good"
    assert "Endpoint Intermediate" in (by_kind(checked, "ca_issuers", ca.leaf).detail or "")


async def test_ocsp_revoked(srv: Server) -> None:
    ca = Ca(srv)
    ca.ocsp_body = ocsp_answer(ca.leaf, ca.inter, status=ocsp.OCSPCertStatus.REVOKED)
    checked, ids, findings = await run(ca.path)
    assert ids == ["cert.revoked"]
    ev = by_kind(checked, "ocsp", ca.leaf)
    assert ev.cert_status == "revoked"
    summary = findings[0].finding.summary
    assert "mx.example.test" in summary and srv.url("/ocsp") in summary


async def test_ocsp_bad_signature(srv: Server) -> None:
    ca = Ca(srv)
    impostor = issue("Endpoint Intermediate", ca=True)  # same name, other key
    ca.ocsp_body = ocsp_answer(ca.leaf, ca.inter, signer=impostor)
    checked, ids, findings = await run(ca.path)
    assert ids == ["ca.ocsp_invalid"]
    assert not by_kind(checked, "ocsp", ca.leaf).ok
    assert "CN=mx.example.test" in findings[0].finding.summary


async def test_ocsp_answer_about_another_ca_is_invalid(srv: Server) -> None:
    # Same serial, signed by the right issuer, but the CertID names another CA: the answer
    # says nothing about this certificate (RFC 6960 4.1.1).
    ca = Ca(srv)
    other = issue("Other Intermediate", ca=True)
    ca.ocsp_body = ocsp_answer(ca.leaf, other, signer=ca.inter)
    _, ids, findings = await run(ca.path)
    assert ids == ["ca.ocsp_invalid"]
    assert "another CA" in findings[0].finding.summary


async def test_ocsp_delegated_responder(srv: Server) -> None:
    ca = Ca(srv)
    responder = issue("OCSP Responder", ca.inter, eku=(ExtendedKeyUsageOID.OCSP_SIGNING,), san=())
    ca.ocsp_body = ocsp_answer(ca.leaf, ca.inter, signer=responder, include_signer=True)
    checked, ids, _ = await run(ca.path)
    assert ids == []
    assert by_kind(checked, "ocsp", ca.leaf).cert_status == "good"
    # without the OCSP-signing EKU the delegation is not valid
    rogue = issue("OCSP Rogue", ca.inter, eku=(ExtendedKeyUsageOID.SERVER_AUTH,))
    ca.ocsp_body = ocsp_answer(ca.leaf, ca.inter, signer=rogue, include_signer=True)
    _, ids, findings = await run(ca.path)
    assert ids == ["ca.ocsp_invalid"]
    assert "OCSPSigning" in findings[0].finding.summary


async def test_ocsp_stale_and_garbage(srv: Server) -> None:
    ca = Ca(srv)
    ca.ocsp_body = ocsp_answer(ca.leaf, ca.inter, next_update=NOW - HOUR)
    _, ids, findings = await run(ca.path)
    assert ids == ["ca.ocsp_invalid"] and "stale" in findings[0].finding.summary
    ca.ocsp_body = b"<html>captive portal</html>"
    _, ids, _ = await run(ca.path)
    assert ids == ["ca.ocsp_invalid"]


async def test_ocsp_unreachable(srv: Server) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/ocsp"
    ca = Ca(srv, ocsp=(dead,))
    checked, ids, findings = await run(ca.path)
    assert ids == ["ca.ocsp_unreachable"]  # the CRL still works: revocation is available
    ev = by_kind(checked, "ocsp", ca.leaf)
    assert not ev.ok and ev.error == "connect: refused"
    assert dead in findings[0].finding.summary


# --------------------------------------------------------------------------- CRL


async def test_crl_pem_good(srv: Server) -> None:
    ca = Ca(srv)
    srv.routes["/inter.crl"] = Route(body=crl_of(ca.inter, pem=True))
    checked, ids, _ = await run(ca.path)
    assert ids == []
    assert by_kind(checked, "crl", ca.leaf).cert_status == "good"


async def test_crl_revoked(srv: Server) -> None:
    ca = Ca(srv)
    srv.routes["/inter.crl"] = Route(body=crl_of(ca.inter, revoked=(ca.leaf.cert.serial_number,)))
    checked, ids, findings = await run(ca.path)
    assert ids == ["cert.revoked"]
    assert by_kind(checked, "crl", ca.leaf).cert_status == "revoked"
    assert "CRL" in findings[0].finding.summary


async def test_revoked_by_both_sources_is_one_finding_naming_both(srv: Server) -> None:
    ca = Ca(srv)
    ca.ocsp_body = ocsp_answer(ca.leaf, ca.inter, status=ocsp.OCSPCertStatus.REVOKED)
    srv.routes["/inter.crl"] = Route(body=crl_of(ca.inter, revoked=(ca.leaf.cert.serial_number,)))
    checked, ids, findings = await run(ca.path)
    assert ids == ["cert.revoked"]
    summary = findings[0].finding.summary
    assert "OCSP responder" in summary and "CRL" in summary
    assert srv.url("/ocsp") in summary and srv.url("/inter.crl") in summary
    # One entry, one day: no "1 entries", no "1 days".
    crl = by_kind(checked, "crl", ca.leaf).detail or ""
    assert "CRL of 1 entry," in crl, crl


async def test_crl_expired(srv: Server) -> None:
    ca = Ca(srv)
    srv.routes["/inter.crl"] = Route(body=crl_of(ca.inter, next_update=NOW - DAY))
    _, ids, findings = await run(ca.path)
    assert ids == ["ca.crl_invalid"]
    assert "nextUpdate" in findings[0].finding.summary


async def test_crl_wrong_signature(srv: Server) -> None:
    ca = Ca(srv)
    other = issue("whoever", ca=True)
    srv.routes["/inter.crl"] = Route(body=crl_of(ca.inter, signer_key=other.key))
    _, ids, _ = await run(ca.path)
    assert ids == ["ca.crl_invalid"]


async def test_crl_unreachable(srv: Server) -> None:
    ca = Ca(srv)
    del srv.routes["/inter.crl"]
    checked, ids, findings = await run(ca.path)
    assert ids == ["ca.crl_unreachable"]
    ev = by_kind(checked, "crl", ca.leaf)
    assert ev.error == "HTTP 404" and ev.status == 404


async def test_every_revocation_source_unreachable(srv: Server) -> None:
    ca = Ca(srv)
    del srv.routes["/inter.crl"]
    del srv.routes["/ocsp"]
    _, ids, findings = await run(ca.path)
    assert ids == ["ca.crl_unreachable", "ca.ocsp_unreachable", "ca.revocation_unavailable"]
    last = [f for f in findings if f.finding.id == "ca.revocation_unavailable"][0]
    assert "mx.example.test" in last.finding.summary


# --------------------------------------------------------------------------- AIA, none, cache


async def test_ca_issuers_unreachable(srv: Server) -> None:
    ca = Ca(srv)
    del srv.routes["/inter.der"]
    checked, ids, _ = await run(ca.path)
    assert ids == ["ca.issuer_unreachable"]
    assert not by_kind(checked, "ca_issuers", ca.leaf).ok


async def test_no_revocation_info(srv: Server) -> None:
    ca = Ca(srv, ocsp=(), crl=())
    checked, ids, findings = await run(ca.path)
    assert ids == ["ca.no_revocation_info"]
    assert findings[0].finding.evidence == (Evidence("cert", 0),)
    assert {c.kind for c in checked} == {"ca_issuers", "crl"}


async def test_short_lived_certificate_needs_no_revocation_info() -> None:
    root = issue("SL Root", ca=True)
    leaf = issue("mx.example.test", root, not_before=NOW - DAY, not_after=NOW + 5 * DAY)
    _, ids, _ = await run([ChainLink(leaf.info, "sent"), ChainLink(root.info, "store")])
    assert ids == []


async def test_cache_fetches_each_url_once(srv: Server) -> None:
    ca = Ca(srv)
    cache: dict[str, Any] = {}
    first, second = await asyncio.gather(run(ca.path, cache), run(ca.path, cache))
    assert len(first[0]) == len(second[0]) == 4
    assert srv.hits == {"/ocsp": 1, "/inter.crl": 1, "/inter.der": 1, "/root.crl": 1}


# --------------------------------------------------------------------------- the fetcher
