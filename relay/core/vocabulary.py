"""The relay's words, as types: who takes part, what state a case or a delivery is in, what kind of
mail the relay sends, what events it records and logs, and what a relay address stands for.

String enums (`StrEnum`): a member is its value wherever a string is expected (the database, the
JSON log, the CLI's output), so the stored and printed words stay what they were, while the code
cannot misspell one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Party(StrEnum):
    REVIEWER = "reviewer"
    BUSINESS = "business"

    @property
    def other(self) -> Party:
        return Party.BUSINESS if self is Party.REVIEWER else Party.REVIEWER


class State(StrEnum):
    """A case's state: awaiting_reply -> replied | expired | declined, any of them -> closed.

    `declined`: the reviewer said, on the page their decline link leads to, that they will not
    answer. For mail it is as final as `closed` (relay.core.cases.accepts_mail); it stays a state of
    its own so the platform and the business learn what happened, not merely that it ended."""

    AWAITING_REPLY = "awaiting_reply"
    REPLIED = "replied"
    EXPIRED = "expired"
    DECLINED = "declined"
    CLOSED = "closed"


class DeliveryState(StrEnum):
    """An outbox entry: queued (due at next_attempt_at) -> sending (claimed under a lease) -> sent
    or failed; a failed attempt that may be retried goes back to queued."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class Mail(StrEnum):
    """What the relay sends: a party's forwarded message, or one of its own notices."""

    FORWARD = "forward"
    CONTACT_REQUEST = "contact_request"
    REPLY_NOTICE = "reply_notice"
    EXPIRY_NOTICE = "expiry_notice"
    REMINDER = "reminder"
    REVIEWER_UNREACHABLE = "reviewer_unreachable"
    DECLINED_NOTICE = "declined_notice"

    @property
    def is_notice(self) -> bool:
        return self is not Mail.FORWARD


class Event(StrEnum):
    """Every event the relay records with a case or writes to its log (docs/operations.md explains
    each; a test holds the two together)."""

    SERVE_STARTED = "serve.started"
    SERVE_STOPPING = "serve.stopping"
    SERVE_STOPPED = "serve.stopped"
    LOG_REOPENED = "log.reopened"
    DKIM_SIGNING = "dkim.signing"
    CASE_OPENED = "case.opened"
    CASE_REPLIED = "case.replied"
    CASE_EXPIRED = "case.expired"
    CASE_DECLINED = "case.declined"
    CASE_CLOSED = "case.closed"
    INBOUND_ACCEPTED = "inbound.accepted"
    INBOUND_REFUSED = "inbound.refused"
    INBOUND_DEFERRED = "inbound.deferred"
    INBOUND_ERROR = "inbound.error"
    AUTOREPLY_DROPPED = "autoreply.dropped"
    BOUNCE_RECEIVED = "bounce.received"
    BOUNCE_IGNORED = "bounce.ignored"
    FORWARD_QUEUED = "forward.queued"
    FORWARD_COPIES_DROPPED = "forward.copies_dropped"
    NOTICE_QUEUED = "notice.queued"
    NOTICE_SENT = "notice.sent"
    DELIVERY_SENT = "delivery.sent"
    DELIVERY_DEFERRED = "delivery.deferred"
    DELIVERY_FAILED = "delivery.failed"
    DELIVERY_RETRY = "delivery.retry"
    REVIEWER_FORGOTTEN = "reviewer.forgotten"
    STORAGE_ERROR = "storage.error"
    STORAGE_PURGED = "storage.purged"
    STORAGE_MIGRATED = "storage.migrated"
    STORAGE_KEY = "storage.key"
    SERVE_WORKERS = "serve.workers"
    WORKER_EXITED = "worker.exited"
    WORKER_STARTED = "worker.started"
    STORAGE_KEY_CREATED = "storage.key_created"
    STORAGE_SEALED = "storage.sealed"
    STORAGE_ROTATION_STARTED = "storage.rotation_started"
    STORAGE_ROTATION_COMPLETED = "storage.rotation_completed"
    OUTBOX_ERROR = "outbox.error"
    JOBS_ERROR = "jobs.error"
    JOBS_PASS = "jobs.pass"  # noqa: S105 (an event name, not a password)
    AUTH_MODE = "auth.mode"
    MESSAGE_AUTHENTICATED = "message.authenticated"
    API_STARTED = "api.started"
    API_REQUEST = "api.request"
    API_ERROR = "api.error"
    API_KEY_CREATED = "api.key_created"
    API_KEY_REVOKED = "api.key_revoked"
    WEBHOOK_SENT = "webhook.sent"
    WEBHOOK_DEFERRED = "webhook.deferred"
    WEBHOOK_FAILED = "webhook.failed"
    WEBHOOK_STOPPED = "webhook.stopped"
    WEBHOOK_ENABLED = "webhook.enabled"
    WEBHOOK_RETRY = "webhook.retry"
    WEBHOOK_ERROR = "webhook.error"


class WebhookType(StrEnum):
    """What a webhook to the platform reports (its `type`); relay.core.webhooks says which case
    event becomes which."""

    CASE_OPENED = "case.opened"
    CASE_REQUEST_DELIVERED = "case.request_delivered"
    CASE_REMINDED = "case.reminded"
    CASE_REPLIED = "case.replied"
    CASE_EXPIRED = "case.expired"
    CASE_DECLINED = "case.declined"
    CASE_CLOSED = "case.closed"
    MESSAGE_FORWARDED = "message.forwarded"
    DELIVERY_FAILED = "delivery.failed"
    REVIEWER_FORGOTTEN = "reviewer.forgotten"


class WebhookState(StrEnum):
    """A webhook: pending (due at next_attempt_at) -> sending (claimed under a lease) -> sent or
    failed (given up after `[webhooks] max_age`); a failed attempt that may be retried goes back to
    pending, and so does every attempt while the endpoint is stopped (it answered 410 Gone)."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True)
class DeliveryFacts:
    """What a signed bounce address stands for: one delivery the relay sent."""

    id: int
    case_id: int | None
    kind: Mail
    recipient_party: Party
    queue_id: str
    created_at: datetime
    state: DeliveryState


@dataclass(frozen=True)
class Conversation:
    """What one relay address stands for: the case, who writes to it and where it leads."""

    case_id: int
    local_part: str
    state: State
    last_activity_at: datetime
    writer: Party                 # the party that owns the address (may write to it)
    writer_email: str | None      # None once the reviewer was forgotten
    writer_name: str              # the writer's public name
    reader_email: str             # where messages to this address go
    reader_alias: str             # the relay address the reader writes to (stands for the writer)
    locale: str
    deadline: datetime
    # the reviewer has written into the case (in time or late): until then the contact request is
    # the business's one message, and its relay address refuses mail (relay.core.policy)
    reviewer_answered: bool

    def late(self, now: datetime) -> bool:
        """A reviewer's message is late when no answer came within the reply window."""
        return self.writer is Party.REVIEWER and (
            self.state is State.EXPIRED or (self.state is State.AWAITING_REPLY and now >= self.deadline))
