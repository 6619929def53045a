"""Where outbound mail goes: a maildir folder (the default install) or an SMTP smarthost.

A transport only moves bytes and reports what happened as an Attempt; what to do next (retry,
give up) is decided in relay.outbox.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from pathlib import Path
from typing import Protocol

import aiosmtplib

from relay.core import smarthost
from relay.core.redact import describe, scrub_addresses
from relay.core.retries import Attempt, Result
from relay.outbound import durable, smtp_data


class Transport(Protocol):
    async def send(self, sender: str, recipient: str, body: bytes | bytearray, name: str) -> Attempt: ...

    async def settle(self, names: list[str]) -> None:
        """Make the messages of one batch that `send` reported as sent (by their names) durable and
        delivered (a maildir publishes its files here); the worker calls it once per batch, before
        it records the batch. Raises OSError if that failed (the batch is then retried)."""

    async def close(self) -> None:
        """Let go of what the transport holds open (connections); it may still be used after."""


class MaildirTransport:
    """Writes each message as one file into `PATH/new`, the maildir way: written into `tmp/`,
    made durable, then renamed into `new/`, so a reader never sees a partial file.

    `send` only takes the message; `settle` does the batch's file work in one go, in one thread:
    writes the files into `tmp/`, makes them durable with one sync of the file system (instead of
    one per file), renames them into `new/` and syncs `new/`. The file name is derived from the
    delivery (`name`), so a delivery retried after a crash replaces its own file instead of
    leaving a duplicate.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pending: dict[str, bytes] = {}

    async def send(self, sender: str, recipient: str, body: bytes | bytearray, name: str) -> Attempt:
        self.pending[name] = f"Return-Path: <{sender}>\r\nDelivered-To: {recipient}\r\n".encode() + body
        return Attempt(Result.SENT, f"written to {self.path / 'new' / name}")

    async def settle(self, names: list[str]) -> None:
        # if this fails the batch counts as not sent: its retries write their files again
        batch = {name: self.pending.pop(name) for name in names if name in self.pending}
        if len(batch) != len(set(names)):
            raise OSError(f"{len(set(names)) - len(batch)} message(s) of the batch were never handed over")
        await asyncio.to_thread(self._publish, batch)

    async def close(self) -> None:
        """Nothing held open: every batch is complete once settled."""
        self.pending.clear()

    def _publish(self, batch: dict[str, bytes]) -> None:
        if not batch:
            return
        for sub in ("tmp", "new", "cur"):
            (self.path / sub).mkdir(mode=0o750, parents=True, exist_ok=True)
        for name, data in batch.items():
            # 0600: a message names its recipient; only the relay's user (and what it runs) reads them
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
            with open(os.open(self.path / "tmp" / name, flags, 0o600), "wb") as handle:
                handle.write(data)
        durable.sync_files([self.path / "tmp" / name for name in batch])
        for name in batch:
            os.replace(self.path / "tmp" / name, self.path / "new" / name)
        durable.sync_folder(self.path / "new")


IDLE_SECONDS = 10.0  # a connection idle for longer is closed, not reused (servers drop idle ones)


