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
Text = Annotated[str, Field(min_length=1, max_length=200)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CaseRequest(Strict):
    """Open a case: what `relay open-case` takes."""

    review_id: Text
    business_id: Text
    business_name: Text
    business_email: Annotated[str, Field(min_length=3, max_length=320)]
    reviewer_email: Annotated[str, Field(min_length=3, max_length=320)]
    reviewer_name: Text
    origin: OriginName = "organic"  # type: ignore[valid-type]
    locale: LocaleName = "de"
    requests: list[RequestName] = Field(default_factory=list, max_length=len(REQUESTS))
    message: Annotated[str, Field(min_length=1, max_length=20_000)]
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
    reason: Annotated[str | None, Field(max_length=500)] = None


class CaseEvent(BaseModel):
    name: str
    at: datetime
    detail: str


class ErasureRequest(Strict):
    reviewer_email: Annotated[str, Field(min_length=3, max_length=320)]


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
