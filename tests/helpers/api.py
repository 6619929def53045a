"""The HTTP API in tests: a key made in the relay's database, the body of a valid case, and the
samples of a /metrics scrape."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from relay.app import App
from relay.core import credentials
from relay.store import api_keys

REVIEWER = "max.mueller@example.de"
BUSINESS = "service@shop.example"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def bearer(app: App) -> dict[str, str]:
    """The Authorization header of a new key (what `relay api-key create` stores)."""
    key = credentials.new_api_key()
    api_keys.create(f"test-{secrets.token_hex(4)}", credentials.digest(key), app.clock.now())
    return {"Authorization": f"Bearer {key}"}


def case_body(review_id: str | None = None, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "review_id": review_id or f"R-{secrets.token_hex(4)}", "business_id": "B-1",
        "business_name": "Beispiel Shop GmbH", "business_email": BUSINESS, "reviewer_email": REVIEWER,
        "reviewer_name": "Max M.", "requests": ["order_number"],
        "message": "Bitte nennen Sie uns Ihre Bestellnummer."}
    return {**body, **changes}


def base_url(app: App) -> str:
    return f"http://127.0.0.1:{app.settings.api.port}"


def scrape(app: App) -> Samples:
    """One GET /metrics (without a key), as {(sample name, labels): value}."""
    response = httpx.get(f"{base_url(app)}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def scrape_until(app: App, ready: Callable[[Samples], bool], timeout: float = 20.0) -> Samples:
    """Scrape until `ready` holds (counts follow the commit that records what they count)."""
    end = time.monotonic() + timeout
    samples = scrape(app)
    while not ready(samples) and time.monotonic() < end:
        time.sleep(0.1)
        samples = scrape(app)
    return samples
