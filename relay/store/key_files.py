"""Reading the storage key from where `[storage] key` says, and writing new key files.

The key never lives in the database: a copied database file or dump without it names nobody. A key
file is the relay user's alone (0600, owned by the user the relay runs as), as OpenSSH and
OpenDKIM demand of their keys; anything else stops the relay with one line saying what to fix.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from relay.core import sealing
from relay.store.vault import StorageKeyError

FILE_NAME = "relay.key"


@dataclass(frozen=True)
class KeySource:
    """Where the key comes from: a file (made on first start when it is the default one), a
    variable, or nowhere (`off`)."""

    kind: str            # "file", "env" or "off"
    where: str           # the file's path or the variable's name
    default: bool = False

    def __str__(self) -> str:
        return "off" if self.kind == "off" else f"{self.kind}:{self.where}"


def source(spec: str, database_file: Path | None, home: Path) -> KeySource:
    """The key's source from `[storage] key` (already validated by relay.config_values);
    `database_file` is the SQLite database's file (None on PostgreSQL)."""
    if spec == "off":
        return KeySource("off", "")
    if spec:
        kind, _, where = spec.partition(":")
        return KeySource(kind, where)
    folder = database_file.parent if database_file is not None else home
    return KeySource("file", str(folder / FILE_NAME), default=True)


def read(where: KeySource) -> bytes | None:
    """The key (None when off); StorageKeyError naming the problem when it cannot be used."""
    if where.kind == "off":
        return None
    if where.kind == "env":
        text = os.environ.get(where.where)
        if not text:
            raise StorageKeyError(f"environment variable {where.where} ([storage] key) is not set")
        return _parsed(text, f"environment variable {where.where}")
    return _parsed(_file_text(Path(where.where)), where.where)


def exists(where: KeySource) -> bool:
    return where.kind == "file" and os.path.lexists(where.where)


def _file_text(path: Path) -> str:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise StorageKeyError(f"{path} is missing (the key the database is sealed with; restore it, or "
                              f"point [storage] key at it)") from None
    except OSError as exc:
        raise StorageKeyError(f"{path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise StorageKeyError(f"{path} is not a file")
    if info.st_mode & 0o077:
        raise StorageKeyError(f"{path} is readable by group or others (mode {stat.S_IMODE(info.st_mode):04o}): "
                              f"a storage key must be its owner's alone (chmod 600 {path})")
    if info.st_uid != os.geteuid():
        raise StorageKeyError(f"{path} belongs to uid {info.st_uid}, not to the user the relay runs as "
                              f"(uid {os.geteuid()}): chown it to that user")
    try:
        return path.read_text("ascii", errors="replace")
    except OSError as exc:
        raise StorageKeyError(f"{path}: {exc.strerror or exc}") from None


def _parsed(text: str, where: str) -> bytes:
    try:
        return sealing.parse_key(text)
    except ValueError as exc:
        raise StorageKeyError(f"{where} {exc}") from None


def generate(path: Path, exist_ok: bool = False) -> str | None:
    """Write a new key to `path` (0600; never over an existing file); the key's id. The file appears
    whole or not at all: written beside it, then linked into place, so two relays starting at once
    end up with the same key: with `exist_ok` the one that finds the file made meanwhile gets None
    and uses it."""
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    text = sealing.new_key_text()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(descriptor, (text + "\n").encode("ascii"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    try:
        os.link(temporary, path)
    except FileExistsError:
        if exist_ok:
            return None
        raise StorageKeyError(f"{path} already exists: a key file is never overwritten") from None
    finally:
        os.unlink(temporary)
    return sealing.key_id(sealing.parse_key(text))
