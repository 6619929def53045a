"""The relay log: one JSON object per line in `[log] file`, a readable line on stderr.

Every line has `ts`, `level`, `event` (a stable dotted name), `msg`, and where known `case`, `qid`
(the queue id that follows one message from SMTP to delivery) and `reply` (the SMTP reply). Callers
never pass a party's address in clear: they pass `App.mask(address)`.

Records are formatted and written on a writer thread of their own (`Writer`), which writes whatever
has queued up and then flushes once: the event loop and the database thread only append a record
to a queue instead of waiting for file writes (and for the interpreter lock after each of them).
The handlers it writes with, and the files they create (mode 0640), are in relay.logfiles.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import logging.handlers
import os
import queue
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from relay.logfiles import HeldFlush, RotatingFile, StreamOut, WatchedFile, reopen_file

LOGGER = logging.getLogger("relay")


def event(name: str, msg: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event. Extra fields (case, qid, reply, counts...) become JSON keys.

    The record is made directly: `Logger.log` would walk the call stack for the caller's file and
    line on every event, which no log line shows (the event name says where it comes from)."""
    if LOGGER.isEnabledFor(level):
        LOGGER.handle(LOGGER.makeRecord(LOGGER.name, level, "relay", 0, msg, (), None,
                                        extra={"event": name, "fields": fields}))


_WORKER = os.environ.get("RELAY_SERVE_WORKER", "")


def entry(record: logging.LogRecord) -> dict[str, Any]:
    """The JSON object of one log line."""
    line: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
              .replace("+00:00", "Z"),
        "level": record.levelname.lower(),
        "event": getattr(record, "event", record.name),
    }
    if _WORKER:  # `[inbound] workers`: which process wrote it (relay.workers)
        line["worker"] = _WORKER
    line.update({k: v for k, v in getattr(record, "fields", {}).items() if v is not None})
    line["msg"] = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        line["error"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
    return line


def render(line: dict[str, Any]) -> str:
    """One readable, aligned line (UTC): time, level, event, case and queue id, message, [reply]."""
    ts = str(line.get("ts", ""))[:19].replace("T", " ")
    tags = " ".join(f"{k}={line[k]}" for k in ("case", "qid") if line.get(k) is not None)
    reply = f" [{line['reply']}]" if line.get("reply") else ""
    text = f"{ts} {str(line.get('level', '')).upper():<7} {line.get('event', ''):<20} "
    return (text + (f"{tags} " if tags else "") + str(line.get("msg", "")) + reply).rstrip()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # kept on the record: a rotating file handler formats each record twice (size check, write)
        text: str | None = getattr(record, "relay_json", None)
        if text is None:
            text = json.dumps(entry(record), ensure_ascii=False, default=str)
            record.relay_json = text
        return text


class ReadableFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return render(entry(record))


# syslog priorities by level: journald reads a leading "<N>" on a line of a service's stdout or
# stderr as the line's priority, so `journalctl -p warning` finds the relay's warnings
_PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalPriority(logging.Formatter):
    """Another formatter's line behind its syslog priority, for a stream systemd hands to journald."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return f"<{_PRIORITIES.get(record.levelno, 6)}>{self.inner.format(record)}"


def goes_to_journal(stream: TextIO, environ: dict[str, str] | None = None) -> bool:
    """True when `stream` is the journal stream systemd gave the service: systemd names it in
    JOURNAL_STREAM as "device:inode", which the stream's file must match (a pipe to another program
    inherits the variable but is another file)."""
    named = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return named == f"{info.st_dev}:{info.st_ino}"


def _formatted(handler: logging.Handler, formatter: logging.Formatter, stream: TextIO | None) -> logging.Handler:
    handler.setFormatter(JournalPriority(formatter) if stream is not None and goes_to_journal(stream) else formatter)
    return handler


class _Reopen:
    """Queued between records: the writer reopens its files there (SIGHUP after logrotate)."""


REOPEN = _Reopen()
Item = logging.LogRecord | _Reopen | None  # None: write what is queued, then stop


class Writer:
    """Hands queued records to the real handlers on a daemon thread, a batch at a time."""

    def __init__(self, handlers: list[logging.Handler]) -> None:
        self.handlers = handlers
        self.queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="relay-log", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]
            with contextlib.suppress(queue.Empty):
                while len(batch) < 1000:
                    batch.append(self.queue.get_nowait())
            records: list[logging.LogRecord] = []
            for item in batch:
                if isinstance(item, logging.LogRecord):
                    records.append(item)
                elif item is REOPEN:  # the records before it go to the old file, those after to the new
                    self._write(records)
                    records = []
                    self._reopen()
            self._write(records)
            if None in batch:
                return

    def _write(self, records: list[logging.LogRecord]) -> None:
        if not records:
            return
        for handler in self.handlers:
            if isinstance(handler, HeldFlush):
                handler.hold(True)
            try:
                for record in records:
                    if record.levelno >= handler.level:
                        handler.handle(record)
            finally:
                if isinstance(handler, HeldFlush):
                    handler.hold(False)
                handler.flush()

    def _reopen(self) -> None:
        for handler in self.handlers:
            failed = reopen_file(handler)
            if failed:  # the lines keep going to the old file; the log itself cannot say so
                print(f"relay: log file not reopened, still writing to the old one: {failed}",
                      file=sys.stderr, flush=True)

    def close(self) -> None:
        """Write everything queued, then stop and close the handlers."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join(timeout=10)
        for handler in self.handlers:
            handler.close()


