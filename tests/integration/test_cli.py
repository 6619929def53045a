"""The `relay` command as the platform and admins use it (subprocesses, real database)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.cli import open_case, relay_cli, write_settings

REVIEWER = "max.mueller@example.de"


def test_open_case_and_the_views(db_url: str, tmp_path: Path) -> None:
    config = write_settings(tmp_path, db_url, "maildir:outbox")
    case = open_case(config, "R-100", locale="en")
    assert set(case) >= {"case", "reviewer_address", "business_address", "deadline"}

    listed = json.loads(relay_cli(config, "cases", "--json").stdout)
    assert [(c["id"], c["state"], c["review"]) for c in listed] == [(case["case"], "awaiting_reply", "R-100")]
    assert "awaiting_reply" in relay_cli(config, "cases").stdout
    assert json.loads(relay_cli(config, "cases", "--status", "closed", "--json").stdout) == []

    status = json.loads(relay_cli(config, "status", "--json").stdout)
    assert status["cases"] == {"awaiting_reply": 1} and status["outbox"] == {"queued": 1}
    assert status["oldest_pending"]["kind"] == "contact_request"

    ran = relay_cli(config, "run-jobs")
    assert ran.returncode == 0 and "outbox: sent 1, deferred 0, failed 0" in ran.stdout
    second = relay_cli(config, "run-jobs").stdout  # nothing left to do
    assert second.splitlines() == ["cases: expired 0, reply_notices 0, reminded 0, closed 0, purged 0",
                                   "outbox: sent 0, deferred 0, failed 0"]
    files = list((tmp_path / "outbox" / "new").iterdir())
    assert len(files) == 1 and b"Delivered-To: " + REVIEWER.encode() in files[0].read_bytes()

    shown = relay_cli(config, "case", "show", str(case["case"]))
    assert shown.returncode == 0 and "case.opened" in shown.stdout and "contact_request to reviewer, sent" in shown.stdout
    detail = json.loads(relay_cli(config, "case", "show", str(case["case"]), "--json").stdout)
    assert detail["deliveries"][0]["state"] == "sent"
    for view in (shown.stdout, json.dumps(detail), relay_cli(config, "status").stdout,
                 relay_cli(config, "cases").stdout, relay_cli(config, "tail", "-n", "100").stdout):
        assert REVIEWER not in view

    closed = relay_cli(config, "case", "close", str(case["case"]), "--reason", "withdrawn")
    assert closed.returncode == 0 and "closed" in closed.stdout
    assert "already closed" in relay_cli(config, "case", "close", str(case["case"])).stdout
    missing = relay_cli(config, "case", "show", "4242")
    assert missing.returncode == 1 and "no case 4242" in missing.stderr

    tail = relay_cli(config, "tail", "--event", "case.", "--json")
    events = [json.loads(line)["event"] for line in tail.stdout.splitlines()]
    assert events == ["case.opened", "case.closed"]
    readable = relay_cli(config, "tail", "--case", str(case["case"])).stdout
    assert "case.opened" in readable and f"case={case['case']}" in readable


def test_open_case_refusals(tmp_path: Path) -> None:
    config = write_settings(tmp_path, f"sqlite:///{tmp_path}/relay.db", "maildir:outbox")
    base = ["open-case", "--review-id", "R-1", "--business-id", "B-1", "--business-name", "Shop",
            "--business-email", "shop@example.com", "--reviewer-name", "Max M.", "--message", "Hallo"]
    platform = relay_cli(config, *base, "--reviewer-email", REVIEWER, "--origin", "invited_platform")
    assert platform.returncode == 1 and "invited_platform" in platform.stderr and platform.stdout == ""
    bad = relay_cli(config, *base, "--reviewer-email", "max(at)example.de")
    assert bad.returncode == 2 and "--reviewer-email" in bad.stderr
    injected = relay_cli(config, *base, "--reviewer-email", REVIEWER, "--business-name", "Shop\r\nBcc: x@y.z")
    assert injected.returncode == 2 and "--business-name" in injected.stderr
    locale = relay_cli(config, *base, "--reviewer-email", REVIEWER, "--locale", "fr")
    assert locale.returncode == 2 and "--locale" in locale.stderr
    assert relay_cli(config, *base, "--reviewer-email", REVIEWER).returncode == 0
    again = relay_cli(config, *base, "--reviewer-email", REVIEWER)
    assert again.returncode == 1 and "already has an open case" in again.stderr
    assert json.loads(relay_cli(config, "status", "--json").stdout)["cases"] == {"awaiting_reply": 1}


def test_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    config = write_settings(tmp_path, "postgresql://postgres@127.0.0.1:1/none", "maildir:outbox")
    result = relay_cli(config, "status")
    assert result.returncode == 1
    assert result.stderr.startswith("relay: cannot open database") and len(result.stderr.splitlines()) <= 3


def test_log_to_stdout_for_containers(tmp_path: Path) -> None:
    config = write_settings(tmp_path, f"sqlite:///{tmp_path}/relay.db", "maildir:outbox")
    env = {"RELAY_LOG_FILE": "-"}
    opened = relay_cli(config, "open-case", "--review-id", "R-c", "--business-id", "B", "--business-name", "Shop",
                       "--business-email", "shop@example.com", "--reviewer-email", REVIEWER,
                       "--reviewer-name", "Max M.", "--message", "Hallo", env=env)
    assert opened.returncode == 0
    assert set(json.loads(opened.stdout)) >= {"case", "reviewer_address"}  # stdout is the command's own
    logged = [json.loads(line) for line in opened.stderr.splitlines()]
    # the first command of a new install makes the storage key beside the database
    assert [e["event"] for e in logged] == ["storage.key_created", "case.opened", "notice.queued"]
    assert not (tmp_path / "relay.log").exists()
    tail = relay_cli(config, "tail", env=env)
    assert tail.returncode == 1 and "stdout" in tail.stderr
