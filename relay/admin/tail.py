"""`relay tail`: the relay log, filtered, readable or raw, optionally following new lines across
rotation (as `tail -F` does)."""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from relay.logs import render

__all__ = ["Filter", "colour", "follow", "last_lines", "render"]

Entry = dict[str, object]  # one JSON log line
Line = tuple[str, Entry]
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_COLOURS = {"warning": "\033[33m", "error": "\033[31m", "debug": "\033[2m"}


@dataclass(frozen=True)
class Filter:
    case: str | None = None
    event: str | None = None   # prefix: "delivery" matches delivery.sent, delivery.failed ...
    level: str | None = None   # this level and above
    since: datetime | None = None  # naive UTC

    def __call__(self, entry: Entry) -> bool:
        if self.case is not None and str(entry.get("case")) != self.case:
            return False
        if self.event is not None and not str(entry.get("event", "")).startswith(self.event):
            return False
        if self.level is not None and LEVELS.get(str(entry.get("level")), 0) < LEVELS[self.level]:
            return False
        return self.since is None or _when(entry) >= self.since


def _when(entry: Entry) -> datetime:
    try:
        return datetime.fromisoformat(str(entry.get("ts", "")).replace("Z", "+00:00")).astimezone(UTC) \
            .replace(tzinfo=None)
    except ValueError:
        return datetime.min


def parse_line(line: str) -> Entry | None:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return None
    return entry if isinstance(entry, dict) else None


def colour(entry: Entry, text: str) -> str:
    """Level colours for a terminal (callers use it only when stdout is one)."""
    start = _COLOURS.get(str(entry.get("level")))
    return f"{start}{text}\033[0m" if start else text


def _files(path: Path) -> list[Path]:
    """The current log and its rotated predecessors, newest first."""
    rotated = sorted(path.parent.glob(path.name + ".*"),
                     key=lambda p: int(p.suffix[1:]) if p.suffix[1:].isdigit() else 10**9)
    return [path, *[p for p in rotated if p.suffix[1:].isdigit()]]


def last_lines(path: Path, count: int, keep: Callable[[Entry], bool]) -> list[Line]:
    """The last `count` matching lines, reaching into rotated files when the current one is short."""
    found: deque[Line] = deque()
    for file in _files(path):
        if len(found) >= count or not file.exists():
            break
        matching: deque[Line] = deque(maxlen=count)
        with open(file, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                entry = parse_line(line)
                if entry is not None and keep(entry):
                    matching.append((line.rstrip("\n"), entry))
        found.extendleft(reversed(matching))
    return list(found)[-count:] if count else []


def _inode(path: Path) -> int | None:
    """The file's inode now; None while no file has the name (a rotation renames it at any moment)."""
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _next_newer(path: Path, inode: int | None) -> Path | None:
    """The log file written after the one with `inode` (None: start over with the current file)."""
    found = [(f, _inode(f)) for f in _files(path)]
    files = [f for f, number in found if number is not None]
    inodes = [number for _, number in found if number is not None]
    if inode in inodes and inodes.index(inode) > 0:
        return files[inodes.index(inode) - 1]
    return path if path.exists() else None


def follow(path: Path, keep: Callable[[Entry], bool], poll: float = 0.25,
           stop: Callable[[], bool] = lambda: False) -> Iterator[Line]:
    """New lines from the end of `path` on, as `tail -F` follows a log. When the file is replaced
    (rotated by the relay, or renamed by logrotate and created anew), the rest of the old file is
    read and then the new one from its start, so no line is skipped; when it shrinks (truncated in
    place, logrotate's `copytruncate`), it is read again from its start."""
    handle: BinaryIO | None = None
    inode = None
    pending = b""
    at_start = True
    try:
        while not stop():
            if handle is None and path.exists():
                try:
                    handle = open(path, "rb")  # noqa: SIM115
                except FileNotFoundError:  # renamed between the look and the open: look again
                    continue
                inode = os.fstat(handle.fileno()).st_ino
                if at_start:
                    handle.seek(0, os.SEEK_END)
            at_start = False
            chunk = handle.readline() if handle else b""
            if chunk:
                pending += chunk
                if pending.endswith(b"\n"):
                    line, pending = pending.decode("utf-8", errors="replace").rstrip("\n"), b""
                    entry = parse_line(line)
                    if entry is not None and keep(entry):
                        yield line, entry
                continue
            if handle is not None and _inode(path) != inode:
                # replaced: the old file is read to its end; go on with the file that came after it
                # (several rotations may have happened since the last look), from its start
                newer = _next_newer(path, inode)
                handle.close()
                try:
                    handle = open(newer, "rb") if newer else None  # noqa: SIM115
                except FileNotFoundError:  # moved on again meanwhile: start over with the current file
                    handle = None
                inode = os.fstat(handle.fileno()).st_ino if handle else None
                pending = b""
                continue
            if handle is not None and os.fstat(handle.fileno()).st_size < handle.tell():
                handle.seek(0)  # truncated under us: what is there now is new
                pending = b""
                continue
            time.sleep(poll)
    finally:
        if handle is not None:
            handle.close()
