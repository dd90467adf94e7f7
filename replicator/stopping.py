"""Waits that a stop cuts short: every loop of the daemon sleeps through these."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile; True when stopping."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


async def every(stop: asyncio.Event, interval: float, job: Callable[[], Awaitable[None]],
                first: float = 0.0) -> None:
    """Run ``job`` after ``first`` seconds, then every ``interval``, until ``stop``."""
    if await sleep_or_stop(stop, first):
        return
    while True:
        await job()
        if await sleep_or_stop(stop, interval):
            return
