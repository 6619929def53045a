"""The log writer's files: a file moved away by logrotate is reopened, a rotating log splits at its
size, a reopen (SIGHUP) splits the records between the old and the new file, files the relay
creates are 0640 whatever the umask, and `relay tail -f` goes on in a replaced or truncated file.
Every line is one JSON object with the event's fields, written by the writer thread in batches
(the file checks are made once per batch, so these tests write batches of many records)."""

from __future__ import annotations

import json
import logging
import os
import queue
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay import logs
from relay.admin import tail


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


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_log_files_the_relay_creates_are_0640_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    log = tmp_path / "relay.log"
    saved = os.umask(umask)
    try:
        logs.setup(log, "info", stderr=False, rotate_bytes=2000, backups=5)  # creates relay.log
        for n in range(60):  # rotates: relay.log.N renamed, relay.log created anew
            logs.event("test.rotate", f"record number {n:04d}", case=n)
        logs.close()
        log.rename(tmp_path / "moved.log")
        logs.setup(log, "info", stderr=False)  # a short command's handler creates it again
        logs.event("test.opened", "a new file")
        logs.close()
        log.rename(tmp_path / "moved-again.log")
        logs.setup(log, "info", stderr=False, rotate_bytes=1_000_000)
        log.unlink()  # nothing queued yet: the writer holds a file no longer there
        logs.reopen()  # SIGHUP: the reopen creates it
        logs.event("test.reopened", "after the reopen")
        logs.close()
    finally:
        os.umask(saved)
    files = sorted(tmp_path.glob("*.log*"))
    assert len(files) >= 5
    assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o640 for f in files}
    assert [e["event"] for e in lines(log)] == ["test.reopened"]


def test_an_existing_log_file_keeps_its_mode(tmp_path: Path) -> None:
    log = tmp_path / "relay.log"
    log.touch(mode=0o600)
    log.chmod(0o600)
    logs.setup(log, "info", stderr=False)
    logs.event("test.kept", "x")
    logs.close()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600 and lines(log)[0]["event"] == "test.kept"


@pytest.mark.parametrize("rotate_bytes", [0, 1_000_000])
def test_reopen_splits_the_records_between_the_old_and_the_new_file(tmp_path: Path, rotate_bytes: int) -> None:
    """logrotate's `create`: the file is renamed and an empty one made in its place; the writer goes
    on into the renamed file until it is told to reopen (SIGHUP), then writes into the new one,
    with the records before the call in the old file and those after it in the new one."""
    log = tmp_path / "relay.log"
    logs.setup(log, "info", stderr=False, rotate_bytes=rotate_bytes, backups=3)
    for n in range(100):
        logs.event("test.before", f"line {n}", case=n)
    log.rename(tmp_path / "relay.log.1")
    log.touch()
    for n in range(100, 200):
        logs.event("test.before", f"line {n}", case=n)
    logs.reopen()
    for n in range(200, 300):
        logs.event("test.after", f"line {n}", case=n)
    logs.close()
    assert [e["case"] for e in lines(tmp_path / "relay.log.1", log)] == list(range(300))
    assert [e["case"] for e in lines(log) if e["event"] == "test.after"] == list(range(200, 300))
    if rotate_bytes:  # the relay's own rotation does not watch the path: only the reopen moves it
        assert [e["case"] for e in lines(tmp_path / "relay.log.1")] == list(range(200))
    else:  # a watched file follows the rename by itself, at the next batch: nothing waits for SIGHUP
        assert [e["event"] for e in lines(tmp_path / "relay.log.1")].count("test.after") == 0


def test_follow_goes_on_in_a_replaced_or_truncated_file(tmp_path: Path) -> None:
    log = tmp_path / "relay.log"
    log.write_text(entry_line("old.0"))
    seen: queue.SimpleQueue[object] = queue.SimpleQueue()
    done = threading.Event()

    def run() -> None:
        for _, entry in tail.follow(log, lambda _: True, poll=0.01, stop=done.is_set):
            seen.put(entry["event"])

    follower = threading.Thread(target=run, daemon=True)
    follower.start()
    deadline = time.monotonic() + 10
    while not any(Path(f"/proc/self/fd/{fd}").resolve() == log for fd in os.listdir("/proc/self/fd")):
        assert time.monotonic() < deadline, "the follower did not open the log"
        time.sleep(0.01)

    def next_event() -> object:
        return seen.get(timeout=10)

    try:
        with open(log, "a") as out:  # the follower starts at the end: only what comes after is seen
            out.write(entry_line("old.1"))
            out.flush()
            assert next_event() == "old.1"
            out.write(entry_line("old.2"))
            out.flush()
            log.rename(tmp_path / "relay.log.1")  # logrotate's create: renamed, a new file made
            log.write_text(entry_line("new.0"))
        assert next_event() == "old.2"  # the rest of the old file is read first ...
        assert next_event() == "new.0"  # ... then the new one from its start
        with open(log, "a") as out:
            out.write(entry_line("new.1") + entry_line("new.2"))
        assert [next_event(), next_event()] == ["new.1", "new.2"]
        with open(log, "w") as out:  # truncated in place (copytruncate), then written again
            out.write(entry_line("after.truncate"))
        assert next_event() == "after.truncate"
    finally:
        done.set()
        follower.join(5)


def entry_line(event: str) -> str:
    return json.dumps({"ts": "2026-01-01T00:00:00.000Z", "level": "info", "event": event, "msg": event}) + "\n"


def test_lines_for_journald_carry_their_syslog_priority(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under systemd with `[log] file = "-"`, stdout is the journal stream systemd names in
    JOURNAL_STREAM ("device:inode"); journald reads a line's leading <N> as its priority. A stream
    that is not the named one (a pipe, a file) gets the plain JSON lines."""
    journal = tmp_path / "journal"
    with open(journal, "w", encoding="utf-8") as stream:
        info = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        logs.setup(None, "info", stream=stream)
        logs.event("delivery.sent", "sent")
        logs.event("delivery.deferred", "deferred", level=logging.WARNING)
        logs.event("inbound.error", "failed", level=logging.ERROR)
        logs.close()
    lines = journal.read_text().splitlines()
    assert [line[:3] for line in lines] == ["<6>", "<4>", "<3>"]
    assert json.loads(lines[1][3:])["event"] == "delivery.deferred"

    elsewhere = tmp_path / "elsewhere"
    with open(elsewhere, "w", encoding="utf-8") as stream:  # JOURNAL_STREAM names another file
        logs.setup(None, "info", stream=stream)
        logs.event("delivery.sent", "sent")
        logs.close()
    assert json.loads(elsewhere.read_text())["event"] == "delivery.sent"