class SmtpTransport:
    """aiosmtplib to a smarthost: smtp://[user:pass@]host:port[?starttls=require] or smtps://...,
    with ?verify=no or ?cafile=PATH (read by relay.core.smarthost).

    Connections are kept for the next message (MAIL, RCPT and DATA on an open session instead of
    connect, greeting, EHLO, TLS and login each time) while they are in use or idle for less than
    IDLE_SECONDS; at most `connections` are open at once. A connection on which anything failed
    is closed, never reused.
    """

    def __init__(self, url: str, timeout: float, helo: str, connections: int = 20) -> None:
        target = smarthost.parse(url)
        self.host, self.port = target.host, target.port
        self.implicit_tls, self.starttls = target.implicit_tls, target.starttls
        self.username, self.password = target.username, target.password
        self.timeout = timeout
        self.helo = helo
        self.connections = connections
        self.loop: asyncio.AbstractEventLoop | None = None
        self.slots: asyncio.Semaphore | None = None
        self.idle: list[tuple[aiosmtplib.SMTP, float]] = []  # (connection, when it was last used)
        # built once: loading the system's CA certificates costs milliseconds per call. A cafile
        # replaces the system's list: a private smarthost's CA is all that is trusted then
        self.context: ssl.SSLContext | None = None
        if target.tls:
            self.context = ssl.create_default_context(cafile=target.cafile)
            if not target.verify:
                self.context.check_hostname = False
                self.context.verify_mode = ssl.CERT_NONE

    async def send(self, sender: str, recipient: str, body: bytes | bytearray, name: str) -> Attempt:
        self._bind_loop()
        assert self.slots is not None
        async with self.slots:
            client: aiosmtplib.SMTP | None = None
            reusable = False
            try:
                client = await self._client()
                response = await smtp_data.deliver(client, sender, recipient, body)
                reusable = True
            except aiosmtplib.SMTPRecipientRefused as exc:
                return _by_code(exc.code, f"{exc.code} {exc.message}", about_recipient=True)
            except aiosmtplib.SMTPResponseException as exc:
                return _by_code(exc.code, f"{exc.code} {exc.message}",
                                about_recipient=isinstance(exc, aiosmtplib.SMTPDataError))
            except (TimeoutError, aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
                return Attempt(Result.TEMPORARY, _failure(exc))
            finally:
                if client is not None and reusable:
                    self.idle.append((client, time.monotonic()))
                elif client is not None:  # after any failure the session's state is unknown
                    await _close(client)
            return Attempt(Result.SENT, scrub_addresses(str(response))[:500])

    def _bind_loop(self) -> None:
        """Connections belong to the event loop that opened them; a new loop (a new `relay run-jobs`
        pass in the same process, say) starts with none."""
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            self.loop, self.idle = loop, []
            self.slots = asyncio.Semaphore(self.connections)

    async def _client(self) -> aiosmtplib.SMTP:
        """A connection that delivered a moment ago, or a new one (connected, TLS and login done)."""
        while self.idle:
            client, since = self.idle.pop()
            if client.is_connected and time.monotonic() - since < IDLE_SECONDS:
                return client
            await _close(client)
        client = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, use_tls=self.implicit_tls, start_tls=self.starttls,
            username=self.username, password=self.password, timeout=self.timeout,
            local_hostname=self.helo, tls_context=self.context)
        await client.connect()
        return client

    async def settle(self, names: list[str]) -> None:
        """Nothing to do: a message is the smarthost's once it answered 250 to the data."""

    async def close(self) -> None:
        """Say goodbye on every idle connection."""
        idle, self.idle = self.idle, []
        for client, _ in idle:
            await _close(client)


async def _close(client: aiosmtplib.SMTP) -> None:
    """QUIT if the connection is still there; a connection that is gone or fails to say goodbye is
    simply dropped (nothing depends on it)."""
    try:
        if client.is_connected:
            await client.quit(timeout=5)
    except (TimeoutError, aiosmtplib.SMTPException, OSError, ssl.SSLError):
        client.close()


UNTRUSTED = ("the smarthost's certificate is not trusted: name its CA in [outbound] url with ?cafile=PATH "
             "(or, on a trusted network only, ?verify=no)")


def _failure(exc: BaseException) -> str:
    """A connection that failed, in words; a certificate the relay does not trust says what to set
    (aiosmtplib wraps it in SMTPConnectError with smtps://, so the causes are looked at too)."""
    cause: BaseException | None = exc
    for _ in range(10):  # a chain is short; the bound only guards against a cycle
        if cause is None or isinstance(cause, ssl.SSLCertVerificationError):
            break
        cause = cause.__cause__ or cause.__context__
    if not isinstance(cause, ssl.SSLCertVerificationError):
        return describe(exc)
    return f"{describe(exc)[:300]}; {UNTRUSTED}"


def _by_code(code: int, detail: str, about_recipient: bool = False) -> Attempt:
    """A smarthost's reply usually quotes the recipient ("<max@...>: Recipient address rejected"):
    it is stored, logged and shown to admins, so addresses are scrubbed here, where it comes in."""
    return Attempt(Result.PERMANENT if 500 <= code < 600 else Result.TEMPORARY, scrub_addresses(detail)[:500],
                   about_recipient)


def from_url(url: str, timeout: float, helo: str | None = None) -> Transport:
    if url.startswith("maildir:"):
        return MaildirTransport(Path(url[len("maildir:"):]))
    return SmtpTransport(url, timeout, helo or socket.getfqdn())
