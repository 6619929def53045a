"""GET /metrics of a running relay over real HTTP and SMTP on loopback, on SQLite and PostgreSQL:
the counters of what this instance did (SMTP outcomes, deliveries, notices, API requests, the
latency histograms), the gauges read from the database, no key needed, and 404 when turned off."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from relay.core.clock import ManualClock
from tests.helpers.api import BUSINESS, REVIEWER, Samples, base_url, bearer, case_body, scrape, scrape_until, value
from tests.helpers.environment import Sink, raw_sql
from tests.helpers.smtp import smtp_send


def test_metrics_count_what_the_relay_did(db_url: str, app_factory: Any, relay_factory: Any, sink: Sink) -> None:
    app = app_factory(db_url, outbound={"url": sink.url}, inbound={"max_message_bytes": 4096})
    relay = relay_factory(app)
    api, key = base_url(app), bearer(app)
    created = httpx.post(f"{api}/v1/cases", json=case_body(), headers=key, timeout=10)
    assert created.status_code == 201, created.text
    assert httpx.get(f"{api}/v1/cases/999999", headers=key, timeout=10).status_code == 404
    assert httpx.get(f"{api}/v1/cases", timeout=10).status_code == 401
    assert sink.wait(REVIEWER)

    answer = f"From: Max <{REVIEWER}>\r\nSubject: Re: Anfrage\r\n\r\nBestellnummer BE-48213\r\n".encode()
    code, text = smtp_send(relay.port, REVIEWER, created.json()["reviewer_address"], answer)
    assert code == 250, text
    code, text = smtp_send(relay.port, REVIEWER, "a" * 32 + "@relay.test", answer)
    assert code == 550, text
    code, text = smtp_send(relay.port, REVIEWER, created.json()["reviewer_address"], answer + b"x" * 5000)
    assert code == 552, text  # aiosmtpd's own refusal, in the relay's words
    assert sink.wait(BUSINESS, kind="forward")

    samples = scrape_until(app, lambda s: value(s, "relay_deliveries_total", kind="forward", result="sent") == 1)
    outcomes = {dict(labels)["outcome"]: v for (name, labels), v in samples.items()
                if name == "relay_inbound_outcomes_total"}
    assert {o: v for o, v in outcomes.items() if v} == {"accepted": 1, "unknown_address": 1, "too_large": 1}
    assert len(outcomes) > 15  # every outcome is there from the start, at 0
    assert value(samples, "relay_smtp_data_seconds_count") == 1  # the refusal came at RCPT, before DATA
    assert value(samples, "relay_deliveries_total", kind="contact_request", result="sent") == 1
    assert value(samples, "relay_deliveries_total", kind="forward", result="deferred") == 0
    assert value(samples, "relay_notices_sent_total", kind="contact_request") == 1
    assert value(samples, "relay_notices_sent_total", kind="forward") is None  # a forward is no notice
    # API requests by route template (not the path), method and status; /metrics itself needs no key
    assert value(samples, "relay_api_requests_total", method="POST", route="/v1/cases", status="201") == 1
    assert value(samples, "relay_api_requests_total", method="GET", route="/v1/cases/{case_id}", status="404") == 1
    assert value(samples, "relay_api_requests_total", method="GET", route="/v1/cases", status="401") == 1
    # a scrape is counted once answered: the next one shows it
    assert (value(scrape(app), "relay_api_requests_total", method="GET", route="/metrics", status="200") or 0) >= 1
    assert value(samples, "relay_api_request_seconds_count", method="POST", route="/v1/cases") == 1
    # the database's gauges
    assert value(samples, "relay_database_up") == 1
    assert value(samples, "relay_cases", state="replied") == 1
    assert value(samples, "relay_cases", state="awaiting_reply") == 0
    assert {s: value(samples, "relay_outbox_deliveries", state=s) for s in ("queued", "sending", "failed")} == \
        {"queued": 0, "sending": 0, "failed": 0}
    assert value(samples, "relay_outbox_oldest_pending_age_seconds") == 0


def test_database_gauges_are_shared_and_counters_are_each_instances_own(
        db_url: str, app_factory: Any, relay_factory: Any) -> None:
    """Two intake-only instances on one database (nothing is delivered, so the contact request
    waits): both report the same gauges, only the one that answered counts the request."""
    clock = ManualClock()
    first = app_factory(db_url, clock)
    relay_factory(first, background=False)
    second = app_factory(db_url, clock)
    relay_factory(second, background=False)
    created = httpx.post(f"{base_url(first)}/v1/cases", json=case_body(), headers=bearer(first), timeout=10)
    assert created.status_code == 201, created.text
    clock.advance(timedelta(seconds=90))

    def gauges(samples: Samples) -> dict[str, float | None]:
        return {"awaiting": value(samples, "relay_cases", state="awaiting_reply"),
                "queued": value(samples, "relay_outbox_deliveries", state="queued"),
                "oldest": value(samples, "relay_outbox_oldest_pending_age_seconds")}

    one, two = scrape(first), scrape(second)
    assert gauges(one) == gauges(two) == {"awaiting": 1, "queued": 1, "oldest": 90}
    created_here = {"method": "POST", "route": "/v1/cases", "status": "201"}
    assert value(one, "relay_api_requests_total", **created_here) == 1
    assert value(two, "relay_api_requests_total", **created_here) is None

    raw_sql(db_url, "ALTER TABLE delivery RENAME TO delivery_away")
    try:
        down = scrape(first)  # the counters still go out, the database gauges are left out
    finally:
        raw_sql(db_url, "ALTER TABLE delivery_away RENAME TO delivery")
    assert value(down, "relay_database_up") == 0
    assert value(down, "relay_outbox_deliveries", state="queued") is None
    assert value(down, "relay_api_requests_total", **created_here) == 1
    assert value(scrape(first), "relay_database_up") == 1


def test_metrics_off_is_404(db_url: str, app_factory: Any, relay_factory: Any) -> None:
    app = app_factory(db_url, api={"metrics": False})
    relay_factory(app, background=False)
    response = httpx.get(f"{base_url(app)}/metrics", timeout=10)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/not-found"
    assert "/metrics" not in httpx.get(f"{base_url(app)}/openapi.json", timeout=10).json()["paths"]
    assert httpx.get(f"{base_url(app)}/healthz", timeout=10).status_code == 200
