"""`relay serve`: inbound SMTP, the outbox worker, the webhook worker (with `[webhooks] url`) and
the scheduler in one asyncio process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from relay import logs, workers
from relay.api.service import HttpService, build
from relay.app import App
from relay.core.errors import Unavailable
from relay.core.vocabulary import Event
from relay.inbound.sessions import Sessions
from relay.inbound.smtp import InboundHandler, RelaySMTP, tls_context
from relay.lifecycle import scheduler as jobs
from relay.outbound.webhook_worker import WebhookWorker
from relay.outbound.worker import Worker, signing_line
from relay.store import database, key_check, vault
from relay.store.database import StorageError

BACKGROUND_GRACE = 5.0  # seconds the workers and the scheduler get to end their pass at a stop


async def serve(app: App, stop: asyncio.Event | None = None, ready: asyncio.Event | None = None,
                background: bool = True) -> None:
    """Run until `stop` is set or SIGTERM/SIGINT arrives. With `background=False` only inbound SMTP
    runs (an intake-only instance; the outbox and the scheduler are driven from elsewhere).

    On SIGHUP the log file is reopened (logrotate renamed it). On a stop the listening socket is
    closed at once and the SMTP sessions are drained (relay.inbound.sessions: idle ones are told
    421 and closed, a message being sent is received and answered first, for at most `[inbound]
    drain_timeout`); the outbox worker and the scheduler go on meanwhile, so what the drain
    accepts can still go out, and then end the pass they are in (for at most BACKGROUND_GRACE).
    A second SIGTERM ends the waits at once."""
    stop = stop or asyncio.Event()
    hurry = asyncio.Event()
    loop = asyncio.get_running_loop()

    _stop_signals(app, loop, stop, hurry)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})  # a worker starts with it blocked (relay.workers)
    worker = Worker.for_app(app)
    handler = InboundHandler(app, on_queued=worker.wake.set)
    inbound = app.settings.inbound
    context = tls_context(inbound.tls_cert, inbound.tls_key)
    sessions = Sessions()
    server = await loop.create_server(
        lambda: RelaySMTP(handler, max_message_bytes=inbound.max_message_bytes, sessions=sessions,
                          hostname=app.settings.relay.domain, ident="relay", enable_SMTPUTF8=True,
                          tls_context=context, require_starttls=bool(context) and inbound.require_starttls),
        host=inbound.host, port=inbound.port, reuse_port=inbound.workers > 1)
    drained = asyncio.Event()  # the background parts stop after the sessions
    hooks = WebhookWorker.for_app(app) if background else None
    named = _background(app, worker, hooks, drained) if background else {}
    tasks = [*named.values(), *([asyncio.create_task(_watch_key(drained))] if background else [])]
    try:
        http = _http(app, named)
    except BaseException:
        server.close()
        for task in tasks:
            task.cancel()
        raise
    _log_start(app, worker, http)
    handler.auth.describe()
    workers.report_ready()
    if ready is not None:
        ready.set()
    outcome = ""
    try:
        await stop.wait()
        server.close()  # no new connections from here on
        if http is not None:
            http.server.should_exit = True  # the API finishes the requests it has, takes no more
        count, busy = sessions.census()
        timeout = inbound.drain_timeout.total_seconds()
        logs.event(Event.SERVE_STOPPING, f"stopping: no new connections; {count} SMTP session(s), {busy} in a "
                   f"command, get up to {timeout:g}s to finish")
        outcome = f"; {await sessions.drain(timeout, hurry)}"
    finally:
        await _shut_down(server, http, tasks, drained, hurry)
        await handler.refusals.close()
        handler.auth.close()
        await worker.transport.close()
        if hooks is not None:
            await hooks.close()
        logs.event(Event.SERVE_STOPPED, f"relay stopped{outcome}")


def _background(app: App, worker: Worker, hooks: WebhookWorker | None,
                drained: asyncio.Event) -> dict[str, asyncio.Task[None]]:
    """The outbox worker, the scheduler and (with `[webhooks] url`) the webhook worker, as tasks
    named for /readyz; they run until `drained` is set."""
    parts: dict[str, Coroutine[Any, Any, None]] = {
        "outbox_worker": worker.run_forever(drained),
        "scheduler": jobs.run_scheduler(app, drained, lambda: jobs.run_once(app, worker))}
    if hooks is not None:
        parts["webhook_worker"] = hooks.run_forever(drained)
    return {name: asyncio.create_task(work) for name, work in parts.items()}


def _refreshed() -> None:
    database.revive()
    vault.refresh(True)


async def _watch_key(drained: asyncio.Event) -> None:
    """Look at the database's key state once a second, also when nothing is sealed or opened: a
    rotation begun elsewhere is learnt before it completes, by a relay that is idle as well."""
    told = False
    while not drained.is_set():
        try:
            # a read outside the database thread: on SQLite every job there is a write transaction
            await asyncio.to_thread(_refreshed)
            told = False
        except (Unavailable, StorageError) as exc:
            if not told:
                logs.event(Event.STORAGE_ERROR, f"storage key state unreadable: {exc}", level=logging.ERROR)
            told = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drained.wait(), vault.REFRESH_SECONDS)


async def _shut_down(server: asyncio.Server, http: HttpService | None, tasks: list[asyncio.Task[None]],
                     drained: asyncio.Event, hurry: asyncio.Event) -> None:
    """After the drain: the SMTP listener and the API closed, then the worker and the scheduler."""
    server.close()
    with contextlib.suppress(TimeoutError):  # Python 3.12 on waits for the connections too
        await asyncio.wait_for(server.wait_closed(), 5)
    if http is not None:
        await http.stop()
    drained.set()  # the worker and the scheduler end the pass they are in, for a while
    if tasks and not hurry.is_set():
        await asyncio.wait(tasks, timeout=BACKGROUND_GRACE)
    for task in tasks:  # a delivery cut off mid-attempt is sent again after its lease
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _log_start(app: App, worker: Worker, http: HttpService | None) -> None:
    """What started: SMTP, whether mail leaves signed, the API."""
    inbound = app.settings.inbound
    worker_number = workers.number()
    who = f"worker {worker_number}: " if worker_number is not None else ""
    logs.event(Event.SERVE_STARTED, f"{who}listening on {inbound.host}:{inbound.port} for "
               f"@{app.settings.relay.domain}, outbound {_describe(app.settings.outbound.url)}, "
               f"event loop {_loop_name()}")
    logs.event(Event.DKIM_SIGNING, signing_line(worker.keys))
    ring = vault.ring()
    logs.event(Event.STORAGE_KEY, key_check.describe(ring), level=logging.INFO if ring.on else logging.WARNING)
    if http is not None:
        api = app.settings.api
        logs.event(Event.API_STARTED, f"API on {api.host}:{api.port}, links to {api.public_url}")


def _loop_name() -> str:
    """The running loop's kind, as the start-up line says it."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"


