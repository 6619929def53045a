"""Long runs of encoded lines, set aside while the standard parser reads a message.

The standard parser keeps every line of a part in a list until the part ends and then joins them:
for a 25 MB base64 attachment that is some 340,000 line objects (about 45 MB) next to the joined
payload. Those lines need no reading: a run of lines made only of the base64 alphabet cannot be a
header field (no colon, no leading space), a boundary (no hyphen) or the empty line that ends a
header, so it is body text wherever it stands. Each long run is replaced by one marker line, the
much shorter message is parsed, and the runs are put back where their markers ended up, as the
parser would have left them (the line end before a boundary belongs to the boundary, so a marker
without its line end stands for the run without its last one). The result is the message the
parser makes of the original bytes, built with one copy of each run instead of three.

A marker that cannot be found again (the parser put it somewhere this module does not look) makes
the caller parse the original bytes as they are: slower, never different.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage, Message

MIN_RUN = 256 * 1024  # bytes: shorter runs cost the parser little
# a stretch of the alphabet and line ends; one character class, so the regular expression engine
# keeps no state per line (a repeated group of lines would keep some for each of 340,000 lines)
_STRETCH = re.compile(rb"[A-Za-z0-9+/=\r\n]+")
_LINE_ENDS = re.compile(rb"[\r\n]+")
_EMPTY_LINE = re.compile(rb"\n\r?\n")


@dataclass(frozen=True)
class _Run:
    marker: str
    start: int
    end: int
    ending: str  # the last line's end, which the marker line carries too


def parse_lean(raw: bytes, parse: Callable[[bytes], EmailMessage], min_run: int = MIN_RUN) -> EmailMessage:
    """`parse(raw)`, with the long runs of encoded lines set aside while `parse` reads."""
    runs = _runs(raw, min_run)
    if not runs:
        return parse(raw)
    msg = parse(_shortened(raw, runs))
    if _put_back(msg, raw, runs):
        return msg
    return parse(raw)


def _runs(raw: bytes, min_run: int) -> list[_Run]:
    if len(raw) < min_run:
        return []
    token = secrets.token_hex(16)
    found: list[_Run] = []
    for stretch in _STRETCH.finditer(raw):
        if stretch.end() - stretch.start() < min_run:
            continue
        for start, end in _blocks(raw, stretch.start(), stretch.end()):
            if end - start >= min_run and _plain_lines(raw, start, end):
                ending = "\r\n" if raw[end - 2:end] == b"\r\n" else "\n"
                found.append(_Run(f"relaybulk{token}n{len(found)}", start, end, ending))
    return found


def _blocks(raw: bytes, start: int, end: int) -> Iterator[tuple[int, int]]:
    """The blocks of whole, non-empty lines in a stretch: from its first line start to its last
    line end, cut at empty lines (an empty line may end a header block: it stays outside)."""
    if start > 0:  # a stretch begins after a character outside it: in the middle of a line
        start = raw.find(b"\n", start, end) + 1
        if start == 0:
            return
    end = raw.rfind(b"\n", start, end) + 1
    at = start
    while at < end:
        blank = _LINE_ENDS.match(raw, at, end)
        if blank is not None:  # empty lines: the block begins after the last of them
            at = raw.rfind(b"\n", at, blank.end()) + 1 or at
        found = _EMPTY_LINE.search(raw, at, end)  # one scan however many blocks (no quadratic search)
        stop = found.start() + 1 if found is not None else end
        if stop > at:
            yield at, stop
        at = max(stop, at + 1)


def _plain_lines(raw: bytes, start: int, end: int) -> bool:
    """Every line ends with LF or CRLF (the parser also ends a line at a lone CR)."""
    return raw[start] not in b"\r\n" and raw.count(b"\r", start, end) == raw.count(b"\r\n", start, end)


def _shortened(raw: bytes, runs: list[_Run]) -> bytes:
    view, at = memoryview(raw), 0
    pieces: list[bytes | memoryview] = []
    for run in runs:
        pieces += [view[at:run.start], (run.marker + run.ending).encode("ascii")]
        at = run.end
    pieces.append(view[at:])
    return b"".join(pieces)


def _put_back(msg: Message, raw: bytes, runs: list[_Run]) -> bool:
    """Each run where its marker is; False if a marker is not found exactly once."""
    view = memoryview(raw)
    left = {run.marker: run for run in runs}
    for part in msg.walk():
        for name in ("preamble", "epilogue", "_payload"):
            text = getattr(part, name, None)
            if not isinstance(text, str) or "relaybulk" not in text:
                continue
            here = [run for marker, run in left.items() if marker in text]
            for run in here:
                del left[run.marker]
            setattr(part, name, _restored(text, here, view))
    return not left


def _restored(text: str, runs: list[_Run], view: memoryview) -> str:
    for run in runs:
        whole = str(view[run.start:run.end], "ascii")
        if text == run.marker + run.ending:  # the usual case: the run is the whole payload
            text = whole
        elif run.marker + run.ending in text:
            text = text.replace(run.marker + run.ending, whole, 1)
        else:  # the last line before a boundary: its line end went with the boundary
            text = text.replace(run.marker, whole[:-len(run.ending)], 1)
        del whole
    return text
