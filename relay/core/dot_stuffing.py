"""The bytes of an SMTP DATA transfer (RFC 5321 4.5.2), made piece by piece from the message.

A client sends the message with CRLF line ends, doubles a dot that begins a line, and ends with a
line of one dot. Done the usual way (a regular expression over the whole message, then the end
line appended) that is a new copy of the message per step: three for a 25 MB answer, on top of the
message itself. Here the message is read where it is: `pieces` yields views into it and the few
bytes that go between, and `size` says how long the transfer is for the SIZE parameter. Only a
message with a bare CR or LF (which the relay's own output never has) is normalised first, in one
copy.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

PIECE = 1 << 16
_LINE_ENDS = re.compile(rb"\r\n|\n|\r(?!\n)")


def _normalised(body: bytes | bytearray) -> bytes | bytearray:
    """`body` with every line ending CRLF (itself when it is so already: counted, not copied)."""
    if not isinstance(body, bytes | bytearray):
        raise TypeError(f"a message is bytes, not {type(body).__name__}")
    crlf = body.count(b"\r\n")
    if body.count(b"\n") == crlf and body.count(b"\r") == crlf:
        return body
    return _LINE_ENDS.sub(b"\r\n", body)


def size(body: bytes | bytearray) -> int:
    """The message's size as SIZE counts it: octets with CRLF line ends, the last line ended too
    (RFC 1870)."""
    text = _normalised(body)
    return len(text) + (0 if text.endswith(b"\r\n") else 2)


def pieces(body: bytes | bytearray, piece: int = PIECE) -> Iterator[bytes | memoryview]:
    """The DATA transfer of `body`, up to and with the final `.` line, in pieces of at most
    `piece` bytes (views into the message where it needs no change)."""
    text = _normalised(body)
    view = memoryview(text)
    start = 0
    if text.startswith(b"."):
        yield b"."
    while True:
        found = text.find(b"\r\n.", start)
        end = len(text) if found < 0 else found + 2  # up to the start of the line with the dot
        for at in range(start, end, piece):
            yield view[at:min(end, at + piece)]
        if found < 0:
            break
        yield b"."
        start = end
    yield b".\r\n" if text.endswith(b"\r\n") else b"\r\n.\r\n"  # the last line ended, then the dot
