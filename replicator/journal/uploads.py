"""Multipart uploads in progress, so that a restart can abort what a crash left open."""

from __future__ import annotations

import time

from .core import Slice, on_journal_thread


class Uploads(Slice):
    """One row per multipart upload started and not yet completed or aborted."""

    @on_journal_thread
    def record_upload(self, region: str, key: str, upload_id: str) -> None:
        with self.tx():
            self.db.execute("INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, ?)",
                            (region, key, upload_id, time.time()))

    @on_journal_thread
    def forget_upload(self, region: str, upload_id: str) -> None:
        with self.tx():
            self.db.execute("DELETE FROM uploads WHERE region = ? AND upload_id = ?",
                            (region, upload_id))

    @on_journal_thread
    def open_uploads(self) -> list[tuple[str, str, str]]:
        """(region, key, upload id) of every upload recorded and not forgotten."""
        return self.db.execute("SELECT region, key, upload_id FROM uploads").fetchall()
