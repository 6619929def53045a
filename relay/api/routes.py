"""The platform's endpoints under /v1: open, read, list and close cases, their events, erasure.

Each route is a thin adapter: it checks the key (relay.api.access), hands the work to the same
functions the CLI uses (relay.lifecycle.opening, relay.store.case_records, relay.lifecycle.erasure)
on the relay's database thread, and shapes the answer (relay.api.schemas). Errors are problem
details (relay.api.problems).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Security
from fastapi.responses import Response
from fastapi.security import HTTPBearer

from relay.api import schemas
from relay.api.access import Access
from relay.api.problems import MEDIA_TYPE, ProblemError
from relay.app import App
from relay.core import credentials
from relay.core.cases import NotContactable, validate_open_case
from relay.core.errors import InvalidInput
from relay.lifecycle.erasure import forget
from relay.lifecycle.opening import open_case
from relay.store import case_records, case_summaries, events, idempotency, webhook_queue
from relay.store.api_keys import ActiveKey
from relay.store.records import CaseDetail

CaseId = Annotated[int, Path(ge=1, le=2**31 - 1)]
_KEY = re.compile(r"[\x21-\x7e]{1,200}")
_BEARER = HTTPBearer(auto_error=False, description="a key from `relay api-key create NAME`")
PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": schemas.Problem, "content": {MEDIA_TYPE: {}}, "description": what}
    for status, what in ((401, "no valid key"), (404, "no such case"), (413, "body over 64 KiB"),
                         (422, "invalid fields"), (429, "rate limit reached"))}
# what a route with a body can answer besides: a body that is not UTF-8 (FastAPI's own 400)
MALFORMED: dict[int | str, dict[str, Any]] = {
    400: {"model": schemas.Problem, "content": {MEDIA_TYPE: {}}, "description": "the body cannot be read"}}
# OpenAPI links: where the id of a case just opened leads (clients and stateful tests follow them)
_CASE_ID = {"case_id": "$response.body#/id"}
CASE_LINKS = {"GetCase": {"operationId": "get_case", "parameters": _CASE_ID,
                          "description": "the case just opened"},
              "CloseCase": {"operationId": "close_case", "parameters": _CASE_ID,
                            "description": "close the case just opened"},
              "ListCaseEvents": {"operationId": "list_case_events", "parameters": _CASE_ID,
                                 "description": "the events of the case just opened"}}


def router(app: App, access: Access) -> APIRouter:
    # the bearer scheme is declared for the document (clients and their generators see it);
    # relay.api.access checks the key
    api = APIRouter(prefix="/v1", dependencies=[Security(_BEARER), Depends(access.check)], responses=PROBLEMS)

    @api.post("/cases", status_code=201, response_model=schemas.CaseCreated, operation_id="create_case",
              responses={**MALFORMED, 201: {"links": CASE_LINKS},
                         409: {"model": schemas.Problem, "content": {MEDIA_TYPE: {}},
                               "description": "the review already has an open case"}})
    async def create(request: Request, body: schemas.CaseRequest,
                     idempotency_key: Annotated[str | None, Header(max_length=200, json_schema_extra={
                         "pattern": "^[\\x21-\\x7e]{1,200}$"})] = None) -> Response:
        """Open a case and queue the contact request to the reviewer. Safe to retry with an
        `Idempotency-Key`: the same key and body within 24 hours get the first answer again."""
        if idempotency_key is not None and not _KEY.fullmatch(idempotency_key):
            raise ProblemError(422, "invalid-request", "see errors", errors=[
                {"field": "Idempotency-Key", "problem": "1-200 printable ASCII characters"}])
        key: ActiveKey = request.state.key  # the router's dependency checked it
        digest = credentials.request_digest("POST", "/v1/cases", await request.body(), app.key)
        try:
            status, text, replayed = await app.blocking(_open, app, body, key, idempotency_key, digest)
        except idempotency.Conflict:  # the same key in a request that committed meanwhile
            status, text, replayed = await app.blocking(_open, app, body, key, idempotency_key, digest)
        headers = {"Idempotent-Replayed": "true"} if replayed else None
        return Response(text, status_code=status, media_type="application/json", headers=headers)

    @api.get("/cases/{case_id}", response_model=schemas.CaseView, operation_id="get_case")
    async def read(case_id: CaseId) -> schemas.CaseView:
        """A case's state, times, message counts, notices and delivery problems."""
        return _view(await _summary(app, case_id))

    @api.get("/cases", response_model=schemas.CasePage, operation_id="list_cases")
    async def listing(review_id: Annotated[str | None, Query(max_length=200, pattern=schemas.ID)] = None,
                      business_id: Annotated[str | None, Query(max_length=200, pattern=schemas.ID)] = None,
                      state: Annotated[schemas.StateName | None, Query()] = None,  # type: ignore[valid-type]
                      limit: Annotated[int, Query(ge=1, le=200)] = 50,
                      # a case id: 18 digits stay within the 64-bit integers both databases compare with
                      cursor: Annotated[str | None, Query(max_length=18, pattern=r"^[0-9]+$")] = None,
                      ) -> schemas.CasePage:
        """Cases in id order, `limit` at a time; `next_cursor` leads to the next page."""
        found = await app.blocking(case_summaries.page, int(cursor) if cursor else None, limit + 1,
                                   review_id, business_id, state)
        more = len(found) > limit
        items = [_view(s) for s in found[:limit]]
        return schemas.CasePage(items=items, next_cursor=str(items[-1].id) if more else None)

    @api.post("/cases/{case_id}/close", response_model=schemas.CaseView, operation_id="close_case",
              responses=MALFORMED)
    async def close(case_id: CaseId, body: Annotated[schemas.CloseRequest | None, Body()] = None) -> schemas.CaseView:
        """Close a case (again: nothing changes); its relay addresses refuse mail from then on."""
        await _summary(app, case_id)
        reason = body.reason if body is not None and body.reason else "closed by the platform"
        await app.blocking(_close, app, case_id, reason)
        return _view(await _summary(app, case_id))

    @api.get("/cases/{case_id}/events", response_model=list[schemas.CaseEvent], operation_id="list_case_events")
    async def timeline(case_id: CaseId) -> list[schemas.CaseEvent]:
        """The case's events, oldest first (what `relay case show` lists), each with the webhook it
        made and that webhook's state."""
        try:
            detail, hooks = await app.blocking(_timeline, case_id)
        except case_records.NoSuchCase:
            raise ProblemError(404, "not-found", f"no case {case_id}") from None
        return [schemas.CaseEvent(name=e.name, at=_utc(e.at), detail=e.detail, webhook=hooks.get(e.id))
                for e in detail.events]

    @api.post("/erasure", response_model=schemas.ErasureResult, operation_id="erase_reviewer",
              responses=MALFORMED)
    async def erasure(body: schemas.ErasureRequest) -> schemas.ErasureResult:
        """Forget a reviewer: their address, name and message bodies (what `relay forget` does)."""
        try:
            counts = await app.blocking(forget, app, body.reviewer_email)
        except InvalidInput as exc:
            raise _invalid(exc) from None
        return schemas.ErasureResult(**counts)

    return api


