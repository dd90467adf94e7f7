"""Object bodies in memory: read into one buffer, sent to every region without copies.

The byte budget counts a body once, so it must exist once. Two library habits
would multiply it: aiohttp's ``read()`` collects chunks and joins them (two
copies at the peak), and aiohttp sizes a ``BytesIO`` upload with
``getbuffer()``, which copies a ``BytesIO`` built from ``bytes``: one copy per
region per PUT. A 64 MiB object sent to three regions was 320 MiB.
"""

from __future__ import annotations

import io
from typing import Any

from . import errors

#: How much of a response is taken from the socket buffer at a time.
READ_CHUNK = 1 << 20


async def read_exactly(stream: Any, length: int) -> bytearray:
    """Read a response body of ``length`` bytes into one preallocated buffer.

    ``stream`` is aiobotocore's ``StreamingBody``; its ``read(n)`` raises on a
    body that ends early. One that runs long is refused here.
    """
    buffer = bytearray(length)
    view = memoryview(buffer)
    got = 0
    while chunk := await stream.read(READ_CHUNK):
        if got + len(chunk) > length:
            raise errors.TransientError(f"response body longer than its Content-Length {length}")
        view[got:got + len(chunk)] = chunk
        got += len(chunk)
    if got != length:
        raise errors.TransientError(f"response body ended at {got} of {length} bytes")
    return buffer


class BodyReader(io.BytesIO):
    """A read-only, seekable stream over a body held elsewhere, never copying it whole.

    A ``BytesIO`` subclass because that is what aiohttp streams in chunks
    without a thread hop; every method that touches data reads the shared view.
    """

    def __init__(self, data: bytes | bytearray) -> None:
        super().__init__()
        self._view = memoryview(data).cast("B")
        self._pos = 0

    def close(self) -> None:
        """Let go of the body: the HTTP stack may keep this stream after the request."""
        self._view = memoryview(b"")
        super().close()

    def getbuffer(self) -> memoryview:
        return self._view[:]  # a new view: callers may release it

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(self._pos + size, len(self._view))
        chunk = bytes(self._view[self._pos:end])
        self._pos = max(self._pos, end)
        return chunk

    read1 = read

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        chunk = self.read(len(target))
        target[:len(chunk)] = chunk
        return len(chunk)

    def getvalue(self) -> bytes:
        return bytes(self._view)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos
