"""The aiosmtpd adapter: SMTP hooks that ask the policy and the intake, and answer their outcome.

Everything that blocks (database look-ups, parsing, sanitising, the commit) runs in a worker
thread, so one slow client or a large message never stalls the other connections.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session, syntax

from relay import logs
from relay.app import App
from relay.core import addresses, dmarc, limits, outcomes, policy, verp
from relay.core.outcomes import Outcome, reply
from relay.core.redact import describe
from relay.core.vocabulary import Conversation, DeliveryFacts, Event
from relay.inbound import data_reader, intake, returns
from relay.inbound.refusal_tally import RefusalTally
from relay.inbound.sender_auth import SenderAuth
from relay.inbound.sessions import Sessions

Target = Conversation | DeliveryFacts  # what an accepted RCPT TO stands for


class RelayEnvelope(Envelope):
    """aiosmtpd's envelope with what the relay learns at RCPT TO."""

    def __init__(self) -> None:
        super().__init__()
        self.target: Target | None = None  # the relay address's conversation, or a bounce address's delivery
        self.tried = 0                      # RCPT commands in this transaction
        self.holds_turn = False             # a large message's turn, taken before its data (InboundHandler.large)


def _declared_size(envelope: Envelope) -> int:
    """The SIZE= its client gave at MAIL FROM (RFC 1870); 0 when it gave none."""
    for option in envelope.mail_options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return int(value)
    return 0


