"""`relay storage-key rotate`, on SQLite and PostgreSQL: answers keep arriving at a running relay
while a rotation re-seals everything under the new key, and a rotation killed with SIGKILL half-way
is resumed by the same command; nothing is lost, and afterwards the database opens with the new key
alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg2

from relay.app import App, key_source
from relay.core import sealing
from relay.lifecycle.opening import Opened
from relay.store import database, sealed_columns, vault
from relay.store.models import Case, Delivery, DeliveryBody, Message, Review, Setting
from tests.helpers.cli import relay_cli, write_settings
from tests.helpers.environment import REPO, Sink, new_case
from tests.helpers.smtp import smtp_send


def sealed_values() -> list[tuple[str, str]]:
    """(place, key id) of every sealed value in the database."""
    found = [(f"review {r.external_id}", v) for r in Review.select() for v in (r.reviewer_email, r.reviewer_name) if v]
    found += [(f"case {c.id}", v) for c in Case.select() for v in (c.business_email, c.message)]
    found += [(f"delivery {d.id}", v) for d in Delivery.select() for v in (d.recipient, d.last_error) if v]
    found += [(f"message {m.id}", m.original_message_id) for m in Message.select() if m.original_message_id]
    found += [("secret", Setting.get(Setting.name == "secret").value)]
    ids = [(place, sealing.text_id(value) or "?") for place, value in found]
    ids += [(f"body {b.delivery_id}", sealing.binary_id(bytes(b.body)) or "?") for b in DeliveryBody.select()]
    return ids


def every_value_opens() -> int:
    """Open every sealed value with the process's keyring; how many."""
    opened = 0
    for review in Review.select():
        sealed_columns.open_row(Review, {"reviewer_email": review.reviewer_email, "reviewer_name": review.reviewer_name},
                                review.external_id)
        opened += 1
    for delivery in Delivery.select():
        sealed_columns.open_row(Delivery, {"recipient": delivery.recipient, "last_error": delivery.last_error},
                                delivery.message_id)
        opened += 1
    for held in DeliveryBody.select(DeliveryBody, Delivery.message_id).join(Delivery):
        sealed_columns.open_row(DeliveryBody, {"body": held.body}, held.delivery.message_id)
        opened += 1
    for case in Case.select():
        sealed_columns.open_row(Case, {"business_email": case.business_email, "message": case.message}, case.id)
        opened += 1
    return opened


def rotate(config: Path, new_key: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "relay", "--config", str(config), "storage-key", "rotate",
                             "--new", str(new_key), *extra], cwd=config.parent,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def answer(relay: Any, opened: Opened, n: int) -> int:
    raw = (f"From: <reviewer{opened.case_id}@example.de>\r\nTo: {opened.reviewer_address}\r\n"
           f"Subject: Re: Anfrage\r\nMessage-ID: <a{n}.reviewer{opened.case_id}@example.de>\r\n\r\n"
           f"Antwort {n}\r\n").encode()
    return smtp_send(relay.port, f"reviewer{opened.case_id}@example.de", opened.reviewer_address, raw)[0]


def key_file(app: App) -> Path:
    """The storage key file the test's relay uses (beside the database, or the test database's own)."""
    return Path(key_source(app.settings).where)


def settings_for(app: App, tmp_path: Path, db_url: str, **storage: str) -> Path:
    return write_settings(tmp_path, db_url, f"maildir:{tmp_path}/cli-outbox", storage={
        "key": f"file:{key_file(app)}", **storage})


