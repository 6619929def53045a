"""Opening a case: two fresh relay addresses, the decline link's value and the contact request,
queued in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from relay.app import App
from relay.core import cases, decline_tokens, notices
from relay.core.addresses import new_token
from relay.core.cases import OpenCaseRequest
from relay.core.compose import Addressing, new_message_id, relayed_name
from relay.core.vocabulary import Event, Mail, Party
from relay.store import case_records as case_store
from relay.store import events, outbox


@dataclass(frozen=True)
class Opened:
    case_id: int
    reviewer_address: str
    business_address: str
    deadline: str
    queue_id: str

    def as_json(self) -> dict[str, Any]:
        return {"case": self.case_id, "reviewer_address": self.reviewer_address,
                "business_address": self.business_address, "deadline": self.deadline,
                "queue_id": self.queue_id}


def open_case(app: App, req: OpenCaseRequest, reply_window: timedelta | None = None) -> Opened:
    """Raises CaseAlreadyOpen, TemplateProblem or a database error; nothing is stored then. The
    case keeps its own deadline: `reply_window` (the platform's choice for this case), else
    `[cases] reply_window`."""
    now = app.clock.now()
    deadline = cases.deadline(now, reply_window or app.settings.cases.reply_window)
    reviewer_token, business_token = new_token(), new_token()
    reviewer_address = f"{reviewer_token}@{app.settings.relay.domain}"
    decline_value = decline_tokens.new_value()
    rendered = notices.render(app.settings.relay.templates, Mail.CONTACT_REQUEST, req.locale, {
        "platform_name": app.settings.relay.platform_name, "business_name": req.business_name,
        "reviewer_name": req.reviewer_name, "review_id": req.review_id, "message": req.message,
        "requests": list(req.requests),
        "deadline": notices.localized(deadline, req.locale, app.settings.relay.timezone),
        "decline_url": decline_tokens.link(app.settings.api.public_url, decline_value, app.key),
    })
    message_id = new_message_id(app.settings.relay.domain)
    body = notices.build(rendered, Addressing(
        from_name=relayed_name(req.business_name, app.settings.relay.platform_name), from_address=reviewer_address,
        to_address=req.reviewer_email, to_name=req.reviewer_name, reply_to=reviewer_address),
        message_id, now)
    queue_id = outbox.new_queue_id()
    with events.transaction():
        new = case_store.create_case(req, reviewer_token, business_token, now, deadline, decline_value)
        outbox.enqueue(case_id=new.case_id, source_id=None, kind=Mail.CONTACT_REQUEST,
                       recipient_party=Party.REVIEWER, recipient=req.reviewer_email,
                       message_id=message_id, queue_id=queue_id, body=body, now=now,
                       lifetime=app.settings.outbound.max_queue_lifetime)
        events.record(new.case_id, Event.CASE_OPENED, now, f"review {req.review_id}",
                      message=f"case opened for review {req.review_id} (origin {req.origin.value})")
        events.record(new.case_id, Event.NOTICE_QUEUED, now, Mail.CONTACT_REQUEST,
                      message="contact request queued to the reviewer", qid=queue_id)
    return Opened(case_id=new.case_id, reviewer_address=reviewer_address,
                  business_address=f"{business_token}@{app.settings.relay.domain}",
                  deadline=deadline.isoformat(timespec="seconds") + "Z", queue_id=queue_id)
