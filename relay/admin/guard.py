"""What every `relay` command does before and around its work, so that running it never leaves
the relay's files readable by others or owned by the wrong user, and a problem with a file or the
database reaches the admin as one line that names the path instead of a traceback.

- The process's umask is 027: files it creates are at most 0640, folders 0750 (the database, its
  WAL and the outbox files are created 0600 on top of that, see relay.store.database and
  relay.outbound.transports).
- Run as root, a command refuses to touch storage that belongs to another user: a log file or a
  database WAL re-created by root would lock the relay's own user out of them. `sudo -u relay`
  is the way.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from relay.config import Settings
from relay.core.errors import InvalidInput, Refused

UMASK = 0o027


class WrongUser(Refused):
    """Root was about to write into storage that another user owns."""


class MissingStorage(InvalidInput):
    """A command that only reads was pointed at a database or log that does not exist."""

    def __init__(self, message: str) -> None:
        super().__init__("storage", message, message)


def restrict_umask() -> None:
    os.umask(UMASK)


def storage_paths(settings: Settings) -> list[Path]:
    """The files and folders the relay writes: the SQLite database, the log, a maildir outbox."""
    paths = []
    database = settings.storage.database
    if database.startswith("sqlite:///"):
        paths.append(Path(database[len("sqlite:///"):]))
    if settings.log.file is not None:
        paths.append(settings.log.file)
    if settings.outbound.url.startswith("maildir:"):
        paths.append(Path(settings.outbound.url[len("maildir:"):]))
    return paths


def refuse_root_in_foreign_storage(settings: Settings, command: str) -> None:
    """As root, stop before writing into storage another user owns (the first one found is named)."""
    if os.geteuid() != 0:
        return
    for path in storage_paths(settings):
        for candidate in (path, path.parent):
            owner = _owner(candidate)
            if owner is None:
                continue
            if owner != 0:
                name = _user_name(owner)
                raise WrongUser(f"{candidate} belongs to user {name}, and files this command writes as root "
                                f"would lock {name} out: run it as that user (sudo -u {name} relay {command} ...)")
            break


def require_existing(settings: Settings) -> None:
    """For commands that only read: the SQLite database must exist (they never create one)."""
    database = settings.storage.database
    if database.startswith("sqlite:///"):
        path = Path(database[len("sqlite:///"):])
        if not path.is_file():
            raise MissingStorage(f"database {path} does not exist (check [storage] database; "
                                 "`relay serve` or `relay migrate` creates it)")


def _owner(path: Path) -> int | None:
    try:
        return path.stat().st_uid
    except OSError:
        return None


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
