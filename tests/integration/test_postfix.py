"""A real Postfix as the MX in front of the relay, set up as docs/operations.md says.

The recipe makes the relay Postfix's before-queue content filter: every refusal of the relay
reaches the sending server during its own SMTP session, at RCPT or at the end of DATA, and Postfix
queues nothing, so it never bounces (no backscatter to a forged sender). The last test shows the
old setup (Postfix accepts, then hands over by transport_maps) bouncing to the forged sender, which
is why the recipe changed, and that the checks here do see a bounce when there is one.

SQLite only: what is tested is the SMTP path through Postfix, the same on either database.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from relay.store import case_records as case_store
from tests.helpers import postfix
from tests.helpers.environment import DOMAIN, Sink, free_port, new_case
from tests.helpers.postfix import Postfix, session

REVIEWER = "max.mueller@example.de"
BUSINESS = "service@shop.example"
FORGED = "victim@elsewhere.example"  # a sender that never wrote: where backscatter would go
UNKNOWN = "a" * 32 + "@" + DOMAIN


@dataclass
class Front:
    """The module's Postfix, the relay port it filters to, and the rest of the internet as Postfix
    sees it (`elsewhere`: where its bounces and notices go)."""

    mta: Postfix
    relay_port: int
    elsewhere: Sink


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    """One Postfix for the module: a start costs about two seconds (Postfix's own checks)."""
    reason = postfix.unavailable()
    if reason is not None:
        pytest.fail(reason, pytrace=False)
    elsewhere = Sink()
    relay_port = free_port()
    mta = Postfix(tmp_path_factory.mktemp("postfix"), DOMAIN, relay_port, elsewhere.port)
    try:
        mta.start()
        yield Front(mta, relay_port, elsewhere)
    finally:
        mta.stop()
        elsewhere.stop()


@pytest.fixture
def mx(front: Front) -> Iterator[Front]:
    """The module's Postfix as this test finds it: an empty queue, and the log and `elsewhere` read
    from here on; the test leaves the queue empty for the next one."""
    assert front.mta.queued() == [], front.mta.mailq()
    front.mta.mark()
    with front.elsewhere.lock:
        front.elsewhere.messages.clear()
    yield front
    assert front.mta.wait_until_empty() == [], front.mta.mailq()


def relay_app(tmp_path: Path, app_factory: Any, sink: Sink, front: Front) -> Any:
    # on the port Postfix filters to; behind Postfix every connection comes from Postfix's address
    # (the docs say to exempt it, too)
    return app_factory(f"sqlite:///{tmp_path}/relay.db", outbound={"url": sink.url},
                       inbound={"port": front.relay_port}, limits={"exempt_clients": ["127.0.0.1"]})


def message(sender: str, body: str) -> bytes:
    return f"From: {sender}\r\nSubject: Re: Ihre Anfrage\r\n\r\n{body}\r\n".encode()


def codes(replies: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """(code, enhanced status) of each reply."""
    return [(code, text.split(" ", 1)[0]) for code, text in replies]


def assert_nothing_queued(front: Front) -> None:
    """Postfix took no message into its queue, so it has nothing it could bounce."""
    log = front.mta.log()
    assert front.mta.queued() == [], front.mta.mailq()
    assert "Mail queue is empty" in front.mta.mailq()
    # smtpd logs "<queue id>: client=" for a message it puts into the queue, "NOQUEUE: client="
    # for one it passes to the filter
    assert re.search(r"/smtpd\[\d+\]: [0-9A-F]+: client=", log) is None, log
    assert "NOQUEUE: client=" in log, log
    assert front.elsewhere.messages == []


def test_relay_refusals_reach_the_client_in_the_session(tmp_path: Path, app_factory: Any, relay_factory: Any,
                                                        sink: Sink, mx: Front) -> None:
    app = relay_app(tmp_path, app_factory, sink, mx)
    opened = new_case(app)
    relay_factory(app)
    assert len(sink.wait(REVIEWER)) == 1  # the contact request
    port = mx.mta.filtered_port

    # the reviewer answers, to both relay addresses: the relay takes one recipient per transaction
    # and its 452 for the second comes at RCPT, so the sending server retries that one alone
    answer = message(f"Maximilian Mueller <{REVIEWER}>", "Meine Bestellnummer ist BE-48213.")
    replies = session(port, REVIEWER, [opened.reviewer_address, opened.business_address], answer)
    assert codes(replies) == [(250, "2.1.0"), (250, "2.1.5"), (452, "4.5.3"), (250, "2.0.0")], replies
    assert "queued as" in replies[-1][1]  # the relay's own reply, passed through
    forward = sink.wait(BUSINESS, kind="forward")
    assert len(forward) == 1
    assert b"BE-48213" in forward[0]["raw"]
    assert b"(Postfix)" not in forward[0]["raw"]  # Postfix's Received header is not relayed
    assert REVIEWER.encode() not in forward[0]["raw"]

    # an unknown relay address: the relay's 550 at RCPT
    replies = session(port, FORGED, [UNKNOWN], message(FORGED, "Hallo"))
    assert codes(replies) == [(250, "2.1.0"), (550, "5.1.1")], replies
    assert "No such relay address" in replies[1][1]

    # a stranger writing to the reviewer's address: the relay decides at the end of DATA (From
    # counts, too), and that refusal reaches the client as well
    replies = session(port, FORGED, [opened.reviewer_address], message(FORGED, "fake"))
    assert codes(replies) == [(250, "2.1.0"), (250, "2.1.5"), (550, "5.7.1")], replies
    assert "address that received" in replies[-1][1]

    # a closed conversation: 550 at RCPT
    case_store.close_case(opened.case_id, "withdrawn", app.clock.now())
    replies = session(port, REVIEWER, [opened.reviewer_address], answer)
    assert codes(replies) == [(250, "2.1.0"), (550, "5.1.1")], replies
    assert "closed" in replies[1][1]

    assert_nothing_queued(mx)
    assert [m for m in sink.messages if m["from"] == "<>"] == []  # no report came back to the relay
    assert len(sink.to(BUSINESS, kind="forward")) == 1  # only the good answer went out
    log = mx.mta.log()
    assert log.count("proxy-accept: END-OF-MESSAGE") == 1 and log.count("proxy-reject: END-OF-MESSAGE") == 1, log


def test_relay_down_is_a_temporary_refusal_at_rcpt(tmp_path: Path, app_factory: Any, sink: Sink,
                                                   mx: Front) -> None:
    app = relay_app(tmp_path, app_factory, sink, mx)  # and not started
    opened = new_case(app)
    assert not postfix.listening(mx.relay_port)
    replies = session(mx.mta.filtered_port, REVIEWER, [opened.reviewer_address],
                      message(REVIEWER, "Meine Bestellnummer ist BE-48213."))
    assert codes(replies) == [(250, "2.1.0"), (451, "4.3.0")], replies  # the sender's server retries later
    # Postfix tells its postmaster (notify_classes: software); nothing goes to the sender
    postmaster = f"postmaster@{mx.mta.hostname}"
    notices = mx.elsewhere.wait(postmaster)
    assert [m["from"] for m in notices] == [f"double-bounce@{mx.mta.hostname}"], mx.mta.log()
    assert [m["to"] for m in mx.elsewhere.messages] == [[postmaster]]


def test_plain_transport_bounces_to_a_forged_sender(tmp_path: Path, app_factory: Any, relay_factory: Any,
                                                    sink: Sink, mx: Front) -> None:
    """The setup the docs warn against: Postfix says 250 to everyone, the relay then says 550 to
    Postfix, and Postfix bounces to whoever the envelope sender claims to be. (It also shows that
    the checks above would see a bounce.)"""
    relay_factory(relay_app(tmp_path, app_factory, sink, mx))
    replies = session(mx.mta.plain_port, FORGED, [UNKNOWN], message(FORGED, "spam"))
    assert codes(replies) == [(250, "2.1.0"), (250, "2.1.5"), (250, "2.0.0")], replies
    bounces = mx.elsewhere.wait(FORGED)
    assert len(bounces) == 1, mx.mta.log()
    assert bounces[0]["from"] == "<>"  # a delivery status notification, to a sender who never wrote
    report = email.message_from_bytes(bounces[0]["raw"], policy=email.policy.default)
    assert report.get_content_type() == "multipart/report"
    assert "5.1.1" in bounces[0]["raw"].decode(errors="replace")
