"""`relay serve`: inbound SMTP, the outbox worker and the scheduler in one asyncio process."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from relay import logs
from relay.app import App
from relay.core.vocabulary import Event
from relay.inbound.smtp import InboundHandler, RelaySMTP, tls_context
from relay.lifecycle import scheduler as jobs
from relay.outbound.worker import Worker


async def serve(app: App, stop: asyncio.Event | None = None, ready: asyncio.Event | None = None,
                background: bool = True) -> None:
    """Run until `stop` is set or SIGTERM/SIGINT arrives. With `background=False` only inbound SMTP
    runs (an intake-only instance; the outbox and the scheduler are driven from elsewhere)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    outbound = app.settings.outbound
    worker = Worker.for_app(app)
    handler = InboundHandler(app, on_queued=worker.wake.set)
    inbound = app.settings.inbound
    context = tls_context(inbound.tls_cert, inbound.tls_key)
    server = await loop.create_server(
        lambda: RelaySMTP(handler, max_message_bytes=inbound.max_message_bytes, hostname=app.settings.relay.domain,
                          ident="relay", enable_SMTPUTF8=True, tls_context=context,
                          require_starttls=bool(context) and inbound.require_starttls),
        host=inbound.host, port=inbound.port)
    tasks = [asyncio.create_task(worker.run_forever(stop)),
             asyncio.create_task(jobs.run_scheduler(app, stop, lambda: jobs.run_once(app, worker)))
             ] if background else []
    logs.event(Event.SERVE_STARTED, f"listening on {inbound.host}:{inbound.port} for @{app.settings.relay.domain}, "
               f"outbound {_describe(outbound.url)}")
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await handler.refusals.close()
        await worker.transport.close()
        logs.event(Event.SERVE_STOPPED, "relay stopped")


def _describe(url: str) -> str:
    """The outbound URL without credentials, for the log."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return url
