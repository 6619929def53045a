"""Waiting for what another thread or process writes, with a deadline instead of a fixed sleep.

The relay's log lines are written by a writer thread in batches, so a line may reach the file a
moment after the SMTP reply that it explains: a test that reads the file once races that thread."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def until(condition: Callable[[], object], what: str, timeout: float = 20) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def log_text(path: Path, needle: str, timeout: float = 20) -> str:
    """The log file's text once it holds `needle` (fails naming it after `timeout`)."""
    until(lambda: path.exists() and needle in path.read_text(), f"{needle!r} in the log", timeout)
    return path.read_text()
