"""What wraps every API request: a request id, a bounded body, and one log line.

Pure ASGI (no buffering of responses): the body is counted as it arrives and a request that
announces or sends more than MAX_BODY bytes is answered 413 before any route sees it. The
`X-Request-Id` of the request (a platform's own correlation id) is kept when it is sane, else one
is made; it is echoed and logged with the route, the status, the key's name (never the key) and
the time taken.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from relay import logs
from relay.api.problems import ProblemError, problem
from relay.core.vocabulary import Event

# A case's message may have 20,000 characters (relay.core.cases); sent as UTF-8, or escaped as
# JSON encoders do with the odd umlaut, it fits in 64 KiB many times over. A body of only escaped
# astral characters (12 bytes each) would not: the limit on bytes is the one that holds then (413).
MAX_BODY = 64 * 1024
_SANE_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Envelope:
    """The ASGI middleware around the FastAPI application."""

    def __init__(self, app: ASGIApp, observe: Callable[[str, str, int, float], None] | None = None) -> None:
        self.app = app
        self.observe = observe  # (method, route, status, seconds): the metrics, where enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given = headers.get("x-request-id", "")
        request_id = given if _SANE_ID.fullmatch(given) else uuid.uuid4().hex
        started = time.perf_counter()
        status = 500
        scope.setdefault("state", {})

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            length = int(headers.get("content-length", "0") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY:
            await _answer_too_large(scope, receive, send_with_id)
        else:
            await self.app(scope, _counted(receive), send_with_id)
        self._log(scope, request_id, status, time.perf_counter() - started)

    def _log(self, scope: Scope, request_id: str, status: int, seconds: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or "(no route)"
        key = scope.get("state", {}).get("api_key")
        logs.event(Event.API_REQUEST, f"{scope['method']} {path} {status} in {seconds * 1000:.1f} ms",
                   request_id=request_id, key=key, status=status)
        if self.observe is not None:
            self.observe(scope["method"], path, status, seconds)


def _counted(receive: Receive) -> Receive:
    seen = 0

    async def counting() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_BODY:  # answered by the problem handlers, inside the application
                raise ProblemError(413, "too-large", f"request bodies are limited to {MAX_BODY // 1024} KiB")
        return message
    return counting


async def _answer_too_large(scope: Scope, receive: Receive, send: Send) -> None:
    response = problem(413, "too-large", f"request bodies are limited to {MAX_BODY // 1024} KiB")
    await response(scope, receive, send)
