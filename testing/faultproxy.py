"""Fault-injecting HTTP reverse proxy: moto never throttles, drops connections or
corrupts bytes, so tests put this in front of one moto server to do so on demand.
Its own event loop runs in a daemon thread, so it serves sync tests, async tests
and services running as subprocesses alike."""

from __future__ import annotations

import asyncio
import collections
import io
import random
import socket
import threading
from collections.abc import Collection, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from xml.sax.saxutils import escape

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

Methods = Collection[str]
T = TypeVar("T")
_HOST = "127.0.0.1"
_TIMEOUT = 10.0
# Per-connection headers, plus the framing ones aiohttp recomputes for the new body.
# Expect is answered by the proxy itself; forwarding it would make moto send a 1xx too.
_NOT_FORWARDED = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade", "content-length", "expect",
})
# Headers aiohttp's client would invent; the upstream must see only what the client sent.
_NO_AUTO_HEADERS = ("Content-Type", "User-Agent", "Accept", "Accept-Encoding")


@dataclass(frozen=True)
class _Match:
    """Which requests a fault applies to."""

    methods: frozenset[str] | None = None  # None: any method
    min_size: int = 0
    path_contains: str | None = None  # a substring of the raw path+query

    def __call__(self, method: str, path_qs: str, size: int) -> bool:
        return ((self.methods is None or method in self.methods) and size >= self.min_size
                and (self.path_contains is None or self.path_contains in path_qs))


def _match(methods: Methods | None, min_size: int, path_contains: str | None) -> _Match:
    upper = None if methods is None else frozenset(m.upper() for m in methods)
    return _Match(upper, min_size, path_contains)


@dataclass
class _Countdown:
    """A fault for the next `count` matching requests, one request at a time."""

    count: int = 0
    match: _Match = _Match()

    def take(self, method: str, path_qs: str, size: int) -> bool:
        if self.count > 0 and self.match(method, path_qs, size):
            self.count -= 1
            return True
        return False


@dataclass
class _Failure:
    fraction: float
    status: int
    code: str
    retry_after: int | None
    match: _Match


def _flip_middle_bit(data: bytes) -> bytes:
    if not data:  # min_size=0 lets empty bodies match; there is no bit to flip
        return data
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0x01
    return bytes(flipped)


def _s3_error(failure: _Failure) -> web.Response:
    code = escape(failure.code)
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{code}'
            " injected by FaultProxy</Message><RequestId>faultproxy</RequestId></Error>")
    headers = {"Content-Type": "application/xml"}
    if failure.retry_after is not None:
        headers["Retry-After"] = str(failure.retry_after)
    return web.Response(status=failure.status, headers=headers, body=body.encode())


def _aborted(request: web.BaseRequest) -> web.Response:
    """Drop the client's connection without a response, like a crashed server."""
    if request.transport is not None:
        request.transport.abort()
    # aiohttp notices the dead transport and skips writing this response.
    return web.Response(status=499)


