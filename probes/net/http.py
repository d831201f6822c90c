"""The one HTTP client: OCSP, CRL, caIssuers and MTA-STS fetches.

Host names are resolved through our `Resolver` (so `--resolver` routes them too), then the
request goes to the address itself, with the Host header and, for https, the TLS SNI and the
certificate check on the original name. When the environment names a proxy for the URL, the
proxy resolves and connects instead, and the result says so. Redirects are reported, never
followed: RFC 8461 forbids them for MTA-STS, and for CA endpoints a redirect is worth seeing.

The URLs come from certificates and DNS a stranger controls, so a fetch is fenced in: only
http on port 80 and https on 443 (the lab's own https port aside), no address that is not
globally routable (loopback, private, link-local, multicast, unspecified...), unless
`Options.private_endpoints` allows both; userinfo in a URL is never sent; one deadline
covers the whole fetch (DNS and at most MAX_ADDRESSES addresses); at most MAX_CONCURRENT
fetches run at once, and the bodies one diagnosis keeps are capped at BODY_BUDGET bytes.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import ssl
import time
import urllib.request
from dataclasses import dataclass

import httpx

from probes.model.names import is_ip_literal
from probes.model.options import Options
from probes.net.dns import Resolver
from probes.net.trust import Roots


@dataclass(frozen=True)
class HttpResult:
    """The outcome of one fetch. error is one line: "DNS: NXDOMAIN", "connect: refused",
    "timeout", "TLS: <reason>", "HTTP 404", "redirect to X (not followed)",
    "too big (> N bytes)"."""

    url: str
    ok: bool
    status: int | None
    ms: float | None
    body: bytes
    content_type: str | None
    error: str | None
    addresses: tuple[str, ...] = ()
    redirected_to: str | None = None
    via_proxy: str | None = None  # the proxy URL when one from the environment was used
    # Not fetched on purpose (a private address, a port other than 80/443, a budget spent):
    # the reason is in error, and it says nothing about reachability.
    refused: bool = False


def _failed(
    url: str,
    started: float,
    error: str,
    addresses: tuple[str, ...] = (),
    proxy: str | None = None,
    *,
    refused: bool = False,
) -> HttpResult:
    """A fetch that got no usable answer, timed from `started` (the deadline's and every
    other failure's result alike)."""
    return HttpResult(
        url=url,
        ok=False,
        status=None,
        ms=round((time.monotonic() - started) * 1000, 1),
        body=b"",
        content_type=None,
        error=error,
        addresses=addresses,
        via_proxy=proxy,
        refused=refused,
    )


# Addresses of one host tried per fetch: a host with 100 silent addresses costs this many.
MAX_ADDRESSES = 3
# Fetches of one diagnosis running at once (each holds a socket and a body in memory).
MAX_CONCURRENT = 8
# Bytes of bodies one diagnosis may hold (a fetch that would pass it is cut, its body dropped).
BODY_BUDGET = 64 * 1024 * 1024


def not_global(address: str) -> bool:
    """True for an address a fetch must not go to by default: loopback, private, link-local,
    multicast, unspecified, reserved, documentation ranges, and IPv4-mapped forms of them."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


class _ConnectFailed(Exception):
    """A failure before any byte of HTTP was exchanged: the next address may work."""


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line[:limit] + ("..." if len(line) > limit else "")


def _tls_reason(exc: BaseException) -> str | None:
    """The TLS reason inside an httpx exception chain, if the failure was TLS."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError):
            return _one_line(cur.verify_message or cur.reason or str(cur))
        if isinstance(cur, ssl.SSLError):
            return _one_line(cur.reason or str(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def _connect_reason(exc: BaseException) -> str:
    # anyio wraps the real socket error ("All connection attempts failed"); the errno of the
    # innermost OSError is what a user can act on.
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ConnectionRefusedError):
            return "connect: refused"
        if isinstance(cur, ConnectionResetError):
            return "connect: reset"
        if isinstance(cur, OSError) and cur.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return "connect: unreachable"
        if isinstance(cur, OSError) and cur.errno is not None:
            return f"connect: {_one_line(cur.strerror or str(cur))}"
        cur = cur.__cause__ or cur.__context__
    return f"connect: {_one_line(str(exc) or type(exc).__name__)}"


def proxy_for(url: httpx.URL) -> str | None:
    """The proxy the environment (HTTP_PROXY / HTTPS_PROXY / ALL_PROXY / NO_PROXY) names for
    url, or None for a direct connection."""
    proxies = urllib.request.getproxies_environment()
    # proxy_bypass_environment is undocumented but present from 3.x through 3.13; it applies
    # NO_PROXY exactly as urllib (and curl-alike tools) do.
    bypass = getattr(urllib.request, "proxy_bypass_environment")  # noqa: B009
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy:
        return None
    host = url.host
    if bypass(host, proxies):
        return None
    if url.port is not None and bypass(f"{host}:{url.port}", proxies):
        return None
    if "://" not in proxy:
        proxy = "http://" + proxy
    return proxy


class Fetcher:
    """Fetches URLs for one diagnosis. Never raises for network errors."""

    def __init__(self, resolver: Resolver, options: Options, roots: Roots) -> None:
        self.resolver = resolver
        self.options = options
        self.roots = roots
        self._timeout = httpx.Timeout(options.timeout)
        # No keep-alive: connections are made to addresses, and a pooled TLS connection made
        # with one SNI must never carry a request for another host on the same address.
        self._limits = httpx.Limits(max_keepalive_connections=0)
        self._direct: httpx.AsyncClient | None = None
        self._proxied: dict[str, httpx.AsyncClient] = {}
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)
        self.body_bytes = 0  # bytes of bodies held (kept or being read) by this diagnosis

    def _client(self, proxy: str | None) -> httpx.AsyncClient:
        if proxy is None:
            if self._direct is None:
                self._direct = httpx.AsyncClient(
                    verify=self.roots.ssl_context(),
                    trust_env=False,
                    follow_redirects=False,
                    timeout=self._timeout,
                    limits=self._limits,
                )
            return self._direct
        client = self._proxied.get(proxy)
        if client is None:
            client = httpx.AsyncClient(
                verify=self.roots.ssl_context(),
                trust_env=False,
                proxy=proxy,
                follow_redirects=False,
                timeout=self._timeout,
                limits=self._limits,
            )
            self._proxied[proxy] = client
        return client

    async def aclose(self) -> None:
        clients = [c for c in [self._direct, *self._proxied.values()] if c is not None]
        self._direct = None
        self._proxied = {}
        for client in clients:
            await client.aclose()

    async def get(
        self,
        url: str,
        *,
        max_bytes: int = 1_000_000,
        method: str = "GET",
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> HttpResult:
        """Fetch url (GET, or POST with body). ok means HTTP 2xx with a body within max_bytes.

        The whole fetch, DNS included, ends within 2 x the per-step timeout."""
        deadline = 2 * self.options.timeout
        async with self._slots:
            # The clock starts with the slot: waiting for one is not the server's slowness.
            started = time.monotonic()
            try:
                return await asyncio.wait_for(
                    self._fetch(url, max_bytes, method, body, content_type, started),
                    timeout=deadline,
                )
            except asyncio.TimeoutError:
                return _failed(url, started, "timeout")

    async def _fetch(
        self,
        url: str,
        max_bytes: int,
        method: str,
        body: bytes | None,
        content_type: str | None,
        started: float,
    ) -> HttpResult:

        def fail(
            error: str,
            addresses: tuple[str, ...] = (),
            proxy: str | None = None,
            *,
            refused: bool = False,
        ) -> HttpResult:
            return _failed(url, started, error, addresses, proxy, refused=refused)

        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            return fail(f"bad URL: {_one_line(str(exc))}")
        if parsed.scheme not in ("http", "https") or not parsed.host:
            return fail(f"unsupported URL (only http:// and https://): {_one_line(url, 80)}")
        # user:password@ in a certificate's URL would go out as Basic auth: never send it.
        parsed = parsed.copy_with(userinfo=b"")
        allowed_port = 80 if parsed.scheme == "http" else self.options.https_port
        if (
            parsed.port is not None
            and parsed.port != allowed_port
            and not self.options.private_endpoints
        ):
            return fail(
                f"not fetched from here (port {parsed.port}: only {parsed.scheme} on port "
                f"{allowed_port} is fetched without --allow-private-endpoints)",
                refused=True,
            )
        if parsed.scheme == "https" and parsed.port is None:
            # The lab, which runs without root, serves https elsewhere than 443.
            parsed = parsed.copy_with(port=self.options.https_port)

        headers = {"Accept-Encoding": "identity", "User-Agent": "mxlens"}
        if content_type:
            headers["Content-Type"] = content_type

        proxy = proxy_for(parsed)
        if proxy is not None:
            # The proxy resolves names itself; what can be judged here is an address or
            # "localhost" in the URL, which the proxy would otherwise fetch for us.
            literal = parsed.host.strip("[]")
            inside = not_global(literal) if is_ip_literal(literal) else literal == "localhost"
            if inside and not self.options.private_endpoints:
                return fail(
                    f"not fetched from here (private address {literal}; "
                    "--allow-private-endpoints fetches it)",
                    refused=True,
                )
            try:
                return await asyncio.wait_for(
                    self._request(
                        self._client(proxy),
                        method,
                        parsed,
                        parsed,
                        headers,
                        body,
                        max_bytes,
                        url,
                        (),
                        proxy,
                        started,
                        None,
                    ),
                    timeout=self.options.timeout,
                )
            except (asyncio.TimeoutError, _ConnectFailed) as exc:
                return fail(str(exc) or "timeout", (), proxy)

        host = parsed.host
        try:
            addresses = tuple(await self.resolver.resolve_host(host))
        except OSError as exc:
            text = str(exc)
            prefix = f"DNS: {host} "
            status = text[len(prefix) :] if text.startswith(prefix) else text
            return fail(f"DNS: {status}" if not status.startswith("DNS") else status)
        if not self.options.private_endpoints:
            # After DNS, so a public name pointing at an internal address is caught too.
            public = tuple(a for a in addresses if not not_global(a))
            if not public:
                return fail(
                    "not fetched from here (private address "
                    f"{', '.join(addresses[:3])}; --allow-private-endpoints fetches it)",
                    addresses,
                    refused=True,
                )
            addresses = public

        default_port = 443 if parsed.scheme == "https" else 80
        port = parsed.port or default_port
        host_header = host if port == default_port else f"{_url_host(host)}:{port}"
        headers["Host"] = host_header
        sni = None if is_ip_literal(host) else host
        last_error = "no address"
        for address in addresses[:MAX_ADDRESSES]:
            target = parsed.copy_with(host=address, port=port)
            try:
                return await asyncio.wait_for(
                    self._request(
                        self._client(None),
                        method,
                        target,
                        parsed,
                        headers,
                        body,
                        max_bytes,
                        url,
                        addresses,
                        None,
                        started,
                        sni,
                    ),
                    timeout=self.options.timeout,
                )
            except asyncio.TimeoutError:
                last_error = "timeout"
            except _ConnectFailed as exc:
                last_error = str(exc)
        return fail(last_error, addresses)

    async def _request(
        self,
        client: httpx.AsyncClient,
        method: str,
        target: httpx.URL,
        original: httpx.URL,
        headers: dict[str, str],
        body: bytes | None,
        max_bytes: int,
        url: str,
        addresses: tuple[str, ...],
        proxy: str | None,
        started: float,
        sni: str | None,
    ) -> HttpResult:
        extensions = {"sni_hostname": sni} if sni and target.scheme == "https" else {}
        try:
            request = client.build_request(
                method, target, headers=headers, content=body, extensions=extensions
            )
            response = await client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)):
                raise _ConnectFailed("timeout") from None
            return self._result(url, None, started, b"", None, "timeout", addresses, proxy)
        except (httpx.ConnectError, OSError) as exc:
            tls = _tls_reason(exc)
            if tls is not None:
                return self._result(url, None, started, b"", None, f"TLS: {tls}", addresses, proxy)
            raise _ConnectFailed(_connect_reason(exc)) from None
        except httpx.HTTPError as exc:
            tls = _tls_reason(exc)
            why = f"TLS: {tls}" if tls else f"HTTP: {_one_line(str(exc) or type(exc).__name__)}"
            return self._result(url, None, started, b"", None, why, addresses, proxy)

        try:
            status = response.status_code
            ctype = response.headers.get("content-type")
            chunks: list[bytes] = []
            size = 0
            too_big = False
            try:
                declared = int(response.headers.get("content-length", "-1"))
            except ValueError:
                declared = -1
            over_budget = False
            if declared > max_bytes:
                too_big = True
            else:
                try:
                    async for chunk in response.aiter_raw():
                        size += len(chunk)
                        self.body_bytes += len(chunk)
                        if size > max_bytes:
                            too_big = True
                            break
                        if self.body_bytes > BODY_BUDGET:
                            over_budget = True
                            break
                        chunks.append(chunk)
                except BaseException:
                    self.body_bytes -= size
                    raise
            ok_status = 200 <= status < 300
            if too_big or over_budget or not ok_status:
                # What is not used is not kept: an endless or refused body frees its bytes.
                chunks = []
                self.body_bytes -= size
            data = b"".join(chunks)
            del chunks
            error: str | None = None
            redirected: str | None = None
            if 300 <= status < 400:
                location = response.headers.get("location")
                if location is not None:
                    redirected = str(original.join(location))
                    error = f"redirect to {_one_line(redirected, 150)} (not followed)"
                else:
                    error = f"HTTP {status} (redirect without Location)"
            elif not 200 <= status < 300:
                error = f"HTTP {status}"
            elif too_big:
                error = f"too big (> {max_bytes} bytes)"
            elif over_budget:
                error = (
                    f"not fetched in full (this diagnosis's {BODY_BUDGET // 2**20} MB budget "
                    "for downloads is spent)"
                )
            result = self._result(url, status, started, data, ctype, error, addresses, proxy)
            if redirected is not None:
                result = HttpResult(**{**result.__dict__, "redirected_to": redirected})
            if over_budget:
                result = HttpResult(**{**result.__dict__, "refused": True})
            return result
        except httpx.TimeoutException:
            return self._result(url, None, started, b"", None, "timeout", addresses, proxy)
        except httpx.HTTPError as exc:
            failure = f"HTTP: {_one_line(str(exc) or type(exc).__name__)}"
            return self._result(url, None, started, b"", None, failure, addresses, proxy)
        finally:
            await response.aclose()

    @staticmethod
    def _result(
        url: str,
        status: int | None,
        started: float,
        body: bytes,
        ctype: str | None,
        error: str | None,
        addresses: tuple[str, ...],
        proxy: str | None,
    ) -> HttpResult:
        return HttpResult(
            url=url,
            ok=error is None,
            status=status,
            ms=round((time.monotonic() - started) * 1000, 1),
            body=body,
            content_type=ctype,
            error=error,
            addresses=addresses,
            via_proxy=proxy,
        )


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def fetch(
    url: str,
    *,
    resolver: Resolver,
    options: Options,
    roots: Roots,
    max_bytes: int = 1_000_000,
) -> HttpResult:
    """One-off GET with a throw-away Fetcher (for callers that fetch a single URL)."""
    fetcher = Fetcher(resolver, options, roots)
    try:
        return await fetcher.get(url, max_bytes=max_bytes)
    finally:
        await fetcher.aclose()
