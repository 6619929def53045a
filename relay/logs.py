"""The relay log: one JSON object per line in `[log] file`, a readable line on stderr.

Every line has `ts`, `level`, `event` (a stable dotted name), `msg`, and where known `case`, `qid`
(the queue id that follows one message from SMTP to delivery) and `reply` (the SMTP reply). Callers
never pass a party's address in clear: they pass `App.mask(address)`.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

LOGGER = logging.getLogger("relay")


def event(name: str, msg: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event. Extra fields (case, qid, reply, counts...) become JSON keys."""
    LOGGER.log(level, msg, extra={"event": name, "fields": fields})


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
        return json.dumps(entry(record), ensure_ascii=False, default=str)


class ReadableFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return render(entry(record))


def setup(file: Path | None, level: str = "info", stderr: bool = True, rotate_bytes: int = 0,
          backups: int = 0, stream: TextIO | None = None) -> None:
    """Configure the relay logger (idempotent: replaces handlers set up before).

    `file=None` writes JSON lines to `stream` (stdout for `relay serve` in a container). Only the
    long-running `relay serve` rotates (`rotate_bytes`); short commands append to whatever file is
    current and reopen it if it was rotated under them, so no process writes into a file another
    one has moved away.
    """
    for old in LOGGER.handlers:
        old.close()
    LOGGER.handlers.clear()
    LOGGER.setLevel(level.upper())
    LOGGER.propagate = False
    handler: logging.Handler
    if file is None:
        handler = logging.StreamHandler(stream or sys.stdout)
    else:
        file.parent.mkdir(parents=True, exist_ok=True)
        if rotate_bytes:
            handler = logging.handlers.RotatingFileHandler(file, maxBytes=rotate_bytes, backupCount=backups,
                                                           encoding="utf-8")
        else:
            handler = logging.handlers.WatchedFileHandler(file, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    LOGGER.addHandler(handler)
    if stderr and file is not None:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(ReadableFormatter())
        LOGGER.addHandler(console)