class FaultProxy:
    """Reverse proxy in front of `upstream`; every fault is off until a test sets it."""

    _failure: _Failure | None

    def __init__(self, upstream: str, port: int | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = port or 0
        self.requests: collections.Counter[str] = collections.Counter()
        self.log: list[tuple[str, str, int | None]] = []  # status None: connection dropped
        self._lock = threading.Lock()
        self._random = random.Random(0)
        self._clear_faults()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.SockSite | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{_HOST}:{self.port}"

    def start(self) -> FaultProxy:
        """Start serving; returns once the port accepts connections."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        try:
            self._call(self._open())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        try:
            self._call(self._close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(_TIMEOUT)
            if not self._thread.is_alive():
                self._loop.close()
            self._loop = self._thread = None

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None, "FaultProxy is not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_TIMEOUT)

    def refuse(self, on: bool = True) -> None:
        """on: stop listening and drop open connections; off: listen on the same port."""
        self._call(self._stop_listening() if on else self._listen())

    def fail(
        self, fraction: float, status: int = 503, code: str = "SlowDown",
        retry_after: int | None = 1, methods: Methods | None = None,
        path_contains: str | None = None,
    ) -> None:
        """Answer `fraction` of matching requests with an S3 error; 0 turns it off.

        `path_contains` (here and below) narrows a fault to requests whose raw
        path+query holds that text, e.g. one key rather than every listing too.
        """
        with self._lock:
            self._random.seed(0)  # the same call yields the same sequence every run
            self._failure = None if fraction <= 0 else _Failure(
                fraction, status, code, retry_after, _match(methods, 0, path_contains)
            )

    def flip_request_body(self, count: int = 1, methods: Methods = ("PUT",), min_size: int = 1,
                          path_contains: str | None = None) -> None:
        """Flip one bit mid-body in the next `count` requests; headers stay as sent."""
        with self._lock:
            self._flip_request = _Countdown(count, _match(methods, min_size, path_contains))

    def flip_response_body(self, count: int = 1, methods: Methods = ("GET",), min_size: int = 1,
                           path_contains: str | None = None) -> None:
        """Flip one bit mid-body in the next `count` 2xx upstream responses."""
        with self._lock:
            self._flip_response = _Countdown(count, _match(methods, min_size, path_contains))

    def reset_mid_body(self, count: int = 1, methods: Methods = ("PUT",), min_size: int = 1,
                       path_contains: str | None = None) -> None:
        """Read the next `count` requests, forward nothing and abort the connection."""
        with self._lock:
            self._reset_body = _Countdown(count, _match(methods, min_size, path_contains))

    def reset(self) -> None:
        """Turn every fault off and clear the counters (refusal included)."""
        with self._lock:
            self._clear_faults()
            self.requests.clear()
            self.log.clear()
        if self._loop is not None and self._site is None:
            self.refuse(False)

    def _clear_faults(self) -> None:
        self.latency = 0.0  # seconds slept before forwarding each request; set any time
        self._failure = None
        self._flip_request, self._flip_response, self._reset_body = (
            _Countdown(), _Countdown(), _Countdown()
        )

    async def _open(self) -> None:
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            # A fresh upstream connection per request: a pooled one that moto closed
            # would surface as a spurious fault.
            connector=aiohttp.TCPConnector(force_close=True, limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=_TIMEOUT),
        )
        app = web.Application(client_max_size=1 << 30)  # the app answers Expect: 100-continue
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # auto_decompress=False: a Content-Encoding: gzip object body must pass through as-is.
        self._runner = web.AppRunner(
            app, auto_decompress=False, access_log=None, shutdown_timeout=2
        )
        await self._runner.setup()
        await self._listen()

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = self._site = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _listen(self) -> None:
        if self._site is not None:
            return
        # create_server sets SO_REUSEADDR, so rebinding the port we just closed
        # does not trip over connections left in TIME_WAIT.
        assert self._runner is not None, "listening before _open"
        sock = socket.create_server((_HOST, self.port))
        self.port = sock.getsockname()[1]
        try:
            self._site = web.SockSite(self._runner, sock)
            await self._site.start()
        except BaseException:
            sock.close()
            self._site = None
            raise

    async def _stop_listening(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None
        # Keep-alive connections would otherwise still reach a "down" server.
        assert self._runner is not None and self._runner.server is not None, "not opened"
        for handler in self._runner.server.connections:
            if handler.transport is not None:
                handler.transport.abort()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        method, path_qs, size = request.method, request.raw_path, len(body)
        with self._lock:
            self.requests[method] += 1
            latency, failure = self.latency, self._failure
            reset = self._reset_body.take(method, path_qs, size)
            fail = (not reset and failure is not None and failure.match(method, path_qs, size)
                    and self._random.random() < failure.fraction)
            flip = not (reset or fail) and self._flip_request.take(method, path_qs, size)
        if latency > 0:
            await asyncio.sleep(latency)
        status: int | None = None  # None: the client's connection was dropped
        if reset:
            response = _aborted(request)
        elif fail:
            assert failure is not None  # `fail` is only ever true with a failure set
            response, status = _s3_error(failure), failure.status
        else:
            try:
                response = await self._forward(request, _flip_middle_bit(body) if flip else body)
                status = response.status
            except (aiohttp.ClientError, OSError):
                # Upstream unreachable: look to the client as it would without the proxy.
                response = _aborted(request)
        with self._lock:
            self.log.append((method, path_qs, status))
        return response

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED
        )
        assert self._session is not None, "forwarding before _open"
        async with self._session.request(
            request.method,
            URL(self.upstream + request.raw_path, encoded=True),  # never re-encode the key
            # Host passes through as signed (the proxy's address); moto ignores signatures
            # and reads Host only to tell virtual-host from path-style addressing.
            headers=headers,
            # BytesIO: aiohttp warns (ResourceWarning) about large raw bytes bodies.
            data=io.BytesIO(body) if body else None,
            skip_auto_headers=_NO_AUTO_HEADERS,
            allow_redirects=False,
        ) as upstream:
            data = await upstream.read()
            # HEAD has no body to measure, so its Content-Length must survive.
            keep = {"content-length"} if request.method == "HEAD" else set()
            out = CIMultiDict(
                (k, v) for k, v in upstream.headers.items()
                if k.lower() not in _NOT_FORWARDED or k.lower() in keep
            )
            ok = 200 <= upstream.status < 300  # an error body is not the object
            with self._lock:
                flip = ok and self._flip_response.take(request.method, request.raw_path, len(data))
            if flip:
                data = _flip_middle_bit(data)
            return web.Response(
                status=upstream.status, reason=upstream.reason, headers=out, body=data or None
            )
