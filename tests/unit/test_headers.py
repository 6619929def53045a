"""Reading a party's message's sender, copy and thread headers once (pure)."""

from __future__ import annotations

from relay.core import headers, sanitize


def test_senders_copies_and_thread_ids_are_read_from_one_message() -> None:
    raw = (b"From: =?utf-8?q?Max_M=C3=BCller?= <Max.Mueller@Example.DE>\r\n"
           b"Sender: Assistent <assist@example.de>\r\n"
           b"Reply-To: max.mueller@example.de, other@example.org\r\n"
           b"Cc: a@example.org, B <b@example.org>\r\nBcc: c@example.org\r\n"
           b"Message-ID: <own-1@example.de>\r\n"
           b"In-Reply-To: <fwd-1@relay.test>\r\n"
           b"References: <req-1@relay.test>\r\n <fwd-1@relay.test>\r\n"
           b"Subject: Re: Ihre Anfrage\r\n\r\nHallo\r\n")
    said = headers.read(sanitize.parse(raw))
    assert said.addresses("From") == ["max.mueller@example.de"]
    assert said.sender_addresses() == ["max.mueller@example.de", "assist@example.de", "other@example.org"]
    assert said.display_names() == ["Max Müller", "Assistent"]
    assert said.copies == 3
    assert said.message_id == "<own-1@example.de>"
    assert said.in_reply_to == ["<fwd-1@relay.test>"]
    assert said.references == ["<req-1@relay.test>", "<fwd-1@relay.test>"]


def test_absent_and_unparseable_headers_say_nothing() -> None:
    said = headers.read(sanitize.parse(b"From: undisclosed-recipients:;\r\nMessage-ID: no id here\r\n\r\nHallo\r\n"))
    assert said.sender_addresses() == [] and said.display_names() == []
    assert said.copies == 0 and said.message_id is None and said.in_reply_to == [] and said.references == []


def test_an_id_in_raw_8_bit_bytes_counts_as_none() -> None:
    """A Message-ID written in UTF-8 by a careless client cannot be stored or carried into the other
    party's headers; it is dropped, and the message goes on (it used to fail with a 451 for ever)."""
    msg = sanitize.parse("Message-ID: <1@bücher.example>\r\nIn-Reply-To: <2@bücher.example> <3@relay.test>\r\n"
                         "From: a@b.example\r\n\r\nx\r\n".encode())
    said = headers.read(msg)
    assert said.message_id is None and said.in_reply_to == ["<3@relay.test>"]
