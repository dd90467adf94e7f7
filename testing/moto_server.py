"""`python -m testing.moto_server`: moto's server, with one race of moto 5.2.5 closed.

``FakeKey.etag`` hashes the object's buffer lazily and without the key's lock.
A listing served while the PUT that created the key is still being answered
computes it at the same moment from the same buffer; the two threads' seeks and
reads interleave, and a wrong etag is cached for good. The replicator then
rightly refuses every copy of that object ("corrupted on read"), and a test
waiting for it never ends. Taking the lock, as ``FakeKey.value`` already does,
makes the etag always the md5 of the bytes.
"""

from __future__ import annotations

from collections.abc import Callable

from moto.s3.models import FakeKey
from moto.server import main

# The property object, from the class namespace: mypy types `FakeKey.etag` as the getter.
_unlocked_etag: Callable[[FakeKey], str] = vars(FakeKey)["etag"].fget


def _locked_etag(self: FakeKey) -> str:
    with self.lock:
        return _unlocked_etag(self)


FakeKey.etag = property(_locked_etag)  # type: ignore[method-assign,assignment]

if __name__ == "__main__":
    main()
