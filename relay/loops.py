"""The event loop `relay serve` runs on: uvloop (libuv) where it is installed, else asyncio's own.

uvloop's transports and its scheduling cost less per read and per callback than the default loop
written in Python: a bare aiosmtpd server accepts about half as much again on it. Everything the
relay does on the loop (aiosmtpd, uvicorn, aiosmtplib, run_in_executor) is plain asyncio, so the
default loop remains a working fallback (`RELAY_EVENT_LOOP=asyncio` asks for it)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
ENV = "RELAY_EVENT_LOOP"


def name() -> str:
    """"uvloop" or "asyncio": the loop `run` uses."""
    if os.environ.get(ENV, "").lower() == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401  (installed and loadable, not only found)
    except ImportError:
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    if name() == "uvloop":
        import uvloop
        return uvloop.run(main)
    return asyncio.run(main)
