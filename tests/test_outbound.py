"""Outbound delivery: the SMTP transport against real servers (plain, STARTTLS with login, 4xx,
5xx, nothing listening), and the outbox worker's retries and failures with a moved clock."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from relay import durable, transport
from relay.clock import ManualClock
from relay.outbox import Worker
from relay.store import cases as case_store
from relay.transport import MaildirTransport, Result, SmtpTransport

from .conftest import Sink, free_port, new_case

BODY = b"From: a@relay.test\r\nTo: b@example.org\r\nSubject: t\r\n\r\nhello\r\n"


def send(transport: Any, recipient: str = "b@example.org") -> Any:
    return asyncio.run(transport.send("bounce-1-x@relay.test", recipient, BODY, "0000000001.relay"))


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    return cert, key


def test_smtp_results_by_reply_code() -> None:
    for reply, expected in (("250 2.0.0 OK", Result.SENT), ("451 4.3.0 try later", Result.TEMPORARY),
                            ("554 5.7.1 rejected", Result.PERMANENT)):
        sink = Sink(reply=reply)
        try:
            attempt = send(SmtpTransport(sink.url, timeout=10, helo="relay.test"))
        finally:
            sink.stop()
        assert attempt.result is expected, attempt
        if expected is not Result.SENT:
            assert reply.split()[0] in attempt.detail
    nobody = send(SmtpTransport(f"smtp://127.0.0.1:{free_port()}", timeout=5, helo="relay.test"))
    assert nobody.result is Result.TEMPORARY and "Connect" in nobody.detail


def test_starttls_and_login(tls_files: tuple[Path, Path]) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope.original_content)
            return "250 2.0.0 OK"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        return AuthResult(success=(data.login, data.password) == (b"relay", b"s3cret"), handled=False)

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=context,
                            require_starttls=True, auth_required=True, authenticator=authenticator)
    controller.start()
    try:
        base = f"127.0.0.1:{port}?starttls=require&verify=no"
        ok = send(SmtpTransport(f"smtp://relay:s3cret@{base}", timeout=10, helo="relay.test"))
        assert ok.result is Result.SENT, ok
        wrong = send(SmtpTransport(f"smtp://relay:nope@{base}", timeout=10, helo="relay.test"))
        assert wrong.result is Result.PERMANENT and "535" in wrong.detail
        plain = send(SmtpTransport(f"smtp://127.0.0.1:{port}", timeout=10, helo="relay.test"))
        assert plain.result is not Result.SENT  # the server demands STARTTLS first
    finally:
        controller.stop()
    assert len(received) == 1


def test_smtp_connections_are_reused_bounded_and_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages in a row share one session; concurrent ones open at most `connections`; a session
    on which something failed, or that sat idle too long, is not reused; close() says QUIT."""
    sink = Sink()

    closed: list[Any] = []
    really_close = transport._close

    async def close(client: Any) -> None:
        closed.append(client)
        await really_close(client)

    monkeypatch.setattr(transport, "_close", close)

    async def scenario() -> None:
        smtp = SmtpTransport(sink.url, timeout=10, helo="relay.test", connections=2)
        for n in range(4):
            assert (await smtp.send("bounce-1-x@relay.test", f"r{n}@example.org", BODY, "n")).result is Result.SENT
        sink.reply = "550 5.7.1 not today"  # on the session of the four
        refused = await smtp.send("bounce-1-x@relay.test", "x@example.org", BODY, "n")
        assert refused.result is Result.PERMANENT and len(closed) == 1 and not closed[0].is_connected
        sink.reply = "250 2.0.0 OK"
        assert (await smtp.send("bounce-1-x@relay.test", "r4@example.org", BODY, "n")).result is Result.SENT
        with pytest.raises(TypeError):  # not even a message: the session is closed all the same
            await smtp.send("bounce-1-x@relay.test", "y@example.org", None, "n")  # type: ignore[arg-type]
        assert smtp.idle == [] and len(closed) == 2 and not closed[1].is_connected
        assert (await smtp.send("bounce-1-x@relay.test", "after@example.org", BODY, "n")).result is Result.SENT
        results = await asyncio.gather(*(smtp.send("bounce-1-x@relay.test", f"c{n}@example.org", BODY, "n")
                                         for n in range(6)))
        assert all(r.result is Result.SENT for r in results)
        monkeypatch.setattr(transport, "IDLE_SECONDS", 0.0)
        assert (await smtp.send("bounce-1-x@relay.test", "idle@example.org", BODY, "n")).result is Result.SENT
        open_before = [c for c, _ in smtp.idle]
        assert open_before
        await smtp.close()
        assert smtp.idle == [] and not any(c.is_connected for c in open_before)

    try:
        asyncio.run(scenario())
    finally:
        sink.stop()
    peers = {m["to"][0]: m["peer"] for m in sink.messages}
    assert len({peers[f"r{n}@example.org"] for n in range(4)}) == 1  # one session for four in a row
    assert peers["r4@example.org"] != peers["r0@example.org"]  # the session with a refusal was closed
    assert peers["after@example.org"] != peers["r4@example.org"]  # and the one with an exception
    concurrent = {peers[f"c{n}@example.org"] for n in range(6)}
    assert len(concurrent) <= 2  # never more than two at once
    assert peers["idle@example.org"] not in concurrent | {peers["after@example.org"]}  # idle too long: new


