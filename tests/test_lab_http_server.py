"""The lab's CA endpoints (HTTP) and MTA-STS server (HTTPS) over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import ssl
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from mxlens_lab.http_server import MtaStsServer, PkiHttpServer
from mxlens_lab.pki import CA, PKI, Issued

pytestmark = pytest.mark.lab


@dataclass
class World:
    pki: PKI
    inter: CA
    leaf: Issued
    http: PkiHttpServer


@pytest.fixture
async def world() -> AsyncIterator[World]:
    pki = PKI("http://pki.lab.test:8080")
    root = pki.root("root-a")
    inter = pki.intermediate("int-a", root)
    leaf = pki.leaf(inter, ["mx1.healthy.lab.test"])
    http = PkiHttpServer(pki, slow_seconds=5)
    await http.start("127.0.0.1", 0)
    try:
        yield World(pki, inter, leaf, http)
    finally:
        await http.stop()


def cert_url(cert: x509.Certificate, kind: str) -> str:
    """The path of the OCSP / caIssuers / CRL URL written in cert."""
    if kind == "crl":
        dp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        assert dp[0].full_name is not None
        url = dp[0].full_name[0].value
    else:
        oid = (
            x509.oid.AuthorityInformationAccessOID.OCSP
            if kind == "ocsp"
            else x509.oid.AuthorityInformationAccessOID.CA_ISSUERS
        )
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        url = next(d.access_location.value for d in aia if d.access_method == oid)
    return urllib.parse.urlsplit(url).path


def ocsp_req(w: World) -> bytes:
    b = ocsp.OCSPRequestBuilder().add_certificate(w.leaf.cert, w.inter.cert, hashes.SHA1())
    return b.build().public_bytes(serialization.Encoding.DER)


async def post_ocsp(w: World, client: httpx.AsyncClient) -> httpx.Response:
    return await client.post(
        w.http.url(cert_url(w.leaf.cert, "ocsp")),
        content=ocsp_req(w),
        headers={"Content-Type": "application/ocsp-request"},
    )


def signed_by(resp: ocsp.OCSPResponse, ca: CA) -> bool:
    key = ca.cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and resp.signature_hash_algorithm
    try:
        key.verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(resp.signature_hash_algorithm))
    except InvalidSignature:
        return False
    return True


async def test_ocsp_post_good_then_revoked(world: World) -> None:
    async with httpx.AsyncClient(timeout=3) as client:
        r = await post_ocsp(world, client)
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/ocsp-response"
        resp = ocsp.load_der_ocsp_response(r.content)
        assert resp.certificate_status == ocsp.OCSPCertStatus.GOOD
        assert resp.serial_number == world.leaf.cert.serial_number
        assert signed_by(resp, world.inter)
        world.inter.revoke(world.leaf.cert)
        resp = ocsp.load_der_ocsp_response((await post_ocsp(world, client)).content)
        assert resp.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert ("POST", f"127.0.0.1:{world.http.port}", "/ocsp/int-a") in world.http.requests


async def test_ocsp_get_with_base64_in_the_path(world: World) -> None:
    world.inter.revoke(world.leaf.cert)
    b64 = base64.b64encode(ocsp_req(world)).decode()
    url = world.http.url("/ocsp/int-a/" + urllib.parse.quote(b64, safe=""))
    async with httpx.AsyncClient(timeout=3) as client:
        r = await client.get(url)
    assert r.status_code == 200
    assert ocsp.load_der_ocsp_response(r.content).certificate_status == ocsp.OCSPCertStatus.REVOKED


async def test_crl_fetch_and_signature(world: World) -> None:
    world.inter.revoke(world.leaf.cert)
    async with httpx.AsyncClient(timeout=3) as client:
        r = await client.get(world.http.url(cert_url(world.leaf.cert, "crl")))
    assert r.status_code == 200 and r.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(r.content)
    assert crl.is_signature_valid(world.inter.cert.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(world.leaf.cert.serial_number) is not None


async def test_aia_fetch(world: World) -> None:
    async with httpx.AsyncClient(timeout=3) as client:
        r = await client.get(world.http.url(cert_url(world.leaf.cert, "aia")))
    assert r.status_code == 200 and r.headers["content-type"] == "application/pkix-cert"
    assert x509.load_der_x509_certificate(r.content) == world.inter.cert


async def test_unknown_paths_are_404(world: World) -> None:
    async with httpx.AsyncClient(timeout=3) as client:
        for path in ("/", "/crl/nope.crl", "/aia/nope.der", "/aia/int-a.pem", "/other"):
            assert (await client.get(world.http.url(path))).status_code == 404, path
        # An OCSP request for a CA the responder does not serve: a proper OCSP refusal.
        r = await client.post(world.http.url("/ocsp/nope"), content=ocsp_req(world))
        assert ocsp.load_der_ocsp_response(r.content).response_status == (
            ocsp.OCSPResponseStatus.UNAUTHORIZED
        )


async def test_behaviours(world: World) -> None:
    http = world.http
    async with httpx.AsyncClient(timeout=3) as client:
        http.set_behaviour("/crl/int-a", "404")
        assert (await client.get(http.url("/crl/int-a.crl"))).status_code == 404
        assert (await client.get(http.url("/aia/int-a.der"))).status_code == 200
        http.set_behaviour("/crl/", "500")  # the longer prefix still wins for int-a
        assert (await client.get(http.url("/crl/int-a.crl"))).status_code == 404
        assert (await client.get(http.url("/crl/root-a.crl"))).status_code == 500
        http.set_behaviour("/crl/int-a", "expired")
        crl = x509.load_der_x509_crl((await client.get(http.url("/crl/int-a.crl"))).content)
        assert crl.next_update_utc is not None and crl.next_update_utc < datetime.now(timezone.utc)
        http.set_behaviour("/crl/int-a", "bad-signature")
        crl = x509.load_der_x509_crl((await client.get(http.url("/crl/int-a.crl"))).content)
        assert not crl.is_signature_valid(world.inter.cert.public_key())  # type: ignore[arg-type]
        http.set_behaviour("/ocsp/int-a", "bad-signature")
        resp = ocsp.load_der_ocsp_response((await post_ocsp(world, client)).content)
        assert resp.certificate_status == ocsp.OCSPCertStatus.GOOD and not signed_by(
            resp, world.inter
        )
        http.set_behaviour("/ocsp/int-a", "stale")
        resp = ocsp.load_der_ocsp_response((await post_ocsp(world, client)).content)
        assert signed_by(resp, world.inter)
        assert resp.next_update_utc is not None and resp.next_update_utc < resp.produced_at_utc
        http.set_behaviour("/ocsp/int-a", "garbage")
        r = await post_ocsp(world, client)
        with pytest.raises(ValueError):
            ocsp.load_der_ocsp_response(r.content)
        http.set_behaviour("/ocsp/int-a", "close")
        with pytest.raises(httpx.HTTPError):
            await post_ocsp(world, client)
        http.set_behaviour("/ocsp/int-a", "ok")
        resp = ocsp.load_der_ocsp_response((await post_ocsp(world, client)).content)
        assert signed_by(resp, world.inter)
    with pytest.raises(ValueError):
        http.set_behaviour("/ocsp/", "sideways")


async def test_slow_times_out_the_client_and_stop_is_prompt(world: World) -> None:
    world.http.set_behaviour("/aia/", "slow")
    async with httpx.AsyncClient(timeout=0.5) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(world.http.url("/aia/int-a.der"))
    # A request still sleeping in the server must not hold up stop().
    reader, writer = await asyncio.open_connection("127.0.0.1", world.http.port)
    writer.write(b"GET /aia/int-a.der HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.1)
    await asyncio.wait_for(world.http.stop(), 3)
    assert await asyncio.wait_for(reader.read(), 3) == b""
    writer.close()


async def test_bad_requests_do_not_kill_the_server(world: World) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", world.http.port)
    writer.write(b"NONSENSE\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.read(), 3)
    writer.close()
    assert head.startswith(b"HTTP/1.1 400")
    async with httpx.AsyncClient(timeout=3) as client:
        assert (await client.get(world.http.url("/aia/int-a.der"))).status_code == 200


# ---- MTA-STS over HTTPS -------------------------------------------------------------------


@dataclass
class Sts:
    pki: PKI
    server: MtaStsServer
    client_ctx: ssl.SSLContext
    a: Issued
    b: Issued


@pytest.fixture
async def sts() -> AsyncIterator[Sts]:
    pki = PKI("http://pki.lab.test:8080")
    root = pki.root("root-a")
    inter = pki.intermediate("int-a", root)
    a = pki.leaf(inter, ["mta-sts.a.lab.test"])
    b = pki.leaf(inter, ["mta-sts.b.lab.test"])
    server = MtaStsServer(default_cert=pki.leaf(inter, ["default.lab.test"]))
    server.set_mtasts(
        "mta-sts.a.lab.test",
        body="version: STSv1\r\nmode: enforce\r\nmx: mx1.a.lab.test\r\nmax_age: 86400\r\n",
        cert=a,
    )
    server.set_mtasts(
        "mta-sts.b.lab.test", status=404, content_type="text/html", body="<h1>no</h1>", cert=b
    )
    await server.start("127.0.0.1", 0)
    ctx = ssl.create_default_context(cadata=pki.roots_pem().decode())
    try:
        yield Sts(pki, server, ctx, a, b)
    finally:
        await server.stop()


async def https_get(s: Sts, sni: str, host: str | None = None) -> tuple[bytes, x509.Certificate]:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", s.server.port, ssl=s.client_ctx, server_hostname=sni),
        3,
    )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.write(
            f"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host or sni}\r\n\r\n".encode()
        )
        await writer.drain()
        data = await asyncio.wait_for(reader.read(1 << 20), 3)
    finally:
        writer.close()
    return data, x509.load_der_x509_certificate(der)


async def test_mtasts_policy_with_the_sni_certificate(sts: Sts) -> None:
    data, cert = await https_get(sts, "mta-sts.a.lab.test")
    assert cert == sts.a.cert
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Type: text/plain" in head
    assert body.startswith(b"version: STSv1\r\nmode: enforce")
    data, cert = await https_get(sts, "mta-sts.b.lab.test")
    assert cert == sts.b.cert
    assert data.startswith(b"HTTP/1.1 404") and b"Content-Type: text/html" in data


async def test_unknown_sni_gets_the_default_cert_and_a_name_mismatch(sts: Sts) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        await https_get(sts, "mta-sts.unknown.lab.test")
    assert "mismatch" in str(info.value).lower() or "doesn't match" in str(info.value)
    # A site set without its own certificate is served with the default one too.
    sts.server.set_mtasts("mta-sts.c.lab.test", body="version: STSv1\r\n")
    with pytest.raises(ssl.SSLCertVerificationError):
        await https_get(sts, "mta-sts.c.lab.test")


async def test_redirect_and_changes_while_running(sts: Sts) -> None:
    sts.server.set_mtasts(
        "mta-sts.a.lab.test", redirect="https://elsewhere.lab.test/policy.txt", cert=sts.a
    )
    data, _ = await https_get(sts, "mta-sts.a.lab.test")
    assert data.startswith(b"HTTP/1.1 301")
    assert b"Location: https://elsewhere.lab.test/policy.txt" in data
    # The Host header picks the answer; SNI only the certificate.
    data, cert = await https_get(sts, "mta-sts.b.lab.test", host="mta-sts.a.lab.test")
    assert cert == sts.b.cert and data.startswith(b"HTTP/1.1 301")
