"""The outbox worker: claims due deliveries, sends them, and records what happened.

Retry policy (pure): temporary failures wait 1, 2, 4 ... minutes (at most an hour) between attempts
until the delivery's queue lifetime is over; permanent failures and expiry end in `failed` with the
reason. The envelope sender is a signed VERP address at the relay's domain, never a party's.

Each message is signed (DKIM, relay.core.dkim_sign) right before it is handed to the transport,
at every attempt (t= is the attempt's time); with `[outbound] dkim_key` empty it leaves as stored.
Signing is CPU work (under a millisecond for a notice, about a second for a 25 MB forward), so a
claimed batch is signed in a thread, off the event loop, as the maildir's file work is; a message
that cannot be signed is not sent unsigned but retried like any other temporary failure.

A delivery to the reviewer that the recipient's side refuses for good while the worker hands it
over (a 5xx to RCPT TO or to the data, say `550 5.1.1` for a mailbox that is gone) is the same news
as a bounce that comes back later (relay.returns): in the transaction that marks it failed, the
business's `reviewer_unreachable` notice is queued, at most once per case (the notice claims are
unique by case and kind, shared with the bounce path). Not the reviewer's refusal, so nobody is told:
- a delivery whose queue lifetime ran out after temporary failures: nobody refused it (the notice
  says "their mail system refused it"); a greylisting, full or busy mailbox, or our smarthost
  being unreachable, may have cleared since, and when the smarthost is the trouble the notice could
  not get out either but would use up the case's one claim that a real bounce needs later. The
  delivery ends failed with the reason, visible to admins in the case and the queue;
- a permanent refusal of the relay's session (greeting, AUTH, MAIL FROM): the relay's own setup,
  the same for every recipient, would otherwise tell every business its reviewer is gone;
- any refused delivery to the business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from relay import logs
from relay.app import App
from relay.core import dkim_sign, verp
from relay.core.redact import describe
from relay.core.retries import Attempt, Result, Step, next_step
from relay.core.vocabulary import DeliveryState, Event, Mail, Party
from relay.core.webhooks import Facts, FailureReason, enhanced_status
from relay.outbound import notice_queue
from relay.outbound.transports import Transport, from_url
from relay.store import events
from relay.store import outbox as store

LEASE = timedelta(seconds=15)
T = TypeVar("T")


@dataclass
class Counts:
    sent: int = 0
    deferred: int = 0
    failed: int = 0

    def add(self, state: DeliveryState) -> None:
        if state == DeliveryState.SENT:
            self.sent += 1
        elif state == DeliveryState.FAILED:
            self.failed += 1
        else:
            self.deferred += 1


@dataclass
class Worker:
    app: App
    transport: Transport
    batch: int = 50
    lease: timedelta = LEASE
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    keys: tuple[dkim_sign.Key, ...] = ()  # what each message is signed with (none: unsigned)

    @classmethod
    def for_app(cls, app: App) -> Worker:
        """The worker with the transport and the signing keys `[outbound]` configures: the one place
        it is built."""
        outbound = app.settings.outbound
        return cls(app, from_url(outbound.url, outbound.timeout.total_seconds(), helo=app.settings.relay.domain),
                   keys=outbound.signing_keys())

    async def run_pass(self, max_batches: int = 1000, only: int | None = None) -> Counts:
        """Deliver everything due now (bounded), or just delivery `only`; return counts."""
        counts = Counts()
        for _ in range(max_batches):
            now = self.app.clock.now()
            token, claimed = await self.app.blocking(store.claim, now, self.lease, self.batch, only)
            if not claimed:
                break
            renewer = asyncio.create_task(self._renew([c.id for c in claimed], token))
            try:
                bodies = await self._signed(claimed, now)
                results = await asyncio.gather(*(self._attempt(c, bodies[c.id]) for c in claimed))
                results = await self._settle(results)
                now = self.app.clock.now()
                # one transaction (one durable commit) records the whole batch
                await self.app.blocking(self._record, results, token, now)
            finally:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer
            for item, step in results:
                self._log(item, step)
                counts.add(step.state)
        return counts

    async def _renew(self, ids: list[int], token: str) -> None:
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            await self.app.blocking(store.renew, ids, token, self.app.clock.now() + self.lease)

    async def _signed(self, claimed: list[store.Claimed], now: datetime) -> dict[int, bytes | bytearray | Attempt]:
        """Each claimed message as it is to be sent (signed, when there are keys), or the failed
        attempt that signing it was. One thread does the whole batch."""
        if not self.keys:
            return {item.id: item.body for item in claimed}
        return await asyncio.to_thread(_sign_all, claimed, self.keys, now)

    async def _attempt(self, item: store.Claimed, body: bytes | bytearray | Attempt) -> tuple[store.Claimed, Step]:
        sender = verp.envelope_sender(item.id, self.app.key, self.app.settings.relay.domain)
        if isinstance(body, Attempt):
            return item, next_step(body, item.attempts, self.app.clock.now(), item.expires_at)
        try:
            attempt = await self.transport.send(sender, item.recipient, body, _name(item))
        except Exception as exc:  # a transport bug must not lose the delivery: retry it
            attempt = Attempt(Result.TEMPORARY, describe(exc))
        return item, next_step(attempt, item.attempts, self.app.clock.now(), item.expires_at)

    async def _settle(self, results: list[tuple[store.Claimed, Step]]) -> list[tuple[store.Claimed, Step]]:
        """Have the transport make the batch durable; if it cannot, nothing of it counts as sent."""
        sent = [_name(item) for item, step in results if step.state == DeliveryState.SENT]
        if not sent:
            return results
        try:
            await self.transport.settle(sent)
        except OSError as exc:
            failed = Attempt(Result.TEMPORARY, f"could not make the batch durable: {describe(exc)}")
            now = self.app.clock.now()
            return [(item, next_step(failed, item.attempts, now, item.expires_at)
                     if step.state == DeliveryState.SENT else step) for item, step in results]
        return results

    def _record(self, results: list[tuple[store.Claimed, Step]], token: str, now: datetime) -> None:
        # composed before the write transaction (notice_queue.prepare_notices only reads); stored only
        # for the deliveries this worker really marks failed, and only once per case (the claim)
        unreachable = sorted({item.case_id for item, step in results
                              if item.case_id is not None and _reviewer_refused(item, step)})
        prepared = notice_queue.prepare_notices(self.app, unreachable, Mail.REVIEWER_UNREACHABLE, now) \
            if unreachable else {}
        with events.transaction():
            sent = store.mark_sent([item.id for item, step in results if step.state == DeliveryState.SENT], token, now)
            notices = [item for item, _ in results if item.id in sent and item.kind != Mail.FORWARD]
            for kind in sorted({item.kind for item in notices}):
                events.record_many([item.case_id for item in notices if item.kind == kind and item.case_id is not None],
                                   Event.NOTICE_SENT, now, kind, facts=Facts(kind=kind))
            self._forwarded([item for item, _ in results if item.id in sent and item.kind == Mail.FORWARD], now)
            for item, step in results:
                if step.state == DeliveryState.SENT:
                    continue
                if step.state == DeliveryState.FAILED:
                    if store.mark_failed(item.id, token, step.reason):
                        reason = FailureReason.EXPIRED if step.expired else FailureReason.REFUSED
                        events.record(item.case_id, Event.DELIVERY_FAILED, now,
                                      f"{item.kind} to the {item.recipient_party}",
                                      facts=Facts(kind=item.kind, party=item.recipient_party,
                                                  status=enhanced_status(step.reason), reason=reason))
                        if item.case_id in prepared:
                            notice_queue.store_notices(self.app, {item.case_id: prepared.pop(item.case_id)},
                                                    Mail.REVIEWER_UNREACHABLE, now)
                else:
                    assert step.next_attempt_at is not None
                    store.mark_retry(item.id, token, step.next_attempt_at, step.reason)

    @staticmethod
    def _forwarded(forwards: list[store.Claimed], now: datetime) -> None:
        """A forward handed to the other party's mail system is a case event (and the platform's
        `message.forwarded` webhook): which way it went and whether the answer came late."""
        late = store.late_sources([item.id for item in forwards]) if forwards else set()
        for item in forwards:
            events.record(item.case_id, Event.DELIVERY_SENT, now, f"forward to the {item.recipient_party}",
                          facts=Facts(kind=Mail.FORWARD, party=item.recipient_party, late=item.id in late))

    def _log(self, item: store.Claimed, step: Step) -> None:
        """The attempt's log lines and its counts in the metrics."""
        where: dict[str, Any] = {"case": item.case_id, "qid": item.queue_id}
        self.app.metrics.delivery(item.kind.value, step.state.value)
        if step.state == DeliveryState.SENT:
            logs.event(Event.DELIVERY_SENT, f"{item.kind} delivered to the {item.recipient_party} "
                       f"{self.app.shown(item.recipient, item.recipient_party)}", **where)
            if item.kind != Mail.FORWARD:
                logs.event(Event.NOTICE_SENT, f"{item.kind} sent to the {item.recipient_party}", **where)
                self.app.metrics.notice_sent(item.kind.value)
        elif step.state == DeliveryState.FAILED:
            logs.event(Event.DELIVERY_FAILED, f"{item.kind} to the {item.recipient_party} failed: {step.reason}",
                       level=logging.WARNING, **where)
        else:
            logs.event(Event.DELIVERY_DEFERRED, f"{item.kind} to the {item.recipient_party} deferred "
                       f"until {step.next_attempt_at:%Y-%m-%d %H:%M:%S}Z: {step.reason}",
                       level=logging.WARNING, **where)

    async def run_forever(self, stop: asyncio.Event, poll: float = 2.0) -> None:
        """Deliver until `stop` is set; wakes early when `wake` is set (a message was queued)."""
        while not stop.is_set():
            self.wake.clear()
            try:
                await self.run_pass()
            except Exception as exc:  # keep the worker alive through database hiccups
                logs.event(Event.OUTBOX_ERROR, f"outbox pass failed: {describe(exc)}",
                           level=logging.ERROR)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(_first(self.wake, stop), timeout=poll)


