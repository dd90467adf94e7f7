"""The journal file, opened once and seen through one slice per concern."""

from __future__ import annotations

from pathlib import Path

from .core import Connection
from .inventory import Inventory
from .ledger import Ledger
from .listing import Listing
from .report import Report
from .uploads import Uploads
from .work import Work


class Journal:
    """One SQLite journal: a connection and its thread, shared by the slices.

    Each stage is handed only the slice it needs (``journal.work`` for the
    scheduler, ``journal.listing`` for the feed, ...).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.connection = connection = Connection(path)
        self.listing = Listing(connection)
        self.inventory = Inventory(connection)
        self.work = Work(connection)
        self.ledger = Ledger(connection)
        self.uploads = Uploads(connection)
        self.report = Report(connection)

    async def open(self) -> Journal:
        """Open (or create) the file; a journal of another schema version is refused."""
        await self.connection.open()
        return self

    async def close(self) -> None:
        await self.connection.close()
