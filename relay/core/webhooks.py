"""Webhooks to the platform, decided without I/O: which recorded case event becomes which webhook,
what its body says (ids and states only), and when a failed attempt is tried again.

The store calls `webhook_type` and `data` in the transaction that records the event (the webhook is
an outbox row of that transaction, ADR 18); the worker calls `classify` and `next_step` after each
attempt. Nothing here may put an address, a name or what somebody wrote into a body: `data` takes
its values from typed facts (enumerations, flags, a status code checked against its pattern) and the
case's ids and state, never from free text.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum, StrEnum
from urllib.parse import urlsplit

from relay.core.vocabulary import Event, Mail, Party, WebhookState, WebhookType

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
SECRET_BYTES = (24, 64)  # what the Standard Webhooks specification allows for a symmetric secret
# after the n-th failed attempt: seconds to hours, as the Standard Webhooks specification suggests;
# the last delay repeats until `[webhooks] max_age` is over
DELAYS = (timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2),
          timedelta(hours=5), timedelta(hours=10))
_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


class FailureReason(StrEnum):
    """Why a delivery ended failed, as `delivery.failed` says it."""

    REFUSED = "refused"    # the recipient's mail system refused it while the relay handed it over
    BOUNCED = "bounced"    # it was taken, and a delivery report came back later
    EXPIRED = "expired"    # temporary failures until the queue lifetime was over


@dataclass(frozen=True)
class Facts:
    """What a recorded event may add to its webhook: kinds, parties, flags and a status code. Typed,
    so no sentence (which might quote an address) can reach a body."""

    kind: Mail | None = None
    party: Party | None = None             # the party the delivery was for
    late: bool = False
    status: str | None = None              # an enhanced status code, e.g. 5.1.1
    reason: FailureReason | None = None


NO_FACTS = Facts()


@dataclass(frozen=True)
class CaseFacts:
    """The case a webhook is about, as the platform knows it: its ids and its state now."""

    case: int
    review_id: str
    business_id: str
    state: str


# case events that are webhooks as they are, by name: a name another part of the relay records
# (`case.declined`) becomes its webhook without that part knowing about webhooks
_BY_NAME: Mapping[str, WebhookType] = {
    Event.CASE_OPENED.value: WebhookType.CASE_OPENED,
    Event.CASE_REPLIED.value: WebhookType.CASE_REPLIED,
    Event.CASE_EXPIRED.value: WebhookType.CASE_EXPIRED,
    "case.declined": WebhookType.CASE_DECLINED,
    Event.CASE_CLOSED.value: WebhookType.CASE_CLOSED,
    Event.REVIEWER_FORGOTTEN.value: WebhookType.REVIEWER_FORGOTTEN,
    Event.DELIVERY_FAILED.value: WebhookType.DELIVERY_FAILED,
}
# events that are webhooks only for some kinds of mail
_SENT: Mapping[tuple[str, Mail], WebhookType] = {
    (Event.NOTICE_SENT.value, Mail.CONTACT_REQUEST): WebhookType.CASE_REQUEST_DELIVERED,
    (Event.NOTICE_SENT.value, Mail.REMINDER): WebhookType.CASE_REMINDED,
    (Event.DELIVERY_SENT.value, Mail.FORWARD): WebhookType.MESSAGE_FORWARDED,
}


def webhook_type(event: str, facts: Facts) -> WebhookType | None:
    """The webhook a recorded case event makes, or None (most events are for admins only)."""
    if facts.kind is not None and (event, facts.kind) in _SENT:
        return _SENT[(event, facts.kind)]
    return _BY_NAME.get(event)


def data(kind: WebhookType, case: CaseFacts, facts: Facts) -> dict[str, object]:
    """The webhook's `data`: the case's ids and state, and what its type adds."""
    found: dict[str, object] = {"case": case.case, "review_id": case.review_id, "business_id": case.business_id,
                                "state": case.state}
    if kind is WebhookType.CASE_EXPIRED:
        found["may_report"] = True  # no answer in the window: the business may report the review
    elif kind is WebhookType.MESSAGE_FORWARDED:
        found["direction"] = ("reviewer_to_business" if facts.party is Party.BUSINESS
                              else "business_to_reviewer")
        found["late"] = facts.late
    elif kind is WebhookType.DELIVERY_FAILED:
        found["party"] = facts.party.value if facts.party else None
        found["kind"] = facts.kind.value if facts.kind else None
        found["status"] = facts.status if facts.status and _STATUS.fullmatch(facts.status) else None
        found["reason"] = facts.reason.value if facts.reason else None
    return found


def body(kind: WebhookType, at: datetime, values: Mapping[str, object]) -> str:
    """The JSON body (ASCII, so its text and its bytes sign alike): type, timestamp (UTC), data."""
    return json.dumps({"type": kind.value, "timestamp": at.isoformat(timespec="seconds") + "Z", "data": values},
                      separators=(",", ":"), ensure_ascii=True)


def new_id() -> str:
    """A webhook's `webhook-id`: the same for every attempt, so the receiver can drop a duplicate."""
    return "msg_" + secrets.token_hex(16)


