"""The lab's web servers: the CA endpoints over HTTP and MTA-STS policies over HTTPS.

`PkiHttpServer` serves, for every CA of a `PKI`:
    POST /ocsp/<ca>                 (body: DER OCSP request)      application/ocsp-response
    GET  /ocsp/<ca>/<base64 req>    (RFC 6960 appendix A.1)       application/ocsp-response
    GET  /crl/<ca>.crl                                             application/pkix-crl
    GET  /aia/<ca>.der                                             application/pkix-cert
and can be told to break any of them by path prefix with `set_behaviour(prefix, mode)`.

`MtaStsServer` serves GET /.well-known/mta-sts.txt over HTTPS, choosing the certificate by
SNI and the answer by Host (falling back to SNI), as set per host with `set_mtasts(...)`.

Both speak just enough HTTP/1.1: one request per connection, Content-Length, then close.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import ssl
import urllib.parse
from collections import deque
from dataclasses import dataclass

from probes.model.names import canonical

from .pki import PKI, Issued, server_context

log = logging.getLogger(__name__)

MODES = ("ok", "404", "500", "bad-signature", "stale", "expired", "slow", "garbage", "close")

_HEAD_LIMIT = 16 * 1024
_BODY_LIMIT = 64 * 1024
_IO_TIMEOUT = 10.0
_REASONS = {
    200: "OK",
    301: "Moved Permanently",
    302: "Found",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass
class Request:
    method: str
    target: str  # as sent, e.g. "/ocsp/int-a/MEUw..."
    path: str  # target without the query string, percent-decoded
    headers: dict[str, str]  # lower-cased names
    body: bytes


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "text/plain"
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0  # seconds to wait before answering
    close_only: bool = False  # close the connection without any answer

    def to_bytes(self, *, head_only: bool = False) -> bytes:
        reason = _REASONS.get(self.status, "Status")
        head = [f"HTTP/1.1 {self.status} {reason}"]
        head.append(f"Content-Type: {self.content_type}")
        head.append(f"Content-Length: {len(self.body)}")
        head.append("Connection: close")
        head.extend(f"{k}: {v}" for k, v in self.headers)
        body = b"" if head_only else self.body
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class _BadRequest(Exception):
    pass


async def _read_request(reader: asyncio.StreamReader) -> Request:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _IO_TIMEOUT)
    except asyncio.LimitOverrunError:
        raise _BadRequest("header too large") from None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise _BadRequest("bad request line")
    method, target = parts[0].upper(), parts[1]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadRequest("bad header line")
        headers[name.strip().lower()] = value.strip()
    body = b""
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit():
        raise _BadRequest("bad Content-Length")
    length = int(length_text)
    if length > _BODY_LIMIT:
        raise _BadRequest("body too large")
    if length:
        body = await asyncio.wait_for(reader.readexactly(length), _IO_TIMEOUT)
    path = urllib.parse.unquote(target.split("?", 1)[0])
    return Request(method, target, path, headers, body)


class _Base:
    """Accept loop, one request per connection, every wait bounded, every socket closed."""

    def __init__(self) -> None:
        self.host: str | None = None
        self.port: int | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # (method, host header, target) of every request, oldest first: tests use it to see
        # what a client fetched.
        self.requests: deque[tuple[str, str, str]] = deque(maxlen=10000)

    def _ssl(self) -> ssl.SSLContext | None:
        return None

    async def _handle(self, request: Request, writer: asyncio.StreamWriter) -> Reply:
        raise NotImplementedError

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port (0 picks a free port, then in self.port)."""
        ctx = self._ssl()
        self._server = await asyncio.start_server(
            self._serve,
            host,
            port,
            ssl=ctx,
            ssl_handshake_timeout=_IO_TIMEOUT if ctx is not None else None,
            limit=_HEAD_LIMIT,
            reuse_address=True,
        )
        self.host = host
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and cut open connections (including ones sleeping in "slow")."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 2)
        self._server = None

    async def __aenter__(self) -> _Base:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            head_only = False
            try:
                request = await _read_request(reader)
            except _BadRequest as exc:
                reply = Reply(400, f"{exc}\n".encode())
            else:
                head_only = request.method == "HEAD"
                self.requests.append(
                    (request.method, request.headers.get("host", ""), request.target)
                )
                reply = await self._handle(request, writer)
            if reply.delay:
                await asyncio.sleep(reply.delay)
            if not reply.close_only:
                writer.write(reply.to_bytes(head_only=head_only))
                await asyncio.wait_for(writer.drain(), _IO_TIMEOUT)
        except (
            asyncio.IncompleteReadError,
            asyncio.TimeoutError,
            ConnectionError,
            ssl.SSLError,
        ):
            pass
        except asyncio.CancelledError:
            # stop() cuts connections, including ones sleeping in "slow". The handler is the
            # top of its task: ending it normally keeps asyncio's stream callback from
            # logging the cancellation as an error on the user's terminal.
            pass
        except Exception:  # one bad request must not take the server down
            log.exception("lab HTTP: request failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2)
            if task is not None:
                self._tasks.discard(task)


class PkiHttpServer(_Base):
    """OCSP, CRL and caIssuers endpoints for every CA of pki."""

    def __init__(self, pki: PKI | None, *, slow_seconds: float = 30.0) -> None:
        super().__init__()
        # May be None at start and set later: the PKI writes this server's port into its
        # URLs, so a lab can start the server on a free port first, then build the PKI.
        self.pki = pki
        self.slow_seconds = slow_seconds  # how long "slow" waits: more than any client timeout
        self.behaviours: dict[str, str] = {}

    def set_behaviour(self, path_prefix: str, mode: str) -> None:
        """Make requests whose path starts with path_prefix misbehave (the longest prefix
        wins). Modes: "ok", "404", "500", "bad-signature", "stale"/"expired" (synonyms: a stale
        OCSP answer, an expired CRL), "slow" (answer after slow_seconds), "garbage" (200 with
        a body that is not DER), "close" (close without answering).
        E.g. set_behaviour("/ocsp/int-a", "bad-signature"), set_behaviour("/crl/", "404")."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        if not path_prefix.startswith("/"):
            path_prefix = "/" + path_prefix
        if mode == "ok":
            self.behaviours.pop(path_prefix, None)
        else:
            self.behaviours[path_prefix] = mode

    def url(self, path: str) -> str:
        """The URL of path on this server by address (for tests; certificates use names)."""
        return f"http://{self.host}:{self.port}{path}"

    def _mode(self, path: str) -> str:
        best, mode = -1, "ok"
        for prefix, m in self.behaviours.items():
            if path.startswith(prefix) and len(prefix) > best:
                best, mode = len(prefix), m
        return mode

    async def _handle(self, request: Request, writer: asyncio.StreamWriter) -> Reply:
        mode = self._mode(request.path)
        delay = self.slow_seconds if mode == "slow" else 0.0
        if mode == "close":
            return Reply(200, close_only=True)
        if mode == "404":
            return Reply(404, b"not found\n", delay=delay)
        if mode == "500":
            return Reply(500, b"internal error\n", delay=delay)
        reply = self._route(request, mode)
        if mode == "garbage" and reply.status == 200:
            reply = Reply(200, b"<html>this is not DER</html>\n", reply.content_type)
        reply.delay = delay
        return reply

    def _route(self, request: Request, mode: str) -> Reply:
        if self.pki is None:
            return Reply(503, b"the PKI is not ready\n")
        parts = request.path.split("/")  # "", kind, name[, rest...]
        if len(parts) < 3:
            return Reply(404, b"not found\n")
        kind, name = parts[1], parts[2]
        if kind == "ocsp":
            return self._ocsp(request, name, "/".join(parts[3:]), mode)
        if request.method not in ("GET", "HEAD"):
            return Reply(405, b"method not allowed\n", headers=(("Allow", "GET"),))
        if kind == "crl" and name.endswith(".crl") and len(parts) == 3:
            ca = name[: -len(".crl")]
            if ca not in self.pki.cas:
                return Reply(404, b"no such CA\n")
            crl_mode = {"stale": "expired", "bad-signature": "bad-signature"}.get(mode, mode)
            if crl_mode not in ("expired", "bad-signature"):
                crl_mode = "good"
            return Reply(200, self.pki.crl_der(ca, mode=crl_mode), "application/pkix-crl")
        if kind == "aia" and name.endswith(".der") and len(parts) == 3:
            ca = name[: -len(".der")]
            if ca not in self.pki.cas:
                return Reply(404, b"no such CA\n")
            return Reply(200, self.pki.aia_der(ca), "application/pkix-cert")
        return Reply(404, b"not found\n")

    def _ocsp(self, request: Request, ca: str, rest: str, mode: str) -> Reply:
        assert self.pki is not None
        if request.method == "POST" and not rest:
            der = request.body
        elif request.method == "GET" and rest:
            # The path was percent-decoded already; the request is base64 of the DER and may
            # itself contain "/", hence everything after the CA name.
            try:
                der = base64.b64decode(rest + "=" * (-len(rest) % 4), validate=False)
            except (binascii.Error, ValueError):
                return Reply(400, b"bad base64\n")
        else:
            return Reply(405, b"use POST /ocsp/<ca> or GET /ocsp/<ca>/<base64>\n")
        ocsp_mode = {"expired": "stale"}.get(mode, mode)
        if ocsp_mode not in ("stale", "bad-signature"):
            ocsp_mode = "good"
        body = self.pki.ocsp_response(ca, der, mode=ocsp_mode)
        return Reply(200, body, "application/ocsp-response")


@dataclass
class MtaStsSite:
    """What one MTA-STS host answers."""

    status: int = 200
    content_type: str = "text/plain"
    body: bytes = b""
    redirect: str | None = None
    cert: Issued | None = None
    delay: float = 0.0


class MtaStsServer(_Base):
    """HTTPS for mta-sts.<domain> hosts: certificate by SNI, answer by Host header.

    default_cert is presented for unknown or missing SNI names: give it a certificate for a
    name no client asks for, so a client sees a name mismatch rather than a lucky match.
    """

    WELL_KNOWN = "/.well-known/mta-sts.txt"

    def __init__(self, default_cert: Issued) -> None:
        super().__init__()
        self.default_cert = default_cert
        self.sites: dict[str, MtaStsSite] = {}
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._default_ctx = server_context(default_cert)
        self._default_ctx.sni_callback = self._pick_context

    def set_mtasts(
        self,
        host: str,
        status: int = 200,
        content_type: str = "text/plain",
        body: str | bytes = b"",
        redirect: str | None = None,
        cert: Issued | None = None,
        delay: float = 0.0,
    ) -> None:
        """What https://<host>/.well-known/mta-sts.txt answers, and with which certificate
        (cert None: the default certificate). A redirect answers 301 (or status if it is a
        3xx) with Location: redirect. delay holds the answer back (a hanging server)."""
        name = canonical(host)
        data = body.encode("utf-8") if isinstance(body, str) else body
        if redirect is not None and not 300 <= status < 400:
            status = 301
        self.sites[name] = MtaStsSite(status, content_type, data, redirect, cert, delay)
        if cert is not None:
            self._contexts[name] = server_context(cert)
        else:
            self._contexts.pop(name, None)

    def remove_mtasts(self, host: str) -> None:
        name = canonical(host)
        self.sites.pop(name, None)
        self._contexts.pop(name, None)

    def _ssl(self) -> ssl.SSLContext:
        return self._default_ctx

    def _pick_context(
        self, sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext
    ) -> None:
        # Remembered for _handle: a request without a usable Host header is answered by SNI.
        with contextlib.suppress(AttributeError):
            setattr(sslobj, "mxlens_sni", server_name)  # noqa: B010
        if server_name:
            chosen = self._contexts.get(canonical(server_name))
            if chosen is not None:
                sslobj.context = chosen
        return None

    async def _handle(self, request: Request, writer: asyncio.StreamWriter) -> Reply:
        host = _host_without_port(request.headers.get("host", ""))
        sni = getattr(writer.get_extra_info("ssl_object"), "mxlens_sni", None)
        site = self.sites.get(canonical(host)) or (self.sites.get(canonical(sni)) if sni else None)
        if site is None or request.path != self.WELL_KNOWN:
            return Reply(404, b"not found\n")
        if request.method not in ("GET", "HEAD"):
            return Reply(405, b"method not allowed\n", headers=(("Allow", "GET"),))
        headers: tuple[tuple[str, str], ...] = ()
        if site.redirect is not None:
            headers = (("Location", site.redirect),)
        return Reply(site.status, site.body, site.content_type, headers, delay=site.delay)


def _host_without_port(value: str) -> str:
    value = value.strip()
    if value.startswith("["):  # [v6]:port
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


# The name the lab overview uses for the CA endpoint server.
HttpServer = PkiHttpServer
