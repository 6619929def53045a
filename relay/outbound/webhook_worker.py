"""The webhook worker: claims due webhooks, signs them (Standard Webhooks), POSTs them to
`[webhooks] url` and records what happened (ADR 18). Every `relay serve` runs one; the claims
decide who sends what.

- A 2xx answer is success. Anything else, or no answer within `[webhooks] timeout` (refused,
  reset, timed out), is tried again after a growing delay (relay.core.webhooks: 5 s, 5 min, 30 min,
  2 h, 5 h, then every 10 h) until `[webhooks] max_age` after the event, then it is `failed`.
- `410 Gone` stops sending to that endpoint: a flag in the database that every instance reads,
  logged at error level, until an admin runs `relay webhooks enable`. The webhooks stay pending.
- A webhook keeps its `webhook-id` on every attempt: a retry after an unconfirmed send (a timeout,
  or a crash after the POST) is the only way a duplicate reaches the platform, and it can tell.

The signature's timestamp is the wall clock's, not the relay's clock: the receiver checks it
against its own clock to refuse replays, and a relay clock moved by a test (or simulation) must
not make every signature look stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from math import floor
from typing import Any

import httpx
from standardwebhooks import Webhook

from relay import __version__, logs
from relay.app import App, SystemClock
from relay.core import webhooks as rules
from relay.core.clock import Clock
from relay.core.redact import describe
from relay.core.vocabulary import Event, WebhookState
from relay.store import events
from relay.store import webhook_queue as queue

LEASE = timedelta(seconds=15)


@dataclass
class Counts:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    stopped: int = 0


@dataclass
class WebhookWorker:
    app: App
    url: str
    signer: Webhook
    timeout: float
    batch: int = 50
    concurrency: int = 10  # requests at once to the platform's endpoint, per instance
    lease: timedelta = LEASE
    stamp: Clock = field(default_factory=SystemClock)  # the signature's time: see the module's docstring
    client: httpx.AsyncClient | None = None

    @classmethod
    def for_app(cls, app: App) -> WebhookWorker | None:
        """The worker `[webhooks]` configures, or None while its url is empty."""
        settings = app.settings.webhooks
        if not settings.enabled:
            return None
        return cls(app, settings.url, Webhook(settings.secret.get_secret_value()), settings.timeout.total_seconds())

    def _client(self) -> httpx.AsyncClient:
        """One client (its connections kept for the next webhook), made on the loop that uses it."""
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False, trust_env=False,
                                            headers={"user-agent": f"review-relay/{__version__}"})
        return self.client

    async def run_pass(self, max_batches: int = 1000, only: int | None = None) -> Counts:
        """Send everything due now (bounded), or just webhook `only`; nothing while the endpoint is
        stopped."""
        counts = Counts()
        for _ in range(max_batches):
            if await self.app.blocking(queue.stopped, self.url) is not None:
                break
            now = self.app.clock.now()
            token, claimed = await self.app.blocking(queue.claim, now, self.lease, self.batch, only)
            if not claimed:
                break
            renewer = asyncio.create_task(self._renew([c.id for c in claimed], token))
            try:
                gate = asyncio.Semaphore(self.concurrency)
                results = await asyncio.gather(*(self._attempt(c, gate) for c in claimed))
                await self.app.blocking(self._record, results, token, self.app.clock.now())
            finally:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer
            for item, step in results:
                self._log(item, step, counts)
            gone = next((step for _, step in results if step.stop_endpoint), None)
            if gone is not None:  # once for the batch, loudly: nothing reaches the platform from now on
                logs.event(Event.WEBHOOK_STOPPED, f"{rules.endpoint(self.url)} answered {gone.reason}: no webhooks "
                           "go there until `relay webhooks enable`; they stay pending", level=logging.ERROR)
        return counts

    async def _renew(self, ids: list[int], token: str) -> None:
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            await self.app.blocking(queue.renew, ids, token, self.app.clock.now() + self.lease)

    def headers(self, item: queue.Claimed) -> dict[str, str]:
        """The Standard Webhooks headers of one attempt: the same id, a fresh timestamp and signature."""
        moment = self.stamp.now()  # naive UTC, as every clock of the relay
        return {"content-type": "application/json", "webhook-id": item.msg_id,
                "webhook-timestamp": str(floor(moment.replace(tzinfo=UTC).timestamp())),
                "webhook-signature": self.signer.sign(item.msg_id, moment, item.body)}

    async def _attempt(self, item: queue.Claimed, gate: asyncio.Semaphore) -> tuple[queue.Claimed, rules.Step]:
        try:
            async with gate:  # the timeout starts once it is this one's turn
                attempt = await asyncio.wait_for(self._post(item), self.timeout)
        except TimeoutError:
            attempt = rules.Attempt(rules.Result.FAILED, f"no answer within {self.timeout:g}s")
        except httpx.HTTPError as exc:
            attempt = rules.Attempt(rules.Result.FAILED, _failure(exc))
        except Exception as exc:  # a bug here must not lose the webhook: it is tried again
            attempt = rules.Attempt(rules.Result.FAILED, describe(exc))
        return item, rules.next_step(attempt, item.attempts, self.app.clock.now(), item.expires_at)

    async def _post(self, item: queue.Claimed) -> rules.Attempt:
        # streamed and never read: only the status matters, whatever the endpoint answers with
        async with self._client().stream("POST", self.url, content=item.body.encode(),
                                         headers=self.headers(item)) as response:
            return rules.classify(response.status_code, response.reason_phrase)

    def _record(self, results: list[tuple[queue.Claimed, rules.Step]], token: str, now: datetime) -> None:
        with events.transaction():
            for item, step in results:
                queue.finish(item.id, token, step, now)
            gone = next((step for _, step in results if step.stop_endpoint), None)
            if gone is not None:
                queue.stop(self.url, now, gone.reason)

    def _log(self, item: queue.Claimed, step: rules.Step, counts: Counts) -> None:
        """The attempt's log line and its count in the metrics."""
        where: dict[str, Any] = {"case": item.case_id, "webhook": item.msg_id}
        what = f"{item.type} ({item.msg_id})"
        if step.stop_endpoint:
            counts.stopped += 1
            result = "stopped"
            logs.event(Event.WEBHOOK_DEFERRED, f"{what} attempt {item.attempts}: {step.reason}; pending until the "
                       "endpoint is enabled again", level=logging.WARNING, **where)
        elif step.state is WebhookState.SENT:
            counts.sent += 1
            result = "sent"
            logs.event(Event.WEBHOOK_SENT, f"{what} delivered: {step.reason}", **where)
        elif step.state is WebhookState.FAILED:
            counts.failed += 1
            result = "failed"
            logs.event(Event.WEBHOOK_FAILED, f"{what} given up after {item.attempts} attempt(s): {step.reason}",
                       level=logging.ERROR, **where)
        else:
            counts.deferred += 1
            result = "deferred"
            logs.event(Event.WEBHOOK_DEFERRED, f"{what} attempt {item.attempts} failed: {step.reason}; next at "
                       f"{step.next_attempt_at:%Y-%m-%d %H:%M:%S}Z", level=logging.WARNING, **where)
        self.app.metrics.webhook(result)

    async def run_forever(self, stop: asyncio.Event, poll: float = 1.0) -> None:
        """Send until `stop` is set, looking for due webhooks every `poll` seconds."""
        while not stop.is_set():
            try:
                await self.run_pass()
            except Exception as exc:  # keep the worker alive through database hiccups
                logs.event(Event.WEBHOOK_ERROR, f"webhook pass failed: {describe(exc)}", level=logging.ERROR)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=poll)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None


def _failure(exc: httpx.HTTPError) -> str:
    """A transport failure in a few words (no URL: it may carry a token)."""
    kinds = ((httpx.ConnectTimeout, "connection timed out"), (httpx.ConnectError, "connection failed"),
             (httpx.ReadTimeout, "no answer in time"), (httpx.RemoteProtocolError, "the connection broke"),
             (httpx.TimeoutException, "timed out"))
    for kind, words in kinds:
        if isinstance(exc, kind):
            return f"{words} ({type(exc).__name__}{_errno(exc)})"
    return type(exc).__name__


def _errno(exc: BaseException) -> str:
    """The operating system's words under an httpx error (`Connection refused`), if any."""
    cause = exc.__cause__ or exc.__context__
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    return f": {cause.strerror}" if isinstance(cause, OSError) and cause.strerror else ""