class RelaySMTP(SMTP):
    """aiosmtpd's protocol with the relay's limits and wording.

    Lines may be as long as the whole message may be (real clients send unwrapped HTML and bare
    LF line endings; the intake measures lines itself); only CRLF.CRLF ends DATA, which aiosmtpd
    guarantees (no smuggling). A 421 reply closes the connection, as RFC 5321 says it does.
    """

    def __init__(self, handler: Any, *, max_message_bytes: int, sessions: Sessions | None = None,
                 **kwargs: Any) -> None:
        self.line_length_limit = max_message_bytes + 1024
        super().__init__(handler, data_size_limit=max_message_bytes, **kwargs)
        self.sessions = sessions
        self.command: str | None = None  # the command being carried out; None between commands
        self.processing = False  # a complete message is being checked and stored (handle_DATA)
        self.closing = False     # the relay is stopping: 421 and close once the command is done
        # aiosmtpd dispatches every command through this table: wrapped, each tells the session
        # whether it is between commands, which is what a stopping relay needs to know
        self._smtp_methods = {name: self._tracked(name, method) for name, method in self._smtp_methods.items()}

    def _tracked(self, name: str, method: Callable[[str | None], Awaitable[None]]
                 ) -> Callable[[str | None], Awaitable[None]]:
        @functools.wraps(method)  # keeps the syntax aiosmtpd's HELP reads from the method
        async def run(arg: str | None) -> None:
            self.command = name
            try:
                await method(arg)
            finally:
                self.command = None
            if self.closing:
                self._goodbye()
        return run

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """A message its client announced as large (MAIL FROM ... SIZE=) waits for its turn before
        the 354, not after it has been received: what waits is a connection, not 25 MB in memory
        (relay.inbound.smtp.InboundHandler.large). One that arrives larger than announced waits
        after it is received, in handle_DATA."""
        handler = self.event_handler
        envelope = self.envelope
        declared = _declared_size(envelope) if envelope is not None else 0
        if (not isinstance(handler, InboundHandler) or not isinstance(envelope, RelayEnvelope)
                or not envelope.rcpt_tos or declared <= handler.large_bytes):
            await self._data(arg)
            return
        assert self.session is not None
        refused = await handler.wait_for_turn(self.session, envelope, declared)
        if refused is not None:
            await self.push(refused)
            return
        self._reset_timeout()  # the wait is not the client's idleness
        try:
            await self._data(arg)
        finally:
            handler.turn_over(envelope)

    async def _data(self, arg: str) -> None:
        """aiosmtpd's DATA command with the message read into one buffer (relay.inbound.data_reader)
        instead of a list of lines: the same checks and replies, in the same order. The content is
        bytes (the relay never has aiosmtpd decode it) and goes to `handle_DATA` (the relay's
        handler has no deprecated `process_message`)."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            received = await data_reader.receive(self._reader, self.data_size_limit, self.line_length_limit)
        except asyncio.CancelledError:  # the connection was reset during DATA
            self._writer.close()
            raise
        if received.problem is not None:
            await self.push_refusal(received.problem)
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        self.envelope.content = self.envelope.original_content = received.content
        del received
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)

    async def push_refusal(self, outcome: Outcome) -> None:
        """A refusal of the protocol itself (not of a handler's hook): answered, logged and counted
        as the outcome says."""
        answer = str(reply(outcome))
        logs.event(outcomes.event(outcome), f"refused: {outcome.value}", reply=answer, outcome=outcome.value)
        if isinstance(self.event_handler, InboundHandler):
            self.event_handler.count(outcome)
        await self.push(answer)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.sessions is not None:
            self.sessions.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        if self.sessions is not None:
            self.sessions.discard(self)
        super().connection_lost(error)

    def stop_after_command(self) -> None:
        """The relay is stopping (relay.inbound.sessions): between commands the client is told
        and the connection closed now; in a command, once the command's reply is out."""
        self.closing = True
        if self.command is None:
            self._goodbye()

    def cut_off(self) -> None:
        """The drain timeout passed in the middle of a command (a client still sending its
        message, or one that stopped): 421, nothing of the transaction was taken."""
        peer = self.session.peer[0] if self.session and self.session.peer else "?"
        logs.event(outcomes.event(Outcome.SHUTTING_DOWN), f"cut off in {self.command} at the drain timeout "
                   f"while the relay stops; client {peer}", reply=str(reply(Outcome.SHUTTING_DOWN)),
                   outcome=Outcome.SHUTTING_DOWN.value)
        if isinstance(self.event_handler, InboundHandler):
            self.event_handler.app.metrics.inbound(Outcome.SHUTTING_DOWN)
        self._goodbye()

    def abort(self) -> None:
        if isinstance(self.transport, asyncio.WriteTransport):
            self.transport.abort()
        elif self.transport is not None:
            self.transport.close()

    def _goodbye(self) -> None:
        """`421 4.3.2` and close. Written, not awaited: a client that does not read must not hold
        up the stop (the drain aborts its connection in the end)."""
        if self.transport is None or self.transport.is_closing():
            return
        self._writer.write(f"{reply(Outcome.SHUTTING_DOWN)}\r\n".encode())
        self.transport.close()

    def _create_envelope(self) -> RelayEnvelope:
        """aiosmtpd's documented hook for a richer envelope."""
        return RelayEnvelope()

    async def push(self, status: Any) -> None:
        if isinstance(status, str):
            outcome = outcomes.translate_library_reply(status)[1]
            if outcome is not None:  # aiosmtpd's own refusal: in the relay's words
                await self.push_refusal(outcome)
                return
        await super().push(status)
        if isinstance(status, str) and status.startswith("421") and self.transport is not None:
            self.transport.close()


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """The STARTTLS context from `[inbound] tls_cert` and `tls_key`, or None when not configured."""
    if cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key) if key else None)
    return context


