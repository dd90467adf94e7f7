"""A bound on the bytes the copier holds in memory at once, across all copies.

Concurrency alone does not bound memory (sixteen 64 MiB objects are 1 GiB);
every body and part the copier reads takes its size from this budget first
and gives it back once every region has it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class ByteBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._changed = asyncio.Condition()

    async def acquire(self, nbytes: int) -> int:
        """Wait for ``nbytes`` to be free and take them; returns what to give back."""
        nbytes = min(nbytes, self.limit)  # larger than the whole budget: wait for all of it
        async with self._changed:
            await self._changed.wait_for(lambda: self.used + nbytes <= self.limit)
            self.used += nbytes
        return nbytes

    async def release(self, nbytes: int) -> None:
        async with self._changed:
            self.used -= nbytes
            self._changed.notify_all()

    @contextlib.asynccontextmanager
    async def hold(self, nbytes: int) -> AsyncIterator[None]:
        taken = await self.acquire(nbytes)
        try:
            yield
        finally:
            await self.release(taken)
