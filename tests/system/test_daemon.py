"""The daemon and the CLI as an operator runs them: real processes, real signals."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from testing.faultproxy import FaultProxy

from ..conftest import PART, REGIONS, World, wait_for


def start(world: World, command: str, config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "replicator", command, "-c", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=world.tmp)


@pytest.fixture
def slow_regions(world: World) -> Iterator[dict[str, FaultProxy]]:
    """Regions behind proxies that add latency, so a backfill is still running when we strike."""
    proxies = {r: FaultProxy(world.endpoints[r]).start() for r in REGIONS}
    for proxy in proxies.values():
        proxy.latency = 0.02
    world.endpoints.update({r: p.endpoint for r, p in proxies.items()})
    try:
        yield proxies
    finally:
        for proxy in proxies.values():
            proxy.stop()


@pytest.mark.slow
def test_kill_9_mid_backfill_loses_nothing_and_leaves_no_upload_open(
        world: World, slow_regions: dict[str, FaultProxy]) -> None:
    for i in range(30):
        world.put(f"small/{i}", os.urandom(10 + i))
    for i in range(8):
        world.put(f"large/{i}", os.urandom(12 * PART + i))
    config = world.config_file(replication__concurrency=4)
    log = world.tmp / "daemon.log"

    daemon = start(world, "run", config, log)
    try:
        wait_for(lambda: any(world.open_uploads().values()), timeout=60,
                 what="a multipart upload in flight")
    finally:
        daemon.kill()
        daemon.wait()
    assert not world.converged(), "the backfill finished before the kill: the test proves nothing"

    daemon = start(world, "run", config, log)
    try:
        wait_for(world.converged, timeout=120, what="every object in every region after restart")
        wait_for(lambda: world.open_uploads() == {r: [] for r in REGIONS}, timeout=30,
                 what="no multipart upload left open")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0, log.read_text()[-3000:]
    status = subprocess.run([sys.executable, "-m", "replicator", "status", "-c", str(config)],
                            capture_output=True, text=True, timeout=60, cwd=world.tmp)
    assert status.returncode == 0, status.stdout


@pytest.mark.slow
def test_sync_of_500_mixed_objects_exits_0_with_three_identical_regions(world: World) -> None:
    for i in range(500):
        size = 40 * PART + i if i % 50 == 0 else (i * 37) % 2000
        key = f"{['docs', 'img', 'logs/2026', 'ünï cødé'][i % 4]}/obj {i:03d}.bin"
        world.put(key, os.urandom(size), Metadata={"n": str(i)})
    config = world.config_file(replication__concurrency=16, replication__multipart_threshold=4096)
    proc = subprocess.run([sys.executable, "-m", "replicator", "sync", "-c", str(config)],
                          capture_output=True, text=True, timeout=300, cwd=world.tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "all regions verified" in proc.stdout
    for region in REGIONS:
        assert f"{region:<20} {500:>8}" in proc.stdout
    assert world.converged()


def test_sync_exits_1_and_status_names_the_reason_when_a_region_fails(world: World) -> None:
    world.put("k", b"data")
    world.clients["r3"].delete_bucket(Bucket=world.buckets["r3"])
    config = world.config_file(retry__item_attempts=1, retry__failed_interval=600)
    proc = subprocess.run([sys.executable, "-m", "replicator", "sync", "-c", str(config)],
                          capture_output=True, text=True, timeout=120, cwd=world.tmp)
    assert proc.returncode == 1
    assert "NOT complete" in proc.stdout
    assert world.objects("r1") == world.objects("r2") == world.objects("source")
    status = subprocess.run([sys.executable, "-m", "replicator", "status", "-c", str(config)],
                            capture_output=True, text=True, timeout=60, cwd=world.tmp)
    assert status.returncode == 1
    assert "r3  'k'  failed  0  no_such_bucket: r3: bucket" in status.stdout
    r3_line = next(line for line in status.stdout.splitlines() if line.startswith("r3 "))
    assert "DOWN: no_such_bucket" in r3_line
    assert next(line for line in status.stdout.splitlines() if line.startswith("r1 ")).endswith("  up")


# -- bad input at start-up: one line naming the problem, exit 2 (systemd does not restart) ---------


def run_briefly(world: World, config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "replicator", "run", "-c", str(config), *extra],
                          capture_output=True, text=True, timeout=60, cwd=world.tmp)


def assert_one_line_exit_2(proc: subprocess.CompletedProcess[str], *names: str) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    for name in names:
        assert name in lines[0], lines[0]


@pytest.mark.parametrize("where", ["under a file", "a directory", "not a database"])
def test_a_journal_that_cannot_be_opened_is_one_line_and_exit_2(world: World, where: str) -> None:
    # The suite runs as root, where file modes do not stop a write: make the path unusable instead.
    (world.tmp / "plain-file").write_text("not a directory")
    (world.tmp / "a-dir.db").mkdir()
    (world.tmp / "junk.db").write_bytes(os.urandom(4096))
    path = {"under a file": world.tmp / "plain-file" / "journal.db",
            "a directory": world.tmp / "a-dir.db",
            "not a database": world.tmp / "junk.db"}[where]
    proc = run_briefly(world, world.config_file(journal__path=str(path)))
    assert_one_line_exit_2(proc, "journal.path", str(path))


def test_a_port_in_use_is_one_line_and_exit_2(world: World) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        proc = run_briefly(world, world.config_file(http__listen=listen))
    assert_one_line_exit_2(proc, "http.listen", listen, "in use")


def test_a_bad_log_level_is_one_line_and_exit_2(world: World) -> None:
    proc = run_briefly(world, world.config_file(), "--log-level", "bogus")
    assert_one_line_exit_2(proc, "--log-level", "bogus")


def ipv6_loopback_port() -> int | None:
    """A free port on ::1, or None when this machine has no IPv6 loopback."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
            return int(sock.getsockname()[1])
    except OSError:
        return None


