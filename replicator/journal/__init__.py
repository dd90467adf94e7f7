"""The journal: durable pending work in SQLite (WAL).

It holds the last complete source listing and one row per (key, region) that
is not yet verified. A change is written here before any copy starts, and a
row leaves only when its copy is proven, so a kill -9 at any instant loses
nothing.

One connection and one thread (``core``), seen through one slice per concern;
each stage receives only its slice, typed by a narrow Protocol next to the stage::

    Journal            journal.py   opens the file, holds the slices
    ├── listing        listing.py   source listings, the delete guard's held deletes  (feed, auditor)
    ├── inventory      inventory.py which queued puts need no probe                  (inventory)
    ├── work           work.py      pending rows: queue, due, finish, postpone       (scheduler, auditor)
    ├── ledger         ledger.py    SQS messages, sequencers, dead letters           (events feed)
    ├── uploads        uploads.py   multipart uploads in progress                    (copier)
    └── report         report.py    backlog, failures, replica counts, health        (service, cli)
"""

from .core import SCHEMA_VERSION, Connection, Slice, on_journal_thread
from .inventory import Inventory
from .journal import Journal
from .ledger import Ledger
from .listing import DeleteGuard, Diff, Listing
from .report import RegionBacklog, Report
from .uploads import Uploads
from .work import Pending, Work

__all__ = [
    "SCHEMA_VERSION",
    "Connection",
    "DeleteGuard",
    "Diff",
    "Inventory",
    "Journal",
    "Ledger",
    "Listing",
    "Pending",
    "RegionBacklog",
    "Report",
    "Slice",
    "Uploads",
    "Work",
    "on_journal_thread",
]