def enhanced_status(text: str) -> str | None:
    """The first enhanced status code (`5.1.1`) in a delivery's error, if it has one."""
    found = _STATUS.search(text)
    return found.group(1) if found else None


def secret_key(text: str) -> bytes:
    """The key of a Standard Webhooks secret, `whsec_` and base64; ValueError says what is wrong
    without repeating the secret."""
    if not text.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with {SECRET_PREFIX} (Standard Webhooks format: {SECRET_PREFIX} and base64)")
    try:
        key = base64.b64decode(text[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"is not {SECRET_PREFIX} followed by base64") from None
    low, high = SECRET_BYTES
    if not low <= len(key) <= high:
        raise ValueError(f"must hold {low} to {high} bytes after {SECRET_PREFIX} (it holds {len(key)})")
    return key


def endpoint(url: str) -> str:
    """The webhook URL as logs and admin commands show it: no user, password or query (a token)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


# --- attempts and retries ---------------------------------------------------------------------------

class Result(Enum):
    SENT = "sent"          # a 2xx answer
    GONE = "gone"          # 410 Gone: the endpoint wants no more webhooks
    FAILED = "failed"      # any other answer, or none (refused, timed out): try again later


@dataclass(frozen=True)
class Attempt:
    result: Result
    detail: str


@dataclass(frozen=True)
class Step:
    """Where an attempt leaves a webhook: sent, pending again (with its next time), or failed."""

    state: WebhookState
    next_attempt_at: datetime | None
    reason: str
    stop_endpoint: bool = False


def classify(status: int, phrase: str = "") -> Attempt:
    """An HTTP answer as an attempt's result."""
    detail = f"HTTP {status}" + (f" {phrase}" if phrase else "")
    if 200 <= status < 300:
        return Attempt(Result.SENT, detail)
    if status == 410:
        return Attempt(Result.GONE, detail)
    return Attempt(Result.FAILED, detail)


def retry_delay(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt."""
    return DELAYS[min(max(attempts, 1), len(DELAYS)) - 1]


def next_step(attempt: Attempt, attempts: int, now: datetime, expires_at: datetime) -> Step:
    """After an attempt: sent; pending again after a growing delay; failed once the next try would
    come after `expires_at` (created + `[webhooks] max_age`). A 410 leaves the webhook pending and
    due (it is not lost) and stops the endpoint until an admin enables it again."""
    if attempt.result is Result.SENT:
        return Step(WebhookState.SENT, None, attempt.detail)
    if attempt.result is Result.GONE:
        return Step(WebhookState.PENDING, now, attempt.detail, stop_endpoint=True)
    retry_at = now + retry_delay(attempts)
    if retry_at > expires_at:
        return Step(WebhookState.FAILED, None, f"max_age over; last error: {attempt.detail}")
    return Step(WebhookState.PENDING, retry_at, attempt.detail)
