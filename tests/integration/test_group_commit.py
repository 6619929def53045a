"""Group commit on SQLite: jobs queued together share one commit, each job's failure stays its own,
a failed commit fails the whole group and stores none of it, and a result is only handed back once
its work is durable (visible to another connection)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import peewee as pw
import pytest

from relay.store import database, key_files
from relay.store.group_commit import GroupCommitExecutor
from relay.store.models import Setting, db


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[GroupCommitExecutor]:
    database.close()
    database.open_database(f"sqlite:///{tmp_path}/relay.db",
                           key_files.source("", tmp_path / "relay.db", tmp_path))
    running = GroupCommitExecutor(name="test-db")
    yield running
    running.shutdown()
    database.close()


def stored(tmp_path: Path) -> set[str]:
    """What another connection sees: only committed rows."""
    with sqlite3.connect(tmp_path / "relay.db") as other:
        return {row[0] for row in other.execute("SELECT name FROM setting WHERE name LIKE 'job%'")}


def write(name: str) -> str:
    with db.atomic():  # a savepoint inside the group's transaction
        Setting.create(name=name, value="x")
    return name


def held(executor: GroupCommitExecutor) -> threading.Event:
    """Keep the executor's thread busy until the returned event is set, so that what is submitted
    meanwhile queues up behind it and runs as one group."""
    release = threading.Event()
    executor.submit(release.wait, 10)
    return release


def test_jobs_queued_together_share_one_commit(executor: GroupCommitExecutor, tmp_path: Path) -> None:
    release = held(executor)
    futures = [executor.submit(write, f"job{n}") for n in range(10)]
    assert stored(tmp_path) == set()
    release.set()
    assert [f.result(10) for f in futures] == [f"job{n}" for n in range(10)]
    assert stored(tmp_path) == {f"job{n}" for n in range(10)}  # durable once handed back
    assert executor.groups == 1 and executor.grouped == 11
    assert executor.submit(write, "job-alone").result(10) == "job-alone"
    assert executor.groups == 2 and "job-alone" in stored(tmp_path)


def test_a_failing_job_fails_alone(executor: GroupCommitExecutor, tmp_path: Path) -> None:
    def duplicate() -> None:
        with db.atomic():
            Setting.create(name="job-dup", value="x")
            Setting.create(name="job-dup", value="y")  # unique name: this job's savepoint rolls back

    release = held(executor)
    before = executor.submit(write, "job-before")
    failing = executor.submit(duplicate)
    after = executor.submit(write, "job-after")
    release.set()
    assert before.result(10) == "job-before" and after.result(10) == "job-after"
    with pytest.raises(pw.IntegrityError):
        failing.result(10)
    assert stored(tmp_path) == {"job-before", "job-after"}
    assert executor.groups == 1


def test_a_failed_commit_fails_the_whole_group(executor: GroupCommitExecutor, tmp_path: Path) -> None:
    def broken_reference() -> None:
        # foreign keys checked at COMMIT: the group's commit itself fails
        db.execute_sql("PRAGMA defer_foreign_keys = ON")
        db.execute_sql("INSERT INTO message (case_id, queue_id, sender, received_at, size, late) "
                       "VALUES (424242, 'Q', 'reviewer', '2026-01-01 00:00:00', 1, 0)")

    release = held(executor)
    futures: list[Future[Any]] = [executor.submit(write, "job-a"), executor.submit(broken_reference),
                                  executor.submit(write, "job-b")]
    release.set()
    for future in futures:
        with pytest.raises(pw.IntegrityError):
            future.result(10)
    assert stored(tmp_path) == set()
    assert executor.submit(write, "job-next").result(10) == "job-next"  # the executor goes on
    assert stored(tmp_path) == {"job-next"}
