"""Webhooks are an outbox: `kill -9` of `relay serve` while webhooks are in flight (the endpoint holds
them unanswered) and others wait loses none, and a duplicate arrives only for a send that was never
confirmed, with the same webhook-id (SQLite and PostgreSQL); two `relay serve` on one PostgreSQL
send each webhook exactly once."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

from relay.app import App
from relay.store import database
from relay.store.models import Webhook
from tests.helpers.cli import Serve, open_case, write_settings
from tests.helpers.environment import _reset_postgres, make_settings, new_case
from tests.helpers.webhooks import Receiver


def _port(config: Path) -> int:
    return int(config.read_text().split("port = ")[1].split("\n")[0])


def _rows(db_url: str, tmp_path: Path, receiver: Receiver) -> list[dict[str, Any]]:
    """The webhook table, read in this process (a connection of its own, closed again)."""
    App.open(make_settings(tmp_path, db_url, webhooks=receiver.settings()), create=False)
    try:
        return list(Webhook.select(Webhook.msg_id, Webhook.state, Webhook.body).dicts())
    finally:
        database.close()


def _all_sent(db_url: str, tmp_path: Path, receiver: Receiver, expected: int, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = _rows(db_url, tmp_path, receiver)
        if (len(found) >= expected and all(r["state"] == "sent" for r in found)) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_kill_9_while_webhooks_are_in_flight_or_pending(db_url: str, tmp_path: Path) -> None:
    receiver = Receiver(hold=True)  # takes each request and never answers: sends stay unconfirmed
    try:
        config = write_settings(tmp_path, db_url, f"maildir:{tmp_path}/outbox",
                                webhooks=receiver.settings(timeout="60s"))
        serve = Serve(config, _port(config))
        open_case(config, "R-crash-1")
        assert receiver.wait(1, timeout=20, answered=False), "no webhook reached the endpoint"
        for n in (2, 3):  # the worker waits on the held batch: these stay pending
            open_case(config, f"R-crash-{n}")
        time.sleep(1.5)  # the contact requests go out: their webhooks are pending too
        assert serve.kill(signal.SIGKILL) == -signal.SIGKILL
        in_flight = {r.id for r in receiver.all()}
        pending = [r for r in _rows(db_url, tmp_path, receiver) if r["state"] == "pending"]
        assert in_flight and pending, (in_flight, pending)

        receiver.hold = False
        receiver.release.set()  # the held requests end without an answer
        restarted = Serve(config, _port(config))
        try:  # the in-flight ones come back after their lease (15 s)
            stored = _all_sent(db_url, tmp_path, receiver, expected=6, timeout=60)
        finally:
            restarted.kill()
    finally:
        receiver.stop()
    assert len(stored) == 6 and {r["state"] for r in stored} == {"sent"}  # 3 opened, 3 requests delivered
    answered = receiver.answered()
    assert {r.id for r in answered} == {r["msg_id"] for r in stored}
    assert all(r.verified for r in receiver.all())
    seen = Counter(r.id for r in receiver.all())
    twice = {webhook for webhook, n in seen.items() if n > 1}
    # exactly the unconfirmed sends came again, once each, with their webhook-id
    assert twice == in_flight and max(seen.values()) == 2
    for webhook in twice:  # the same webhook again, not a new one
        assert len({r.body for r in receiver.all() if r.id == webhook}) == 1
    assert Counter(r.id for r in answered).most_common(1)[0][1] == 1


CASES = 120


def test_two_instances_send_each_webhook_once(pg_database: str, tmp_path: Path) -> None:
    _reset_postgres(pg_database)
    # one instance puts at most `concurrency` (10) requests in flight: the endpoint answers none until
    # eleven are in flight at once, which only both instances sending together reach
    receiver = Receiver(delay=0.05, gather=11)
    serves: list[Serve] = []
    folders = [tmp_path / name for name in ("a", "b")]
    try:
        for folder in folders:
            folder.mkdir()
            config = write_settings(folder, pg_database, f"maildir:{folder}/outbox", webhooks=receiver.settings())
            serves.append(Serve(config, _port(config)))
        app = App.open(make_settings(tmp_path, pg_database, webhooks=receiver.settings()))
        for n in range(CASES):
            new_case(app, business=f"shop{n}@example.com", business_id=f"B-{n}", review_id=f"R-{n}")
        database.close()
        stored = _all_sent(pg_database, tmp_path, receiver, expected=2 * CASES, timeout=120)
        time.sleep(2)  # anything sent twice would arrive now
    finally:
        for serve in serves:
            serve.kill()
        receiver.stop()
    assert len(stored) == 2 * CASES and {r["state"] for r in stored} == {"sent"}
    seen = Counter(r.id for r in receiver.all())
    assert set(seen) == {r["msg_id"] for r in stored} and set(seen.values()) == {1}
    per_instance = [(folder / "relay.log").read_text().count('"event": "webhook.sent"') for folder in folders]
    print("webhooks sent per instance:", per_instance, "most in flight at once:", receiver.most_at_once)
    assert receiver.most_at_once >= 11, receiver.most_at_once
    assert sum(per_instance) == 2 * CASES and min(per_instance) > 0, per_instance  # both took part