def test_maildir_delivery_is_atomic_and_idempotent(tmp_path: Path) -> None:
    transport = MaildirTransport(tmp_path / "box")
    assert send(transport).result is Result.SENT
    assert list((tmp_path / "box").glob("new/*")) == []  # only settled files are published
    asyncio.run(transport.settle(["0000000001.relay"]))
    assert send(transport).result is Result.SENT  # a retry of the same delivery replaces its file
    assert send(transport).result is Result.SENT
    asyncio.run(transport.settle(["0000000001.relay"]))
    files = list((tmp_path / "box" / "new").iterdir())
    assert [f.name for f in files] == ["0000000001.relay"]
    assert files[0].read_bytes().startswith(b"Return-Path: <bounce-1-x@relay.test>\r\nDelivered-To: b@example.org")
    assert list((tmp_path / "box" / "tmp").iterdir()) == []
    with pytest.raises(OSError, match="never handed over"):  # settling what was not sent: not "sent"
        asyncio.run(transport.settle(["0000000002.relay"]))


@pytest.mark.parametrize("whole_file_system", [True, False], ids=["syncfs", "fsync-each"])
def test_maildir_batch_not_published_counts_as_not_sent(db_url: str, app_factory: Any, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         whole_file_system: bool) -> None:
    """A batch whose files cannot be published into new/ is retried, never recorded as sent; the
    retry publishes it once. Both ways of syncing (one file-system sync, a sync per file)."""
    if not whole_file_system:
        monkeypatch.setattr(durable, "_SYNCFS", None)
    clock = ManualClock()
    app = app_factory(db_url, clock)
    box = tmp_path / "box"
    worker = Worker(app, MaildirTransport(box))
    opened = new_case(app)
    name = f"{case_store.case_detail(opened.case_id)['deliveries'][0]['id']:010d}.relay"
    (box / "new" / name / "in the way").mkdir(parents=True)  # the rename into new/ fails
    first = asyncio.run(worker.run_pass())
    assert (first.sent, first.deferred) == (0, 1)
    delivery = case_store.case_detail(opened.case_id)["deliveries"][0]
    assert delivery["state"] == "queued" and "durable" in delivery["last_error"]
    (box / "new" / name / "in the way").rmdir()
    (box / "new" / name).rmdir()
    clock.advance(timedelta(minutes=1))
    assert asyncio.run(worker.run_pass()).sent == 1
    assert [f.name for f in (box / "new").iterdir()] == [name]
    assert list((box / "tmp").iterdir()) == []


def test_maildir_that_cannot_be_written_defers_the_batch(db_url: str, app_factory: Any, tmp_path: Path) -> None:
    """The files of a batch are written when it is settled; if that fails, the batch is deferred
    with the reason, and delivered once the folder can be written again."""
    clock = ManualClock()
    app = app_factory(db_url, clock)
    box = tmp_path / "box"
    box.mkdir()
    (box / "tmp").write_text("a file where the maildir wants a folder")
    worker = Worker(app, MaildirTransport(box))
    opened = new_case(app)
    assert asyncio.run(worker.run_pass()).deferred == 1
    delivery = case_store.case_detail(opened.case_id)["deliveries"][0]
    assert delivery["state"] == "queued" and "durable" in delivery["last_error"]
    (box / "tmp").unlink()
    clock.advance(timedelta(minutes=1))
    assert asyncio.run(worker.run_pass()).sent == 1
    assert len(list((box / "new").iterdir())) == 1


def test_worker_retries_then_delivers_and_gives_up(db_url: str, app_factory: Any) -> None:
    clock = ManualClock()
    sink = Sink(reply="451 4.3.0 greylisted")
    try:
        app = app_factory(db_url, clock, outbound={"max_queue_lifetime": "10m"})
        worker = Worker(app, SmtpTransport(sink.url, timeout=10, helo="relay.test"))
        opened = new_case(app)
        first = asyncio.run(worker.run_pass())
        assert (first.sent, first.deferred, first.failed) == (0, 1, 0)
        assert asyncio.run(worker.run_pass()).deferred == 0  # not due yet: nothing is tried
        clock.advance(timedelta(minutes=1))
        sink.reply = "250 2.0.0 OK"
        assert asyncio.run(worker.run_pass()).sent == 1
        detail = case_store.case_detail(opened.case_id)
        assert detail["deliveries"][0]["state"] == "sent" and detail["deliveries"][0]["attempts"] == 2

        sink.reply = "550 5.1.1 no such user"
        rejected = new_case(app, review_id="R-rejected")
        assert asyncio.run(worker.run_pass()).failed == 1
        failed = case_store.case_detail(rejected.case_id)["deliveries"][0]
        assert failed["state"] == "failed" and "550 5.1.1" in failed["last_error"]

        sink.reply = "421 4.7.0 go away"
        stuck = new_case(app, review_id="R-stuck")
        for _ in range(4):  # 1 + 2 + 4 minutes of backoff, then the 10 minute lifetime is over
            asyncio.run(worker.run_pass())
            clock.advance(timedelta(minutes=8))
        last = case_store.case_detail(stuck.case_id)["deliveries"][0]
        assert last["state"] == "failed" and "lifetime" in last["last_error"] and "421" in last["last_error"]
    finally:
        sink.stop()


def test_smarthost_replies_are_stored_without_addresses() -> None:
    sink = Sink(reply="550 5.1.1 <b@example.org>: Recipient address rejected; user b.x+1@sub.example.org unknown")
    try:
        attempt = send(SmtpTransport(sink.url, timeout=10, helo="relay.test"))
    finally:
        sink.stop()
    assert attempt.result is Result.PERMANENT
    assert "@" not in attempt.detail and attempt.detail.startswith("550 5.1.1 <<address>>")
