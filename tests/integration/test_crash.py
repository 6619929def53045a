"""Durability: a message answered 250 survives `kill -9`, even mid-delivery, and is delivered after
the restart, on SQLite and PostgreSQL."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.helpers.cli import Serve, open_case, write_settings
from tests.helpers.environment import Sink
from tests.helpers.smtp import swaks


def test_kill_9_mid_delivery_then_restart_delivers(db_url: str, tmp_path: Path) -> None:
    hanging = Sink(hang=True)   # accepts DATA and never answers: deliveries stay unconfirmed
    good = Sink()
    try:
        config = write_settings(tmp_path, db_url, hanging.url, cases={"reply_notice_after": "0s"})
        port = int(config.read_text().split("port = ")[1].split("\n")[0])
        serve = Serve(config, port)
        case = open_case(config, "R-crash")
        code, text = swaks(port, "max.mueller@example.de", case["reviewer_address"], "Rechnung RE-7781",
                           header_from="Max <max.mueller@example.de>")
        assert code == 250, text
        deadline = time.monotonic() + 20
        while hanging.started < 2 and time.monotonic() < deadline:  # request and forward in flight
            time.sleep(0.05)
        assert hanging.started == 2
        assert serve.kill(signal.SIGKILL) == -signal.SIGKILL

        restarted = Serve(config, port, env={"RELAY_OUTBOUND_URL": good.url})
        try:
            forwards = good.wait("service@shop.example", timeout=45, kind="forward")
            requests = good.wait("max.mueller@example.de", timeout=5)
            notices = good.wait("service@shop.example", timeout=15, kind="notice")  # after the forward
        finally:
            restarted.kill()
        assert len(forwards) == 1 and b"RE-7781" in forwards[0]["raw"]
        assert len(requests) == 1 and len(notices) == 1
    finally:
        hanging.stop()
        good.stop()
