"""Long runs of encoded lines are set aside while the standard parser reads a message
(relay.core.bulk_lines): the message that comes out is the one the parser makes of the original
bytes, part for part, header for header, payload for payload, defect for defect. Shown over the
shared corpus with runs short enough that many messages have some, and on made-up messages with
every place a run can stand: before a boundary, in a preamble and an epilogue, at the start of
a message without headers, with LF line ends, cut by empty lines or a lone CR."""

from __future__ import annotations

import base64
import os
from datetime import datetime
from email.message import EmailMessage, Message
from typing import Any

import pytest

from relay.core import bulk_lines, compose, sanitize
from tests.helpers import leak_reader
from tests.helpers.corpus import CORPUS, SKIP_REASON, messages

SMALL = 120  # bytes: runs this long are set aside in the tests (the relay's own limit is 256 KiB)


def shape(msg: Message) -> list[tuple[Any, ...]]:
    """Everything the parser decided about a message, part by part."""
    return [(type(part).__name__, part.get_content_type(), list(part._headers),
             part._payload if isinstance(part._payload, str) else None,
             part.preamble, part.epilogue, [type(defect).__name__ for defect in part.defects])
            for part in msg.walk()]


def both(raw: bytes, min_run: int = SMALL) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int]:
    """(the plain parse, the lean parse, how many runs were set aside)."""
    runs = len(bulk_lines._runs(raw, min_run))
    return shape(compose._parse_fed(raw)), shape(bulk_lines.parse_lean(raw, compose._parse_fed, min_run)), runs


def b64_lines(size: int, width: int = 76, end: bytes = b"\r\n") -> bytes:
    text = base64.b64encode(os.urandom(size))
    return b"".join(text[i:i + width] + end for i in range(0, len(text), width))


@pytest.mark.skipif(not CORPUS.is_dir(), reason=SKIP_REASON)
def test_the_corpus_parses_the_same() -> None:
    with_runs = 0
    for name, raw in messages():
        plain, lean, runs = both(raw)
        assert lean == plain, name
        with_runs += runs > 0
    assert with_runs >= 20, with_runs  # the comparison covered messages that had runs set aside


def attachment(body: bytes, end: bytes = b"\r\n", epilogue: bytes = b"") -> bytes:
    return (b"From: a@example.org" + end + b"Content-Type: multipart/mixed; boundary=xx" + end + end
            + b"--xx" + end + b"Content-Type: text/plain" + end + end + b"Hallo" + end
            + b"--xx" + end + b"Content-Type: application/pdf" + end + b"Content-Transfer-Encoding: base64" + end
            + end + body + b"--xx--" + end + epilogue)


@pytest.mark.parametrize("end", [b"\r\n", b"\n"])
def test_a_run_before_a_boundary_keeps_its_line_ends(end: bytes) -> None:
    raw = attachment(b64_lines(3000, end=end), end)
    plain, lean, runs = both(raw)
    assert runs == 1 and lean == plain
    assert not lean[-1][3].endswith(("\n", "\r"))  # the line end before the boundary went with it


def test_runs_in_preamble_epilogue_and_text_parts() -> None:
    lines = b64_lines(2000)
    raw = (b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=yy\r\n\r\n" + lines
           + b"--yy\r\nContent-Type: text/plain\r\n\r\nHallo\r\n" + lines + b"\r\nGruss\r\n--yy--\r\n" + lines)
    plain, lean, runs = both(raw)
    assert runs == 3 and lean == plain


def test_a_message_that_is_only_a_run() -> None:
    plain, lean, runs = both(b64_lines(2000))
    assert runs == 1 and lean == plain


@pytest.mark.parametrize("cut", [b"\r\n", b"\r\n\r\n", b"\n\n", b"\rQUJD\r\n", b"--xx\r\n"])
def test_runs_cut_by_empty_lines_a_lone_cr_or_a_boundary(cut: bytes) -> None:
    lines = b64_lines(1500)
    raw = attachment(lines + cut + lines + b"\r\n" + lines)
    plain, lean, _ = both(raw)
    assert lean == plain


def test_words_one_per_line_in_a_text_part_stay_as_they_were() -> None:
    words = b"".join(b"Bestellnummer%d\r\n" % n for n in range(200)) + b"ENDE\r\n"
    raw = b"From: a@example.org\r\nContent-Type: text/plain\r\n\r\n" + words
    plain, lean, runs = both(raw)
    assert runs == 1 and lean == plain


def test_a_marker_the_parser_puts_elsewhere_falls_back_to_the_plain_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = attachment(b64_lines(3000))
    monkeypatch.setattr(bulk_lines, "_put_back", lambda msg, raw, runs: False)
    plain, lean, runs = both(raw)
    assert runs == 1 and lean == plain


def test_a_large_attachment_is_set_aside_at_the_relays_limit() -> None:
    raw = attachment(b64_lines(1024 * 1024))
    assert len(bulk_lines._runs(raw, bulk_lines.MIN_RUN)) == 1
    assert shape(compose.parse_bytes(raw)) == shape(compose._parse_fed(raw))


REVIEWER = "max.mueller@example.de"


def large_answer(maintype: str, subtype: str, content: bytes) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Max <{REVIEWER}>"
    msg["To"] = "a" * 32 + "@relay.test"
    msg["Subject"] = "Re: Anfrage"
    msg.set_content("Anbei der Beleg.")
    msg.add_attachment(content, maintype=maintype, subtype=subtype, filename="beleg")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


@pytest.mark.parametrize(("maintype", "subtype"), [("text", "plain"), ("application", "octet-stream")])
def test_an_address_in_a_set_aside_run_does_not_reach_the_other_party(maintype: str, subtype: str) -> None:
    """The runs are back in place before anything is cleaned or scanned: an address inside a large
    base64 attachment is replaced (text) or the message refused (binary), as for a small one."""
    filler = os.urandom(bulk_lines.MIN_RUN) if maintype == "application" else b"Zeile ohne Adresse\n" * 20_000
    raw = large_answer(maintype, subtype, filler + f"Kontakt: {REVIEWER}\n".encode() + filler)
    assert len(bulk_lines._runs(raw, bulk_lines.MIN_RUN)) == 1
    assert leak_reader.finds(raw, REVIEWER)  # the reader sees the address in the message as it came
    route = sanitize.Route(hidden=(REVIEWER,), alias="b" * 32 + "@relay.test", sender_name="Max M.",
                           platform_name="ReviewHub", recipient="service@shop.example",
                           message_id="<new1@relay.test>", date=datetime(2026, 11, 28, 9, 0),
                           in_reply_to=[], references=[])
    if maintype == "application":  # binary: the address cannot be replaced, the message is refused
        with pytest.raises(sanitize.Unprocessable, match="address survived"):
            sanitize.forward(sanitize.parse(raw), route)
        return
    forward = sanitize.forward(sanitize.parse(raw), route)  # text: the address replaced in it
    assert leak_reader.finds(forward, REVIEWER) == []
    assert len(forward) > bulk_lines.MIN_RUN  # the attachment went along, cleaned
