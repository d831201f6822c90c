"""Bytes to and from a sender: clear text first, TLS over memory BIOs after STARTTLS.

pyOpenSSL runs on memory BIOs pumped by asyncio streams, so the listener sees every raw byte
of the handshake (the ClientHello offer, our first flight) and needs no thread per session.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

MAX_LINE = 4096


class Closed(Exception):
    """The peer went away (or a cap was hit); the session ends."""


class Channel:
    """Bytes to and from the peer: clear text first, TLS over memory BIOs after STARTTLS."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.buffer = b""
        self.tls: Any = None
        self.inbound = b""  # the client's first handshake bytes, kept for the offer

    async def _raw(self) -> bytes:
        try:
            data = await asyncio.wait_for(self.reader.read(65536), self.timeout)
        except asyncio.TimeoutError:
            raise Closed(f"no data from the sender within {self.timeout:.0f} s") from None
        except (ConnectionError, OSError) as exc:
            raise Closed(f"connection lost: {exc}") from None
        if not data:
            raise Closed("the sender closed the connection")
        return data

    async def _flush_tls(self) -> bytes:
        from OpenSSL import SSL

        out = b""
        while True:
            try:
                chunk = self.tls.bio_read(65536)
            except SSL.WantReadError:
                break
            if not chunk:
                break
            out += chunk
        if out:
            self.writer.write(out)
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.drain()
        return out

    async def _more(self) -> None:
        """Append at least one more byte of clear text to the buffer."""
        if self.tls is None:
            self.buffer += await self._raw()
            return
        from OpenSSL import SSL

        while True:
            try:
                data = self.tls.recv(65536)
                if data:
                    self.buffer += data
                    return
                raise Closed("the sender closed TLS")
            except SSL.WantReadError:
                await self._flush_tls()
                self.tls.bio_write(await self._raw())
            except SSL.ZeroReturnError:
                raise Closed("the sender closed TLS") from None
            except SSL.Error as exc:
                raise Closed(f"TLS error: {exc}") from None

    async def line(self, limit: int = MAX_LINE) -> bytes:
        while b"\n" not in self.buffer:
            if len(self.buffer) > limit:
                raise Closed(f"a line longer than {limit} bytes")
            await self._more()
        head, _, self.buffer = self.buffer.partition(b"\n")
        return head.rstrip(b"\r")

    async def send(self, data: bytes) -> None:
        if self.tls is None:
            self.writer.write(data)
            try:
                await self.writer.drain()
            except (ConnectionError, OSError) as exc:
                raise Closed(f"connection lost: {exc}") from None
            return
        self.tls.sendall(data)
        await self._flush_tls()

    async def handshake(self, ctx: Any) -> tuple[bytes, bytes]:
        """Run the server side of the handshake. Returns (what the client sent first, our
        first flight) for the offer and the group."""
        from OpenSSL import SSL

        self.tls = SSL.Connection(ctx, None)
        self.tls.set_accept_state()
        outbound = b""
        first_out = True
        while True:
            try:
                self.tls.do_handshake()
                break
            except SSL.WantReadError:
                pass
            except SSL.Error:
                await self._flush_tls()  # the alert, so the sender logs why
                raise
            sent = await self._flush_tls()
            if first_out and sent:
                outbound += sent
                first_out = False
            data = await self._raw()
            if len(self.inbound) < 65536:
                self.inbound += data
            self.tls.bio_write(data)
        sent = await self._flush_tls()
        if first_out:
            outbound += sent
        return self.inbound, outbound
