"""The relay log: one JSON object per line in `[log] file`, a readable line on stderr.

Every line has `ts`, `level`, `event` (a stable dotted name), `msg`, and where known `case`, `qid`
(the queue id that follows one message from SMTP to delivery) and `reply` (the SMTP reply). Callers
never pass a party's address in clear: they pass `App.mask(address)`.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOGGER = logging.getLogger("relay")
_FIELDS = ("case", "qid", "reply")


def event(name: str, msg: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event. Extra fields (case, qid, reply, counts...) become JSON keys."""
    LOGGER.log(level, msg, extra={"event": name, "fields": fields})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
                  .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", record.name),
        }
        line.update({k: v for k, v in getattr(record, "fields", {}).items() if v is not None})
        line["msg"] = record.getMessage()
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(line, ensure_ascii=False, default=str)


class ReadableFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%Y-%m-%d %H:%M:%S")
        fields = getattr(record, "fields", {})
        tags = " ".join(f"{k}={fields[k]}" for k in _FIELDS if fields.get(k) is not None)
        text = f"{when} {record.levelname:<7} {getattr(record, 'event', record.name):<20} "
        return (text + (tags + " " if tags else "") + record.getMessage()).rstrip()


def setup(file: Path | None, level: str = "info", stderr: bool = True) -> None:
    """Configure the relay logger (idempotent: replaces handlers set up before)."""
    LOGGER.handlers.clear()
    LOGGER.setLevel(level.upper())
    LOGGER.propagate = False
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(file, encoding="utf-8")
        handler.setFormatter(JsonFormatter())
        LOGGER.addHandler(handler)
    if stderr:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(ReadableFormatter())
        LOGGER.addHandler(console)
