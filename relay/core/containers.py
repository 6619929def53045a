"""What compressed documents hold, for the final scan (pure: bytes in, bytes out).

An invoice PDF compresses its pages (FlateDecode), so the buyer's address printed on it is not in
the attachment's bytes; a .docx, .xlsx or .odt is a zip of XML files; .gz and .svgz are gzip. The
relay does not change documents (it cannot edit them safely), but the final scan must see what a
reader sees in them, so that such a document is refused like an uncompressed one. Decompression
is bounded (a zip bomb costs a bounded amount of work): what lies beyond the bound is not read.
Images inside a PDF are skipped: their pixels hold no text.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections.abc import Iterator

MAX_OUTPUT = 64 * 1024 * 1024     # decompressed bytes read from one document, in all
MAX_MEMBERS = 500                  # files read from one archive
_STREAM = re.compile(rb"<<(?P<dict>(?:(?!>>\s*stream).){0,4000}?)>>\s*stream\r?\n", re.DOTALL)
_GZIP = b"\x1f\x8b"
_ZIP = b"PK\x03\x04"


def insides(data: bytes, depth: int = 0) -> Iterator[bytes]:
    """The decompressed contents of `data` when it is a PDF, a zip archive or gzip (one level of
    nesting more: a zip inside a zip, a gzip inside a zip)."""
    budget = [MAX_OUTPUT]
    if data.startswith(b"%PDF") or b"%PDF-" in data[:1024]:
        yield from _pdf_streams(data, budget)
    elif data.startswith(_ZIP):
        yield from _zip_members(data, budget, depth)
    elif data.startswith(_GZIP):
        inflated = _inflate(data, budget, wbits=31)
        if inflated:
            yield inflated


def _inflate(data: bytes, budget: list[int], wbits: int = 15) -> bytes:
    """Decompress at most what is left of the budget; what fails to decompress yields what it gave."""
    if budget[0] <= 0:
        return b""
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, budget[0])
    except zlib.error:
        return b""
    budget[0] -= len(out)
    return out


def _pdf_streams(data: bytes, budget: list[int]) -> Iterator[bytes]:
    for match in _STREAM.finditer(data):
        dictionary = match.group("dict")
        if b"FlateDecode" not in dictionary or b"/Image" in dictionary:
            continue
        end = data.find(b"endstream", match.end())
        inflated = _inflate(data[match.end(): end if end > 0 else len(data)], budget)
        if inflated:
            yield inflated
        if budget[0] <= 0:
            return


def _zip_members(data: bytes, budget: list[int], depth: int) -> Iterator[bytes]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError):
        return
    for info in archive.infolist()[:MAX_MEMBERS]:
        if info.is_dir() or budget[0] <= 0:
            continue
        try:
            with archive.open(info) as member:
                content = member.read(budget[0])
        except (zipfile.BadZipFile, ValueError, OSError, NotImplementedError, RuntimeError, EOFError, zlib.error):
            continue  # encrypted or broken: its name and bytes are still in the raw scan
        budget[0] -= len(content)
        yield info.filename.encode("utf-8", "replace")
        yield content
        if depth == 0 and content.startswith((_ZIP, _GZIP, b"%PDF")):
            yield from insides(content, depth + 1)
