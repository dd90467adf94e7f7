"""Retry policy, built from config in one place.

Two levels, as rclone does: ``RequestRetry`` retries one request a few times
with exponential back-off and jitter (tenacity); ``item_delay`` spaces out the
journal-level retries of a whole item, which never end in the item being dropped.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_base, wait_exponential_jitter

from .config import Retry
from .errors import RetryableError, Throttled

log = logging.getLogger(__name__)
T = TypeVar("T")


class _honour_retry_after(wait_base):
    """Exponential back-off with jitter, but never shorter than a Retry-After."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._backoff = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial)

    def __call__(self, state: RetryCallState) -> float:
        delay = self._backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Throttled) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        return delay


class RequestRetry:
    """Retries one request on retryable errors; permanent errors pass straight through."""

    def __init__(self, policy: Retry, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 on_retry: Callable[[str, BaseException], None] | None = None) -> None:
        self.policy = policy
        self._sleep = sleep
        self._on_retry = on_retry

    async def call(self, fn: Callable[[], Awaitable[T]], *, name: str, op: str) -> T:
        """Run ``fn`` for endpoint ``name``; ``on_retry(name, exc)`` hears of every retry."""
        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.debug("retrying %s %s after %s (attempt %d)", name, op, exc, state.attempt_number)
            if self._on_retry and exc is not None:
                self._on_retry(name, exc)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.policy.request_attempts),
            wait=_honour_retry_after(self.policy.request_backoff, self.policy.request_backoff_max),
            retry=retry_if_exception_type(RetryableError),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return await retrying(fn)


def item_delay(policy: Retry, attempts: int, rng: random.Random | None = None) -> float:
    """Seconds before an item that has failed ``attempts`` times is tried again."""
    if attempts >= policy.item_attempts:
        return policy.failed_interval
    base = min(policy.item_backoff * 2.0 ** max(attempts - 1, 0), policy.item_backoff_max)
    draw = rng.random() if rng is not None else random.random()
    return base * (0.5 + draw / 2)
