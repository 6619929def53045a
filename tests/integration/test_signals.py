"""Signals as mail admins expect them, against `relay serve` as a real process: SIGHUP reopens the
log and the relay stays up, a real logrotate run (`create`, then SIGHUP from `postrotate`) moves
the new lines into the new file where `relay tail` finds them, and SIGTERM lets a message in DATA
finish (250, stored, forwarded) while idle sessions get 421 and new connections are refused,
bounded by `[inbound] drain_timeout` for a client that stops sending."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.helpers.cli import Serve, open_case, relay_cli, write_settings
from tests.helpers.environment import REPO
from tests.helpers.smtp import LineClient, swaks
from tests.helpers.waiting import until

REVIEWER = "max.mueller@example.de"


def port_of(config: Path) -> int:
    return int(config.read_text().split("port = ")[1].split("\n")[0])


def events(path: Path) -> list[dict[str, object]]:
    """The log's complete lines (the relay may be writing the last one while the test reads)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().split("\n")[:-1] if line.strip()]


def logged(path: Path, name: str) -> Callable[[], bool]:
    return lambda: any(e["event"] == name for e in events(path))


def refused(port: int) -> bool:
    """True once nothing listens on `port` any more."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def holds_open(pid: int, path: Path) -> bool:
    """Whether process `pid` has `path` open (how a test knows `relay tail -f` is following)."""
    folder = Path(f"/proc/{pid}/fd")
    try:
        return any(os.path.realpath(folder / fd) == str(path) for fd in os.listdir(folder))
    except FileNotFoundError:
        return False


def begin_data(port: int, rcpt: str) -> LineClient:
    """A session that is in DATA with part of its message sent."""
    client = LineClient(port)
    assert client.command("EHLO client.example")[0] == 250
    assert client.command(f"MAIL FROM:<{REVIEWER}>")[0] == 250
    assert client.command(f"RCPT TO:<{rcpt}>")[0] == 250
    assert client.command("DATA")[0] == 354
    client.send(f"From: Max <{REVIEWER}>\r\nSubject: Re: Ihre Anfrage\r\n\r\nMeine Bestellnummer ist ".encode())
    return client


def test_sighup_reopens_the_log_and_the_relay_stays_up(tmp_path: Path) -> None:
    config = write_settings(tmp_path, f"sqlite:///{tmp_path}/relay.db", "maildir:outbox")
    log = tmp_path / "relay.log"
    serve = Serve(config, port_of(config))
    try:
        case = open_case(config, "R-hup")
        serve.signal(signal.SIGHUP)
        until(logged(log, "log.reopened"), "log.reopened")
        assert serve.proc.poll() is None
        code, text = swaks(port_of(config), REVIEWER, case["reviewer_address"], "Bestellnummer BE-1",
                           header_from=f"Max <{REVIEWER}>")
        assert code == 250, text
        serve.signal(signal.SIGHUP)  # and again: each one is one reopen
        until(lambda: [e["event"] for e in events(log)].count("log.reopened") == 2, "the second log.reopened")
        assert serve.proc.poll() is None
    finally:
        code = serve.kill()
    assert code == 0
    assert [e["event"] for e in events(log)][-1] == "serve.stopped"


def test_a_real_logrotate_run_moves_the_new_lines_into_the_new_file(tmp_path: Path) -> None:
    assert shutil.which("logrotate"), "logrotate is not installed (tests/run installs it)"
    config = write_settings(tmp_path, f"sqlite:///{tmp_path}/relay.db", "maildir:outbox", log={"max_bytes": 0})
    log, rotated = tmp_path / "relay.log", tmp_path / "relay.log.1"
    serve = Serve(config, port_of(config))
    follower = subprocess.Popen([sys.executable, "-m", "relay", "--config", str(config), "tail", "-f", "-n", "0",
                                 "--json"], cwd=tmp_path, stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
    followed: list[str] = []
    reader = threading.Thread(target=lambda: followed.extend(iter(follower.stdout.readline, "")),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    try:
        case = open_case(config, "R-rotate")
        until(logged(log, "notice.sent"), "the contact request to go out")  # the relay is quiet from here on
        until(lambda: holds_open(follower.pid, log), "relay tail -f to open the log")
        conf, state = tmp_path / "logrotate.conf", tmp_path / "logrotate.state"
        conf.write_text(f"{log} {{\n    create 0640\n    rotate 3\n    missingok\n    postrotate\n"
                        f"        /bin/kill -HUP {serve.proc.pid}\n    endscript\n}}\n")
        result = subprocess.run(["logrotate", "-f", "-s", str(state), str(conf)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        until(logged(log, "log.reopened"), "log.reopened in the new relay.log")
        code, text = swaks(port_of(config), REVIEWER, case["reviewer_address"], "Bestellnummer BE-2",
                           header_from=f"Max <{REVIEWER}>")
        assert code == 250, text
        until(logged(log, "inbound.accepted"), "inbound.accepted in the new relay.log")
        until(lambda: any('"inbound.accepted"' in line for line in followed), "relay tail -f to show the new lines")
        assert serve.proc.poll() is None
    finally:
        os.killpg(follower.pid, signal.SIGTERM)
        follower.wait(10)
        code = serve.kill()
    assert code == 0
    old, new = [e["event"] for e in events(rotated)], [e["event"] for e in events(log)]
    assert "serve.started" in old and "case.opened" in old
    assert "log.reopened" not in old and "inbound.accepted" not in old
    assert new[0] == "log.reopened" and "inbound.accepted" in new and new[-1] == "serve.stopped"
    assert stat.S_IMODE(log.stat().st_mode) == 0o640
    shown = [json.loads(line)["event"] for line in relay_cli(config, "tail", "-n", "100", "--json").stdout.splitlines()]
    shown = [e for e in shown if e != "storage.key_created"]  # the first start made the storage key
    assert shown[0] == "serve.started" and "log.reopened" in shown and "inbound.accepted" in shown  # both files
    followed_events = [json.loads(line)["event"] for line in followed]
    assert "log.reopened" in followed_events and "inbound.accepted" in followed_events


def test_sigterm_lets_a_message_in_data_finish_and_closes_idle_sessions(db_url: str, tmp_path: Path) -> None:
    config = write_settings(tmp_path, db_url, "maildir:outbox")
    port, log = port_of(config), tmp_path / "relay.log"
    serve = Serve(config, port)
    try:
        case = open_case(config, "R-term")
        idle = LineClient(port)
        assert idle.command("EHLO client.example")[0] == 250
        sender = begin_data(port, case["reviewer_address"])
        serve.signal(signal.SIGTERM)
        until(lambda: refused(port), "the listening socket to close")  # new connections are refused
        code, text = idle.reply()
        assert (code, text[:5]) == (421, "4.3.2"), text
        assert idle.reply() == (0, "")  # and closed
        sender.send(b"BE-4711.\r\n.\r\n")  # the rest of the message, after the signal
        code, text = sender.reply()
        assert code == 250, text
        code, text = sender.reply()
        assert (code, text[:5]) == (421, "4.3.2"), text
        assert sender.reply() == (0, "")
        assert serve.wait(30) == 0
    finally:
        serve.kill()
    lines = events(log)
    assert [e["event"] for e in lines][-1] == "serve.stopped"
    assert any(e["event"] == "serve.stopping" for e in lines)
    assert sum(1 for e in lines if e["event"] == "inbound.accepted") == 1
    assert "Traceback" not in (tmp_path / "serve.out").read_text()
    ran = relay_cli(config, "run-jobs")  # whatever the stopping relay did not send yet
    assert ran.returncode == 0, ran.stderr
    forwards = [p for p in (tmp_path / "outbox" / "new").iterdir() if b"BE-4711" in p.read_bytes()]
    assert len(forwards) == 1


def test_the_drain_is_bounded_for_a_client_that_stops_sending(tmp_path: Path) -> None:
    config = write_settings(tmp_path, f"sqlite:///{tmp_path}/relay.db", "maildir:outbox",
                            inbound={"drain_timeout": "1s"})
    port, log = port_of(config), tmp_path / "relay.log"
    serve = Serve(config, port)
    try:
        case = open_case(config, "R-stall")
        stalled = begin_data(port, case["reviewer_address"])  # and never sends the rest
        started = time.monotonic()
        serve.signal(signal.SIGTERM)
        code = serve.wait(30)
        took = time.monotonic() - started
        reply = stalled.reply()
    finally:
        serve.kill()
    assert code == 0
    assert took < 10, f"the stop took {took:.1f}s with a 1s drain timeout"
    assert (reply[0], reply[1][:5]) == (421, "4.3.2"), reply
    lines = events(log)
    cut = [e for e in lines if e.get("outcome") == "shutting_down"]
    assert len(cut) == 1 and cut[0]["event"] == "inbound.deferred" and str(cut[0]["reply"]).startswith("421 4.3.2")
    assert not any(e["event"] == "inbound.accepted" for e in lines)
    assert lines[-1]["event"] == "serve.stopped" and "1 cut off" in str(lines[-1]["msg"])
