"""Command line: ``replicator run | sync | status | verify … -c FILE`` (``-c`` defaults to
``$REPLICATOR_CONFIG``), ``replicator completion bash|zsh``, ``replicator --version``.

Exit codes: 0 success, 1 work not (yet) verified, 2 bad configuration or bad input
that a restart cannot fix (an unusable journal path, a port in use, a bad
``--log-level``): one line on stderr naming the problem, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import shtab

from . import logs
from .config import Config
from .errors import ConfigError, ReplicatorError
from .journal import Journal
from .service import Service
from .setup_events import setup_events
from .version import VERSION

EXIT_OK, EXIT_INCOMPLETE, EXIT_CONFIG = 0, 1, 2
#: Commands that read or write only the journal, never S3.
JOURNAL_ONLY = frozenset({"status", "retry", "approve-deletes"})
#: Where ``-c`` comes from when it is not given.
CONFIG_VARIABLE = "REPLICATOR_CONFIG"
SHELLS = ("bash", "zsh")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="replicator", description=(
        "Keep three regional copies of an S3 bucket: copy every change, prove every copy."))
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True)
    default_config = os.environ.get(CONFIG_VARIABLE) or None
    for name, text in (("run", "run the daemon until SIGTERM/SIGINT"),
                       ("sync", "one pass: replicate what differs, exit 0 when all is verified"),
                       ("status", "backlog and failures per region, from the journal"),
                       ("verify", "audit: compare every region with the source, exit 0 if consistent"),
                       ("retry", "re-queue failed items now"),
                       ("approve-deletes", "release the deletes held back by the delete guard"),
                       ("setup-events", "create or check the SQS queues and bucket notifications "
                                        "of the events feed")):
        cmd = sub.add_parser(name, help=text, description=text)
        config = cmd.add_argument("-c", "--config", default=default_config,
                                  help=f"YAML configuration file (default: ${CONFIG_VARIABLE})")
        config.complete = shtab.FILE  # type: ignore[attr-defined]  # how shtab is told: a path
        cmd.set_defaults(command_parser=cmd)  # so a missing -c is reported with this usage
        cmd.add_argument("--log-format", choices=("plain", "json"), default="plain")
        cmd.add_argument("--log-level", default="INFO")
        if name == "verify":
            cmd.add_argument("--repair", action="store_true",
                             help="queue every difference for replication and wait for it")
            cmd.add_argument("--prefix", default="", help="audit only keys under this prefix")
        if name == "retry":
            cmd.add_argument("--region", help="only this region's failed items")
            cmd.add_argument("--key", help="only this key")
    text = "print the shell completion script (bash: source it; zsh: save it as _replicator on $fpath)"
    sub.add_parser("completion", help=text, description=text).add_argument("shell", choices=SHELLS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "completion":
        print(shtab.complete(parser, shell=args.shell), end="")
        return EXIT_OK
    if args.config is None:  # exits 2, as argparse does for any missing argument
        args.command_parser.error(
            f"the following arguments are required: -c/--config (or set {CONFIG_VARIABLE})")
    try:
        logs.setup(args.log_format, args.log_level)
    except ValueError as exc:
        print(f"replicator: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        config = Config.load(args.config, need_secrets=args.command not in JOURNAL_ONLY)
    except ConfigError as exc:
        print(f"replicator: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return asyncio.run(_command(args, config))
    except ConfigError as exc:  # a configured journal or address that cannot be used
        print(f"replicator: cannot start: {exc}", file=sys.stderr)
        return EXIT_CONFIG


async def _command(args: argparse.Namespace, config: Config) -> int:
    if args.command == "verify":
        return await _verify(config, args.prefix, args.repair)
    if args.command == "setup-events":
        return await _setup_events(config)
    if args.command == "retry":
        return await _retry(config, args.region, args.key)
    if args.command == "run":
        return await _run(config, args.config)
    command = {"sync": _sync, "status": _status, "approve-deletes": _approve_deletes}[args.command]
    return await command(config)


async def _open_journal(path: Path) -> Journal:
    """The journal, or a ConfigError naming ``journal.path`` and why it cannot be used."""
    journal = Journal(path)
    try:
        return await journal.open()
    except (OSError, sqlite3.Error) as exc:
        await journal.close()
        if isinstance(exc, FileExistsError):  # mkdir of a parent that is a file
            why = f"{exc.filename} is a file, not a directory"
        elif isinstance(exc, OSError):
            why = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        else:
            why = str(exc)
        raise ConfigError(f"journal.path {path}: cannot open the journal: {why}") from exc
    except ReplicatorError as exc:  # a journal of another schema version: the message says what to do
        await journal.close()
        raise ConfigError(str(exc)) from exc


async def _check_journal(config: Config) -> None:
    """Open and close the journal once, so a path it cannot use fails before any work starts."""
    await (await _open_journal(config.journal.path)).close()


async def _run(config: Config, path: str) -> int:
    await _check_journal(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Service(config) as service:
        loop.add_signal_handler(signal.SIGHUP, service.request_reload, path)
        await service.run(stop)
    return EXIT_OK


async def _sync(config: Config) -> int:
    await _check_journal(config)
    async with Service(config) as service:
        try:
            complete = await service.sync()
        except ReplicatorError as exc:
            print(f"replicator: sync stopped: {exc}", file=sys.stderr)
            return EXIT_INCOMPLETE
        tally = service.scheduler.tally
        backlog = await service.journal.report.backlog(list(service.regions))
    print(f"{'region':<20} {'copied':>8} {'skipped':>8} {'deleted':>8} {'failed':>8} {'MiB':>10}")
    for row in backlog:
        t = tally[row.region]
        print(f"{row.region:<20} {t['copied']:>8} {t['skipped']:>8} {t['deleted']:>8} "
              f"{row.failed + row.pending:>8} {t['bytes'] / 2**20:>10.1f}")
    print("all regions verified" if complete else "NOT complete: see `replicator status`")
    return EXIT_OK if complete else EXIT_INCOMPLETE


async def _status(config: Config) -> int:
    if not config.journal.path.exists():
        print(f"no journal at {config.journal.path}: nothing has run yet")
        return EXIT_OK
    journal = await _open_journal(config.journal.path)
    try:
        regions = [r.name for r in config.regions]
        now = time.time()
        health = await journal.report.health()
        print(f"{'region':<20} {'pending':>8} {'failed':>8} {'MiB':>10} {'oldest':>10}  state")
        for row in await journal.report.backlog(regions):
            oldest = f"{now - row.oldest_origin:.0f}s" if row.oldest_origin else "-"
            print(f"{row.region:<20} {row.pending:>8} {row.failed:>8} "
                  f"{(row.bytes or 0) / 2**20:>10.1f} {oldest:>10}  {_up_or_down(health, row.region)}")
        print(f"source: {_up_or_down(health, 'source')}")
        held = await journal.listing.held_deletes()
        if held:
            print(f"\n{held} deletes held back by the delete guard: "
                  "`replicator approve-deletes -c CONFIG` releases them")
        failures = await journal.report.failures()
        if failures:
            print("\nitems with errors (region, key, state, attempts, reason: last error):")
        for item in failures:
            print(f"  {item.region}  {item.change.key!r}  {item.state}  {item.attempts}  "
                  f"{item.reason}: {item.error}")
        busy = any(r.pending or r.failed for r in await journal.report.backlog(regions))
    finally:
        await journal.close()
    return EXIT_INCOMPLETE if busy else EXIT_OK


def _up_or_down(health: dict[str, str], name: str) -> str:
    """In the words of ``replicator_region_up``/``replicator_source_up`` and /status: what the
    daemon's last probe saw (only problems are recorded)."""
    return f"DOWN: {health[name]}" if name in health else "up"


