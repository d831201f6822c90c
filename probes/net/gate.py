"""Politeness towards mail servers: one lock per server address, and, for batch runs, a cap on
connections open at once and on connections started per second.

A diagnosis gets its own gate by default. `mxlens audit` hands one gate to every domain it
checks, so two partner domains on one MX host are one server to be gentle with (they share
its lock), and the whole run never has more than `max_open` connections open or starts more
than `rate` a second.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from types import TracebackType
from typing import Literal


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
        self.opened = 0  # connections granted, for the figures
        self.peak_open = 0
        self._now_open = 0

    def address_lock(self, address: str, port: int) -> asyncio.Lock:
        """The lock of one server address, shared by every diagnosis on this gate."""
        return self._locks[(address, port)]

    def slot(self, address: str, port: int) -> Slot:
        """`async with gate.slot(addr, port):` around one connection to that address: its
        lock, then one open-connection slot."""
        return Slot(self, (address, port))

    async def _pace(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        start = max(now, self._next_start)
        self._next_start = start + self._interval
        if start > now:
            await asyncio.sleep(start - now)

    async def open_one(self) -> None:
        """Wait for an open-connection slot and for the rate cap; every connection takes one."""
        held = False
        try:
            if self._open is not None:
                await self._open.acquire()
                held = True
            await self._pace()
        except BaseException:  # cancelled while waiting: give back what was taken
            if held and self._open is not None:
                self._open.release()
            raise
        self.opened += 1
        self._now_open += 1
        self.peak_open = max(self.peak_open, self._now_open)

    def close_one(self) -> None:
        self._now_open -= 1
        if self._open is not None:
            self._open.release()


class Slot:
    """One address's turn for one connection; re-usable, one holder at a time."""

    def __init__(self, gate: ConnectionGate, key: tuple[str, int]) -> None:
        self._gate = gate
        self._key = key

    async def __aenter__(self) -> None:
        lock = self._gate.address_lock(*self._key)
        await lock.acquire()
        try:
            await self._gate.open_one()
        except BaseException:
            lock.release()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._gate.close_one()
        self._gate.address_lock(*self._key).release()


class GatedSlots(asyncio.Semaphore):
    """A diagnosis's own connection slots (a semaphore of `limit`) where each slot is also one
    of the gate's open-connection slots: the per-diagnosis cap and the audit-wide cap both
    hold, whoever takes the slot (the main session, or a side probe's connection)."""

    def __init__(self, gate: ConnectionGate, limit: int) -> None:
        super().__init__(limit)
        self._gate = gate

    async def acquire(self) -> Literal[True]:
        await super().acquire()
        try:
            await self._gate.open_one()
        except BaseException:
            super().release()
            raise
        return True

    def release(self) -> None:
        self._gate.close_one()
        super().release()
