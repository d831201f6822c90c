"""Politeness towards mail servers: one SMTP connection at a time per address, and, for batch
runs, a cap on connections open at once and on connections started per second.

A diagnosis gets its own gate by default. `mxlens audit` hands one gate to every domain it
checks, so two partner domains on one MX host are one server to be gentle with, and the whole
run never has more than `max_open` connections open or starts more than `rate` a second.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from types import TracebackType


class ConnectionGate:
    def __init__(self, max_open: int | None = None, rate: float | None = None) -> None:
        if max_open is not None and max_open < 1:
            raise ValueError("max_open must be at least 1")
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive")
        self._locks: defaultdict[tuple[str, int], asyncio.Lock] = defaultdict(asyncio.Lock)
        self._open = asyncio.Semaphore(max_open) if max_open is not None else None
        self._interval = 1.0 / rate if rate is not None else 0.0
        self._next_start = 0.0
        self.max_open = max_open
        self.rate = rate
        self.opened = 0  # connection slots granted, for the figures
        self.peak_open = 0
        self._now_open = 0

    def slot(self, address: str, port: int) -> Slot:
        """`async with gate.slot(addr, port):` around every connection to that address."""
        return Slot(self, (address, port))

    async def _pace(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        start = max(now, self._next_start)
        self._next_start = start + self._interval
        if start > now:
            await asyncio.sleep(start - now)

    async def _enter(self, key: tuple[str, int]) -> None:
        lock = self._locks[key]
        await lock.acquire()
        held = False
        try:
            if self._open is not None:
                await self._open.acquire()
                held = True
            await self._pace()
        except BaseException:  # cancelled while waiting: give back what was taken
            if held and self._open is not None:
                self._open.release()
            lock.release()
            raise
        self.opened += 1
        self._now_open += 1
        self.peak_open = max(self.peak_open, self._now_open)

    def _leave(self, key: tuple[str, int]) -> None:
        self._now_open -= 1
        if self._open is not None:
            self._open.release()
        self._locks[key].release()


class Slot:
    """One address's turn; re-usable, one holder at a time (an asyncio.Lock underneath)."""

    def __init__(self, gate: ConnectionGate, key: tuple[str, int]) -> None:
        self._gate = gate
        self._key = key

    async def __aenter__(self) -> None:
        await self._gate._enter(self._key)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._gate._leave(self._key)
