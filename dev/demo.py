"""`make run`: a local source and three regions on moto, with the daemon in front.

A newcomer runs one command and watches sample objects appear in three
regions; everything started here is stopped again however the run ends.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from testing.motostack import MotoServer

# Endpoint name -> fixed port; config/local.yaml points the daemon at these.
PORTS = {"source": 9000, "eu-west-1": 9001, "us-east-1": 9002, "ap-southeast-2": 9003}
SOURCE_REGION = "us-east-1"
BUCKETS = {
    "source": "demo-source",
    "eu-west-1": "demo-eu-west-1",
    "us-east-1": "demo-us-east-1",
    "ap-southeast-2": "demo-ap-southeast-2",
}
REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-2")
LOG_DIR = Path(__file__).resolve().parent.parent / ".demo"
PROGRESS_EVERY = 5.0
RELAYED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # SIGHUP: terminal closed
MiB = 1 << 20
# Short timeouts and few retries: a progress line must not hang shutdown.
_CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=10, retries={"total_max_attempts": 2})


def say(message: str) -> None:
    # Flushed at once: the daemon writes to the same terminal.
    print(f"[demo] {message}", flush=True)


def _client(server: MotoServer, region: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=_CLIENT_CONFIG,
    )


def _forget_previous_run(keep: set[Path]) -> None:
    """moto forgot the last run's objects, so state the daemon kept under .demo/
    (its journal) must go too, or it would believe the fresh regions are in sync.
    Called once our servers hold the ports, so no other demo is using the folder."""
    for entry in LOG_DIR.iterdir():
        if entry in keep:
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _create_bucket(s3: Any, bucket: str, region: str) -> None:
    if region == "us-east-1":  # S3 rejects an explicit us-east-1 location constraint
        s3.create_bucket(Bucket=bucket)
    else:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})


def _samples() -> list[tuple[str, bytes, dict[str, Any]]]:
    """Objects that exercise what replication must preserve, not just bytes."""
    css = b"body { font-family: sans-serif; }\n" * 40
    return [
        ("README.txt", b"Objects put here are copied to three regions.\n",
         {"ContentType": "text/plain; charset=utf-8", "Metadata": {"owner": "demo"},
          "Tagging": "team=storage&tier=gold"}),
        ("docs/guide.md", b"# Guide\n\nEvery change is copied; every copy is proven.\n",
         {"ContentType": "text/markdown", "Metadata": {"reviewed": "yes"}}),
        ("docs/hello world.txt", b"a key with a space\n", {"ContentType": "text/plain"}),
        ("docs/café menü.txt", "café au lait, crème brûlée\n".encode(),
         {"ContentType": "text/plain; charset=utf-8", "Tagging": "lang=fr"}),
        ("data/config.json", json.dumps({"regions": list(REGIONS)}).encode(),
         {"ContentType": "application/json", "Metadata": {"schema": "v1"}}),
        ("data/report.csv", b"region,objects\neu-west-1,12\nus-east-1,12\n",
         {"ContentType": "text/csv", "Tagging": "confidential=no"}),
        ("data/empty.marker", b"", {}),
        ("site/index.html", b"<!doctype html><title>demo</title><h1>Hello</h1>\n",
         {"ContentType": "text/html", "CacheControl": "max-age=60"}),
        ("site/style.css", gzip.compress(css, mtime=0),
         {"ContentType": "text/css", "ContentEncoding": "gzip"}),
        ("photos/2026/beach.jpg", b"\xff\xd8\xff\xe0" + random.Random(1).randbytes(64 * 1024),
         {"ContentType": "image/jpeg", "Metadata": {"camera": "demo-cam", "place": "beach"},
          "Tagging": "album=holiday"}),
        ("logs/2026-01-01.log", b"".join(b"%04d ok\n" % i for i in range(500)),
         {"ContentType": "text/plain"}),
    ]


def _seed(s3: Any) -> int:
    """Put the sample objects, plus one 12 MiB object uploaded in two parts."""
    samples = _samples()
    for key, body, extra in samples:
        s3.put_object(Bucket=BUCKETS["source"], Key=key, Body=body, **extra)
    s3.upload_fileobj(
        io.BytesIO(random.Random(2026).randbytes(12 * MiB)),
        BUCKETS["source"],
        "big/dataset.bin",
        ExtraArgs={"ContentType": "application/octet-stream", "Metadata": {"size": "12MiB"}},
        Config=TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB),
    )
    return len(samples) + 1


def _sizes(s3: Any, bucket: str) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        sizes.update((obj["Key"], obj["Size"]) for obj in page.get("Contents", []))
    return sizes


def _watch(clients: dict[str, Any], stop: threading.Event) -> None:
    """Print how far each region has caught up, until all hold every source object."""
    while not stop.wait(PROGRESS_EVERY):
        try:
            want = _sizes(clients["source"], BUCKETS["source"])
            have = {}
            for region in REGIONS:
                got = _sizes(clients[region], BUCKETS[region])
                have[region] = sum(1 for key, size in want.items() if got.get(key) == size)
        except (BotoCoreError, ClientError) as exc:
            say(f"progress check failed: {exc}")
            continue
        say(f"progress at {time.strftime('%H:%M:%S')}:")
        for region in REGIONS:
            say(f"  {region:<15} {have[region]:>3}/{len(want)} source objects")
        if all(n == len(want) for n in have.values()):
            say("all three regions hold every source object")
            return


def _setup_events(config: str) -> None:
    """Events mode: the queue and bucket notifications must exist before the first write."""
    subprocess.run([sys.executable, "-m", "replicator", "setup-events", "-c", config], check=True)


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    # SystemExit unwinds through `finally`, so the moto servers get stopped.
    raise SystemExit(128 + signum)


def _run_daemon(config: str) -> int:
    """Run the daemon in the foreground, relaying Ctrl-C and SIGTERM to it."""
    daemon = subprocess.Popen(
        [sys.executable, "-m", "replicator", "run", "-c", config],
        # Own process group: a terminal Ctrl-C reaches only us, so the daemon gets
        # exactly one signal (ours) and not a second one that might mean "force".
        process_group=0,
    )

    def relay(signum: int, _frame: FrameType | None) -> None:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)

    previous = {sig: signal.signal(sig, relay) for sig in RELAYED}
    try:
        code = daemon.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if daemon.poll() is None:  # we are failing, not the daemon: do not orphan it
            daemon.terminate()
            try:
                daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
    say(f"daemon exited with code {code}")
    return 128 - code if code < 0 else code


def _prepare(config: str, servers: dict[str, MotoServer], clients: dict[str, Any]) -> None:
    """Start the servers, create the buckets and put the samples. Fills in ``servers``
    and ``clients`` as it goes, so the caller stops all that started if a step fails."""
    logs = {name: LOG_DIR / f"moto-{name}-{port}.log" for name, port in PORTS.items()}
    for name, port in PORTS.items():
        servers[name] = MotoServer.start(port, log=logs[name])
    _forget_previous_run(keep=set(logs.values()))
    for name in PORTS:
        region = SOURCE_REGION if name == "source" else name
        clients[name] = _client(servers[name], region)
        _create_bucket(clients[name], BUCKETS[name], region)
    if "events" in Path(config).name:
        _setup_events(config)
    count = _seed(clients["source"])
    say("started moto S3 servers (logs in .demo/):")
    for name, server in servers.items():
        say(f"  {name:<15} {server.endpoint}  bucket {BUCKETS[name]}")
    say(f"put {count} sample objects into {BUCKETS['source']}")
    say(f"starting the daemon with {config}")
    say("press Ctrl-C to stop everything")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dev.demo", description=__doc__)
    parser.add_argument("-c", "--config", default="config/local.yaml")
    args = parser.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)

    servers: dict[str, MotoServer] = {}
    clients: dict[str, Any] = {}
    stop_watch = threading.Event()
    watcher = threading.Thread(target=_watch, args=(clients, stop_watch), daemon=True)
    try:
        _prepare(args.config, servers, clients)
        watcher.start()
        return _run_daemon(args.config)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except (RuntimeError, BotoCoreError, ClientError, subprocess.CalledProcessError) as exc:
        say(f"setup failed: {exc}")
        return 1
    finally:
        for sig in RELAYED:  # an impatient second Ctrl-C must not abandon the cleanup
            signal.signal(sig, signal.SIG_IGN)
        stop_watch.set()
        if watcher.is_alive():
            watcher.join(timeout=30)
        for client in clients.values():
            client.close()
        for server in servers.values():
            server.stop()
        say(f"stopped {len(servers)} moto server(s)")


if __name__ == "__main__":
    sys.exit(main())
