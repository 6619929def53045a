"""What admins reach for, against real traffic through `relay serve`: `relay tail` (with -f across
a rotation and the filters), `status`, `cases`, `case show`, `outbox` and `outbox retry`, `forget`;
and no reviewer address in any log line or admin view."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import peewee as pw
import psycopg2

from tests.helpers.cli import Serve, open_case, relay_cli, write_settings
from tests.helpers.environment import REPO, Sink
from tests.helpers.smtp import smtp_send, swaks

REVIEWER, BUSINESS = "max.mueller@example.de", "service@shop.example"


def port_of(config: Path) -> int:
    return int(config.read_text().split("port = ")[1].split("\n")[0])


def conversation(config: Path, sink: Sink) -> dict:
    case = open_case(config, "R-admin")
    sink.wait(REVIEWER)
    code, text = swaks(port_of(config), REVIEWER, case["reviewer_address"], "Bestellnummer BE-77",
                       header_from=f"Maximilian Mueller <{REVIEWER}>")
    assert code == 250, text
    forward = sink.wait(BUSINESS, kind="forward")[0]["raw"]
    assert b"BE-77" in forward
    code, text = smtp_send(port_of(config), BUSINESS, case["business_address"],
                           f"From: {BUSINESS}\r\nSubject: Danke\r\n\r\nGefunden.\r\n".encode())
    assert code == 250, text
    sink.wait(REVIEWER, count=2)
    smtp_send(port_of(config), "intruder@evil.example", case["reviewer_address"], b"Subject: x\r\n\r\nx\r\n")
    smtp_send(port_of(config), REVIEWER, "nobody-" + "q" * 25 + "@relay.test", b"Subject: x\r\n\r\nx\r\n")
    return case


def test_admin_views_after_real_traffic(db_url: str, tmp_path: Path) -> None:
    sink = Sink()
    config = write_settings(tmp_path, db_url, sink.url)
    serve = Serve(config, port_of(config))
    try:
        case = conversation(config, sink)
        cid = str(case["case"])
        other = open_case(config, "R-other", reviewer="other@example.org")

        listed = json.loads(relay_cli(config, "cases", "--review", "R-admin", "--json").stdout)
        assert [c["id"] for c in listed] == [case["case"]] and listed[0]["state"] == "replied"
        assert len(json.loads(relay_cli(config, "cases", "--business", "B-1", "--json").stdout)) == 2
        assert json.loads(relay_cli(config, "cases", "--business", "B-nope", "--json").stdout) == []

        timeline = relay_cli(config, "case", "show", cid).stdout
        for expected in ("case.opened", "contact_request to reviewer, sent", "message          from reviewer",
                         "forward to business, sent", "forward to reviewer, sent", "case.replied"):
            assert expected in timeline, expected

        status = json.loads(relay_cli(config, "status", "--json").stdout)
        assert status["cases"] == {"replied": 1, "awaiting_reply": 1}
        assert status["refusals_last_hour"] == {"wrong_sender": 1, "unknown_address": 1}
        assert status["last_24h"] == {"deliveries_failed": 0, "bounces": 0, "autoreplies_dropped": 0}
        readable = relay_cli(config, "status").stdout
        assert "refusals last hour: unknown_address 1, wrong_sender 1" in readable

        tail_all = relay_cli(config, "tail", "-n", "1000", "--json").stdout.splitlines()
        events = {json.loads(line)["event"] for line in tail_all}
        assert {"case.opened", "inbound.accepted", "inbound.refused", "delivery.sent",
                "notice.queued", "notice.sent", "serve.started"} <= events
        only_case = relay_cli(config, "tail", "-n", "1000", "--case", cid, "--json").stdout.splitlines()
        assert only_case and all(json.loads(line)["case"] == case["case"] for line in only_case)
        refused = relay_cli(config, "tail", "--event", "inbound.ref").stdout.splitlines()
        assert len(refused) == 2 and all("inbound.refused" in line and "[550 5." in line for line in refused)
        assert relay_cli(config, "tail", "--level", "error").stdout == ""
        assert relay_cli(config, "tail", "--since", "1h", "-n", "5").stdout.count("\n") == 5
        assert "--since" in relay_cli(config, "tail", "--since", "5 dayz").stderr

        # failed delivery, then an admin retries it once the smarthost takes it
        sink.reply = "550 5.1.1 <third@example.org>: Recipient address rejected: mailbox unavailable"
        relay_cli(config, "case", "close", str(other["case"]))
        third = open_case(config, "R-third", reviewer="third@example.org")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pending = json.loads(relay_cli(config, "outbox", "--json").stdout)
            if len([d for d in pending if d["state"] == "failed"]) == 2:
                break
            time.sleep(0.2)
        # the refused contact request queues the business's reviewer_unreachable notice, which this
        # sink (refusing everyone) refuses as well
        assert sorted(d["kind"] for d in pending if d["state"] == "failed") == ["contact_request",
                                                                                 "reviewer_unreachable"]
        failed = [d for d in pending if d["state"] == "failed" and d["kind"] == "contact_request"]
        assert len(failed) == 1 and failed[0]["case"] == third["case"] and "550 5.1.1" in failed[0]["last_error"]
        # the smarthost quoted the reviewer's address; what is stored, shown and logged does not
        assert "<address>" in failed[0]["last_error"] and "third@example.org" not in relay_cli(config, "outbox").stdout
        assert "third@example.org" not in "".join(p.read_text() for p in tmp_path.glob("relay.log*"))
        assert json.loads(relay_cli(config, "status", "--json").stdout)["last_24h"]["deliveries_failed"] == 2
        sink.reply = "250 2.0.0 OK"
        retried = relay_cli(config, "outbox", "retry", str(failed[0]["id"]))
        assert retried.returncode == 0 and "sent" in retried.stdout
        assert len(sink.to("third@example.org")) == 1
        again = relay_cli(config, "outbox", "retry", str(failed[0]["id"]))
        assert again.returncode == 1 and "not pending or failed" in again.stderr

        # nothing an admin sees holds the reviewer's address
        views = [relay_cli(config, *args).stdout for args in (
            ("tail", "-n", "100000"), ("tail", "-n", "100000", "--json"), ("status",), ("status", "--json"),
            ("cases",), ("cases", "--json"), ("case", "show", cid), ("case", "show", cid, "--json"), ("outbox",),
            ("outbox", "--json"))]
        log_text = "".join(p.read_text() for p in tmp_path.glob("relay.log*"))
        for text in [*views, log_text, (tmp_path / "serve.out").read_text()]:
            assert REVIEWER not in text.lower() and "maximilian" not in text.lower()
    finally:
        serve.kill()
        sink.stop()


def test_tail_follows_across_rotation(tmp_path: Path) -> None:
    sink = Sink()
    config = write_settings(tmp_path, f"sqlite:///{tmp_path}/relay.db", sink.url,
                            log={"max_bytes": 3000, "backups": 3}, limits={"unknown_recipients_per_client": 1000})
    serve = Serve(config, port_of(config))
    follower = subprocess.Popen([sys.executable, "-m", "relay", "--config", str(config), "tail", "-f", "-n", "0",
                                 "--event", "inbound.refused"], cwd=tmp_path, stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(follower.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        time.sleep(1.0)  # tail -f is at the end of the file
        for n in range(30):
            smtp_send(port_of(config), REVIEWER, f"probe{n}-" + "q" * 20 + "@elsewhere.example", b"x\r\n")
        deadline = time.monotonic() + 20
        while len(lines) < 30 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        os.killpg(follower.pid, signal.SIGTERM)
        follower.wait(10)
        serve.kill()
        sink.stop()
    assert len(list(tmp_path.glob("relay.log.*"))) >= 1, "the log did not rotate"
    assert len(lines) == 30, f"{len(lines)} of 30 refusals followed"
    assert all("inbound.refused" in line and "5.7.1" in line for line in lines)
    history = relay_cli(config, "tail", "-n", "30", "--event", "inbound.refused").stdout.splitlines()
    assert len(history) == 30  # the past lines are found in the rotated files too


def test_forget_a_reviewer(db_url: str, tmp_path: Path) -> None:
    sink = Sink()
    config = write_settings(tmp_path, db_url, sink.url)
    serve = Serve(config, port_of(config))
    try:
        case = conversation(config, sink)
        time.sleep(1)
    finally:
        serve.kill()
        sink.stop()
    result = relay_cli(config, "forget", "--reviewer-email", REVIEWER.upper())
    assert result.returncode == 0
    counts = json.loads(result.stdout)
    assert counts["reviews"] == 1 and counts["cases"] == 1 and counts["cases_closed"] == 1
    assert counts["message_bodies"] >= 3  # contact request, the reviewer's forward, the answer to them
    detail = json.loads(relay_cli(config, "case", "show", str(case["case"]), "--json").stdout)
    assert detail["state"] == "closed" and detail["close_reason"] == "reviewer forgotten"
    assert len(detail["messages"]) == 2  # counts stay
    assert REVIEWER not in dump_database(db_url).lower()
    again = json.loads(relay_cli(config, "forget", "--reviewer-email", REVIEWER).stdout)
    assert again["reviews"] == 0


def dump_database(db_url: str) -> str:
    """Every text and blob value of every table, as one string."""
    out = []
    if db_url.startswith("sqlite:///"):
        db = pw.SqliteDatabase(db_url[len("sqlite:///"):])
        for table in db.get_tables():
            for row in db.execute_sql(f'SELECT * FROM "{table}"').fetchall():
                out += [bytes(v).decode("latin-1") if isinstance(v, (bytes, memoryview)) else str(v) for v in row]
        db.close()
        return "\n".join(out)
    conn = psycopg2.connect(db_url)
    with conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        for (table,) in cur.fetchall():
            cur.execute(f'SELECT * FROM "{table}"')
            for row in cur.fetchall():
                out += [bytes(v).decode("latin-1") if isinstance(v, (bytes, memoryview)) else str(v) for v in row]
    conn.close()
    return "\n".join(out)
