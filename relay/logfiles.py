"""The handlers that write the relay log's lines: to a stream, to a file that logrotate may move
away, or to a file the relay rotates itself at a size.

Every file they create is made mode 0640 whatever the process's umask: log lines name cases and
queue ids and carry keyed address pseudonyms, which are for the relay's admins, not for every user
of the host. A file that exists already keeps its mode (logrotate's `create` sets one).

Each file handler can be told to reopen its file (`reopen`): `relay serve` does that on SIGHUP,
after logrotate has renamed the file and created a new one.
"""

from __future__ import annotations

import io
import logging
import logging.handlers
import os

WRITE_BUFFER = 1 << 20
LOG_FILE_MODE = 0o640


def open_log(path: str, encoding: str | None = "utf-8", errors: str | None = None) -> io.TextIOWrapper:
    """Open `path` for appending, creating it with mode 0640 if it does not exist.

    `os.open` applies the umask to the mode it is given, so a file this call creates is changed to
    0640 afterwards (by its descriptor, so it is the file that was created). Exclusive creation
    tells a file made here from one that was there, whose mode is left alone."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
    while True:
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, LOG_FILE_MODE)
        except FileExistsError:
            try:
                fd = os.open(path, flags)
            except FileNotFoundError:  # removed in between: create it after all
                continue
        else:
            try:
                os.fchmod(fd, LOG_FILE_MODE)
            except OSError:
                os.close(fd)
                raise
        # a batch of lines reaches the file in one write (the writer thread flushes once a batch),
        # so the lines of several processes appending to one file (`[inbound] workers`) stay whole
        return open(fd, "a", buffering=WRITE_BUFFER, encoding=encoding or "utf-8", errors=errors)


class HeldFlush:
    """Handler mixin: while `held`, a record is written to the stream's buffer but not flushed;
    the writer thread flushes once per batch. What a file handler checks about its file (was it
    moved away, is it still a regular file) it checks once per batch too, not once per record."""

    held = False
    checked = False  # the file was checked in this batch

    def flush(self) -> None:
        if not self.held:
            super().flush()  # type: ignore[misc]

    def hold(self, on: bool) -> None:
        self.held = on
        self.checked = False

    def check_once(self) -> bool:
        """True the first time in a batch (and always outside one)."""
        first = not (self.held and self.checked)
        self.checked = self.held
        return first


class StreamOut(HeldFlush, logging.StreamHandler):  # type: ignore[type-arg]
    """JSON lines to stdout (containers) or readable lines to stderr."""


class _OwnFile(HeldFlush, logging.FileHandler):
    """A log file opened 0640 on creation (the standard handlers use `open`, which leaves the mode
    to the umask), and reopened on request."""

    def _open(self) -> io.TextIOWrapper:
        return open_log(self.baseFilename, self.encoding, self.errors)

    def reopen(self) -> None:
        """Open the file at the handler's path anew and write there from the next record on
        (logrotate renamed the old one and created a new one, or left none). The new file is
        opened before the old one is closed: when it cannot be opened, the lines keep going to
        the old file and the OSError tells the caller."""
        self.acquire()
        try:
            fresh = self._open()
            old, self.stream = self.stream, fresh
            if old is not None:
                old.flush()
                old.close()
            self.checked = False
            self.reopened()
        finally:
            self.release()

    def reopened(self) -> None:
        """What a subclass remembers about its file, learned anew."""


class WatchedFile(_OwnFile, logging.handlers.WatchedFileHandler):
    """The log of short commands and of `relay serve` with `max_bytes = 0` (logrotate rotates):
    a file moved away under the process is noticed at the next batch and reopened."""

    def reopenIfNeeded(self) -> None:
        if self.check_once():
            super().reopenIfNeeded()

    def reopened(self) -> None:
        self._statstream()


class RotatingFile(_OwnFile, logging.handlers.RotatingFileHandler):
    """The log of `relay serve` rotating itself at `[log] max_bytes`."""

    regular = True
    size: int | None = None  # the file's length as this batch has written it

    def reopened(self) -> None:
        self.size = None

    def shouldRollover(self, record: logging.LogRecord) -> int:
        """The standard rule (only a regular file is rotated, once the record would take it past
        `maxBytes`), with the file looked at once per batch: its type, and its length, which the
        standard handler asks for with a seek per record (and a seek writes out what the batch
        holds back). Within a batch the length is counted on."""
        if self.check_once():
            path = self.baseFilename
            self.regular = not (os.path.exists(path) and not os.path.isfile(path))
            self.size = None
        if not self.regular or self.maxBytes <= 0:
            return 0
        if self.stream is None:
            self.stream = self._open()
        if self.size is None:
            self.stream.seek(0, 2)
            self.size = self.stream.tell()
        needed = len(self.format(record)) + 1
        if self.size + needed >= self.maxBytes:
            self.size = needed  # the record opens the new file
            return 1
        self.size += needed
        return 0


def reopen_file(handler: logging.Handler) -> str | None:
    """Reopen `handler`'s file if it writes to one; None when done (or nothing to do), else why it
    could not be reopened."""
    if not isinstance(handler, _OwnFile):
        return None
    try:
        handler.reopen()
    except OSError as exc:
        return f"{handler.baseFilename}: {exc.strerror or exc}"
    return None
