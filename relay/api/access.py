"""Who may call the API and how often: bearer keys (relay.core.credentials) and a per-key rate.

A key is looked up by its digest and remembered for CACHE_SECONDS, so a busy platform costs no
database read per request; a revoked key therefore stops working within that time on every
instance. The last use is written at most once a minute per key. The rate limit is a token bucket
per key and instance (`[api] requests_per_minute`): bursts up to a minute's worth, then 429 with
Retry-After.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from fastapi import Request

from relay.api.problems import ProblemError
from relay.app import App
from relay.core import credentials
from relay.store import api_keys
from relay.store.api_keys import ActiveKey

CACHE_SECONDS = 10.0
TOUCH_SECONDS = 60.0


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class Access:
    app: App
    per_minute: int
    known: dict[str, tuple[ActiveKey | None, float]] = field(default_factory=dict)
    touched: dict[int, float] = field(default_factory=dict)
    buckets: dict[int, _Bucket] = field(default_factory=dict)

    async def check(self, request: Request) -> ActiveKey:
        """The caller's key, or 401 (the same answer for a missing, malformed, unknown or revoked key)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip().startswith(credentials.PREFIX):
            raise _unauthorized()
        key = await self._lookup(credentials.digest(token.strip()))
        if key is None:
            raise _unauthorized()
        request.state.api_key = key.name  # for the request's log line
        request.state.key = key
        self._limit(key)
        await self._touch(key)
        return key

    async def _lookup(self, digest: str) -> ActiveKey | None:
        now = time.monotonic()
        cached = self.known.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        key = await self.app.blocking(api_keys.find, digest)
        if len(self.known) > 10_000:  # keys tried by someone guessing: forget them all
            self.known.clear()
        self.known[digest] = (key, now + CACHE_SECONDS)
        return key

    def _limit(self, key: ActiveKey) -> None:
        now = time.monotonic()
        bucket = self.buckets.setdefault(key.id, _Bucket(float(self.per_minute), now))
        bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.at) * self.per_minute / 60)
        bucket.at = now
        if bucket.tokens < 1:
            wait = math.ceil((1 - bucket.tokens) * 60 / self.per_minute)
            raise ProblemError(429, "rate-limited", f"more than {self.per_minute} requests a minute with this key",
                               headers={"Retry-After": str(wait)})
        bucket.tokens -= 1

    async def _touch(self, key: ActiveKey) -> None:
        now = time.monotonic()
        if self.touched.get(key.id, 0) + TOUCH_SECONDS <= now:
            self.touched[key.id] = now
            await self.app.blocking(api_keys.touch, key.id, self.app.clock.now())


def _unauthorized() -> ProblemError:
    return ProblemError(401, "unauthorized", "send Authorization: Bearer <key> with a key from `relay api-key create`",
                        headers={"WWW-Authenticate": 'Bearer realm="relay"'})
