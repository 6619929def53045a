"""The log writer's files: a file moved away by logrotate is reopened, a rotating log splits at its
size, and every line is one JSON object with the event's fields, written by the writer thread in
batches (the file checks are made once per batch, so these tests write batches of many records)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay import logs


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    yield
    logs.close()
    logs.LOGGER.handlers.clear()


def lines(*paths: Path) -> list[dict[str, object]]:
    return [json.loads(line) for path in paths for line in path.read_text().splitlines()]


def test_a_log_moved_away_is_reopened(tmp_path: Path) -> None:
    log = tmp_path / "relay.log"
    logs.setup(log, "info", stderr=False)
    for n in range(200):
        logs.event("test.before", f"line {n}", case=n)
    logs.close()  # everything queued is written
    log.rename(tmp_path / "relay.log.1")
    logs.setup(log, "info", stderr=False)
    logs.event("test.opened", "a new process")
    (tmp_path / "relay.log").rename(tmp_path / "relay.log.2")  # moved under a running writer
    for n in range(200):
        logs.event("test.after", f"line {n}", qid=f"Q{n}")
    logs.close()
    assert [e["case"] for e in lines(tmp_path / "relay.log.1")] == list(range(200))
    after = lines(tmp_path / "relay.log.2", log)
    assert [e["qid"] for e in after if e["event"] == "test.after"] == [f"Q{n}" for n in range(200)]
    assert lines(log), "the moved file was not reopened"


def test_a_rotating_log_splits_at_its_size_within_a_batch(tmp_path: Path) -> None:
    log = tmp_path / "relay.log"
    logs.setup(log, "info", stderr=False, rotate_bytes=4000, backups=50)
    for n in range(300):  # about 30,000 bytes, queued faster than written: batches of many records
        logs.event("test.rotate", f"record number {n:04d}", case=n)
    logs.close()
    files = [*sorted(tmp_path.glob("relay.log.*"), key=lambda p: -int(p.suffix[1:])), log]
    assert len(files) >= 7
    assert all(path.stat().st_size <= 4000 for path in files)
    assert [e["case"] for e in lines(*files)] == list(range(300))  # nothing lost, in order
    assert all(e["level"] == "info" and e["msg"] == f"record number {e['case']:04d}" for e in lines(*files))