class InboundHandler:
    def __init__(self, app: App, on_queued: Callable[[], None] = lambda: None) -> None:
        self.app = app
        self.on_queued = on_queued
        self.probes = limits.ProbeCounter(app.settings.limits.unknown_recipients_per_client)
        # behind Postfix every connection comes from Postfix: it limits its clients itself
        self.exempt = frozenset(app.settings.limits.exempt_clients)
        self.refusals = RefusalTally(app)
        self.auth = SenderAuth.for_app(app)
        # large messages, a few at a time: the rest wait here, their clients still connected
        self.large = asyncio.Semaphore(app.settings.limits.large_messages_at_once)
        self.large_bytes = app.settings.limits.large_message_bytes

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        client = session.peer[0] if session and session.peer else "?"
        now = self.app.clock.now()
        if client not in self.exempt and self.probes.blocked(client, now):
            return self._refuse(Outcome.TOO_MANY_PROBES, session, "client over the unknown-recipient limit")
        local, domain = addresses.split(address)
        assert isinstance(envelope, RelayEnvelope)
        envelope.tried += 1
        refused = policy.check_recipient_count(envelope.tried, self.app.settings.limits.max_recipients,
                                               accepted=envelope.target is not None)
        if refused is not None:
            return self._refuse(refused, session, f"recipient {envelope.tried} of one transaction")
        try:
            outcome, target, case = await self._recipient(local, domain, address, envelope.mail_from or "")
        except Exception as exc:
            return self._refuse(Outcome.TEMPORARY_FAILURE, session, f"lookup failed: {type(exc).__name__}")
        if outcomes.rule(outcome).probe and client not in self.exempt and self.probes.add(client, now):
            return self._refuse(Outcome.TOO_MANY_PROBES, session, "client over the unknown-recipient limit")
        if outcome is not Outcome.RECIPIENT_OK:
            return self._refuse(outcome, session, f"recipient refused ({outcome.value})", case=case)
        envelope.target = target
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return str(reply(outcome))

    async def _recipient(self, local: str, domain: str, address: str,
                         mail_from: str) -> tuple[Outcome, Target | None, int | None]:
        """(outcome, what the address stands for, case id) for one RCPT TO."""
        if domain == self.app.settings.relay.domain and verp.looks_like_verp(local):
            number = verp.delivery_id(local, self.app.key)
            delivery = None if number is None else await self.app.blocking(
                returns.lookup, self.app, number, self.app.clock.now())
            if delivery is None:
                return Outcome.BAD_BOUNCE_ADDRESS, None, None
            return Outcome.RECIPIENT_OK, delivery, delivery.case_id
        conversation = None
        if domain == self.app.settings.relay.domain and addresses.is_token(local.lower()):
            conversation = await self.app.blocking(intake.lookup, self.app, local)
        outcome = policy.check_recipient(
            address, self.app.settings.relay.domain, conversation, self.app.clock.now(),
            self.app.settings.cases.conversation_lifetime, mail_from)
        return outcome, conversation, conversation.case_id if conversation else None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """The message is complete: check and store it. Meanwhile the session is `processing`, which
        a stopping relay lets finish (relay.inbound.sessions)."""
        tracked = server if isinstance(server, RelaySMTP) else None
        if tracked is not None:
            tracked.processing = True
        try:
            with self.app.metrics.smtp_data():
                return await self._data(session, envelope)
        finally:
            if tracked is not None:
                tracked.processing = False

    async def _data(self, session: Session, envelope: Envelope) -> str:
        target = envelope.target if isinstance(envelope, RelayEnvelope) else None
        if target is None:
            return self._refuse(Outcome.UNKNOWN_ADDRESS, session, "DATA without an accepted recipient")
        size = len(envelope.original_content or b"")  # (no reference kept here: _process frees it)
        if size <= self.large_bytes or (isinstance(envelope, RelayEnvelope) and envelope.holds_turn):
            return await self._process(session, envelope, target)
        assert isinstance(envelope, RelayEnvelope)
        refused = await self.wait_for_turn(session, envelope, size)
        if refused is not None:
            envelope.content = envelope.original_content = None
            return refused
        try:
            return await self._process(session, envelope, target)
        finally:
            self.turn_over(envelope)

    async def wait_for_turn(self, session: Session, envelope: RelayEnvelope, size: int) -> str | None:
        """Take one of the large messages' turns, waiting at most `[limits] large_message_wait`;
        the refusal (451 4.3.2) if none came."""
        wait = self.app.settings.limits.large_message_wait.total_seconds()
        try:
            await asyncio.wait_for(self.large.acquire(), wait)
        except TimeoutError:
            case = envelope.target.case_id if envelope.target is not None else None
            return self._refuse(Outcome.BUSY, session, f"a {size}-byte message waited {wait:g}s for its turn",
                                case=case)
        envelope.holds_turn = True
        return None

    def turn_over(self, envelope: RelayEnvelope) -> None:
        if envelope.holds_turn:
            envelope.holds_turn = False
            self.large.release()

    async def _process(self, session: Session, envelope: Envelope, target: Any) -> str:
        """Check and store one message (a party's answer, or a report at a bounce address)."""
        raw = envelope.original_content or b""
        size = len(raw)
        case = target.case_id
        try:
            if isinstance(target, DeliveryFacts):
                result = await self.app.blocking(returns.process, self.app, target, envelope.mail_from or "", raw)
            else:
                verdict = await self.auth.verdict(raw, session, envelope.mail_from or "")
                refused = dmarc.decide(verdict, self.auth.accept_quarantine) if verdict is not None else None
                if verdict is not None:
                    self.app.metrics.sender_checked(verdict.dmarc, refused is not None)
                if refused is not None:
                    assert verdict is not None
                    return self._refuse(refused, session, f"sender authentication: {verdict.summary()}", case=case)
                # handed over whole: the intake lets go of the message once it has parsed it
                incoming, raw = intake.Incoming(raw), b""
                envelope.content = envelope.original_content = None
                result = await self.app.blocking(intake.process, self.app, target, envelope.mail_from or "",
                                                 incoming, verdict.summary() if verdict is not None else None)
                del incoming
        except Exception as exc:
            logs.event(Event.INBOUND_ERROR, f"processing failed: {describe(exc)}",
                       level=logging.ERROR, case=case)
            return self._refuse(Outcome.TEMPORARY_FAILURE, session, "processing failed", case=case)
        finally:
            # the message is stored (or refused): aiosmtpd would keep it until the client's next
            # command, while its forward may already be on its way out (a second copy in memory)
            envelope.content = envelope.original_content = None
            del raw
        if result.outcome is Outcome.ACCEPTED and isinstance(target, Conversation):
            answer = reply(Outcome.ACCEPTED).with_text(f"queued as {result.queue_id}")
            logs.event(Event.INBOUND_ACCEPTED, f"{target.writer.value} message accepted ({size} bytes), "
                       f"forward queued to the {target.writer.other.value}",
                       case=case, qid=result.queue_id, reply=answer)
            self.app.metrics.inbound(result.outcome)
            self.on_queued()
            return answer
        if reply(result.outcome).code < 300:  # taken but not forwarded: auto-reply, delivery report
            answer = str(reply(result.outcome))
            logs.event(outcomes.event(result.outcome), f"{result.outcome.value}: {result.detail}",
                       level=result.level, case=case, qid=result.queue_id, reply=answer,
                       outcome=result.outcome.value)
            self.app.metrics.inbound(result.outcome)
            self.on_queued()
            return answer
        sender = self.app.mask(envelope.mail_from or "")
        return self._refuse(result.outcome, session, f"{result.detail} (envelope sender {sender})", case=case)

    def _refuse(self, outcome: Outcome, session: Session, why: str, case: int | None = None) -> str:
        answer = str(reply(outcome))
        peer = session.peer[0] if session and session.peer else "?"
        level = logging.WARNING if outcomes.rule(outcome).warning else logging.INFO
        logs.event(outcomes.event(outcome), f"{why}; client {peer}", level=level, case=case, reply=answer,
                   outcome=outcome.value)
        self.count(outcome)
        return answer

    def count(self, outcome: Outcome) -> None:
        """A refusal: into the database's per-minute counts (`relay status`) and the metrics."""
        self.refusals.note(outcome.value)
        self.app.metrics.inbound(outcome)
