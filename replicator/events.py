"""The events feed: S3 event notifications from SQS, plus periodic listing sweeps.

Receivers long-poll the queue (batches of up to 10) and queue each change in
the journal; a message is deleted only once every change of its keys is
verified in every region (at-least-once), and its visibility is extended
while a copy of its key runs. A message that keeps failing is left to expire,
so the queue's redrive policy moves it to the dead-letter queue; the journal
keeps the reason. Events can be lost and some endpoints never send deletes,
so a listing sweep (the poll feed) runs every ``feed.sweep_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Protocol
from urllib.parse import unquote_plus

from .config import Feed, Replication
from .errors import ReplicatorError
from .feed import PollFeed
from .metrics import Metrics
from .model import Change, Kind
from .queue import Message, SqsQueue
from .stopping import sleep_or_stop

log = logging.getLogger(__name__)

SETTLE_EVERY = 0.5  # seconds between looks for messages that can be deleted


class EventLedger(Protocol):
    """What the events feed needs from the journal (``Journal.ledger``)."""

    async def apply_events(self, changes: list[tuple[Change, str | None]], regions: list[str],
                           message: tuple[str, str] | None) -> int: ...
    async def settled_messages(self, limit: int = 100) -> list[tuple[str, str]]: ...
    async def messages_to_extend(self, older_than: float) -> list[tuple[str, str]]: ...
    async def extended(self, ids: list[str]) -> None: ...
    async def forget_messages(self, ids: list[str]) -> None: ...
    async def dead_letter(self, message_id: str, body: str, reason: str) -> None: ...


class Malformed(ValueError):
    """A message body that is not an S3 event."""


def parse(body: str) -> list[tuple[Change, str | None]]:
    """The changes (with their sequencers) an S3 event message announces.

    Test events and event types that are not object creations or removals
    announce nothing.
    """
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise Malformed(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise Malformed("not a JSON object")
    if doc.get("Event") == "s3:TestEvent":
        return []
    records = doc.get("Records")
    if not isinstance(records, list):
        raise Malformed("no Records list")
    changes = []
    for record in records:
        try:
            name = str(record["eventName"])
            obj = record["s3"]["object"]
            key = unquote_plus(obj["key"])  # S3 encodes keys in events: '+' for space, %XX
            when = datetime.fromisoformat(record["eventTime"].replace("Z", "+00:00")).timestamp()
            sequencer = obj.get("sequencer")
            if sequencer is not None:
                int(sequencer, 16)
        except (KeyError, TypeError, ValueError) as exc:
            raise Malformed(f"bad record: {type(exc).__name__}: {exc}") from None
        if name.startswith("ObjectCreated:"):
            change = Change(key, Kind.PUT, etag=str(obj.get("eTag", "")).strip('"'),
                            size=int(obj.get("size", 0)), last_modified=when,
                            version_id=obj.get("versionId"), origin=when)
        elif name.startswith("ObjectRemoved:"):
            change = Change(key, Kind.DELETE, last_modified=when, origin=when)
        else:
            continue
        changes.append((change, sequencer))
    return changes


class EventsFeed:
    """Turns queue messages into journal rows, and acknowledges them when done."""

    def __init__(self, queue: SqsQueue, sweep: PollFeed, journal: EventLedger,
                 regions: Collection[str], options: Replication, feed: Feed, metrics: Metrics, *,
                 receivers: int, on_changes: Callable[[], None]) -> None:
        self.queue = queue
        self.sweep = sweep
        self.journal = journal
        self.regions = regions
        self.options = options
        self.feed = feed
        self.metrics = metrics
        self.receivers = receivers
        self.on_changes = on_changes
        sweep.trusted = False

    async def run(self, stop: asyncio.Event) -> None:
        await self.queue.resolve()
        async with asyncio.TaskGroup() as group:
            for _ in range(self.receivers):
                group.create_task(self._receive(stop))
            group.create_task(self._settle(stop))
            group.create_task(self._sweep(stop))

    async def _receive(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                receiving = asyncio.ensure_future(self.queue.receive(
                    wait=self.feed.wait_time, visibility=self.feed.visibility_timeout))
                stopping = asyncio.ensure_future(stop.wait())
                await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if not receiving.done():  # stopping: an unread message simply reappears later
                    receiving.cancel()
                    return
                for message in receiving.result():
                    await self._handle(message)
            except ReplicatorError as exc:
                log.error("receiving from queue %s failed: %s", self.queue.name, exc)
                await sleep_or_stop(stop, 5)

    async def _handle(self, message: Message) -> None:
        try:
            changes = [(c, s) for c, s in parse(message.body) if self.options.wants(c.key)]
        except Malformed as exc:
            log.error("event message %s moved aside: %s", message.id, exc)
            self.metrics.malformed_events.inc()
            await self.journal.dead_letter(message.id, message.body, str(exc))
            await self.queue.delete([(message.id, message.receipt)])
            return
        if not self.options.replicate_deletes:
            changes = [(c, s) for c, s in changes if c.kind is Kind.PUT]
        if not changes:  # a test event, or nothing we replicate: acknowledge
            await self.queue.delete([(message.id, message.receipt)])
            return
        if await self.journal.apply_events(changes, list(self.regions), (message.id, message.receipt)):
            self.on_changes()

    async def _settle(self, stop: asyncio.Event) -> None:
        """Delete messages whose work is done; keep hidden those whose work is under way."""
        while not stop.is_set():
            try:
                done = await self.journal.settled_messages()
                if done:
                    with contextlib.suppress(ReplicatorError):  # an expired receipt: redelivered
                        await self.queue.delete(done)
                    await self.journal.forget_messages([i for i, _ in done])
                timeout = self.feed.visibility_timeout
                due = await self.journal.messages_to_extend(time.time() - timeout / 2)
                for _, receipt in due:
                    with contextlib.suppress(ReplicatorError):
                        await self.queue.extend(receipt, timeout)
                if due:
                    await self.journal.extended([i for i, _ in due])
            except ReplicatorError as exc:
                log.warning("acknowledging event messages failed: %s", exc)
            await sleep_or_stop(stop, SETTLE_EVERY)

    async def _sweep(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(ReplicatorError):  # reported once, through health
                await self.sweep.poll_once()
            await sleep_or_stop(stop, self.feed.sweep_interval)
