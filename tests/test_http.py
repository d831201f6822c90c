"""The HTTP fetcher of probes/net/http.py against real loopback servers: our resolver, no
redirects, the size cap, proxies from the environment, and HTTPS with SNI and our roots."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from probes.model.options import Options
from probes.net.dns import Resolver
from probes.net.trust import Roots
from tests.support.dns import DnsResponder
from tests.support.http import Route, Server, closed_port, fetcher
from tests.support.pki import issue


async def test_host_names_go_through_our_resolver(srv: Server, dns_server: DnsResponder) -> None:
    dns_server.zone[("crl.example.test", "A")] = ["127.0.0.1"]

    def handler(body: bytes) -> tuple[int, str, bytes]:
        return 200, "text/plain", b"crl-bytes"

    srv.routes["/x.crl"] = Route(handler=handler)
    resolver = Resolver(("127.0.0.1", dns_server.port), timeout=2)
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


async def test_https_uses_sni_host_header_and_our_roots(
    dns_server: DnsResponder, tmp_path: Any
) -> None:
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

    dns_server.zone[("mta-sts.example.test", "A")] = ["127.0.0.1"]
    dns_server.zone[("wrong.example.test", "A")] = ["127.0.0.1"]
    resolver = Resolver(("127.0.0.1", dns_server.port), timeout=2)
    with _serve(Policy, ctx) as port:
        options = Options(timeout=3, https_port=port, private_endpoints=True)
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
