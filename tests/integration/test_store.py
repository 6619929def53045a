"""Storage on SQLite and PostgreSQL: cases, addresses, the contact request, outbox claims."""

from __future__ import annotations

import email
import email.policy
import threading
from datetime import datetime, timedelta
from typing import Any

import pytest

from relay.core.clock import ManualClock
from relay.store import case_records as case_store
from relay.store import outbox
from relay.store.models import Case, Delivery, Message, RelayAddress, db
from relay.store.prepared import Prepared
from tests.helpers import stored
from tests.helpers.environment import new_case


def contact_request(case_id: int) -> email.message.EmailMessage:
    row = Delivery.get((Delivery.case == case_id) & (Delivery.kind == "contact_request"))
    return email.message_from_bytes(stored.body(row), policy=email.policy.default)


def test_open_case_queues_a_german_contact_request(db_url: str, app_factory: Any) -> None:
    clock = ManualClock()
    app = app_factory(db_url, clock)
    opened = new_case(app)
    assert opened.reviewer_address != opened.business_address
    for address in (opened.reviewer_address, opened.business_address):
        local, _, domain = address.partition("@")
        assert domain == "relay.test" and len(local) == 32
    assert opened.deadline == (clock.now() + timedelta(days=5)).isoformat(timespec="seconds") + "Z"
    assert RelayAddress.select().count() == 2
    msg = contact_request(opened.case_id)
    assert msg["From"].addresses[0].addr_spec == opened.reviewer_address
    assert str(msg["Reply-To"]) == opened.reviewer_address
    assert str(msg["To"]).endswith("<max.mueller@example.de>")
    assert msg["Auto-Submitted"] == "auto-generated"
    assert "Beispiel Shop GmbH" in msg["Subject"]
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for body in (text, html):
        assert "Bitte nennen Sie uns Ihre Bestellnummer." in body
        assert "Ihre Bestellnummer" in body  # what is asked
        assert "nicht mitgeteilt" in body     # the address is not shared
        assert "10. Januar 2026" in body      # the deadline, in German, Berlin time
    assert "service@shop.example" not in stored.body(Delivery.get(Delivery.case == opened.case_id)).decode()


def test_english_contact_request_and_escaping(db_url: str, app_factory: Any) -> None:
    from relay.core.cases import validate_open_case
    from relay.lifecycle.opening import open_case

    app = app_factory(db_url, ManualClock())
    request = validate_open_case(
        review_id="R-en", business_id="B-2", business_name="Tom & Jerry <Ltd>", business_email="a@shop.example",
        reviewer_email="jane@example.com", reviewer_name="Jane D.", origin="invited_external", locale="en",
        requests=["reference", "contact_details"], message="Could you <b>tell</b> us your booking?")
    msg = contact_request(open_case(app, request).case_id)
    html = msg.get_body(("html",)).get_content()
    assert "Tom &amp; Jerry &lt;Ltd&gt;" in html and "&lt;b&gt;tell&lt;/b&gt;" in html
    text = msg.get_body(("plain",)).get_content()
    assert "Tom & Jerry <Ltd>" in text and "January 10, 2026" in text
    assert "not shared" in text and "booking or customer reference" in text


def test_one_open_case_per_review(db_url: str, app_factory: Any) -> None:
    app = app_factory(db_url, ManualClock())
    first = new_case(app, review_id="R-1")
    with pytest.raises(case_store.CaseAlreadyOpen):
        new_case(app, review_id="R-1")
    assert Delivery.select().count() == 1  # nothing of the refused attempt was stored
    assert case_store.close_case(first.case_id, "withdrawn", app.clock.now())
    assert not case_store.close_case(first.case_id, "again", app.clock.now())
    second = new_case(app, review_id="R-1")
    assert second.case_id != first.case_id
    with pytest.raises(case_store.NoSuchCase):
        case_store.close_case(999999, None, app.clock.now())


