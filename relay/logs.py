"""The relay log: one JSON object per line in `[log] file`, a readable line on stderr.

Every line has `ts`, `level`, `event` (a stable dotted name), `msg`, and where known `case`, `qid`
(the queue id that follows one message from SMTP to delivery) and `reply` (the SMTP reply). Callers
never pass a party's address in clear: they pass `App.mask(address)`.

Records are formatted and written on a writer thread of their own (`Writer`), which writes whatever
has queued up and then flushes once: the event loop and the database thread only append a record
to a queue instead of waiting for file writes (and for the interpreter lock after each of them).
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

LOGGER = logging.getLogger("relay")


def event(name: str, msg: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event. Extra fields (case, qid, reply, counts...) become JSON keys.

    The record is made directly: `Logger.log` would walk the call stack for the caller's file and
    line on every event, which no log line shows (the event name says where it comes from)."""
    if LOGGER.isEnabledFor(level):
        LOGGER.handle(LOGGER.makeRecord(LOGGER.name, level, "relay", 0, msg, (), None,
                                        extra={"event": name, "fields": fields}))


def entry(record: logging.LogRecord) -> dict[str, Any]:
    """The JSON object of one log line."""
    line: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
              .replace("+00:00", "Z"),
        "level": record.levelname.lower(),
        "event": getattr(record, "event", record.name),
    }
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


class _HeldFlush:
    """Handler mixin: while `held`, a record is written to the stream's buffer but not flushed;
    the writer thread flushes once per batch. What a file handler checks about its file (was it
    moved away, is it still a regular file) it checks once per batch too, not once per record."""

    held = False
    checked = False  # the file was checked in this batch

    def flush(self) -> None:
        if not self.held:
            super().flush()  # type: ignore[misc]

    def hold(self, on: bool) -> None:
        self.held = on
        self.checked = False

    def check_once(self) -> bool:
        """True the first time in a batch (and always outside one)."""
        first = not (self.held and self.checked)
        self.checked = self.held
        return first


class _Stream(_HeldFlush, logging.StreamHandler):  # type: ignore[type-arg]
    pass


class _Watched(_HeldFlush, logging.handlers.WatchedFileHandler):
    def reopenIfNeeded(self) -> None:
        if self.check_once():
            super().reopenIfNeeded()


class _Rotating(_HeldFlush, logging.handlers.RotatingFileHandler):
    regular = True
    size: int | None = None  # the file's length as this batch has written it

    def shouldRollover(self, record: logging.LogRecord) -> int:
        """The standard rule (only a regular file is rotated, once the record would take it past
        `maxBytes`), with the file looked at once per batch: its type, and its length, which the
        standard handler asks for with a seek per record (and a seek writes out what the batch
        holds back). Within a batch the length is counted on."""
        if self.check_once():
            path = self.baseFilename
            self.regular = not (os.path.exists(path) and not os.path.isfile(path))
            self.size = None
        if not self.regular or self.maxBytes <= 0:
            return 0
        if self.stream is None:
            self.stream = self._open()
        if self.size is None:
            self.stream.seek(0, 2)
            self.size = self.stream.tell()
        needed = len(self.format(record)) + 1
        if self.size + needed >= self.maxBytes:
            self.size = needed  # the record opens the new file
            return 1
        self.size += needed
        return 0


class Writer:
    """Hands queued records to the real handlers on a daemon thread, a batch at a time."""

    def __init__(self, handlers: list[logging.Handler]) -> None:
        self.handlers = handlers
        self.queue: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="relay-log", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]
            with contextlib.suppress(queue.Empty):
                while len(batch) < 1000:
                    batch.append(self.queue.get_nowait())
            self._write([r for r in batch if r is not None])
            if None in batch:
                return

    def _write(self, records: list[logging.LogRecord]) -> None:
        for handler in self.handlers:
            if isinstance(handler, _HeldFlush):
                handler.hold(True)
            try:
                for record in records:
                    if record.levelno >= handler.level:
                        handler.handle(record)
            finally:
                if isinstance(handler, _HeldFlush):
                    handler.hold(False)
                handler.flush()

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
        handler = _Stream(stream or sys.stdout)
    else:
        file.parent.mkdir(parents=True, exist_ok=True)
        if rotate_bytes:
            handler = _Rotating(file, maxBytes=rotate_bytes, backupCount=backups, encoding="utf-8")
        else:
            handler = _Watched(file, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    handlers: list[logging.Handler] = [handler]
    if stderr and file is not None:
        console = _Stream(sys.stderr)
        console.setFormatter(ReadableFormatter())
        handlers.append(console)
    _WRITERS.append(Writer(handlers))
    LOGGER.addHandler(_Enqueue(_WRITERS[0].queue))