def _sign_all(claimed: list[store.Claimed], keys: tuple[dkim_sign.Key, ...],
              now: datetime) -> dict[int, bytes | bytearray | Attempt]:
    signed: dict[int, bytes | bytearray | Attempt] = {}
    for item in claimed:
        try:
            signed[item.id] = dkim_sign.sign(item.body, keys, now)
        except Exception as exc:  # a message the relay wrote itself: a bug, retried and visible
            signed[item.id] = Attempt(Result.TEMPORARY, f"could not sign the message (DKIM): {describe(exc)}")
    return signed


def signing_line(keys: tuple[dkim_sign.Key, ...]) -> str:
    """What the relay signs its mail with, for the start-up log line."""
    if not keys:
        return ("outbound mail leaves unsigned: [outbound] dkim_key is empty (sign at the smarthost, or see "
                "docs/operations.md, DKIM)")
    return "outbound mail is signed: " + ", ".join(f"d={key.domain} s={key.selector} ({key.algorithm})" for key in keys)


def _reviewer_refused(item: store.Claimed, step: Step) -> bool:
    """The reviewer's side refused this delivery for good: the business is to be told."""
    return step.state == DeliveryState.FAILED and step.refused and item.recipient_party is Party.REVIEWER


def _name(item: store.Claimed) -> str:
    """The delivery's name at the transport: the same for every attempt, so a retry replaces it."""
    return f"{item.id:010d}.relay"


async def then_close(worker: Worker, work: Awaitable[T]) -> T:
    """Run `work`, then let the transport close its connections (one-shot commands, the end of
    `relay serve`): they must be closed on the event loop that opened them."""
    try:
        return await work
    finally:
        await worker.transport.close()


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
