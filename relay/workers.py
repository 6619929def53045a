"""`[inbound] workers = N`: `relay serve` as N processes on all the cores.

The parent migrates the database once and starts N copies of its own command, each marked by
`RELAY_SERVE_WORKER`. Every worker is a whole relay: its own event loop, SMTP server, API, outbox
worker, webhook worker and scheduler; they bind the same SMTP and API ports with SO_REUSEPORT and
the kernel spreads new connections over them. What they share is the database, whose claims
(leases, `SKIP LOCKED`, the unique notice index) already make every delivery, webhook and notice
go out once however many processes look.

The parent only supervises: SIGTERM and SIGINT are passed on (each worker drains its sessions),
SIGHUP too (each reopens the log); a worker that exits while nobody asked it to is logged and
started again, after a pause that grows while it keeps failing. Workers append to one log file and
never rotate it: the parent rotates by size (renames, then SIGHUP), so no two processes rotate at
once. A worker that fails at start-up (bad settings, a missing storage key, a taken port) stops
them all with its exit code: that does not heal by restarting.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from relay import libc, logs
from relay.config import Settings
from relay.core.vocabulary import Event

ENV = "RELAY_SERVE_WORKER"
READY_ENV = "RELAY_SERVE_READY_FD"  # where a worker says that it listens (a pipe to the parent)
MAX_PAUSE = 30.0       # the longest wait before a crashed worker is started again
POLL = 0.1


def number() -> int | None:
    """This process's worker number, or None for the parent (or a relay of one process)."""
    value = os.environ.get(ENV)
    return int(value) if value and value.isdigit() else None


def report_ready() -> None:
    """In a worker: tell the parent that it listens (once; nothing outside a worker)."""
    fd = os.environ.pop(READY_ENV, "")
    if fd.isdigit():
        try:
            os.write(int(fd), b"1")
            os.close(int(fd))
        except OSError:
            pass


def follow_parent() -> None:
    """In a worker: end when the parent ends (PR_SET_PDEATHSIG), so that no worker is left
    holding the port (SO_REUSEPORT would let a second relay share it without a word)."""
    prctl = libc.function("prctl")
    if number() is None or prctl is None:
        return
    prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent ended before that took effect
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class _Worker:
    number: int
    process: subprocess.Popen[bytes]
    started: float
    ready_fd: int
    failures: int = 0
    restart_at: float | None = None
    ready: bool = False
    first: bool = True   # started with the relay: failing before it listens fails the relay

    def poll_ready(self) -> bool:
        if not self.ready:
            with contextlib.suppress(BlockingIOError):
                self.ready = bool(os.read(self.ready_fd, 1))
        return self.ready


@dataclass
class _Signals:
    stops: int = 0
    hups: int = 0

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._hup)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stops += 1

    def _hup(self, signum: int, frame: FrameType | None) -> None:
        self.hups += 1


def supervise(settings: Settings, argv: list[str]) -> int:
    """Run `settings.inbound.workers` workers of `relay <argv>` until a stop signal; the exit code."""
    count = settings.inbound.workers
    command = [sys.executable, "-m", "relay", *argv]
    signals = _Signals()
    signals.install()
    workers: list[_Worker] = []
    try:
        workers += [_start(n, command, time.monotonic()) for n in range(1, count + 1)]
        inbound = settings.inbound
        logs.event(Event.SERVE_WORKERS, f"{count} worker processes share {inbound.host}:{inbound.port} and the "
                   f"API's port (SO_REUSEPORT){_sqlite_note(settings)}", workers=count)
        return _watch(settings, workers, command, signals)
    finally:  # whatever ended the watch: no worker outlives the parent
        _send(workers, signal.SIGTERM)
        _wait_all(workers)
        for worker in workers:
            os.close(worker.ready_fd)


