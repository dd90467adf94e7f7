"""`python -m testing.moto_server`: moto's server, with two races of moto 5.2.5 closed.

``FakeKey.etag`` hashes the object's buffer lazily and without the key's lock.
A listing served while the PUT that created the key is still being answered
computes it at the same moment from the same buffer; the two threads' seeks and
reads interleave, and a wrong etag is cached for good. The replicator then
rightly refuses every copy of that object ("corrupted on read"), and a test
waiting for it never ends. Taking the lock, as ``FakeKey.value`` already does,
makes the etag always the md5 of the bytes.

``SQSBackend.receive_message`` walks a queue's messages without a lock. Two
consumers receiving at once (two replicas of the events feed) both take a
message due for the dead-letter queue, and the second one's ``list.remove``
fails: that receive answers 500 and the messages it had marked received are
lost. Receives here take turns; the long-poll wait happens outside the turn,
so one consumer's empty poll never holds back another's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from moto.s3.models import FakeKey
from moto.server import main
from moto.sqs.models import Message, SQSBackend

# The property object, from the class namespace: mypy types `FakeKey.etag` as the getter.
_unlocked_etag: Callable[[FakeKey], str] = vars(FakeKey)["etag"].fget


def _locked_etag(self: FakeKey) -> str:
    with self.lock:
        return _unlocked_etag(self)


FakeKey.etag = property(_locked_etag)  # type: ignore[method-assign,assignment]

_unlocked_receive = SQSBackend.receive_message
_receiving = threading.Lock()


def _receive_in_turn(self: SQSBackend, queue_name: str, count: int, wait_seconds_timeout: int,
                     visibility_timeout: int,
                     message_attribute_names: list[str] | None = None) -> list[Message]:
    deadline = time.monotonic() + wait_seconds_timeout
    while True:
        with _receiving:
            got = _unlocked_receive(self, queue_name, count, 0, visibility_timeout,
                                    message_attribute_names)
        left = deadline - time.monotonic()
        if got or left <= 0:
            return got
        self.get_queue(queue_name).wait_for_messages(min(1, left))  # type: ignore[arg-type]


SQSBackend.receive_message = _receive_in_turn  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
