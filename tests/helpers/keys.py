"""The storage key tests give the relay. On SQLite the relay's default (`relay.key` beside the
database file) serves every process of a test. A PostgreSQL database is shared by processes whose
settings live in different folders, and the default (a key in `[relay] home`) would differ between
them: they get one key per test database instead, made here once."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from relay.core import sealing


def for_database(db_url: str) -> str:
    """The `[storage] key` value for a test's database ("" for the default)."""
    if db_url.startswith("sqlite:"):
        return ""
    folder = Path(tempfile.gettempdir()) / f"relay-test-keys-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / (db_url.rsplit("/", 1)[-1] + ".key")
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(sealing.new_key_text() + "\n")
    return f"file:{path}"
