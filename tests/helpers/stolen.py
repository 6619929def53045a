"""What a thief reads in a copied database: the bytes of its files and dumps, searched for a
person's address, name and words. Written without the relay's code (no relay import), so a blind
spot of the relay's own cannot hide a finding; and generous: besides the raw bytes it looks in
UTF-16, in every base64, hex (pg_dump's bytea) and quoted-printable run it finds, case-blind."""

from __future__ import annotations

import base64
import binascii
import quopri
import re
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import psycopg2

_BASE64_RUN = re.compile(rb"(?:[A-Za-z0-9+/_-]{4,}={0,2}(?:\\r\\n|\r?\n)?){4,}")
_HEX_RUN = re.compile(rb"(?:[0-9a-fA-F]{2}){12,}")


def _views(blob: bytes) -> list[bytes]:
    """The blob and what its encoded runs decode to (each base64 run at all four alignments: a
    database page boundary may cut a run anywhere)."""
    views = [blob, quopri.decodestring(blob)]
    for run in _BASE64_RUN.findall(blob):
        clean = re.sub(rb"\\r\\n|\s", b"", run).replace(b"-", b"+").replace(b"_", b"/")
        for start in range(4):
            piece = clean[start:]
            piece = piece[: len(piece) - len(piece) % 4]
            try:
                views.append(base64.b64decode(piece))
            except (binascii.Error, ValueError):
                continue
    for run in _HEX_RUN.findall(blob):
        views.append(bytes.fromhex(run[: len(run) - len(run) % 2].decode("ascii")))
    return views


def found(blob: bytes, needles: dict[str, str]) -> set[str]:
    """The names of the needles that the blob shows in any of its views."""
    views = [view.lower() for view in _views(blob)]
    hits = set()
    for name, needle in needles.items():
        forms = {needle.lower().encode(enc) for enc in ("utf-8", "utf-16-le", "utf-16-be")}
        if any(form in view for form in forms for view in views):
            hits.add(name)
    return hits


def sqlite_files(path: Path, backup_to: Path) -> dict[str, bytes]:
    """The database file with its WAL (what is committed may be in either until a checkpoint), and
    a copy made with SQLite's online backup (what `docs/operations.md` tells admins to run)."""
    if backup_to.exists():
        raise FileExistsError(backup_to)  # a backup into an old copy in WAL mode lands in the copy's WAL
    with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(backup_to)) as copy:
        source.backup(copy)  # closed before reading: the copy's pages are in its file by then
    wal = path.with_name(path.name + "-wal")
    return {"file and WAL": path.read_bytes() + (wal.read_bytes() if wal.exists() else b""),
            "backup": backup_to.read_bytes()}


def postgres_files(url: str) -> dict[str, bytes]:
    """`pg_dump`'s output, and the table, index and TOAST files of the database as the server
    keeps them on disk (read through the server after a checkpoint: its data folder is its own)."""
    dump = subprocess.run(["pg_dump", "--no-owner", "--no-privileges", url], capture_output=True,
                          check=True).stdout
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CHECKPOINT")
        cur.execute("SELECT pg_relation_filepath(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname IN ('public', 'pg_toast') AND c.relkind IN ('r', 't', 'i') "
                    "AND pg_relation_filepath(c.oid) IS NOT NULL")
        files = [row[0] for row in cur.fetchall()]
        tables = b""
        for file in files:
            cur.execute("SELECT pg_read_binary_file(%s::text, 0, (pg_stat_file(%s::text, true)).size, true)", (file, file))
            data = cur.fetchone()
            tables += bytes(data[0]) if data and data[0] is not None else b""
    conn.close()
    return {"pg_dump": dump, "table files": tables}