class _Enqueue(logging.handlers.QueueHandler):
    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """Resolve the message now (its arguments may change later); keep the rest of the record,
        exception included, for the JSON formatter on the writer thread."""
        record.msg = record.getMessage()
        record.args = None
        return record


_WRITERS: list[Writer] = []  # the one running writer, if any


def close() -> None:
    """Flush the log and stop its writer (at exit, and before the log is set up anew)."""
    while _WRITERS:
        _WRITERS.pop().close()


atexit.register(close)


def reopen() -> None:
    """Reopen the log file at its path, between the records logged before this call and those
    after it (`relay serve` on SIGHUP: logrotate renamed the file and created a new one). The
    writer thread does it, as it owns the files; a stream (stdout, stderr) is left as it is."""
    for writer in _WRITERS:
        writer.queue.put(REOPEN)


def setup(file: Path | None, level: str = "info", stderr: bool = True, rotate_bytes: int = 0,
          backups: int = 0, stream: TextIO | None = None) -> None:
    """Configure the relay logger (idempotent: replaces handlers set up before).

    `file=None` writes JSON lines to `stream` (stdout for `relay serve` in a container). Only the
    long-running `relay serve` rotates (`rotate_bytes`); short commands append to whatever file is
    current and reopen it if it was rotated under them, so no process writes into a file another
    one has moved away.
    """
    close()
    for old in LOGGER.handlers:
        old.close()
    LOGGER.handlers.clear()
    LOGGER.setLevel(level.upper())
    LOGGER.propagate = False
    handler: logging.Handler
    if file is None:
        out = stream or sys.stdout
        handler = _formatted(StreamOut(out), JsonFormatter(), out)
    else:
        file.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        if rotate_bytes:
            handler = RotatingFile(file, maxBytes=rotate_bytes, backupCount=backups, encoding="utf-8")
        else:
            handler = WatchedFile(file, encoding="utf-8")
        handler.setFormatter(JsonFormatter())
    handlers: list[logging.Handler] = [handler]
    if stderr and file is not None:
        handlers.append(_formatted(StreamOut(sys.stderr), ReadableFormatter(), sys.stderr))
    _WRITERS.append(Writer(handlers))
    LOGGER.addHandler(_Enqueue(_WRITERS[0].queue))
