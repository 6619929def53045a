"""The few things the relay asks of the C library directly (Linux with glibc; elsewhere nothing).

`syncfs` makes a whole batch of maildir files durable at once (relay.durable). `mallopt` keeps
large memory blocks in mappings of their own: glibc serves a request above its mmap threshold
(128 KiB) with a mapping that goes back to the system when freed, but raises the threshold to the
size of every such block freed, up to 32 MiB. After the first large message, every buffer of a
later one (the message, its forward, their copies in the SMTP libraries) then comes from the heap,
which keeps the memory after it is freed. With the threshold fixed at its default, `relay serve`
peaked at 220 MB instead of 291 MB forwarding a 25 MB answer (bench/memory.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable
from typing import Any

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
_MMAP_THRESHOLD = 128 * 1024


@functools.cache
def function(name: str) -> Callable[..., Any] | None:
    """The C library's function `name`, or None where there is none."""
    try:
        library = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        found: Callable[..., Any] = getattr(library, name)
    except (OSError, AttributeError):
        return None
    return found


def keep_large_blocks_mapped() -> bool:
    """Fix glibc's mmap threshold at its default (see above); False where that is not possible."""
    mallopt = function("mallopt")
    return bool(mallopt and mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))
