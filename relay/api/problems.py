"""Errors as RFC 9457 problem details (`application/problem+json`), one `type` per kind of error.

The `type` is a stable relative URI (`/problems/case-open`): a platform branches on it, never on
the sentence in `title` or `detail`. Validation problems name each failing field in `errors`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from relay import logs
from relay.core.vocabulary import Event

MEDIA_TYPE = "application/problem+json"
TITLES = {
    "invalid-request": "The request has invalid fields",
    "malformed": "The request body cannot be read",
    "not-contactable": "The review may not be contacted",
    "case-open": "The review already has an open case",
    "idempotency-mismatch": "The Idempotency-Key was used for another request",
    "not-found": "Not found",
    "unauthorized": "A valid API key is required",
    "too-large": "The request body is too large",
    "rate-limited": "Too many requests",
    "unavailable": "The relay cannot answer now",
    "internal": "The relay failed to answer",
}
_GENERIC = {400: "malformed", 404: "not-found", 401: "unauthorized", 413: "too-large", 429: "rate-limited",
            503: "unavailable"}


class ProblemError(Exception):
    """Raised by a route: answered as a problem of `kind` with `status`."""

    def __init__(self, status: int, kind: str, detail: str | None = None, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail or TITLES.get(kind, kind))
        self.status, self.kind, self.detail, self.headers, self.extra = status, kind, detail, headers, extra


def problem(status: int, kind: str | None, detail: str | None = None, headers: dict[str, str] | None = None,
            **extra: Any) -> Response:
    body: dict[str, Any] = {"type": f"/problems/{kind}" if kind else "about:blank",
                            "title": TITLES.get(kind or "", _reason(status)), "status": status}
    if detail:
        body["detail"] = detail
    body.update({key: value for key, value in extra.items() if value is not None})
    return Response(json.dumps(body, ensure_ascii=False), status_code=status, media_type=MEDIA_TYPE,
                    headers=headers)


def field_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    """pydantic's errors as `{"field": "requests[1]", "problem": "..."}` (the body's own names)."""
    out = []
    for error in errors:
        where = [part for part in error.get("loc", ()) if part != "body"]
        name = ""
        for part in where:
            name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
        out.append({"field": name or "body", "problem": str(error.get("msg", "invalid"))})
    return out


def install(api: FastAPI) -> None:
    """Every error the API can answer, as problem details."""

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProblemError)
        return problem(exc.status, exc.kind, exc.detail, exc.headers, **exc.extra)

    async def on_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return problem(422, "invalid-request", "see errors", errors=field_errors(exc.errors()))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return problem(exc.status_code, _GENERIC.get(exc.status_code), str(exc.detail) if exc.detail else None,
                       dict(exc.headers) if exc.headers else None)

    async def on_crash(request: Request, exc: Exception) -> Response:
        # the route's template, never the path: a path may hold a capability (a decline token)
        route = getattr(request.scope.get("route"), "path", None) or "(no route)"
        logs.event(Event.API_ERROR, f"{request.method} {route} failed: {type(exc).__name__}",
                   level=logging.ERROR)
        return problem(500, "internal")

    generate = api.openapi

    def document() -> dict[str, Any]:
        if api.openapi_schema is None:
            api.openapi_schema = _as_sent(generate())
        return api.openapi_schema

    api.openapi = document  # type: ignore[method-assign]  # FastAPI's way to adjust its document
    api.add_exception_handler(ProblemError, on_problem)
    api.add_exception_handler(RequestValidationError, on_invalid)
    api.add_exception_handler(HTTPException, on_http)
    api.add_exception_handler(Exception, on_crash)


def _as_sent(document: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with each problem response under application/problem+json alone, with
    the Problem schema: FastAPI files a response model under the route's media type
    (application/json), which is not how a problem is sent, and would leave the body unchecked."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                if MEDIA_TYPE in content and "application/json" in content:
                    content[MEDIA_TYPE] = content.pop("application/json")
    return document


def _reason(status: int) -> str:
    from http import HTTPStatus
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