def _http(app: App, parts: dict[str, asyncio.Task[None]]) -> HttpService | None:
    """The HTTP API, listening, or None where `[api] enabled = false`."""
    settings = app.settings.api
    if not settings.enabled:
        return None
    alive = {name: (lambda task=task: not task.done()) for name, task in parts.items()}
    try:
        http = HttpService(app, build(app, alive))
    except OSError as exc:
        raise Unavailable(f"cannot listen on {settings.host}:{settings.port} for the API ([api] port): "
                          f"{exc.strerror or exc}") from None
    http.start()
    return http


def _stop_signals(app: App, loop: asyncio.AbstractEventLoop, stop: asyncio.Event, hurry: asyncio.Event) -> None:
    """SIGTERM and SIGINT stop (a second one hurries), SIGUSR2 hurries, SIGHUP reopens the log. A
    worker of several gets its stop twice (from systemd, which signals the whole unit, and from its
    parent): for it only SIGUSR2, which its parent sends, hurries."""
    worker_of_several = workers.number() is not None

    def on_stop() -> None:
        if stop.is_set() and not worker_of_several:
            hurry.set()
        stop.set()

    def on_hurry() -> None:
        stop.set()
        hurry.set()

    _on_signals(loop, {signal.SIGTERM: on_stop, signal.SIGINT: on_stop, signal.SIGUSR2: on_hurry,
                       signal.SIGHUP: lambda: _reopen_log(app)})


def _on_signals(loop: asyncio.AbstractEventLoop, handlers: dict[signal.Signals, Callable[[], None]]) -> None:
    """Install the signal handlers where the loop can (the main thread; not in a test's thread)."""
    for sig, handler in handlers.items():
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, handler)


def _reopen_log(app: App) -> None:
    """SIGHUP: reopen the log file, as logrotate's `postrotate` asks (its `create` mode renamed the
    file and made a new one); the event goes to the new file."""
    logs.reopen()
    target = app.settings.log.file
    logs.event(Event.LOG_REOPENED, f"SIGHUP: log file {target} reopened" if target is not None
               else "SIGHUP: the log goes to stdout, nothing to reopen")


def _describe(url: str) -> str:
    """The outbound URL without credentials, for the log."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return url
