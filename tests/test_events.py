"""The events feed: S3 notifications through SQS, on the source's moto server."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.config import Config as BotoConfig
from prometheus_client import CollectorRegistry

from replicator.events import Malformed, parse
from replicator.service import Service
from testing.motostack import free_port

from .conftest import REGIONS, World, eventually, wait_for


def sqs(world: World) -> Any:
    return boto3.client("sqs", endpoint_url=world.endpoints["source"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=BotoConfig(retries={"total_max_attempts": 1}))


def events_overrides(**more: Any) -> dict[str, Any]:
    return {"feed__kind": "events", "feed__queue": f"q-{uuid.uuid4().hex[:8]}",
            "feed__wait_time": 1, "feed__visibility_timeout": 5, "feed__sweep_interval": 1,
            "feed__max_receives": 2, **more}


def setup(world: World, **overrides: Any) -> tuple[Path, subprocess.CompletedProcess[str]]:
    config = world.config_file(**overrides)
    proc = subprocess.run([sys.executable, "-m", "replicator", "setup-events", "-c", str(config)],
                          capture_output=True, text=True, timeout=60, cwd=world.tmp)
    return config, proc


def test_parse_decodes_keys_and_skips_what_is_not_a_change() -> None:
    body = json.dumps({"Records": [
        {"eventName": "ObjectCreated:Put", "eventTime": "2026-11-29T10:00:00.000Z",
         "s3": {"object": {"key": "a+b%2Bc%C3%A9", "size": 5, "eTag": "abc", "sequencer": "0A"}}},
        {"eventName": "ObjectRemoved:Delete", "eventTime": "2026-11-29T10:00:01.000Z",
         "s3": {"object": {"key": "gone", "sequencer": "0B"}}},
        {"eventName": "ObjectRestore:Completed", "eventTime": "2026-11-29T10:00:01.000Z",
         "s3": {"object": {"key": "cold"}}}]})
    (put, seq1), (delete, seq2) = parse(body)
    assert (put.key, put.kind.value, put.etag, put.size, seq1) == ("a b+cé", "put", "abc", 5, "0A")
    assert (delete.key, delete.kind.value, seq2) == ("gone", "delete", "0B")
    assert parse(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})) == []
    for bad in ("not json", "[1]", json.dumps({"Records": [{"eventName": "ObjectCreated:Put"}]})):
        with pytest.raises(Malformed):
            parse(bad)


def test_setup_events_is_idempotent_and_says_what_it_changed(world: World) -> None:
    overrides = events_overrides()
    _, first = setup(world, **overrides)
    assert first.returncode == 0, first.stderr
    assert "created queue" in first.stdout and "now notifies queue" in first.stdout
    _, second = setup(world, **overrides)
    assert second.returncode == 0 and "nothing changed" in second.stdout
    client = sqs(world)
    url = client.get_queue_url(QueueName=overrides["feed__queue"])["QueueUrl"]
    redrive = json.loads(client.get_queue_attributes(
        QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(overrides["feed__queue"] + "-dlq")
    assert int(redrive["maxReceiveCount"]) == 2


@pytest.mark.slow
async def test_writes_arrive_through_events_and_count_once_in_the_lag_histogram(world: World) -> None:
    overrides = events_overrides(feed__sweep_interval=3600)
    _, proc = setup(world, **overrides)
    assert proc.returncode == 0, proc.stderr
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
    _, proc = setup(world, **overrides)
    assert proc.returncode == 0, proc.stderr
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
    _, proc = setup(world, **overrides)
    assert proc.returncode == 0, proc.stderr
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


def _run(world: World, config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "replicator", "run", "-c", str(config),
                                 "--log-format", "json"], stdout=out, stderr=subprocess.STDOUT,
                                cwd=world.tmp)


def _copies(log: Path) -> list[tuple[str, str]]:
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [(r["key"], r["region"]) for r in records if r.get("outcome") == "copied"]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("kill_one", [False, True], ids=["share", "kill-9"])
def test_two_replicas_share_one_queue(world: World, kill_one: bool) -> None:
    overrides = events_overrides(feed__sweep_interval=3600, feed__visibility_timeout=3)
    config, proc = setup(world, **overrides)
    assert proc.returncode == 0, proc.stderr
    raw = world.raw_config(**overrides)
    configs, logs, daemons = [], [], []
    for n in (1, 2):
        raw["journal"]["path"] = str(world.tmp / f"journal-{n}.db")
        raw["http"]["listen"] = f"127.0.0.1:{free_port()}"
        path = world.tmp / f"replica-{n}.yaml"
        path.write_text(yaml.safe_dump(raw, allow_unicode=True))
        configs.append(path)
        logs.append(world.tmp / f"replica-{n}.log")
        daemons.append(_run(world, path, logs[-1]))
    try:
        for i in range(1000):
            world.put(f"w/{i:04d}", b"%d" % i)
            if kill_one and i == 300:
                daemons[0].send_signal(signal.SIGKILL)
                daemons[0].wait()
        want = set(world.etags("source"))
        wait_for(lambda: all(set(world.etags(r)) == want for r in REGIONS), timeout=480,
                 what="every write in every region")
    finally:
        for daemon in daemons:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                assert daemon.wait(timeout=30) == 0
    assert world.converged()
    shares = [_copies(log) for log in logs]
    assert all(shares), "each replica copied some of the objects"
    copies = collections.Counter(c for share in shares for c in share)
    assert max(copies.values()) <= 2, copies.most_common(3)
