"""The events feed: S3 notifications through SQS, on the source's moto server, in-process.

`replicator setup-events` and replicas as processes sharing a queue are in
tests/system/test_events.py; the event parser is unit-tested in tests/unit/test_events.py."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from prometheus_client import CollectorRegistry

from replicator.service import Service
from replicator.setup_events import setup_events

from ..conftest import REGIONS, World, eventually


def sqs(world: World) -> Any:
    return boto3.client("sqs", endpoint_url=world.endpoints["source"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=BotoConfig(retries={"total_max_attempts": 1}))


def events_overrides(**more: Any) -> dict[str, Any]:
    return {"feed__kind": "events", "feed__queue": f"q-{uuid.uuid4().hex[:8]}",
            "feed__wait_time": 1, "feed__visibility_timeout": 5, "feed__sweep_interval": 1,
            "feed__max_receives": 2, **more}


async def setup(world: World, **overrides: Any) -> list[str]:
    """What `replicator setup-events` does (that command is tested in tests/system), in-process."""
    return await setup_events(world.config(**overrides))


@pytest.mark.slow
async def test_writes_arrive_through_events_and_count_once_in_the_lag_histogram(world: World) -> None:
    overrides = events_overrides(feed__sweep_interval=3600)
    assert "created queue " + overrides["feed__queue"] in await setup(world, **overrides)
    registry = CollectorRegistry()
    stop = asyncio.Event()
    async with Service(world.config(**overrides), registry) as service:
        daemon = asyncio.create_task(service.run(stop))
        try:
            await asyncio.to_thread(lambda: [world.put(f"e/{i:03d} é+", os.urandom(64 + i))
                                             for i in range(500)])
            want = set(await asyncio.to_thread(world.etags, "source"))
            await eventually(lambda: all(set(world.etags(r)) == want for r in REGIONS),
                             timeout=120, what="every write in every region")

            def observed() -> float:
                return sum(registry.get_sample_value("replicator_replication_lag_seconds_count",
                                                     {"region": r}) or 0 for r in REGIONS)
            await eventually(lambda: observed() == 500 * len(REGIONS), what="one lag observation each")

            async def acknowledged() -> bool:
                client = sqs(world)
                url = client.get_queue_url(QueueName=overrides["feed__queue"])["QueueUrl"]
                attrs = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
                return attrs["ApproximateNumberOfMessages"] == attrs[
                    "ApproximateNumberOfMessagesNotVisible"] == "0"
            await eventually(acknowledged, what="every message deleted")
        finally:
            stop.set()
            await asyncio.wait_for(daemon, 30)
    assert world.converged()


async def test_a_replayed_older_event_never_wins_and_deletes_come_from_the_sweep(world: World) -> None:
    overrides = events_overrides()
    assert "created queue " + overrides["feed__queue"] in await setup(world, **overrides)
    client = sqs(world)
    url = client.get_queue_url(QueueName=overrides["feed__queue"])["QueueUrl"]
    stop = asyncio.Event()
    async with Service(world.config(**overrides)) as service:
        daemon = asyncio.create_task(service.run(stop))
        try:
            old = world.put("hot", b"old content")
            world.put("hot", b"new content")
            world.put("doomed", b"bye")
            await eventually(world.converged, what="the newest content everywhere")
            for sequencer in ("0A", None):  # with a stale sequencer, and with none at all
                record = {"eventName": "ObjectCreated:Put", "eventTime": "2026-01-01T00:00:00Z",
                          "s3": {"object": {"key": "hot", "size": 11, "eTag": old}}}
                if sequencer:
                    record["s3"]["object"]["sequencer"] = sequencer
                client.send_message(QueueUrl=url, MessageBody=json.dumps({"Records": [record]}))
            client.send_message(QueueUrl=url, MessageBody="{not json")
            world.source.delete_object(Bucket=world.buckets["source"], Key="doomed")
            await eventually(lambda: "doomed" not in world.objects("r3"), what="the sweep's delete")

            async def quiet() -> bool:
                journal = service.journal
                return await journal.work.count() == 0 and not await journal.ledger.settled_messages()
            await eventually(quiet, what="the replayed events handled")
            assert all(world.objects(r)["hot"] == world.objects("source")["hot"] for r in REGIONS)
            assert world.converged()
        finally:
            stop.set()
            await asyncio.wait_for(daemon, 30)


async def test_a_message_whose_copy_keeps_failing_reaches_the_dead_letter_queue(world: World) -> None:
    overrides = events_overrides(retry__item_attempts=1, retry__failed_interval=600,
                                 feed__sweep_interval=3600, feed__visibility_timeout=1)
    assert "created queue " + overrides["feed__queue"] in await setup(world, **overrides)
    world.clients["r2"].delete_bucket(Bucket=world.buckets["r2"])
    client = sqs(world)
    dlq = client.get_queue_url(QueueName=overrides["feed__queue"] + "-dlq")["QueueUrl"]
    stop = asyncio.Event()
    async with Service(world.config(**overrides)) as service:
        daemon = asyncio.create_task(service.run(stop))
        try:
            world.put("cursed", b"never lands in r2")
            await eventually(lambda: "cursed" in world.objects("r1"), what="the healthy regions")

            def in_dlq() -> bool:
                attrs = client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["All"])
                return attrs["Attributes"]["ApproximateNumberOfMessages"] == "1"

            async def dead() -> bool:
                # Receiving is what moves an over-received message aside in SQS (and moto).
                return await asyncio.to_thread(in_dlq)
            await eventually(dead, timeout=60, what="the message in the dead-letter queue")
            reasons = {(f.change.key, f.region, f.reason) for f in await service.journal.report.failures()}
            assert ("cursed", "r2", "no_such_bucket") in reasons
        finally:
            stop.set()
            await asyncio.wait_for(daemon, 30)
