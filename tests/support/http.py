"""Real loopback HTTP and HTTPS servers for the endpoint, HTTP and MTA-STS tests."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mxlens_lab.pki import Issued, server_context
from probes.model.options import Options
from probes.net.dns import Resolver
from probes.net.http import Fetcher
from probes.net.trust import Roots


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/octet-stream"
    handler: Callable[[bytes], tuple[int, str, bytes]] | None = None


@dataclass
class Server:
    """A real HTTP server on 127.0.0.1 serving routes by path; counts hits per path."""

    routes: dict[str, Route] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def http_server() -> Iterator[Server]:
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self, body: bytes) -> None:
            state.hits[self.path] = state.hits.get(self.path, 0) + 1
            route = state.routes.get(self.path)
            if route is None:
                status, ctype, data = 404, "text/plain", b"not found"
            elif route.handler is not None:
                status, ctype, data = route.handler(body)
            else:
                status, ctype, data = route.status, route.content_type, route.body
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            self._serve(b"")

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            self._serve(self.rfile.read(length))

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port() -> int:
    """A loopback TCP port where nothing listens (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetcher(
    resolver: Resolver | None = None,
    options: Options | None = None,
    roots: Roots | None = None,
) -> Fetcher:
    """The engine's fetcher; by default its resolver points at a closed port (any DNS lookup
    fails, so tests use 127.0.0.1 URLs) and it trusts no root."""
    return Fetcher(
        resolver or Resolver(("127.0.0.1", closed_port()), timeout=1),
        options or Options(timeout=3, private_endpoints=True),  # the test servers are on loopback
        roots or Roots([], "none"),
    )


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/plain"})


class HttpsServer:
    """Serves `routes[path]` over TLS on 127.0.0.1 with the given lab certificate."""

    def __init__(self, leaf: Issued) -> None:
        self.routes: dict[str, Reply] = {}
        self.requests: list[str] = []
        self.ctx = server_context(leaf)
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> HttpsServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.ctx)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            self.requests.append(request_line)
            path = request_line.split(" ")[1]
            reply = self.routes.get(path, Reply(404, b"not found\n"))
            lines = [f"HTTP/1.1 {reply.status} X"]
            lines += [f"{k}: {v}" for k, v in reply.headers.items()]
            lines += [f"Content-Length: {len(reply.body)}", "Connection: close", "", ""]
            writer.write("\r\n".join(lines).encode("latin-1") + reply.body)
            await writer.drain()
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass
