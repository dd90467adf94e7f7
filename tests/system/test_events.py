"""The events feed as an operator runs it: `replicator setup-events`, and replicas as
processes sharing one queue (one killed with SIGKILL)."""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from testing.motostack import free_port

from ..conftest import REGIONS, World, wait_for
from ..integration.test_events import events_overrides, sqs


def setup(world: World, **overrides: Any) -> tuple[Path, subprocess.CompletedProcess[str]]:
    config = world.config_file(**overrides)
    proc = subprocess.run([sys.executable, "-m", "replicator", "setup-events", "-c", str(config)],
                          capture_output=True, text=True, timeout=60, cwd=world.tmp)
    return config, proc


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
    # max_receives at the service's default (5), not the 2 of the other event tests: with 2, a
    # message the killed replica took once and saw again after a slow moment (a loaded machine)
    # goes to the dead-letter queue on replica 2's first receive, and only the hourly sweep
    # would bring its key back. Dead-lettering only for a failure of the message's own is
    # an open item of the gray-failures issue.
    overrides = events_overrides(feed__sweep_interval=3600, feed__visibility_timeout=3,
                                 feed__max_receives=5)
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
                # Killed mid-work, not before its first copy (on a loaded machine it may
                # still be starting): the point is the work it held when it died.
                wait_for(lambda: _copies(logs[0]), timeout=120, what="replica 1's first copy")
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
