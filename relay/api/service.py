"""The HTTP API in `relay serve`: a FastAPI application served by uvicorn on the relay's own
event loop, next to SMTP (ADR 16).

`/v1/...` needs a key; `/healthz`, `/readyz`, `/metrics` and `/openapi.json` do not (they say
nothing about cases), nor do the reviewer's decline pages (`/decline/{token}`: the token is the
key; relay.api.decline_pages). There is no interactive documentation page: FastAPI's loads its scripts
from a CDN, which an isolated relay host cannot reach; the OpenAPI document is the documentation.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from relay import __version__
from relay.api import decline_pages, problems, schemas
from relay.api.access import Access
from relay.api.middleware import Envelope
from relay.api.routes import router
from relay.app import App
from relay.metrics import Census
from relay.store import case_records, database, outbox, webhook_queue

READY_TIMEOUT = 2.0  # seconds the database gets to answer /readyz (and /metrics its gauges)
METRICS_MEDIA = ("text/plain", "application/openmetrics-text")  # what a scraper's Accept may choose


def build(app: App, alive: Mapping[str, Callable[[], bool]] | None = None) -> FastAPI:
    """The application; `alive` names the parts of the process /readyz asks (outbox worker, scheduler)."""
    api = FastAPI(title="Review contact relay", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json",
                  description="Open, follow and close review-contact cases. Keys: `relay api-key create NAME`; "
                              "send `Authorization: Bearer <key>`. Errors are RFC 9457 problem details.")
    problems.install(api)
    api.include_router(router(app, Access(app, app.settings.api.requests_per_minute)))
    api.include_router(decline_pages.router(app))

    @api.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """200 while the process runs."""
        return {"status": "ok"}

    @api.get("/readyz", tags=["health"], response_model=schemas.Readiness,
             responses={503: {"model": schemas.Readiness, "description": "a part is not ready"}})
    async def readyz() -> JSONResponse:
        """200 when the database answers and the outbox worker, the scheduler and the webhook worker
        (where webhooks are on) run; else 503 naming what is not ready."""
        checks = {name: "ok" if check() else "stopped" for name, check in (alive or {}).items()}
        try:
            await asyncio.wait_for(app.blocking(database.ping), READY_TIMEOUT)
            checks["database"] = "ok"
        except Exception as exc:  # any failure to answer is "not ready", with its kind
            checks["database"] = f"unavailable ({type(exc).__name__})"
        ready = all(state == "ok" for state in checks.values())
        return JSONResponse({"status": "ok" if ready else "unavailable", "checks": checks},
                            status_code=200 if ready else 503)

    if app.settings.api.metrics:
        @api.get("/metrics", tags=["health"], response_class=PlainTextResponse,
                 responses={200: {"description": "the metrics (docs/operations.md, \"Health\")",
                                  "content": {media: {"schema": {"type": "string"}} for media in METRICS_MEDIA}}})
        async def metrics(request: Request) -> Response:
            """Prometheus metrics: this instance's counters and the database's gauges, read now
            (present while `[api] metrics = true`)."""
            try:
                census: Census | None = await asyncio.wait_for(app.blocking(_census, app), READY_TIMEOUT)
            except Exception:  # the counters still go out; relay_database_up says 0
                census = None
            body, content_type = app.metrics.render(census, request.headers.get("accept", ""))
            return Response(body, media_type=content_type)

    return api


def _census(app: App) -> Census:
    """The database gauges of one scrape: one grouped query over the cases, one over the outbox,
    one over the webhooks (and the endpoint's stop flag)."""
    now = app.clock.now()
    outbox_counts, oldest = outbox.census()
    hooks, oldest_hook = webhook_queue.census()
    stopped = app.settings.webhooks.enabled and webhook_queue.stopped(app.settings.webhooks.url) is not None
    return Census(case_records.state_counts(), outbox_counts, _age(now, oldest), hooks, _age(now, oldest_hook),
                  stopped)


def _age(now: datetime, since: datetime | None) -> float:
    return max(0.0, (now - since).total_seconds()) if since is not None else 0.0


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: `relay serve` handles the signals and stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def listen(host: str, port: int, shared: bool = False) -> socket.socket:
    """Bind the API's socket up front, so a taken port fails `relay serve` at start with its OSError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and without
    # it a response's headers and body wait on the client's delayed ACK (40 ms a request)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:  # `[inbound] workers`: every worker listens on the port, the kernel spreads connections
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class HttpService:
    """The API's uvicorn server as a task of `relay serve`."""

    def __init__(self, app: App, api: Any) -> None:
        settings = app.settings.api
        self.sock = listen(settings.host, settings.port, shared=app.settings.inbound.workers > 1)
        observe = app.metrics.api_request if settings.metrics else None
        config = uvicorn.Config(Envelope(api, observe), log_config=None, access_log=False, lifespan="off",
                                timeout_graceful_shutdown=5, server_header=False)
        self.server = _Server(config)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]))

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)
        self.sock.close()
