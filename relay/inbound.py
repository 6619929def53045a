"""The aiosmtpd adapter: SMTP hooks that ask the policy and the intake, and answer their outcome.

Everything that blocks (database look-ups, parsing, sanitising, the commit) runs in a worker
thread, so one slow client or a large message never stalls the other connections.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from . import addresses, intake, logs, outcomes, policy
from .app import App
from .outcomes import Outcome, reply


class RelaySMTP(SMTP):
    """aiosmtpd's protocol with the relay's limits and wording.

    Lines may be as long as the whole message may be (real clients send unwrapped HTML and bare
    LF line endings); only CRLF.CRLF ends DATA, which aiosmtpd already guarantees (no smuggling).
    """

    def __init__(self, handler: Any, *, max_message_bytes: int, **kwargs: Any) -> None:
        self.line_length_limit = max_message_bytes + 1024
        super().__init__(handler, data_size_limit=max_message_bytes, **kwargs)

    async def push(self, status: Any) -> None:
        if isinstance(status, str):
            translated, outcome = outcomes.translate_library_reply(status)
            if outcome is not None:
                logs.event(outcomes.event(outcome), f"refused: {outcome.value}", reply=translated)
            status = translated
        await super().push(status)


class InboundHandler:
    def __init__(self, app: App, on_queued: Callable[[], None] = lambda: None) -> None:
        self.app = app
        self.on_queued = on_queued

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        local, domain = addresses.split(address)
        conversation = None
        if domain == self.app.domain and addresses.is_token(local.lower()):
            try:
                conversation = await asyncio.to_thread(intake.lookup, self.app, local)
            except Exception as exc:
                return self._refuse(Outcome.TEMPORARY_FAILURE, session,
                                    f"lookup failed: {type(exc).__name__}")
        outcome = policy.check_recipient(
            address, self.app.domain, conversation, self.app.clock.now(),
            self.app.settings["cases"]["conversation_lifetime"],
            already_have_recipient=getattr(envelope, "conversation", None) is not None)
        if outcome is not Outcome.RECIPIENT_OK:
            case = conversation.case_id if conversation else None
            return self._refuse(outcome, session, f"recipient refused ({outcome.value})", case=case)
        envelope.conversation = conversation  # type: ignore[attr-defined]
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return str(reply(outcome))

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        conversation = getattr(envelope, "conversation", None)
        if conversation is None:
            return self._refuse(Outcome.UNKNOWN_ADDRESS, session, "DATA without an accepted recipient")
        raw = envelope.original_content or b""
        try:
            result = await asyncio.to_thread(intake.process, self.app, conversation,
                                             envelope.mail_from or "", raw)
        except Exception as exc:
            logs.event("inbound.error", f"processing failed: {type(exc).__name__}: {exc}",
                       level=logging.ERROR, case=conversation.case_id)
            return self._refuse(Outcome.TEMPORARY_FAILURE, session, "processing failed",
                                case=conversation.case_id)
        if result.outcome is not Outcome.ACCEPTED:
            sender = self.app.mask(envelope.mail_from or "")
            return self._refuse(result.outcome, session, f"{result.detail} (envelope sender {sender})",
                                case=conversation.case_id)
        answer = reply(Outcome.ACCEPTED).with_text(f"queued as {result.queue_id}")
        logs.event("inbound.accepted", f"{conversation.writer.value} message accepted "
                   f"({len(raw)} bytes), forward queued to the {conversation.writer.other.value}",
                   case=conversation.case_id, qid=result.queue_id, reply=answer)
        self.on_queued()
        return answer

    def _refuse(self, outcome: Outcome, session: Session, why: str, case: int | None = None) -> str:
        answer = str(reply(outcome))
        peer = session.peer[0] if session and session.peer else "?"
        level = logging.WARNING if outcome is Outcome.TEMPORARY_FAILURE else logging.INFO
        logs.event(outcomes.event(outcome), f"{why}; client {peer}", level=level, case=case, reply=answer)
        return answer
