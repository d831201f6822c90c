"""CA endpoints (OCSP, CRL, caIssuers) and the HTTP fetcher, against real loopback servers."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dns.message
import dns.rcode
import dns.rrset
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from probes.checks.endpoints import check_endpoints
from probes.model.events import ChainLink, EndpointChecked, FindingRaised, Where
from probes.model.options import Options
from probes.net.dns import Resolver
from probes.net.http import Fetcher
from probes.net.trust import Roots
from tests._pki import DAY, NOW, Issued, Route, Server, closed_port, http_server, issue

WHERE = Where("mx.example.test", "127.0.0.1", 25)
OPTS = Options(timeout=3)
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


@pytest.fixture
def srv() -> Iterator[Server]:
    with http_server() as server:
        yield server


def fetcher(
    resolver: Resolver | None = None, options: Options = OPTS, roots: Any = None
) -> Fetcher:
    return Fetcher(
        resolver or Resolver(("127.0.0.1", closed_port()), timeout=1),
        options,
        roots or Roots([], "none"),
    )


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
    assert findings[0].finding.evidence == ("cert:0",)
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


class _Dns(asyncio.DatagramProtocol):
    """A tiny authoritative-looking DNS responder: A records from a dict, else NXDOMAIN."""

    def __init__(self, records: dict[str, str]) -> None:
        self.records = records
        self.asked: list[str] = []
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text().rstrip(".")
        self.asked.append(f"{name}/{dns.rdatatype.to_text(question.rdtype)}")
        if name in self.records:
            if question.rdtype == dns.rdatatype.A:
                response.answer.append(
                    dns.rrset.from_text(question.name, 60, "IN", "A", self.records[name])
                )
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
        self.transport.sendto(response.to_wire(), addr)


@pytest.fixture
async def dns_server() -> AsyncIterator[_Dns]:
    proto = _Dns({})
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: proto, local_addr=("127.0.0.1", 0))
    proto.port = transport.get_extra_info("sockname")[1]  # type: ignore[attr-defined]
    try:
        yield proto
    finally:
        transport.close()


async def test_host_names_go_through_our_resolver(srv: Server, dns_server: _Dns) -> None:
    dns_server.records["crl.example.test"] = "127.0.0.1"

    def handler(body: bytes) -> tuple[int, str, bytes]:
        return 200, "text/plain", b"crl-bytes"

    srv.routes["/x.crl"] = Route(handler=handler)
    resolver = Resolver(("127.0.0.1", dns_server.port), timeout=2)  # type: ignore[attr-defined]
    f = fetcher(resolver)
    try:
        result = await f.get(f"http://crl.example.test:{srv.port}/x.crl")
        missing = await f.get(f"http://nowhere.example.test:{srv.port}/x.crl")
    finally:
        await f.aclose()
    assert result.ok and result.body == b"crl-bytes" and result.addresses == ("127.0.0.1",)
    assert "crl.example.test/A" in dns_server.asked
    assert not missing.ok and missing.error == "DNS: NXDOMAIN"


async def test_dns_timeout_is_reported() -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        f = fetcher(Resolver(("127.0.0.1", silent.getsockname()[1]), timeout=0.5))
        try:
            result = await f.get("http://ocsp.example.test/")
        finally:
            await f.aclose()
    assert not result.ok and result.error == "DNS: TIMEOUT"
    assert result.status is None and result.body == b""


async def test_redirect_not_followed_and_size_cap(srv: Server) -> None:
    srv.routes["/moved"] = Route(handler=lambda _b: (301, "text/plain", b""))
    srv.routes["/big"] = Route(body=b"x" * 5000)

    f = fetcher()
    try:
        big = await f.get(srv.url("/big"), max_bytes=1000)
        ok = await f.get(srv.url("/big"), max_bytes=5000)
    finally:
        await f.aclose()
    assert not big.ok and big.error == "too big (> 1000 bytes)" and len(big.body) <= 1000
    assert ok.ok and len(ok.body) == 5000


async def test_redirect_is_reported() -> None:
    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with _serve(Redirect) as port:
        f = fetcher()
        try:
            result = await f.get(f"http://127.0.0.1:{port}/policy")
        finally:
            await f.aclose()
    assert not result.ok and result.status == 302
    assert result.redirected_to == f"http://127.0.0.1:{port}/elsewhere"
    assert result.error == f"redirect to http://127.0.0.1:{port}/elsewhere (not followed)"


async def test_proxy_from_environment_resolves_for_us(
    srv: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    with _serve(Proxy) as port:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        f = fetcher()  # its resolver points at a closed port: any DNS would fail
        try:
            result = await f.get("http://crl.unresolvable.test/a.crl")
        finally:
            await f.aclose()
        monkeypatch.setenv("NO_PROXY", "unresolvable.test")
        f = fetcher(Resolver(("127.0.0.1", closed_port()), timeout=0.3))
        try:
            bypassed = await f.get("http://crl.unresolvable.test/a.crl")
        finally:
            await f.aclose()
    assert result.ok and result.body == b"ok"
    assert result.via_proxy == f"http://127.0.0.1:{port}"
    assert seen == ["http://crl.unresolvable.test/a.crl"]
    assert bypassed.via_proxy is None and bypassed.error is not None
    assert bypassed.error.startswith("DNS: ")


async def test_https_uses_sni_host_header_and_our_roots(dns_server: _Dns, tmp_path: Any) -> None:
    root = issue("HTTPS Root", ca=True)
    cert = issue("mta-sts.example.test", root)
    (tmp_path / "c.pem").write_bytes(cert.pem)
    (tmp_path / "k.pem").write_bytes(
        cert.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    snis: list[str | None] = []
    hosts: list[str | None] = []
    ctx.sni_callback = lambda _sock, name, _ctx: snis.append(name)  # type: ignore[assignment,func-returns-value]

    class Policy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hosts.append(self.headers.get("Host"))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "12")
            self.end_headers()
            self.wfile.write(b"version: STS")

        def log_message(self, *args: object) -> None:
            pass

    dns_server.records["mta-sts.example.test"] = "127.0.0.1"
    dns_server.records["wrong.example.test"] = "127.0.0.1"
    resolver = Resolver(("127.0.0.1", dns_server.port), timeout=2)  # type: ignore[attr-defined]
    with _serve(Policy, ctx) as port:
        options = Options(timeout=3, https_port=port)
        f = fetcher(resolver, options, Roots([root.cert], "test"))
        try:
            good = await f.get("https://mta-sts.example.test/.well-known/mta-sts.txt")
            wrong = await f.get("https://wrong.example.test/.well-known/mta-sts.txt")
        finally:
            await f.aclose()
        f = fetcher(resolver, options, Roots([issue("Other", ca=True).cert], "other"))
        try:
            untrusted = await f.get("https://mta-sts.example.test/.well-known/mta-sts.txt")
        finally:
            await f.aclose()
    assert good.ok and good.body == b"version: STS", good.error
    assert good.content_type == "text/plain"
    assert snis[0] == "mta-sts.example.test"
    assert hosts[0] == f"mta-sts.example.test:{port}"
    assert not wrong.ok and wrong.error is not None and wrong.error.startswith("TLS: ")
    assert "mismatch" in wrong.error.lower() or "hostname" in wrong.error.lower()
    assert not untrusted.ok and untrusted.error is not None
    assert untrusted.error.startswith("TLS: ")


@contextmanager
def _serve(
    handler: type[BaseHTTPRequestHandler], ctx: ssl.SSLContext | None = None
) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if ctx is not None:
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
