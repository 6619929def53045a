"""`relay tail`: the relay log, filtered, readable or raw, optionally following new lines."""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .logs import render

__all__ = ["Filter", "follow", "last_lines", "render"]


@dataclass(frozen=True)
class Filter:
    case: str | None = None
    event: str | None = None  # prefix: "delivery" matches delivery.sent, delivery.failed ...

    def __call__(self, entry: dict[str, Any]) -> bool:
        if self.case is not None and str(entry.get("case")) != self.case:
            return False
        return not (self.event is not None and not str(entry.get("event", "")).startswith(self.event))


def parse_line(line: str) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return None
    return entry if isinstance(entry, dict) else None


Line = tuple[str, dict[str, Any]]


def last_lines(path: Path, count: int, keep: Callable[[dict[str, Any]], bool]) -> list[Line]:
    found: deque[Line] = deque(maxlen=count)
    if not path.exists():
        return []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            entry = parse_line(line)
            if entry is not None and keep(entry):
                found.append((line.rstrip("\n"), entry))
    return list(found)


def follow(path: Path, keep: Callable[[dict[str, Any]], bool], poll: float = 0.5,
           stop: Callable[[], bool] = lambda: False) -> Iterator[Line]:
    """New lines from the end of `path` on; reopens the file when it is replaced (rotation), and
    reads a file that appears later from its start."""
    handle: TextIO | None = None
    inode = None
    pending = ""
    at_start = True
    try:
        while not stop():
            if handle is None and path.exists():
                handle = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
                inode = os.fstat(handle.fileno()).st_ino
                if at_start:
                    handle.seek(0, os.SEEK_END)
            at_start = False
            chunk = handle.readline() if handle else ""
            if chunk:
                pending += chunk
                if pending.endswith("\n"):
                    line, pending = pending.rstrip("\n"), ""
                    entry = parse_line(line)
                    if entry is not None and keep(entry):
                        yield line, entry
                continue
            if handle is not None and path.exists() and path.stat().st_ino != inode:
                handle.close()
                handle = None
                continue
            time.sleep(poll)
    finally:
        if handle is not None:
            handle.close()
