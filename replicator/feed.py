"""The poll feed: list the source on an interval, diff against the last listing.

A listing is staged page by page in the journal (never held in memory) and
only adopted once it is complete, so a listing that fails part-way yields
nothing at all — never a mass delete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Protocol

from .config import Deletes, Replication
from .errors import ReplicatorError
from .health import Health
from .journal import DeleteGuard, Diff
from .model import Listed
from .s3 import ObjectStore
from .stopping import sleep_or_stop

log = logging.getLogger(__name__)

PAGE = 1000


class ListingJournal(Protocol):
    """What the feed needs from the journal (``Journal.listing``)."""

    async def begin_listing(self) -> None: ...
    async def stage(self, entries: list[Listed]) -> None: ...
    async def abandon_listing(self) -> None: ...
    async def commit_listing(self, regions: list[str], wants: Callable[[str], bool],
                             replicate_deletes: bool, guard: DeleteGuard,
                             trusted: bool = True) -> Diff: ...


class PollFeed:
    """Turns successive source listings into journal rows."""

    def __init__(self, source: ObjectStore, journal: ListingJournal, regions: Collection[str],
                 options: Replication, *, interval: float, on_changes: Callable[[], None],
                 guard: Deletes | None = None, health: Health | None = None,
                 inventory: Callable[[], Awaitable[object]] | None = None) -> None:
        self.source = source
        self.journal = journal
        self.regions = regions
        self.options = options
        self.interval = interval
        self.on_changes = on_changes
        self.health = health
        self.guard = guard or Deletes()
        #: Runs after a pass queued copies and before the scheduler hears of them
        #: (``inventory.take``: list regions rather than probe every copy).
        self.inventory = inventory
        #: Poll mode: the last listing is what the replicas hold. Not so when events
        #: (from any number of replicas) also change them: then changes are probed.
        self.trusted = True

    async def poll_once(self) -> Diff:
        """List the whole source and queue every difference; raise if the listing fails."""
        await self.journal.begin_listing()
        try:
            for prefix in self.options.include_prefixes or ("",):
                batch: list[Listed] = []
                async for entry in self.source.listing(prefix):
                    batch.append(entry)
                    if len(batch) >= PAGE:
                        await self.journal.stage(batch)
                        batch = []
                await self.journal.stage(batch)
        except BaseException as exc:
            await asyncio.shield(self.journal.abandon_listing())
            if self.health and isinstance(exc, ReplicatorError):
                self.health.down("source", exc.reason, f"listing failed, nothing changed: {exc}")
            raise
        if self.health:
            self.health.ok("source")
        diff = await self.journal.commit_listing(list(self.regions), self.options.wants,
                                                 self.options.replicate_deletes, self.guard.allows,
                                                 trusted=self.trusted)
        if diff.puts and self.inventory:
            await self.inventory()
        if diff.puts or diff.deletes:
            log.info("source listing: %d objects, %d to copy, %d to delete",
                     diff.listed, diff.puts, diff.deletes)
            self.on_changes()
        if diff.held:
            log.error("DELETE GUARD: %d deletes held back (the source lists %d objects; limits: "
                      "%d per pass, %.0f%% of the bucket). Nothing was deleted. If the deletes are "
                      "intended, run `replicator approve-deletes -c CONFIG` or raise "
                      "delete_guard in the config.", diff.held, diff.listed,
                      self.guard.max_per_pass, self.guard.max_fraction * 100)
        return diff

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(ReplicatorError):  # reported once, through health
                await self.poll_once()
            await sleep_or_stop(stop, self.interval)