def test_a_rotation_while_answers_arrive_loses_nothing(db_url: str, app_factory: Any, relay_factory: Any,
                                                       sink: Sink, tmp_path: Path) -> None:
    app = app_factory(db_url, outbound={"url": sink.url})
    relay = relay_factory(app)
    cases = [new_case(app, reviewer=f"reviewer{n}@example.de", review_id=f"R-{n}") for n in range(1, 41)]
    old = sealing.key_id(sealing.parse_key(key_file(app).read_text()))
    new_key = tmp_path / "new.key"
    assert relay_cli(settings_for(app, tmp_path, db_url), "storage-key", "generate", str(new_key)).returncode == 0
    new = sealing.key_id(sealing.parse_key(new_key.read_text()))

    codes: list[int] = []
    stop = threading.Event()

    def keep_answering() -> None:
        n = 0
        while not stop.is_set() and n < 400:
            codes.append(answer(relay, cases[n % len(cases)], n))
            n += 1

    writer = threading.Thread(target=keep_answering)
    writer.start()
    time.sleep(0.5)
    run = rotate(settings_for(app, tmp_path, db_url), new_key, "--batch", "7")
    out, err = run.communicate(timeout=120)
    time.sleep(0.5)  # answers go on after the rotation completed, under the new key
    stop.set()
    writer.join(60)
    assert run.returncode == 0, err
    assert "rotation complete" in out and f"key {new}" in out
    assert codes and set(codes) == {250}, codes[:20]
    accepted = len(codes)
    relay.stop()
    # every answer was forwarded to the business, in its own words
    forwards = sink.wait("service@shop.example", count=accepted, kind="forward", timeout=60)
    assert len(forwards) == accepted
    assert {int(m["raw"].split(b"Antwort ")[1].split(b"\r")[0]) for m in forwards} == set(range(accepted))
    # everything is under the new key now, and opens
    keys = {key for _, key in sealed_values()}
    assert keys == {new}, [v for v in sealed_values() if v[1] != new][:5]
    assert every_value_opens() > 40
    assert Setting.get_or_none(Setting.name == vault.ROTATION) is None
    database.close()
    # the old key no longer opens the database; the new one does
    refused = relay_cli(settings_for(app, tmp_path, db_url), "status")
    assert refused.returncode == 2 and f"holds key {old}, but the database is sealed with key {new}" in refused.stderr
    assert relay_cli(settings_for(app, tmp_path, db_url, key=f"file:{new_key}"), "status").returncode == 0


def test_a_rotation_killed_half_way_is_resumed(db_url: str, app_factory: Any, sink: Sink, tmp_path: Path) -> None:
    app = app_factory(db_url, outbound={"url": sink.url})
    for n in range(1, 121):
        new_case(app, reviewer=f"reviewer{n}@example.de", review_id=f"R-{n}")
    database.close()
    total = len(_key_ids(db_url))
    config = settings_for(app, tmp_path, db_url)
    new_key = tmp_path / "new.key"
    assert relay_cli(config, "storage-key", "generate", str(new_key)).returncode == 0
    new = sealing.key_id(sealing.parse_key(new_key.read_text()))

    run = rotate(config, new_key, "--batch", "3")
    assert run.stderr is not None
    for line in run.stderr:  # the first batches are done: kill it mid-way
        if "review:" in line:
            break
    run.send_signal(signal.SIGKILL)
    run.wait(30)
    half = _key_ids(db_url)
    assert new in half and len(set(half)) == 2, "killed before or after the re-sealing"

    # meanwhile the relay works (a new case, under the new key), and a second rotation to another
    # key is refused while this one is unfinished
    other = tmp_path / "other.key"
    assert relay_cli(config, "storage-key", "generate", str(other)).returncode == 0
    refused = relay_cli(config, "storage-key", "rotate", "--new", str(other))
    assert refused.returncode == 1 and f"a rotation to key {new} is under way" in refused.stderr
    opened = relay_cli(config, "open-case", "--review-id", "R-late", "--business-id", "B-1", "--business-name",
                       "Shop", "--business-email", "service@shop.example", "--reviewer-email", "late@example.de",
                       "--reviewer-name", "Spaet", "--message", "Hallo")
    assert opened.returncode == 0, opened.stderr

    resumed = rotate(config, new_key, "--batch", "50")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert "resumed" in err and "rotation complete" in out
    done = _key_ids(db_url)
    assert set(done) == {new} and len(done) == total + 5  # review (2), case (2), the request (1) of R-late
    status = relay_cli(write_settings(tmp_path, db_url, f"maildir:{tmp_path}/cli-outbox",
                                      storage={"key": f"file:{new_key}"}), "case", "show", "1", "--json")
    assert status.returncode == 0, status.stderr


def _key_ids(db_url: str) -> list[str]:
    """The key id of every sealed value, read around the relay (plain SQL on its own connection)."""
    queries = ["SELECT reviewer_email FROM review", "SELECT reviewer_name FROM review",
               'SELECT business_email FROM "case"', 'SELECT message FROM "case"', "SELECT recipient FROM delivery",
               "SELECT value FROM setting WHERE name = 'secret'"]
    path = database.sqlite_path(db_url)
    if path is not None:
        import sqlite3
        with sqlite3.connect(path) as conn:
            values = [row[0] for q in queries for row in conn.execute(q).fetchall()]
    else:
        conn = psycopg2.connect(db_url)
        with conn.cursor() as cur:
            values = []
            for q in queries:
                cur.execute(q)
                values += [row[0] for row in cur.fetchall()]
        conn.close()
    return [sealing.text_id(v) or "?" for v in values if v is not None]
