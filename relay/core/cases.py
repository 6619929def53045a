"""What a case is and which inputs may open one (pure: values in, values or InvalidInput out)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum, StrEnum

from relay.core import addresses
from relay.core.errors import InvalidInput, Refused
from relay.core.vocabulary import State


class Origin(Enum):
    ORGANIC = "organic"
    INVITED_EXTERNAL = "invited_external"
    INVITED_PLATFORM = "invited_platform"


CONTACTABLE = frozenset({Origin.ORGANIC, Origin.INVITED_EXTERNAL})
LOCALES = ("de", "en")
REQUESTS = ("order_number", "reference", "contact_details")


class NotContactable(Refused):
    """The review may not be contacted (the platform's own invitation)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"--{field.replace('_', '-')}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class OpenCaseRequest:
    review_id: str
    business_id: str
    business_name: str
    business_email: str
    reviewer_email: str
    reviewer_name: str
    origin: Origin
    locale: str
    requests: tuple[str, ...]
    message: str


def _text(field: str, value: str | None, max_len: int, single_line: bool = True) -> str:
    text = (value or "").strip()
    if not text:
        raise InvalidInput(field, "must not be empty")
    # every line break Python knows (NEL, U+2028 and U+2029 too): a name goes into a mail header,
    # where the email package refuses them all
    if single_line and len(text.splitlines()) > 1:
        raise InvalidInput(field, "must be a single line (no line breaks)")
    if any(ord(c) < 32 and c not in "\r\n\t" for c in text):
        raise InvalidInput(field, "contains control characters")
    if len(text) > max_len:
        raise InvalidInput(field, f"is longer than {max_len} characters")
    return text


def _email(field: str, value: str | None) -> str:
    try:
        return addresses.validate(value or "")
    except addresses.InvalidAddress as exc:
        raise InvalidInput(field, str(exc)) from None


def validate_open_case(*, review_id: str | None, business_id: str | None, business_name: str | None,
                       business_email: str | None, reviewer_email: str | None, reviewer_name: str | None,
                       origin: str | None, locale: str | None, requests: Sequence[str] | None,
                       message: str | None) -> OpenCaseRequest:
    """Check every input of `relay open-case`; the first problem raises InvalidInput naming the field."""
    try:
        parsed_origin = Origin(origin or "organic")
    except ValueError:
        raise InvalidInput("origin", f"{origin!r} is not one of "
                                     f"{', '.join(o.value for o in Origin)}") from None
    if parsed_origin not in CONTACTABLE:
        raise NotContactable("origin", "reviews written after the platform's own invitation "
                                       "(invited_platform) cannot be contacted")
    chosen_locale = locale or "de"
    if chosen_locale not in LOCALES:
        raise InvalidInput("locale", f"{chosen_locale!r} is not one of {', '.join(LOCALES)}")
    asked = tuple(dict.fromkeys(requests or ()))
    for item in asked:
        if item not in REQUESTS:
            raise InvalidInput("request", f"{item!r} is not one of {', '.join(REQUESTS)}")
    business_email_ok = _email("business_email", business_email)
    reviewer_email_ok = _email("reviewer_email", reviewer_email)
    if business_email_ok == reviewer_email_ok:
        raise InvalidInput("reviewer_email", "is the same as the business's address")
    return OpenCaseRequest(
        review_id=_text("review_id", review_id, 200),
        business_id=_text("business_id", business_id, 200),
        business_name=_text("business_name", business_name, 200),
        business_email=business_email_ok,
        reviewer_email=reviewer_email_ok,
        reviewer_name=_text("reviewer_name", reviewer_name, 200),
        origin=parsed_origin,
        locale=chosen_locale,
        requests=asked,
        message=_text("message", message, 20_000, single_line=False),
    )


def deadline(opened_at: datetime, reply_window: timedelta) -> datetime:
    return opened_at + reply_window


FINAL_FOR_MAIL = frozenset({State.CLOSED, State.DECLINED})


def accepts_mail(state: State, last_activity: datetime, now: datetime, lifetime: timedelta) -> bool:
    """Relay addresses stop working when the case is closed or declined (the reviewer said they will
    not answer: nothing more reaches them, nor comes from them) or the conversation went quiet too
    long."""
    return state not in FINAL_FOR_MAIL and now - last_activity <= lifetime


class Standing(StrEnum):
    """What a decline link can do for a case at this moment (the page it leads to says which)."""

    OPEN = "open"            # awaiting the first answer within the window: the reviewer may decline
    DECLINED = "declined"    # declined already (a second confirm changes nothing)
    ANSWERED = "answered"    # the reviewer has answered: there is nothing left to decline
    EXPIRED = "expired"      # the window passed without an answer: the business was told so
    CLOSED = "closed"        # the platform, an admin or the lifetime closed it


def decline_standing(state: State, deadline: datetime, now: datetime, answered: bool,
                     declined: bool) -> Standing:
    """Declining is the reviewer's answer "no": it is open exactly while an answer is awaited, the
    same window in which an answer makes the case `replied`. A case declined and later closed
    still says it was declined, which is what the reviewer did."""
    if declined or state is State.DECLINED:
        return Standing.DECLINED
    if state is State.CLOSED:
        return Standing.CLOSED
    if answered or state is State.REPLIED:
        return Standing.ANSWERED
    if state is State.EXPIRED or now >= deadline:
        return Standing.EXPIRED
    return Standing.OPEN