def test_claims_are_exclusive_and_leases_expire(db_url: str, app_factory: Any) -> None:
    clock = ManualClock()
    app = app_factory(db_url, clock)
    for n in range(30):
        new_case(app, review_id=f"R-{n}")
    results: list[list[int]] = []
    lock = threading.Lock()

    def grab() -> None:
        _, claimed = outbox.claim(clock.now(), timedelta(seconds=15), 10)
        with lock:
            results.append([c.id for c in claimed])

    threads = [threading.Thread(target=grab) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed_ids = [i for r in results for i in r]
    assert len(claimed_ids) == len(set(claimed_ids)) == 30
    assert outbox.claim(clock.now(), timedelta(seconds=15), 100)[1] == []
    clock.advance(timedelta(seconds=16))  # every lease ran out: a dead worker's claims come back
    token, again = outbox.claim(clock.now(), timedelta(seconds=15), 100)
    assert len(again) == 30 and all(c.attempts == 2 for c in again)
    assert not outbox.mark_sent([again[0].id], "not-the-token", clock.now())
    assert outbox.mark_sent([again[0].id], token, clock.now()) == {again[0].id}
    assert outbox.mark_retry(again[1].id, token, clock.now() + timedelta(minutes=1), "451 later")
    assert outbox.mark_failed(again[2].id, token, "550 no such user")
    counts = outbox.state_counts()
    assert counts == {"sent": 1, "queued": 1, "failed": 1, "sending": 27}
    pending = outbox.oldest_pending()
    assert pending is not None and pending.attempts == 2


def test_prepared_queries_answer_as_peewee_does(db_url: str, app_factory: Any) -> None:
    """The per-message queries with SQL generated once give what peewee's own queries give, dates
    as dates, on both databases; the second run (cached SQL) binds its own values."""
    clock = ManualClock()
    app = app_factory(db_url, clock)
    first, second = new_case(app), new_case(app, reviewer="erika@example.org", business="info@laden.example")
    for opened in (first, second, first):
        for address, writer in ((opened.reviewer_address, "reviewer"), (opened.business_address, "business")):
            found = case_store.conversation(address.split("@")[0].upper(), "relay.test")
            assert found is not None and found.case_id == opened.case_id and found.writer.value == writer
            row = Case.get_by_id(opened.case_id)
            assert (found.deadline, found.last_activity_at, found.locale) == (row.deadline, row.last_activity_at,
                                                                              row.locale)
            assert isinstance(found.deadline, datetime)
            other = opened.business_address if writer == "reviewer" else opened.reviewer_address
            assert found.reader_alias == other
            assert found.reviewer_answered is False
    assert case_store.conversation("0" * 32, "relay.test") is None
    Message.create(case=second.case_id, queue_id="Q0", sender="business", received_at=clock.now() - timedelta(hours=3),
                   size=1)
    Message.create(case=first.case_id, queue_id="Q1", sender="reviewer", received_at=clock.now(), size=1)
    # the reviewer has written into the first case (a late answer counts the same); a business
    # message does not open the second
    for opened, answered in ((first, True), (second, False)):
        business_side = case_store.conversation(opened.business_address.split("@")[0], "relay.test")
        assert business_side is not None and business_side.reviewer_answered is answered
    Message.create(case=first.case_id, queue_id="Q2", sender="reviewer", received_at=clock.now() - timedelta(hours=2),
                   size=1)
    Message.create(case=second.case_id, queue_id="Q3", sender="reviewer", received_at=clock.now(), size=1)
    since = clock.now() - timedelta(hours=1)
    assert case_store.messages_since(first.case_id, since, 30) == 1
    assert case_store.messages_since(first.case_id, since - timedelta(hours=2), 30) == 2
    assert case_store.messages_since(first.case_id, since - timedelta(hours=2), 1) == 1  # counted up to enough
    assert case_store.messages_since(second.case_id, since, 30) == 1


def test_prepared_queries_survive_a_new_connection(db_url: str, app_factory: Any) -> None:
    """On PostgreSQL the statements are prepared on the server, per connection: a new connection
    (after the database restarted, say) prepares them again; other threads have their own."""
    app = app_factory(db_url, ManualClock())
    opened = new_case(app)
    local = opened.reviewer_address.split("@")[0]

    def look_up() -> int | None:
        found = case_store.conversation(local, "relay.test")
        return found.case_id if found else None

    assert look_up() == opened.case_id
    if db_url.startswith("postgresql"):
        names = [r[0] for r in db.execute_sql("SELECT name FROM pg_prepared_statements").fetchall()]
        assert any(name.startswith("relay_") for name in names)
    db.close()
    db.connect()
    assert look_up() == opened.case_id
    elsewhere: list[int | None] = []
    thread = threading.Thread(target=lambda: elsewhere.append(look_up()))
    thread.start()
    thread.join()
    assert elsewhere == [opened.case_id]


def test_a_prepared_query_must_bind_every_value() -> None:
    unused = Prepared(lambda local_part, other: RelayAddress.select().where(RelayAddress.local_part == local_part))
    with pytest.raises(ValueError, match="once as a parameter"):
        unused.rows("a", "b")
