"""Per-region concurrency that backs off under throttling (AIMD).

Each region has its own lane: the scheduler gives a region no more copies at
once than its lane allows, so a slow or throttled region fills its own lane,
never the others'. A 503 SlowDown halves the limit; a run of successes raises
it by one again, up to the configured concurrency.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class Lane:
    """The current concurrency limit of one region."""

    #: Halve at most this often: one burst of 503s is one signal, not twenty.
    COOL_DOWN = 1.0

    def __init__(self, maximum: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.maximum = maximum
        self._clock = clock  # injectable, so tests step through the cool-down without waiting
        self.limit = maximum
        self.active = 0
        self.cuts = 0  # times throttling halved the limit
        self._successes = 0
        self._last_cut = -math.inf  # the first throttle always cuts, however young the clock

    @property
    def free(self) -> bool:
        return self.active < self.limit

    def throttled(self) -> None:
        now = self._clock()
        if now - self._last_cut >= self.COOL_DOWN:
            self._last_cut = now
            self.limit = max(1, self.limit // 2)
            self.cuts += 1
            self._successes = 0

    def succeeded(self) -> None:
        self._successes += 1
        if self.limit < self.maximum and self._successes >= self.limit:
            self._successes = 0
            self.limit += 1
