"""Databases as an older relay left them: the dumps under tests/fixtures/schema_N, made by that
folder's make.py with the code of that version, loaded into a test's database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg2

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def load(db_url: str, version: int) -> None:
    """The dump of schema `version` for the database's kind, as the old code left it."""
    folder = FIXTURES / f"schema_{version}"
    if db_url.startswith("sqlite:///"):
        with sqlite3.connect(db_url[len("sqlite:///"):]) as conn:
            conn.executescript((folder / "sqlite.sql").read_text())
            # the old relay kept its database in WAL mode too; a dump does not carry the mode, and
            # processes starting at once on a file still in rollback mode all try to switch it,
            # which SQLite refuses some of them at once ("database is locked")
            conn.execute("PRAGMA journal_mode=wal")
        return
    conn = psycopg2.connect(db_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP SCHEMA public CASCADE")  # the dump creates it as it was
        cur.execute((folder / "postgresql.sql").read_text())
    conn.close()