def _open(app: App, body: schemas.CaseRequest, key: ActiveKey, idem: str | None,
          digest: str) -> tuple[int, str, bool]:
    """(status, body, replayed): the case opened and its answer stored, in one transaction."""
    now = app.clock.now()
    with events.transaction():
        if idem is not None:
            stored = idempotency.find(key.id, idem, now)
            if stored is not None:
                if stored.request_digest != digest:
                    raise ProblemError(422, "idempotency-mismatch", "this Idempotency-Key was used with another body")
                return stored.status, stored.body, True
            row = idempotency.claim(key.id, idem, digest, now)  # a racing twin waits here
        try:
            request = validate_open_case(**body.model_dump(exclude={"reply_window_days"}))
        except NotContactable as exc:
            raise ProblemError(422, "not-contactable", str(exc).split(": ", 1)[-1], field=exc.field) from None
        except InvalidInput as exc:
            raise _invalid(exc) from None
        window = timedelta(days=body.reply_window_days) if body.reply_window_days else None
        try:
            opened = open_case(app, request, window)
        except case_records.CaseAlreadyOpen as exc:
            raise ProblemError(409, "case-open", str(exc), case_id=exc.case_id) from None
        summary = case_summaries.summary(opened.case_id)
        assert summary is not None
        created = schemas.CaseCreated(**_view(summary).model_dump(), reviewer_address=opened.reviewer_address,
                                      business_address=opened.business_address)
        text = created.model_dump_json()
        if idem is not None:
            idempotency.answer(row, 201, text)
    return 201, text, False


def _timeline(case_id: int) -> tuple[CaseDetail, dict[int, schemas.WebhookRef]]:
    """A case's events and their webhooks ({event id: webhook}); one `sending` is still `pending`
    to the platform (no 2xx has confirmed it)."""
    detail = case_records.case_detail(case_id)
    found = webhook_queue.for_events([e.id for e in detail.events])
    return detail, {event: schemas.WebhookRef(id=msg_id, state="pending" if state == "sending" else state)  # type: ignore[arg-type]
                    for event, (msg_id, state) in found.items()}


def _close(app: App, case_id: int, reason: str) -> None:
    with events.transaction():
        case_records.close_case(case_id, reason, app.clock.now())


async def _summary(app: App, case_id: int) -> case_summaries.CaseSummary:
    found = await app.blocking(case_summaries.summary, case_id)
    if found is None:
        raise ProblemError(404, "not-found", f"no case {case_id}")
    return found


def _utc(value: Any) -> Any:
    """The relay's naive UTC times as aware ones: the JSON then says so (`...Z`)."""
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) else value


def _view(summary: case_summaries.CaseSummary) -> schemas.CaseView:
    data = {name: _utc(getattr(summary, name)) for name in summary.__dataclass_fields__}
    data["notices"] = {kind: _utc(at) for kind, at in summary.notices.items()}
    data["messages"] = schemas.Messages(**summary.messages)
    data["delivery_problems"] = [schemas.DeliveryProblem(party=p.party, kind=p.kind, status=p.status)  # type: ignore[arg-type]
                                 for p in summary.delivery_problems]
    return schemas.CaseView(**data)


def _invalid(exc: InvalidInput) -> ProblemError:
    name = {"request": "requests"}.get(exc.field, exc.field)
    return ProblemError(422, "invalid-request", "see errors", errors=[{"field": name, "problem": exc.problem}])