async def _verify(config: Config, prefix: str, repair: bool) -> int:
    def progress(compared: int) -> None:
        if sys.stderr.isatty():
            print(f"\rcompared {compared} keys", end="", file=sys.stderr, flush=True)

    await _check_journal(config)
    async with Service(config) as service:
        try:
            await service.check()
            await service.recover()
            results = await service.auditor.audit(prefix, repair=repair, progress=progress)
            if repair and not all(r.consistent for r in results.values()):
                await service.drain()
                results = await service.auditor.audit(prefix, progress=progress)
        except ReplicatorError as exc:
            print(f"\nreplicator: verify stopped: {exc}", file=sys.stderr)
            return EXIT_INCOMPLETE
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"{'region':<20} {'ok':>8} {'missing':>8} {'mismatched':>10} {'extra':>8}  result")
    for name, r in results.items():
        c = r.counts
        verdict = f"ERROR: {r.error}" if r.error else ("consistent" if r.consistent else "DIFFERENT")
        print(f"{name:<20} {c['ok']:>8} {c['missing']:>8} {c['mismatched']:>10} {c['extra']:>8}  {verdict}")
    for name, r in results.items():
        for state, keys in r.samples.items():
            for key in keys:
                print(f"  {name}  {state:<10}  {key!r}")
    return EXIT_OK if all(r.consistent for r in results.values()) else EXIT_INCOMPLETE


async def _retry(config: Config, region: str | None, key: str | None) -> int:
    if region is not None and region not in {r.name for r in config.regions}:
        print(f"replicator: no region named {region!r} in the config", file=sys.stderr)
        return EXIT_CONFIG
    journal = await _open_journal(config.journal.path)
    try:
        count = await journal.work.retry_failed(region, key)
    finally:
        await journal.close()
    print(f"re-queued {count} failed items; a running daemon picks them up at once")
    return EXIT_OK


async def _approve_deletes(config: Config) -> int:
    journal = await _open_journal(config.journal.path)
    try:
        count = await journal.listing.release_deletes([r.name for r in config.regions])
    finally:
        await journal.close()
    print(f"released {count} held deletes to every region")
    return EXIT_OK


async def _setup_events(config: Config) -> int:
    if config.feed.kind != "events" or config.feed.queue is None:
        print("replicator: setup-events needs feed.kind: events and feed.queue", file=sys.stderr)
        return EXIT_CONFIG
    try:
        changes = await setup_events(config)
    except ReplicatorError as exc:
        print(f"replicator: setup-events failed: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    for change in changes:
        print(change)
    if not changes:
        print("events feed already set up: nothing changed")
    return EXIT_OK
