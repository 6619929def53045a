"""Group commit for SQLite: one durable commit for the work of several messages that arrived together.

SQLite takes one writer at a time, so `relay serve` does its database work on one thread. Every
accepted message used to end in a commit of its own, and with `synchronous = FULL` a commit waits
for the disk (a millisecond on a good day, ten on a busy virtual disk). This executor runs the jobs
queued for that thread inside one shared transaction and commits when the queue is empty (or after
`MAX_GROUP` jobs); each job's own `db.atomic()` becomes a savepoint inside it, so a job that fails
rolls back only its own work. A job's result is handed back only after the commit that made it
durable: the 250 still follows the commit. If the commit itself fails, every job of the group gets
that error (the client is told to try again) and nothing of the group is stored.

Under light load the queue is empty after every job and each commits alone, as before.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from relay.store import events
from relay.store.models import db

MAX_GROUP = 64

_Job = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class GroupCommitExecutor(Executor):
    def __init__(self, name: str = "relay-db") -> None:
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.groups = 0      # commits made (for tests and the curious)
        self.grouped = 0     # jobs run inside them
        self.closed = False
        self.failure: Exception | None = None  # why the last failed commit failed
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self.closed:
            raise RuntimeError("the database executor is shut down")
        future: Future[Any] = Future()
        self.jobs.put((future, fn, args, kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if not self.closed:
            self.closed = True
            self.jobs.put(None)
        if wait:
            self.thread.join()

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self.jobs.get()
            if first is None:
                return
            try:
                transaction = db.atomic()
                transaction.__enter__()
            except Exception as exc:  # the database cannot be written now: this job learns why
                _settle([(first[0], exc)])
                continue
            start = events.mark()
            group, stop = self._group(first)
            if self._commit(transaction):
                self.grouped += len(group)
                events.flush()  # the log lines of the group's work, now that it is durable
                _settle(group)
            else:  # nothing of the group was stored: every job learns why, nothing of it is logged
                events.drop_since(start)
                _settle([(future, self.failure) for future, _ in group])

    def _group(self, first: _Job) -> tuple[list[tuple[Future[Any], Any]], bool]:
        """Run `first` and whatever queued behind it inside the open transaction; (the jobs and
        their outcomes, whether the executor was shut down meanwhile)."""
        group: list[tuple[Future[Any], Any]] = []
        job: _Job | None = first
        while job is not None:
            future, fn, args, kwargs = job
            if future.set_running_or_notify_cancel():
                position = events.mark()
                try:
                    group.append((future, fn(*args, **kwargs)))
                except BaseException as exc:  # handed to the caller, as a thread pool would
                    events.drop_since(position)  # its savepoint rolled back: so do its log lines
                    group.append((future, exc))
            if len(group) >= MAX_GROUP:
                break
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return group, True
        return group, False

    def _commit(self, transaction: Any) -> bool:
        """Commit the group's transaction; False (and why, in `failure`) if that failed."""
        try:
            transaction.__exit__(None, None, None)  # commits (peewee rolls back if that fails)
        except Exception as exc:
            self.failure = exc
            return False
        self.groups += 1
        return True


def _settle(outcomes: list[tuple[Future[Any], Any]]) -> None:
    for future, outcome in outcomes:
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
