"""The outbox's message bodies live in a table of their own (schema version 9): updating a
delivery no longer rewrites its body, and SQLite writes and reads a large one in place
(relay.store.blobs). A version-8 database (tests/fixtures/schema_8, sealed under the fixture's
key) is upgraded with its bodies moved as they were and its queue still delivered; large and
small bodies come back from the outbox byte for byte on SQLite and PostgreSQL; a delivery's
updates leave its body's row alone; purging removes body rows, oldest first."""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from relay.core.clock import ManualClock
from relay.core.vocabulary import Mail, Party
from relay.outbound.worker import Worker
from relay.store import blobs, migrations, outbox, transitions
from relay.store.models import Delivery, db
from tests.helpers import fixtures
from tests.helpers.environment import Sink

NOW = datetime(2026, 11, 28, 9, 0)


def _fixture_key(tmp_path: Path) -> str:
    """The key the version-8 fixture was sealed under, where the relay accepts a key file."""
    path = tmp_path / "fixture.key"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write((fixtures.FIXTURES / "schema_8" / "storage.key").read_text())
    return f"file:{path}"


def _bodies(db_url: str, query: str = "SELECT message_id, body FROM delivery_body") -> dict[str, bytes]:
    """Every delivery's stored (sealed) body, read with a connection of the test's own."""
    if db_url.startswith("sqlite:///"):
        with sqlite3.connect(db_url[len("sqlite:///"):]) as conn:
            found = conn.execute(query).fetchall()
    else:
        conn = psycopg2.connect(db_url)
        with conn, conn.cursor() as cursor:
            cursor.execute(query)
            found = cursor.fetchall()
        conn.close()
    return {message_id: bytes(body) for message_id, body in found}


def _columns(table: str) -> list[str]:
    return [column.name for column in db.obj.get_columns(table)]


def test_a_version_8_database_gets_its_bodies_moved_and_carries_on(db_url: str, app_factory: Any, sink: Sink,
                                                                    tmp_path: Path) -> None:
    fixtures.load(db_url, 8)
    before = _bodies(db_url, "SELECT message_id, body FROM delivery")
    assert len(before) == 5 and all(before.values())
    app = app_factory(db_url, ManualClock(NOW), outbound={"url": sink.url}, storage={"key": _fixture_key(tmp_path)})
    assert migrations.version(db.obj) == migrations.CURRENT == 9
    assert "body" not in _columns("delivery") and _columns("delivery_body")[-1] == "body"
    assert "delivery_body_age" not in {index.name for index in db.obj.get_indexes("delivery")}
    assert _bodies(db_url) == before  # every body moved over as it was, still sealed where it was bound

    counts = asyncio.run(Worker.for_app(app).run_pass())
    assert counts.sent == 4 and counts.failed == 0  # three queued contact requests and the forward
    forward = sink.to("service2@shop.example")[0]["raw"]
    assert b"Marmorkuchen" in forward and b"erika" not in forward.lower()
    assert migrations.migrate(db.obj) == []  # a second start finds nothing to do


def test_a_new_database_has_the_body_last_in_its_own_table(tmp_path: Path, app_factory: Any) -> None:
    app_factory(f"sqlite:///{tmp_path}/relay.db")
    assert _columns("delivery_body")[-1] == "body" and "body" not in _columns("delivery")


@pytest.mark.parametrize("size", [1000, blobs.IN_PLACE_FROM, 3 * 1024 * 1024 + 7])
def test_bodies_come_back_byte_for_byte(db_url: str, app_factory: Any, size: int) -> None:
    app_factory(db_url, ManualClock(NOW))
    body = b"Subject: x\r\n\r\n" + secrets.token_bytes(size)
    with db.obj.atomic():
        outbox.enqueue(case_id=None, source_id=None, kind=Mail.FORWARD, recipient_party=Party.BUSINESS,
                       recipient="service@shop.example", message_id=f"<{size}@relay.test>", queue_id="Q1",
                       body=body, now=NOW, lifetime=timedelta(days=5))
    held = _bodies(db_url)[f"<{size}@relay.test>"]
    assert len(held) > len(body) and body[20:80] not in held  # sealed, in place or bound
    _, claimed = outbox.claim(NOW, timedelta(minutes=1), 10)  # the claim updates the delivery's row
    assert [bytes(item.body) for item in claimed] == [body]
    assert Delivery.get().size == len(body)
    assert _bodies(db_url)[f"<{size}@relay.test>"] == held  # the body's row was left alone


def test_a_body_of_another_size_than_its_room_is_refused(tmp_path: Path, app_factory: Any) -> None:
    app_factory(f"sqlite:///{tmp_path}/relay.db")
    with db.obj.atomic():
        db.obj.execute_sql("INSERT INTO delivery (kind, recipient_party, recipient, message_id, queue_id, size, "
                           "state, attempts, created_at, expires_at, next_attempt_at) VALUES "
                           "('forward', 'business', 'x', '<m>', 'Q', 0, 'queued', 0, ?, ?, ?)", (NOW, NOW, NOW))
        db.obj.execute_sql("INSERT INTO delivery_body (delivery_id, message_id, created_at, body) "
                           "VALUES (1, '<m>', ?, zeroblob(10))", (NOW,))
        with pytest.raises(ValueError, match="holds 10 bytes, not 11"):
            blobs.write("delivery_body", "body", 1, b"x" * 11)


def test_purged_bodies_leave_their_table_oldest_first(db_url: str, app_factory: Any) -> None:
    app_factory(db_url, ManualClock(NOW))
    with db.obj.atomic():
        for n in range(3):
            outbox.enqueue(case_id=None, source_id=None, kind=Mail.FORWARD, recipient_party=Party.BUSINESS,
                           recipient="service@shop.example", message_id=f"<p{n}@relay.test>", queue_id=f"Q{n}",
                           body=b"Subject: x\r\n\r\nhallo", now=NOW - timedelta(days=n * 40),
                           lifetime=timedelta(days=5))
    Delivery.update(state="sent").where(Delivery.message_id != "<p0@relay.test>").execute()
    Delivery.update(state="queued").where(Delivery.message_id == "<p0@relay.test>").execute()
    assert transitions.purge_bodies(NOW - timedelta(days=30), 1) == 1  # the oldest first, as many as asked
    assert set(_bodies(db_url)) == {"<p0@relay.test>", "<p1@relay.test>"}
    assert transitions.purge_bodies(NOW - timedelta(days=30), 10) == 1
    assert set(_bodies(db_url)) == {"<p0@relay.test>"}  # not finished: kept
    assert Delivery.select().count() == 3  # the metadata stays
