"""The API's request and response bodies, as pydantic models: FastAPI validates requests against
them and writes the OpenAPI document from them. The rules of what may open a case stay in
relay.core.cases (the CLI uses them too); these models say the shapes and the enumerations."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from relay.core.cases import LOCALES, REQUESTS, Origin
from relay.core.vocabulary import State

OriginName = Literal[tuple(o.value for o in Origin)]  # type: ignore[valid-type]
LocaleName = Literal[LOCALES]  # type: ignore[valid-type]
RequestName = Literal[REQUESTS]  # type: ignore[valid-type]
StateName = Literal[tuple(s.value for s in State)]  # type: ignore[valid-type]
# What relay.core.cases accepts, said in the document for clients (the core checks it, with its own
# messages): surrounding whitespace is stripped; what remains has a visible character at each end
# and no control characters but tabs, nor, on a line, any line break (NEL, U+2028 and U+2029 too).
_EDGE = r"[^\s\x00-\x1f\x85\u2028\u2029]"
LINE = rf"^\s*(?:{_EDGE}|{_EDGE}[^\x00-\x08\x0a-\x1f\x85\u2028\u2029]*{_EDGE})\s*$"
LINES = rf"^\s*(?:{_EDGE}|{_EDGE}[^\x00-\x08\x0b\x0c\x0e-\x1f]*{_EDGE})\s*$"
Text = Annotated[str, Field(min_length=1, max_length=200, json_schema_extra={"pattern": LINE})]
# filters: no control characters but tabs, which no stored id has (and a NUL is not even a string
# PostgreSQL can compare)
ID = r"^[^\x00-\x08\x0a-\x1f]*$"
Email = Annotated[str, Field(min_length=3, max_length=320, pattern=r"^[^\x00-\x1f\x7f]*$",
                             json_schema_extra={"format": "email"})]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CaseRequest(Strict):
    """Open a case: what `relay open-case` takes."""

    review_id: Text
    business_id: Text
    business_name: Text
    business_email: Email
    reviewer_email: Email
    reviewer_name: Text
    origin: OriginName = "organic"  # type: ignore[valid-type]
    locale: LocaleName = "de"
    requests: list[RequestName] = Field(default_factory=list, max_length=len(REQUESTS))
    message: Annotated[str, Field(min_length=1, max_length=20_000, json_schema_extra={"pattern": LINES})]
    reply_window_days: Annotated[int | None, Field(ge=1, le=14)] = None


class Messages(BaseModel):
    from_reviewer: int
    from_business: int


class DeliveryProblem(BaseModel):
    party: Literal["reviewer", "business"]
    kind: str
    status: Literal["failed", "retrying"]


class CaseView(BaseModel):
    """A case as the platform sees it: never the reviewer's address or name, nor message content."""

    id: int
    review_id: str
    business_id: str
    state: StateName  # type: ignore[valid-type]
    opened_at: datetime
    deadline: datetime
    replied_at: datetime | None
    expired_at: datetime | None
    declined_at: datetime | None = Field(description="when the reviewer declined through their decline link")
    closed_at: datetime | None
    close_reason: str | None
    late: bool = Field(description="an answer came after the deadline")
    messages: Messages
    notices: dict[str, datetime] = Field(description="notice kind -> when it was sent")
    delivery_problems: list[DeliveryProblem]


class CaseCreated(CaseView):
    reviewer_address: str = Field(description="the relay address the reviewer writes to")
    business_address: str = Field(description="the relay address the business writes to")


class CasePage(BaseModel):
    items: list[CaseView]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class CloseRequest(Strict):
    reason: Annotated[str | None, Field(max_length=500, pattern=ID)] = None  # checked: PostgreSQL stores no NUL


class WebhookRef(BaseModel):
    """The webhook an event made (docs/api.md, "Webhooks")."""

    id: str = Field(description="its `webhook-id` header, the same on every attempt")
    state: Literal["pending", "sent", "failed"] = Field(
        description="pending: not yet confirmed by a 2xx (being sent, or waiting for its next attempt); "
                    "sent: answered 2xx; failed: given up after `[webhooks] max_age`")


class CaseEvent(BaseModel):
    name: str
    at: datetime
    detail: str
    webhook: WebhookRef | None = Field(
        default=None, description="the webhook this event made, if it made one (null for events that are none, "
                                  "and while webhooks are off)")


class ErasureRequest(Strict):
    reviewer_email: Email


class ErasureResult(BaseModel):
    reviews: int
    cases: int
    message_bodies: int
    cases_closed: int
    messages_kept_as_counts: int


class Problem(BaseModel):
    """RFC 9457 problem details; `errors` for invalid fields, `case_id` for a case already open."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, Any]] | None = None


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(description="part -> `ok`, `stopped`, or `unavailable (kind of error)`")
