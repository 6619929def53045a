"""`[inbound] workers`: `relay serve` as several processes on one port, against real processes, on
SQLite and PostgreSQL: answers spread over the workers are each forwarded once, a worker killed
with SIGKILL is started again and logged, SIGHUP and SIGTERM reach every worker, and a worker that
cannot start stops the relay with its reason. Each worker runs on uvloop, STARTTLS included."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers.cli import Serve, open_case, write_settings
from tests.helpers.environment import REPO, Sink, free_port
from tests.helpers.smtp import smtp_send, swaks
from tests.helpers.tls import self_signed
from tests.helpers.waiting import until

REVIEWER = "max.mueller@example.de"


def events(log: Path, name: str) -> list[dict[str, object]]:
    if not log.exists():
        return []
    lines = [json.loads(line) for line in log.read_text().split("\n")[:-1] if line.strip()]
    return [line for line in lines if line["event"] == name]


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def port_of(config: Path) -> int:
    return int(config.read_text().split("port = ")[1].split("\n")[0])


def test_workers_share_the_port_and_are_supervised(db_url: str, tmp_path: Path, sink: Sink) -> None:
    config = write_settings(tmp_path, db_url, sink.url, inbound={"workers": 2})
    log = tmp_path / "relay.log"
    serve = Serve(config, port_of(config))
    try:
        until(lambda: len(events(log, "serve.started")) == 2, "both workers listening")
        started = [str(e["msg"]) for e in events(log, "serve.started")]
        assert {s.split(":")[0] for s in started} == {"worker 1", "worker 2"} and all("uvloop" in s for s in started)
        assert "one SQLite file" in str(events(log, "serve.workers")[0]["msg"]) or not db_url.startswith("sqlite")

        case = open_case(config, "R-workers")
        assert sink.wait(REVIEWER) and len(sink.to(REVIEWER)) == 1
        for n in range(16):  # one connection each: the kernel spreads them over the workers
            raw = f"From: <{REVIEWER}>\r\nSubject: Re\r\n\r\nAntwort {n}\r\n".encode()
            assert smtp_send(port_of(config), REVIEWER, case["reviewer_address"], raw)[0] == 250
        forwards = sink.wait("service@shop.example", count=16, kind="forward")
        assert sorted(int(m["raw"].split(b"Antwort ")[1].split(b"\r")[0]) for m in forwards) == list(range(16))
        assert {e.get("worker") for e in events(log, "inbound.accepted")} == {"1", "2"}  # both took some

        # a worker killed outright is logged and started again; the port keeps answering meanwhile
        victim = children(serve.proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        until(lambda: events(log, "worker.exited") and events(log, "worker.started"), "the worker restarted")
        assert "signal SIGKILL" in str(events(log, "worker.exited")[0]["msg"])
        until(lambda: len(children(serve.proc.pid)) == 2 and victim not in children(serve.proc.pid), "two workers again")
        raw = f"From: <{REVIEWER}>\r\nSubject: Re\r\n\r\nAntwort 16\r\n".encode()
        assert smtp_send(port_of(config), REVIEWER, case["reviewer_address"], raw)[0] == 250
        assert len(sink.wait("service@shop.example", count=17, kind="forward")) == 17

        serve.signal(signal.SIGHUP)  # the parent passes it on: every worker reopens the log
        until(lambda: len(events(log, "log.reopened")) == 2, "both workers reopened the log")
        assert serve.kill(signal.SIGTERM) == 0  # every worker drains and stops, then the parent
        assert str(events(log, "serve.stopped")[-1]["msg"]) == "all 2 workers stopped"
        assert len([e for e in events(log, "serve.stopped") if "relay stopped" in str(e["msg"])]) == 2
        time.sleep(0.2)
        assert len(sink.to("service@shop.example", kind="forward")) == 17  # each answer forwarded once
    finally:
        if serve.proc.poll() is None:  # a failed check above: no relay is left behind
            serve.kill(signal.SIGKILL)


def test_a_worker_that_cannot_start_stops_the_relay(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        config = write_settings(tmp_path, f"sqlite:///{tmp_path}/relay.db", f"maildir:{tmp_path}/outbox",
                                inbound={"workers": 2, "port": taken.getsockname()[1]})
        result = subprocess.run([sys.executable, "-m", "relay", "--config", str(config), "serve"], cwd=tmp_path,
                                env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}, capture_output=True,
                                text=True, timeout=60)
    finally:
        taken.close()
    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1" in result.stderr and "Address already in use" in result.stderr


def test_starttls_on_uvloop(tmp_path: Path, sink: Sink) -> None:
    cert, key = self_signed(tmp_path, "relay.test")
    config = write_settings(tmp_path, f"sqlite:///{tmp_path}/relay.db", sink.url,
                            inbound={"tls_cert": str(cert), "tls_key": str(key), "port": free_port()})
    serve = Serve(config, port_of(config))
    try:
        case = open_case(config, "R-tls")
        code, text = swaks(port_of(config), REVIEWER, case["reviewer_address"], "Bestellnummer BE-1",
                           header_from=REVIEWER, extra=["--tls"])
        assert code == 250, text
        assert sink.wait("service@shop.example", kind="forward")
        assert "event loop uvloop" in str(events(tmp_path / "relay.log", "serve.started")[0]["msg"])
    finally:
        assert serve.kill() == 0
