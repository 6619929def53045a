"""Encryption at rest, on SQLite and PostgreSQL: after a whole conversation a copied database (its
file, WAL and backup; pg_dump's output and the server's table files) names nobody and says nothing
without the key, where the same conversation with encryption off shows it all; a value moved to
another row or column is refused; a plaintext database of the code before is sealed by the
migration; and a relay with a missing, wrong or too open key does not start."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import peewee as pw
import pytest

from relay.app import App, key_source
from relay.core import sealing
from relay.core.cases import validate_open_case
from relay.core.clock import ManualClock
from relay.core.outcomes import Outcome
from relay.core.vocabulary import DeliveryState
from relay.inbound import intake, returns
from relay.lifecycle.erasure import forget
from relay.lifecycle.opening import Opened, open_case
from relay.outbound.worker import Worker
from relay.store import case_records, database, migrations, outbox, sealed_columns
from relay.store.models import Case, Delivery, DeliveryBody, Message, Review, Setting, db
from tests.helpers import fixtures, stolen
from tests.helpers.cli import relay_cli, write_settings
from tests.helpers.environment import REPO, Sink, _reset_postgres
from tests.helpers.reports import dsn
from tests.helpers.smtp import smtp_send

REVIEWER, REVIEWER_ASCII = "Max.Mueller@bücher.example", "max.mueller@xn--bcher-kva.example"
NAME, BUSINESS = "Maximilian Zauberberg", "kundendienst@shop-beispiel.example"
WORDS = {"case message": "Kaffeemaschinenreklamation", "reviewer text": "Zugvogelquittung",
         "attachment": "Marmorkuchenrezept", "business text": "Leuchtturmwaerter",
         "close reason": "Schlichtungsstelle"}
NEEDLES = {"address": REVIEWER_ASCII, "address (unicode)": "max.mueller@bücher.example", "name": NAME,
           "business mailbox": BUSINESS, **WORDS}


def converse(app: App, relay: Any, sink: Sink) -> Opened:
    """Open a case, the reviewer answers with an attachment, the business answers, a reminder is
    sent and bounces."""
    opened = open_case(app, validate_open_case(
        review_id="R-stolen", business_id="B-stolen", business_name="Beispiel Shop GmbH", business_email=BUSINESS,
        reviewer_email=REVIEWER, reviewer_name=NAME, origin="organic", locale="de", requests=["order_number"],
        message=f"Es geht um Ihre {WORDS['case message']}."))
    sink.wait(REVIEWER_ASCII)
    answer = (f"From: {NAME} <{REVIEWER_ASCII}>\r\nTo: {opened.reviewer_address}\r\nSubject: Re: Anfrage\r\n"
              f"Message-ID: <antwort.{REVIEWER_ASCII}>\r\nMIME-Version: 1.0\r\n"
              "Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n"
              f"Hier die {WORDS['reviewer text']}, Gruss {NAME}\r\n--b1\r\n"
              "Content-Type: text/plain; name=beleg.txt\r\nContent-Disposition: attachment; filename=beleg.txt\r\n\r\n"
              f"{WORDS['attachment']} BE-4711\r\n--b1--\r\n").encode()
    assert smtp_send(relay.port, REVIEWER_ASCII, opened.reviewer_address, answer)[0] == 250
    sink.wait(BUSINESS, kind="forward")
    reply = (f"From: <{BUSINESS}>\r\nTo: {opened.business_address}\r\nSubject: Re: Anfrage\r\n\r\n"
             f"Danke, der {WORDS['business text']} meldet sich.\r\n").encode()
    assert smtp_send(relay.port, BUSINESS, opened.business_address, reply)[0] == 250
    assert len(sink.wait(REVIEWER_ASCII, count=2)) == 2  # the contact request and the business's answer
    forward = next(d for d in case_records.case_detail(opened.case_id).deliveries
                   if d.kind == "forward" and d.recipient_party == "reviewer" and d.state == "sent")
    delivery = returns.lookup(app, forward.id, app.clock.now())
    assert delivery is not None  # the reviewer's mailbox gives it back: a notice goes to the business
    assert returns.process(app, delivery, "", dsn("failed", "5.1.1")).outcome is Outcome.BOUNCE_RECORDED
    assert len(sink.wait(BUSINESS, count=2)) == 2  # the reviewer's forward, the notice that they are unreachable
    assert case_records.close_case(opened.case_id, f"die {WORDS['close reason']} ist eingeschaltet", app.clock.now())
    assert WORDS["close reason"] in (case_records.case_detail(opened.case_id).case.close_reason or "")
    return opened


def stolen_copies(db_url: str, tmp_path: Path) -> dict[str, bytes]:
    database.close()
    path = database.sqlite_path(db_url)
    if path is not None:
        copies = len(list(tmp_path.glob("*-backup-*.db")))
        return stolen.sqlite_files(path, tmp_path / f"{path.stem}-backup-{copies}.db")
    return stolen.postgres_files(db_url)


def test_a_stolen_database_names_nobody_and_says_nothing(db_url: str, tmp_path: Path, app_factory: Any,
                                                        relay_factory: Any, sink: Sink) -> None:
    plain_url = db_url.replace("relay.db", "plain.db")
    # the same conversation with encryption off: the reader finds every needle in every copy
    app = app_factory(plain_url, outbound={"url": sink.url}, storage={"key": "off"})
    relay = relay_factory(app)
    converse(app, relay, sink)
    relay.stop()
    for what, data in stolen_copies(plain_url, tmp_path).items():
        # (the relay keeps an internationalised domain in its ASCII form: the Unicode spelling is
        # looked for in the sealed copies, but not expected in the plain ones)
        missing = set(NEEDLES) - {"address (unicode)"} - stolen.found(data, NEEDLES)
        assert not missing, f"the reader does not find {missing} in the plain database's {what}"
    if plain_url == db_url:  # PostgreSQL: one database per test, emptied for the second conversation
        _reset_postgres(db_url)
    sink.messages.clear()

    app = app_factory(db_url, outbound={"url": sink.url})  # the default: sealed, a key made beside it
    relay = relay_factory(app)
    opened = converse(app, relay, sink)
    relay.stop()
    for what, data in stolen_copies(db_url, tmp_path).items():
        assert data and not stolen.found(data, NEEDLES), f"the sealed database's {what} shows {stolen.found(data, NEEDLES)}"

    # with the key, the relay still finds the reviewer by any spelling, and forgets them
    app = app_factory(db_url, outbound={"url": sink.url})
    assert forget(app, "max.mueller@BÜCHER.example")["reviews"] == 1
    assert case_records.case_detail(opened.case_id).case.state == "closed"


def test_a_value_moved_to_another_row_or_column_is_refused(db_url: str, app_factory: Any, tmp_path: Path) -> None:
    app = app_factory(db_url, ManualClock(datetime(2026, 11, 28, 9, 0)))
    first = open_case(app, validate_open_case(
        review_id="R-a", business_id="B-1", business_name="Shop", business_email="a@shop.example",
        reviewer_email="anna@example.de", reviewer_name="Anna", origin="organic", locale="de", requests=[],
        message="Hallo"))
    open_case(app, validate_open_case(
        review_id="R-b", business_id="B-1", business_name="Shop", business_email="a@shop.example",
        reviewer_email="mallory@example.de", reviewer_name="Mallory", origin="organic", locale="de", requests=[],
        message="Hallo"))
    anna, mallory = Review.get(Review.external_id == "R-a"), Review.get(Review.external_id == "R-b")
    local = first.reviewer_address.split("@")[0]
    assert intake.lookup(app, local).writer_email == "anna@example.de"  # type: ignore[union-attr]
    # someone with write access to the database gives Anna's case Mallory's address
    Review.update(reviewer_email=mallory.reviewer_email).where(Review.id == anna.id).execute()
    with pytest.raises(sealed_columns.SealedValueRefused, match=r"review\.reviewer_email of row R-a"):
        intake.lookup(app, local)
    # or moves a sealed value into another column of the same row
    Review.update(reviewer_email=anna.reviewer_email, reviewer_name=anna.reviewer_email).where(
        Review.id == anna.id).execute()
    with pytest.raises(sealed_columns.SealedValueRefused, match="reviewer_name"):
        intake.lookup(app, local)
    # a delivery's body moved to another delivery does not go out as that one
    one, other = list(DeliveryBody.select().order_by(DeliveryBody.delivery))[:2]
    DeliveryBody.update(body=one.body).where(DeliveryBody.delivery == other.delivery_id).execute()
    counts = asyncio.run(Worker.for_app(app).run_pass())
    assert (counts.sent, counts.failed) == (1, 0)  # the other one: not held up by the refused one
    refused = next(d for d in outbox.listing([DeliveryState.FAILED]) if d.id == other.delivery_id)
    assert "not sent" in (refused.last_error or "") and "delivery.body" in (refused.last_error or "")


def load_version_7(db_url: str) -> None:
    """The database as the code before encryption left it, everything in the clear."""
    fixtures.load(db_url, 7)


def test_a_plaintext_database_is_sealed_in_place_and_carries_on(db_url: str, app_factory: Any, sink: Sink,
                                                                 tmp_path: Path) -> None:
    load_version_7(db_url)
    plain = stolen_copies(db_url, tmp_path)
    needles = {"address": "jonas@example.net", "idn address": "erika@xn--bcher-kva.example",
               "name": "Reviewerin 2", "business": "service2@shop.example", "attachment": "Marmorkuchen",
               "message": "Bitte Bestellnummer 1"}
    assert set(needles) <= stolen.found(b"".join(plain.values()), needles)  # the reader sees the clear text

    app = app_factory(db_url, ManualClock(datetime(2026, 11, 27, 9, 0)), outbound={"url": sink.url})  # migrates
    assert migrations.version(db.obj) == migrations.CURRENT
    sealed_with = sealing.key_id(sealing.parse_key(Path(key_source(app.settings).where).read_text()))
    values = [v for r in Review.select() for v in (r.reviewer_email, r.reviewer_name)]
    values += [c.business_email for c in Case.select()] + [c.message for c in Case.select()]
    values += [d.recipient for d in Delivery.select()] + [m.original_message_id for m in Message.select()]
    values += [d.last_error for d in Delivery.select() if d.last_error]
    assert values and all(sealing.text_id(v) == sealed_with for v in values)
    assert all(sealing.binary_id(bytes(b.body)) == sealed_with for b in DeliveryBody.select())
    assert sealing.text_id(Setting.get(Setting.name == "secret").value) == sealed_with
    for what, data in stolen_copies(db_url, tmp_path).items():
        assert not stolen.found(data, needles), (what, stolen.found(data, needles))

    app = app_factory(db_url, ManualClock(datetime(2026, 11, 27, 9, 0)), outbound={"url": sink.url})
    detail = case_records.case_detail(3)
    assert "<jonas@example.net>" in (detail.deliveries[0].last_error or "")  # opened for the admin
    counts = asyncio.run(Worker.for_app(app).run_pass())
    assert counts.sent == 4 and counts.failed == 0  # the queued contact requests (not the failed one), the forward
    forward = sink.to("service2@shop.example")[0]["raw"]
    assert b"Marmorkuchen" in forward and b"erika" not in forward.lower()
    assert forget(app, "erika@bücher.example")["reviews"] == 1  # the blind index was built from the clear text


def _start(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "relay", "--config", str(config), *args], cwd=config.parent,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60)


def test_a_relay_without_its_key_does_not_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/relay.db"
    config = write_settings(tmp_path, url, f"maildir:{tmp_path}/outbox")
    assert relay_cli(config, "migrate").returncode == 0  # the first start makes relay.key, 0600
    key = tmp_path / "relay.key"
    assert key.stat().st_mode & 0o777 == 0o600

    def refused(*lines: str, **storage: str) -> None:
        settings = write_settings(tmp_path, url, f"maildir:{tmp_path}/outbox", storage=storage)
        for command in (["serve"], ["status"]):
            result = _start(settings, *command)
            assert result.returncode == 2, (command, result.stderr)
            said = result.stderr.strip().splitlines()
            assert len(said) == 1 and all(line in said[0] for line in lines), said

    key.chmod(0o644)
    refused("storage key:", "readable by group or others", "chmod 600")
    key.chmod(0o600)
    other = tmp_path / "other.key"
    assert relay_cli(config, "storage-key", "generate", str(other)).returncode == 0
    refused("holds key", "but the database is sealed with key", key=f"file:{other}")
    refused("is missing", key=f"file:{tmp_path}/gone.key")
    refused("environment variable RELAY_TEST_NO_SUCH_KEY", key="env:RELAY_TEST_NO_SUCH_KEY")
    refused("[storage] key = \"off\" cannot read it", key="off")
    key.rename(tmp_path / "moved.key")
    refused("relay.key is missing")  # the default key is only ever made for a database without one
    assert not key.exists()
    (tmp_path / "moved.key").rename(key)
    assert relay_cli(write_settings(tmp_path, url, f"maildir:{tmp_path}/outbox"), "status").returncode == 0
    with pw.SqliteDatabase(str(tmp_path / "relay.db")) as raw:
        assert raw.execute_sql("SELECT value FROM setting WHERE name = 'secret'").fetchone()[0].startswith("s1.")
