"""The webhook rules alone (relay.core.webhooks): which event becomes which webhook, what its body
may say, the retry schedule, the secret's format, and the signature the Standard Webhooks
reference library makes being the plain HMAC that docs/api.md describes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta

import pytest
from standardwebhooks import Webhook

from relay.core import webhooks as rules
from relay.core.vocabulary import Event, Mail, Party, WebhookState, WebhookType

NOW = datetime(2026, 11, 2, 9, 0)
CASE = rules.CaseFacts(7, "R-7", "B-7", "replied")


def test_events_map_to_webhook_types() -> None:
    assert rules.webhook_type(Event.CASE_OPENED, rules.NO_FACTS) is WebhookType.CASE_OPENED
    assert rules.webhook_type("case.declined", rules.NO_FACTS) is WebhookType.CASE_DECLINED  # by name alone
    assert rules.webhook_type(Event.NOTICE_SENT, rules.Facts(kind=Mail.CONTACT_REQUEST)) is \
        WebhookType.CASE_REQUEST_DELIVERED
    assert rules.webhook_type(Event.NOTICE_SENT, rules.Facts(kind=Mail.REMINDER)) is WebhookType.CASE_REMINDED
    assert rules.webhook_type(Event.NOTICE_SENT, rules.Facts(kind=Mail.REPLY_NOTICE)) is None
    assert rules.webhook_type(Event.DELIVERY_SENT, rules.Facts(kind=Mail.FORWARD)) is WebhookType.MESSAGE_FORWARDED
    for admin_only in (Event.NOTICE_QUEUED, Event.BOUNCE_RECEIVED, Event.AUTOREPLY_DROPPED, Event.INBOUND_REFUSED):
        assert rules.webhook_type(admin_only, rules.NO_FACTS) is None
    reachable = {rules.webhook_type(e.value, rules.Facts(kind=m)) for e in Event for m in (None, *Mail)}
    assert reachable - {None} == set(WebhookType)  # every type has an event that makes it


def test_data_holds_ids_states_and_typed_facts_only() -> None:
    base = {"case": 7, "review_id": "R-7", "business_id": "B-7", "state": "replied"}
    assert rules.data(WebhookType.CASE_REPLIED, CASE, rules.NO_FACTS) == base
    assert rules.data(WebhookType.CASE_EXPIRED, CASE, rules.NO_FACTS) == {**base, "may_report": True}
    forwarded = rules.data(WebhookType.MESSAGE_FORWARDED, CASE, rules.Facts(kind=Mail.FORWARD, party=Party.REVIEWER,
                                                                            late=True))
    assert forwarded == {**base, "direction": "business_to_reviewer", "late": True}
    failed = rules.Facts(kind=Mail.FORWARD, party=Party.BUSINESS, status="5.1.1",
                         reason=rules.FailureReason.REFUSED)
    assert rules.data(WebhookType.DELIVERY_FAILED, CASE, failed) == {
        **base, "party": "business", "kind": "forward", "status": "5.1.1", "reason": "refused"}
    # a status that is not an enhanced status code (a server's sentence, an address) never gets in
    quoting = rules.Facts(kind=Mail.FORWARD, party=Party.REVIEWER, status="550 <max@example.de> unknown")
    assert rules.data(WebhookType.DELIVERY_FAILED, CASE, quoting)["status"] is None
    assert rules.enhanced_status("550 5.1.1 <max@example.de>: Recipient address rejected") == "5.1.1"
    assert rules.enhanced_status("queue lifetime over; last error: connection refused") is None


def test_the_body_is_standard_webhooks_json() -> None:
    text = rules.body(WebhookType.CASE_OPENED, NOW.replace(microsecond=123456), {"case": 1, "name": "Jürgen"})
    assert json.loads(text) == {"type": "case.opened", "timestamp": "2026-11-02T09:00:00Z",
                                "data": {"case": 1, "name": "Jürgen"}}
    assert text.isascii()  # its text and its UTF-8 bytes are signed alike
    assert rules.new_id().startswith("msg_") and rules.new_id() != rules.new_id()


def test_retries_grow_from_seconds_to_hours_until_max_age() -> None:
    expires = NOW + timedelta(days=3)
    failed = rules.Attempt(rules.Result.FAILED, "HTTP 500")
    now, waits, attempts = NOW, [], 0
    while True:
        attempts += 1
        step = rules.next_step(failed, attempts, now, expires)
        if step.state is WebhookState.FAILED:
            break
        assert step.state is WebhookState.PENDING and step.next_attempt_at is not None
        waits.append(step.next_attempt_at - now)
        now = step.next_attempt_at
    assert waits[:7] == [timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2),
                         timedelta(hours=5), timedelta(hours=10), timedelta(hours=10)]
    assert attempts == 12 and step.reason == "max_age over; last error: HTTP 500"
    assert rules.next_step(rules.classify(204), 1, NOW, expires).state is WebhookState.SENT
    gone = rules.next_step(rules.classify(410, "Gone"), 3, NOW, expires)
    assert (gone.state, gone.next_attempt_at, gone.stop_endpoint) == (WebhookState.PENDING, NOW, True)
    for status in (301, 400, 404, 429, 500):
        assert rules.classify(status).result is rules.Result.FAILED


def test_secrets_are_checked_without_being_repeated() -> None:
    good = "whsec_" + base64.b64encode(b"k" * 32).decode()
    assert rules.secret_key(good) == b"k" * 32
    for bad, words in (("k" * 40, "must start with whsec_"), ("whsec_not base64!", "base64"),
                       ("whsec_" + base64.b64encode(b"short").decode(), "24 to 64 bytes")):
        with pytest.raises(ValueError, match=words) as info:
            rules.secret_key(bad)
        assert bad not in str(info.value)
    assert rules.endpoint("https://user:pw@platform.example:8443/hooks?token=abc") == \
        "https://platform.example:8443/hooks"


def test_the_reference_library_signs_the_plain_hmac_of_the_guide() -> None:
    secret = "whsec_" + base64.b64encode(bytes(range(32))).decode()
    body = rules.body(WebhookType.CASE_CLOSED, NOW, {"case": 1})
    signed = Webhook(secret).sign("msg_1", NOW, body)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    stamp = int((NOW - datetime(1970, 1, 1)).total_seconds())
    plain = base64.b64encode(hmac.new(key, f"msg_1.{stamp}.{body}".encode(), hashlib.sha256).digest()).decode()
    assert signed == f"v1,{plain}"
