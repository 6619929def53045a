"""Exactly once under concurrency: two `relay serve` processes and two `relay run-jobs` at the same
moment on one PostgreSQL database, over 1,000 overdue cases: every expiry notice reaches the sink
exactly once, none is missing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from relay.app import App
from relay.core.clock import ManualClock
from relay.store import database
from relay.store.models import Delivery, Notice
from tests.helpers.cli import Serve, write_settings
from tests.helpers.environment import REPO, Sink, _reset_postgres, make_settings, new_case

CASES = 1000


def test_expiry_notices_exactly_once_across_processes(pg_database: str, tmp_path: Path) -> None:
    _reset_postgres(pg_database)
    sink = Sink()
    serves: list[Serve] = []
    try:
        past = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=6)
        app = App.open(make_settings(tmp_path, pg_database), ManualClock(past))
        for n in range(CASES):
            new_case(app, business=f"shop{n}@example.com", business_id=f"B-{n}", review_id=f"R-{n}")
        # the contact requests went out long ago; this test counts expiry notices only
        Delivery.update(state="sent", sent_at=past).execute()
        database.close()

        configs = []
        for name in ("a", "b", "c"):
            folder = tmp_path / name
            folder.mkdir()
            configs.append(write_settings(folder, pg_database, sink.url, cases={"reminder_before": "0s"}))
        for config in configs[:2]:
            port = int(config.read_text().split("port = ")[1].split("\n")[0])
            serves.append(Serve(config, port))
        env = {"PYTHONPATH": str(REPO)}
        runners = [subprocess.Popen([sys.executable, "-m", "relay", "--config", str(configs[2]), "run-jobs"],
                                    cwd=configs[2].parent, env={**os.environ, **env},
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for _ in range(2)]
        for runner in runners:
            out, err = runner.communicate(timeout=240)
            assert runner.returncode == 0, err[-500:]
            assert out.startswith("cases: expired "), out

        deadline = time.monotonic() + 180
        while len(sink.messages) < CASES and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # anything sent twice would arrive now
        per_recipient = Counter(m["to"][0] for m in sink.messages)
        assert len(per_recipient) == CASES, f"missing: {CASES - len(per_recipient)}"
        assert set(per_recipient.values()) == {1}, per_recipient.most_common(3)
        assert all(b"Keine Antwort auf Ihre Anfrage" in m["raw"] for m in sink.messages)

        App.open(make_settings(tmp_path, pg_database))
        assert Notice.select().where(Notice.kind == "expiry_notice").count() == CASES
        assert Delivery.select().where((Delivery.kind == "expiry_notice") & (Delivery.state == "sent")).count() == CASES
    finally:
        for serve in serves:
            serve.kill()
        sink.stop()
        database.close()
