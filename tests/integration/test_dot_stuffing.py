"""The DATA transfer made piece by piece is byte for byte what aiosmtplib makes of the whole
message (the client library's own functions are the oracle, which is why this core test lives
with the integration tests), with no copy of a message that needs none."""

from __future__ import annotations

from aiosmtplib.protocol import PERIOD_REGEX
from aiosmtplib.protocol import normalize_message_line_endings as normalise
from hypothesis import given
from hypothesis import strategies as st

from relay.core import dot_stuffing


def reference(body: bytes) -> bytes:
    return PERIOD_REGEX.sub(b"..", normalise(body)) + b".\r\n"  # as aiosmtplib's DATA sends it


@given(st.lists(st.sampled_from([b".", b"..", b"\r\n", b"\n", b"\r", b"a", b"b.c", b" ", b"\r\n.\r\n"]),
                max_size=40), st.integers(min_value=1, max_value=7))
def test_pieces_are_the_whole_transfer(parts: list[bytes], piece: int) -> None:
    body = b"".join(parts)
    assert b"".join(bytes(p) for p in dot_stuffing.pieces(body, piece)) == reference(body)
    assert dot_stuffing.size(body) == len(normalise(body))


def test_a_message_with_crlf_lines_is_read_in_place() -> None:
    body = b"Subject: x\r\n\r\n" + b"line\r\n.hidden\r\n" * 100_000
    views = [p for p in dot_stuffing.pieces(body) if isinstance(p, memoryview)]
    assert views and all(v.obj is body for v in views)  # views into the message, not copies
    assert max(len(p) for p in dot_stuffing.pieces(body)) <= dot_stuffing.PIECE