def _watch(settings: Settings, workers: list[_Worker], command: list[str], signals: _Signals) -> int:
    forwarded, hups = 0, 0
    while True:
        if signals.stops > forwarded:
            # the first stop drains every worker; another one hurries them (SIGUSR2: a worker gets
            # SIGTERM from systemd as well, which must not count as the second)
            _send(workers, signal.SIGTERM if forwarded == 0 else signal.SIGUSR2)
            forwarded = signals.stops
        if signals.hups > hups:
            hups = signals.hups
            logs.reopen()
            _send(workers, signal.SIGHUP)
        failed = _reap(workers, command, stopping=forwarded > 0)
        if failed is not None:
            return failed
        if forwarded and all(w.process.poll() is not None for w in workers):
            logs.event(Event.SERVE_STOPPED, f"all {len(workers)} workers stopped")
            return 0
        _rotate(settings, workers)
        time.sleep(POLL)


def _start(worker: int, command: list[str], now: float) -> _Worker:
    """Start a worker with SIGHUP blocked: a SIGHUP passed on while it is still starting waits for
    it (relay.server unblocks it once its handler is in place) instead of ending it. Its own
    session: a Ctrl-C at the terminal reaches the parent, which passes it on once."""
    ready_read, ready_write = os.pipe()
    os.set_blocking(ready_read, False)
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        process = subprocess.Popen(command, env={**os.environ, ENV: str(worker), READY_ENV: str(ready_write)},
                                   pass_fds=(ready_write,), start_new_session=True)
    except BaseException:
        os.close(ready_read)
        raise
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
        os.close(ready_write)
    return _Worker(worker, process, now, ready_read)


def _send(workers: list[_Worker], sig: signal.Signals) -> None:
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(sig)


def _wait_all(workers: list[_Worker]) -> None:
    for worker in workers:
        worker.process.wait()


def _reap(workers: list[_Worker], command: list[str], stopping: bool) -> int | None:
    """Notice workers that exited and start them again when due; an exit code that should stop the
    relay (a worker of the relay's start that ended before it listened), else None."""
    now = time.monotonic()
    for worker in workers:
        worker.poll_ready()
        code = worker.process.poll()
        if code is None or stopping:
            continue
        if worker.restart_at is None:
            if worker.first and not worker.poll_ready():  # bad settings, no key, a taken port: said why
                return code if code > 0 else 1
            worker.failures += 1
            pause = min(MAX_PAUSE, 2.0 ** (worker.failures - 1))
            worker.restart_at = now + pause
            logs.event(Event.WORKER_EXITED, f"worker {worker.number} exited ({_how(code)}); started again in "
                       f"{pause:g}s", level=logging.ERROR, worker=worker.number)
        elif now >= worker.restart_at:
            fresh = _start(worker.number, command, now)
            os.close(worker.ready_fd)
            worker.process, worker.started, worker.restart_at = fresh.process, now, None
            worker.ready_fd, worker.ready, worker.first = fresh.ready_fd, False, False
            logs.event(Event.WORKER_STARTED, f"worker {worker.number} started again (pid {fresh.process.pid})",
                       worker=worker.number)
        if worker.restart_at is None and worker.process.poll() is None and now - worker.started > MAX_PAUSE:
            worker.failures = 0  # it ran a while: the next crash pauses briefly again
    return None


def _how(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


def _rotate(settings: Settings, workers: list[_Worker]) -> None:
    """Rotate the shared log by size, as `relay serve` alone does: rename it and its backups, then
    every process (this one too) reopens the path."""
    log = settings.log
    target = log.file
    if target is None or not log.max_bytes:
        return
    try:
        if target.stat().st_size < log.max_bytes:
            return
    except FileNotFoundError:
        return
    for n in range(log.backups - 1, 0, -1):
        older = Path(f"{target}.{n}")
        if older.exists():
            older.replace(f"{target}.{n + 1}")
    if log.backups:
        target.replace(f"{target}.1")
    else:
        target.unlink()
    logs.reopen()
    _send(workers, signal.SIGHUP)


def _sqlite_note(settings: Settings) -> str:
    if not settings.storage.database.startswith("sqlite"):
        return ""
    return ("; they share one SQLite file, which takes one writer at a time: the workers take turns at "
            "its write lock (docs/performance.md: several processes on one SQLite file)")

