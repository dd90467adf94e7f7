"""Fixtures of the unit layer: in-memory stores, a copier on them, nothing else.

No servers and no subprocesses here: every test takes milliseconds. The session
fixtures of ``tests/conftest.py`` (the S3 servers) are never requested, so none start.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from replicator.config import Replication
from replicator.copier import Copier
from replicator.journal import Journal
from testing.fakes import MemoryStore

REGIONS = ("r1", "r2", "r3")
#: Small sizes, so multipart paths run on a few hundred bytes (the fake has no 5 MiB minimum).
THRESHOLD = 256
PART = 100


class UploadLog:
    """The copier's ``UploadLog``, in memory: the multipart uploads it says are open."""

    def __init__(self) -> None:
        self.open: set[tuple[str, str, str]] = set()
        self.recorded = 0

    async def record_upload(self, region: str, key: str, upload_id: str) -> None:
        self.open.add((region, key, upload_id))
        self.recorded += 1

    async def forget_upload(self, region: str, upload_id: str) -> None:
        self.open = {u for u in self.open if (u[0], u[2]) != (region, upload_id)}


def options(**overrides: object) -> Replication:
    settings: dict[str, object] = {"multipart_threshold": THRESHOLD, "part_size": PART,
                                   "parts_in_flight": 2, "max_bytes_in_flight": 4096,
                                   "checksum_algorithm": "sha256", **overrides}
    return Replication.model_validate(settings)


@pytest.fixture
def source() -> MemoryStore:
    return MemoryStore("source")


@pytest.fixture
def regions() -> dict[str, MemoryStore]:
    return {name: MemoryStore(name) for name in REGIONS}


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    opened = await Journal(tmp_path / "journal.db").open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def uploads() -> UploadLog:
    return UploadLog()


@pytest.fixture
def copier(source: MemoryStore, regions: dict[str, MemoryStore], uploads: UploadLog) -> Copier:
    return Copier(source, dict(regions), options(), dict.fromkeys(regions), uploads)