def test_an_ipv6_listen_address_serves_where_the_machine_has_ipv6(world: World) -> None:
    port = ipv6_loopback_port()
    listen = f"[::1]:{port or 9108}"
    config = world.config_file(http__listen=listen)
    if port is None:  # no IPv6 loopback here: the address cannot work, so say so and stop
        assert_one_line_exit_2(run_briefly(world, config), "http.listen", listen)
        return
    log = world.tmp / "daemon.log"
    daemon = start(world, "run", config, log)
    try:
        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://{listen}/healthz", timeout=2) as response:
                    return response.status == 200
            except OSError:
                assert daemon.poll() is None, log.read_text()[-3000:]
                return False
        wait_for(healthy, timeout=60, what=f"/healthz on {listen}")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()


# -- plain logs: one record is one line, whatever a key holds ----------------------------------

#: The start of every plain record: ``2026-01-02 03:04:05,678 INFO    replicator.x: ``.
RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ +[\w.]+: ")


def test_a_key_with_a_line_break_cannot_forge_a_plain_log_line(
        world: World, proxies: dict[str, FaultProxy]) -> None:
    # moto cannot store a key with "\n"; "\r", NEL and U+2028 end a line too (for terminals,
    # str.splitlines and many log viewers). A corrupted read puts the key, raw, into the
    # error text of the failure line.
    forged = "2026-01-01 00:00:00,000 INFO    replicator.scheduler: put key='x' outcome=copied"
    key = f"evil\r{forged}\x85{forged}\u2028{forged}\x1b[2K"
    world.put(key, os.urandom(100))
    proxies["source"].flip_response_body(count=1, methods={"GET"}, path_contains="/evil")
    config = world.config_file()
    proc = subprocess.run([sys.executable, "-m", "replicator", "sync", "-c", str(config)],
                          capture_output=True, timeout=120, cwd=world.tmp)
    stderr = proc.stderr.decode()
    assert proc.returncode == 0, stderr[-3000:]
    assert "corrupted on read" in stderr, "the fault did not fire: the test proves nothing"
    for line in stderr.splitlines():
        assert RECORD.match(line) and not line.startswith(forged[:10]), f"forged: {line!r}"
        assert "\x1b" not in line, f"a terminal escape: {line!r}"
    assert "evil\\r2026-01-01" in stderr


def test_json_logs_carry_the_copy_fields(world: World) -> None:
    world.put("logged", b"12345")
    proc = subprocess.run([sys.executable, "-m", "replicator", "sync", "-c", str(world.config_file()),
                           "--log-format", "json"], capture_output=True, text=True, timeout=120,
                          cwd=world.tmp)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stderr.splitlines()]
    copies = [r for r in records if r.get("key") == "logged"]
    assert sorted(r["region"] for r in copies) == sorted(REGIONS)
    assert all(r["outcome"] == "copied" and r["bytes"] == 5 and r["op"] == "put" and
               isinstance(r["duration"], float) for r in copies)
    stamped = datetime.fromisoformat(copies[0]["time"])  # RFC 3339, UTC, milliseconds
    assert stamped.tzinfo == UTC and copies[0]["time"].endswith("Z")
    assert re.search(r"\.\d{3}Z$", copies[0]["time"])
