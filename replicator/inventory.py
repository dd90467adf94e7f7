"""Region inventories: one listing of a region instead of a HEAD per object.

A queued copy that the feed did not just see change (a backfill, a sweep, a
new region) is probed with a HEAD first, so that a region already holding it
is not written again. On a backfill into an empty region every one of those
HEADs answers 404: a request per object per region, for nothing. Listing the
region costs a request per 1,000 keys and says which keys it does not hold at
all; their rows need no probe. Keys it does hold are still probed, since only
the replica's metadata tells whether it is current.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Mapping
from typing import Protocol

from .errors import ReplicatorError
from .s3 import ObjectStore

log = logging.getLogger(__name__)

PAGE = 1000


class InventoryJournal(Protocol):
    """What taking inventories needs from the journal (``Journal.inventory``)."""

    async def unprobed(self) -> tuple[int, dict[str, int]]: ...
    async def begin_inventory(self) -> None: ...
    async def stage_inventory(self, keys: list[str]) -> None: ...
    async def commit_inventory(self, region: str) -> int: ...


async def take(journal: InventoryJournal, regions: Mapping[str, ObjectStore],
               prefixes: Collection[str] = ("",)) -> dict[str, int]:
    """List each region with more rows to probe than its listing costs requests.

    Returns, per region listed, the probes spared. A region whose listing fails
    keeps its probes: that costs requests, never correctness, and the failure is
    reported where it matters, by the health checks and the copies.
    """
    listed, waiting = await journal.unprobed()
    spared: dict[str, int] = {}
    for name, count in waiting.items():
        store = regions.get(name)
        # Listing a region as large as the source takes about listed / PAGE requests.
        if store is None or count <= math.ceil(listed / PAGE):
            continue
        try:
            await journal.begin_inventory()
            for prefix in prefixes:
                batch: list[str] = []
                async for entry in store.listing(prefix):
                    batch.append(entry.key)
                    if len(batch) >= PAGE:
                        await journal.stage_inventory(batch)
                        batch = []
                await journal.stage_inventory(batch)
        except ReplicatorError as exc:
            log.debug("%s: could not list the region (%s); its %d queued objects are probed "
                      "one by one instead", name, exc, count)
            continue
        spared[name] = await journal.commit_inventory(name)
        log.info("%s: listed; %d of %d queued objects are not there yet and need no probe",
                 name, spared[name], count)
    return spared
