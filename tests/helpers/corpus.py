"""Access to the shared corpus of real mail from other projects (read in place, never copied)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from tests.helpers.environment import REPO

CORPUS = Path(os.environ.get("RELAY_CORPUS", REPO.parent / "shared" / "corpus"))
SKIP_REASON = f"the shared mail corpus is not at {CORPUS} (set RELAY_CORPUS to its folder)"


def messages() -> Iterator[tuple[str, bytes]]:
    """(relative name, bytes) of every message file; quote-bodies are wrapped into a plain message."""
    for path in sorted(CORPUS.rglob("*")):
        if not path.is_file() or path.name.startswith(("README", "LICENSE")):
            continue
        name = str(path.relative_to(CORPUS))
        data = path.read_bytes()
        if name.startswith("quote-bodies/"):
            data = (b"From: Reviewer Person <reviewer.person@example.org>\r\nSubject: Re: Anfrage\r\n"
                    b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + data)
        yield name, data
