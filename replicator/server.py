"""The daemon's HTTP endpoints: /metrics, /healthz, /readyz and /status (aiohttp)."""

from __future__ import annotations

import html
import json
import os
import socket
import time
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .errors import ConfigError


class StatusSource(Protocol):
    """All the server needs of the service (``status.Status``)."""

    @property
    def registry(self) -> CollectorRegistry: ...
    @property
    def problems(self) -> dict[str, str]: ...
    async def observe(self) -> None: ...
    async def snapshot(self) -> dict[str, Any]: ...


class StatusServer:
    """Serves the service's health and metrics on ``http.listen``."""

    def __init__(self, status: StatusSource, listen: str) -> None:
        self.status_source = status
        self.listen = listen
        app = web.Application()
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/status", self.status)
        app.router.add_get("/", self.status)
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self) -> None:
        """Listen on ``http.listen``; ConfigError naming it when the address cannot be used."""
        listen = self.listen
        host, _, port = listen.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")  # [::1]:9108, as an IPv6 URL writes it
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, int(port)).start()
        except OSError as exc:
            await self._runner.cleanup()
            # asyncio's own text repeats the address; the errno's says what is wrong with it.
            why = exc.strerror if isinstance(exc, socket.gaierror) or not exc.errno \
                else os.strerror(exc.errno)
            raise ConfigError(f"http.listen {listen}: cannot listen: {why}") from exc

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def metrics(self, _: web.Request) -> web.Response:
        await self.status_source.observe()
        body = generate_latest(self.status_source.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def readyz(self, _: web.Request) -> web.Response:
        problems = self.status_source.problems
        return web.json_response({"ready": not problems, "problems": problems},
                                 status=200 if not problems else 503)

    async def status(self, request: web.Request) -> web.Response:
        snapshot = await self.status_source.snapshot()
        if request.query.get("format") == "json":
            return web.json_response(snapshot, dumps=lambda v: json.dumps(v, indent=2))
        return web.Response(text=_page(snapshot), content_type="text/html")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _page(s: dict[str, Any]) -> str:
    e = html.escape
    rows = []
    for name, r in s["regions"].items():
        audit = r["last_audit"]
        audit_text = "never" if audit is None else (
            f"{_age(audit['age_seconds'])} ago: " + ", ".join(f"{k} {v}" for k, v in audit["counts"].items())
            + (f" (error: {audit['error']})" if audit["error"] else ""))
        last = r["last_verified"]
        rows.append(
            "<tr>" + "".join(f"<td>{c}</td>" for c in (
                e(name), "up" if r["up"] else f"<b>DOWN</b> {e(r['problem'] or '')}",
                r["backlog_objects"], f"{r['backlog_bytes'] / 2**20:.1f} MiB", r["failed_objects"],
                _age(r["oldest_pending_age_seconds"]), r["unproven_copies"],
                "-" if last is None else f"{e(last['key'])} ({_age(last['age_seconds'])} ago)",
                e(", ".join(f"{k}: {v}" for k, v in r["failures_by_reason"].items()) or "none"),
                e(audit_text))) + "</tr>")
    source = s["source"]
    source_state = "readable" if source["up"] else "<b>UNREADABLE</b> " + e(source["problem"] or "")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>replicator</title>
<meta http-equiv="refresh" content="5"><style>
body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}</style></head><body>
<h1>replicator</h1>
<p>source <b>{e(source['bucket'])}</b>: {source_state}
&middot; generated {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(s['time']))} UTC
&middot; <a href="/status?format=json">json</a> &middot; <a href="/metrics">metrics</a></p>
<table><tr><th>region</th><th>state</th><th>backlog</th><th>bytes</th><th>failed</th>
<th>oldest pending</th><th>unproven copies</th><th>last verified</th><th>failures by reason</th>
<th>last audit</th></tr>
{''.join(rows)}</table></body></html>"""
