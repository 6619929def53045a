"""What becomes of a delivery after one attempt (pure: an attempt in, the next step out).

Temporary failures wait 1, 2, 4 ... minutes (at most an hour) between attempts until the
delivery's queue lifetime is over; permanent failures and expiry end in `failed` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from relay.core.vocabulary import DeliveryState

BASE_DELAY = timedelta(minutes=1)
MAX_DELAY = timedelta(hours=1)


class Result(Enum):
    SENT = "sent"
    TEMPORARY = "temporary"   # 4xx or no connection: try again later
    PERMANENT = "permanent"   # 5xx: the recipient's side will not take it


@dataclass(frozen=True)
class Attempt:
    """What one attempt to hand a delivery over came to."""

    result: Result
    detail: str
    # the answer was about this recipient or this message (a reply to RCPT TO or to the data), not
    # about the relay's session (greeting, EHLO, TLS, AUTH, MAIL FROM: the same for every recipient)
    about_recipient: bool = False


@dataclass(frozen=True)
class Step:
    state: DeliveryState          # sent, queued (a retry) or failed
    next_attempt_at: datetime | None
    reason: str
    refused: bool = False         # failed: the recipient's side refused it for good (not expiry)
    expired: bool = False         # failed: temporary failures until the queue lifetime was over


def retry_delay(attempts: int) -> timedelta:
    """Delay after the `attempts`-th failed attempt: exponential, capped."""
    return min(BASE_DELAY * int(2 ** max(0, attempts - 1)), MAX_DELAY)


def next_step(attempt: Attempt, attempts: int, now: datetime, expires_at: datetime) -> Step:
    if attempt.result is Result.SENT:
        return Step(DeliveryState.SENT, None, attempt.detail)
    if attempt.result is Result.PERMANENT:
        return Step(DeliveryState.FAILED, None, attempt.detail, refused=attempt.about_recipient)
    retry_at = now + retry_delay(attempts)
    if retry_at > expires_at:
        return Step(DeliveryState.FAILED, None, f"queue lifetime over; last error: {attempt.detail}", expired=True)
    return Step(DeliveryState.QUEUED, retry_at, attempt.detail)
