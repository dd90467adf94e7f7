"""The command line in-process, on a journal in a temp file: what `replicator status` prints.

The commands run as processes (exit codes, stderr, real S3) are in tests/system."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from replicator import cli, logs
from replicator.journal import Journal

from .test_config import base_config


def config_with_journal(tmp_path: Path) -> tuple[Path, list[str]]:
    raw = base_config()
    raw["journal"] = {"path": str(tmp_path / "journal.db")}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, [r["name"] for r in raw["regions"]]


async def record_health(path: Path, problems: dict[str, str]) -> None:
    journal = await Journal(path).open()
    try:
        await journal.report.save_health(problems)
    finally:
        await journal.close()


def test_status_says_up_and_down_like_the_metrics_and_the_page(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    path, (healthy, down, _) = config_with_journal(tmp_path)
    asyncio.run(record_health(tmp_path / "journal.db", {
        down: f"no_such_bucket: {down}: bucket missing", "source": "network: connection refused"}))
    monkeypatch.setattr(logs, "setup", lambda *_: None)  # leave pytest's log capture in place

    assert cli.main(["status", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert lines["region"].split()[-1] == "state"
    assert lines[healthy].split()[-1] == "up"
    assert lines[down].endswith(f"DOWN: no_such_bucket: {down}: bucket missing")
    assert lines["source:"] == "source: DOWN: network: connection refused"
    assert "closed" not in out and "OPEN" not in out and "breaker" not in out


def test_status_names_a_healthy_source_up(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = config_with_journal(tmp_path)
    asyncio.run(record_health(tmp_path / "journal.db", {}))
    monkeypatch.setattr(logs, "setup", lambda *_: None)
    assert cli.main(["status", "-c", str(path)]) == 0
    assert "source: up" in capsys.readouterr().out.splitlines()
