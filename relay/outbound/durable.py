"""Making files durable: the few system calls the maildir transport needs, in one place.

Syncing every file on its own costs a journal commit per file, most of the time of writing a
notice to a maildir. On Linux `syncfs` makes everything written to one file system durable at
once, one commit for a whole batch; where it is missing, each file is synced on its own.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from pathlib import Path

from relay import libc

_SYNCFS = libc.function("syncfs")


def _sync_descriptor(path: Path, whole_file_system: bool) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        if whole_file_system and _SYNCFS is not None:
            if _SYNCFS(descriptor) != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, os.strerror(errno), str(path))
        else:
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


def sync_files(paths: Sequence[Path]) -> None:
    """Make the content of `paths` durable (all on one file system); raises OSError."""
    if not paths:
        return
    if _SYNCFS is not None:
        _sync_descriptor(paths[0].parent, whole_file_system=True)
        return
    for path in paths:
        _sync_descriptor(path, whole_file_system=False)


def sync_folder(path: Path) -> None:
    """Make the entries of a folder (new names, renames into it) durable; raises OSError."""
    _sync_descriptor(path, whole_file_system=False)
