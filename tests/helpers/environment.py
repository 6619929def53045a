"""What the tests set the relay up with: free ports, settings, cases, a capturing SMTP sink, a
relay on its own event loop, raw SQL on a database (shared by the fixtures in tests/conftest.py)."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import peewee as pw
import psycopg2

from relay import config
from relay.app import App
from relay.core.cases import validate_open_case
from relay.lifecycle.opening import Opened, open_case
from relay.server import serve
from tests.helpers import keys

REPO = Path(__file__).resolve().parents[2]


PG_URL = os.environ.get("RELAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


DOMAIN = "relay.test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reset_postgres(url: str) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    conn.close()


def make_settings(tmp_path: Path, db_url: str, **sections: dict[str, Any]) -> config.Settings:
    api_port = free_port()
    raw: dict[str, dict[str, Any]] = {
        "relay": {"domain": DOMAIN, "platform_name": "ReviewHub", "templates": str(REPO / "templates")},
        "inbound": {"host": "127.0.0.1", "port": free_port(), "max_message_bytes": 1024 * 1024},
        # links in the mail (the decline link) lead to this relay's own API
        "api": {"port": api_port, "public_url": f"http://127.0.0.1:{api_port}"},
        # no look-ups at the system's name servers (not on loopback): a test that checks senders
        # names its own DNS server (tests.helpers.dns)
        "auth": {"mode": "off"},
        "outbound": {"url": f"maildir:{tmp_path}/outbox"},
        "storage": {"database": db_url, "key": keys.for_database(db_url)},
        "scheduler": {"interval": "1s"},
        "log": {"file": str(tmp_path / "relay.log"), "stderr": False},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return config.from_mapping(raw, tmp_path)


def new_case(app: App, reviewer: str = "max.mueller@example.de", business: str = "service@shop.example",
             review_id: str | None = None, locale: str = "de", reviewer_name: str = "Max M.",
             business_id: str = "B-1") -> Opened:
    request = validate_open_case(
        review_id=review_id or f"R-{secrets.token_hex(4)}", business_id=business_id,
        business_name="Beispiel Shop GmbH", business_email=business, reviewer_email=reviewer,
        reviewer_name=reviewer_name, origin="organic", locale=locale, requests=["order_number"],
        message="Bitte nennen Sie uns Ihre Bestellnummer.")
    return open_case(app, request)


class Sink:
    """A real SMTP server that captures what the relay sends (the smarthost in tests). With `tls`
    (a server context) it demands STARTTLS, or with `implicit_tls` speaks TLS from the start."""

    def __init__(self, reply: str = "250 2.0.0 OK", hang: bool = False, tls: ssl.SSLContext | None = None,
                 implicit_tls: bool = False) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import SMTP

        SMTP.line_length_limit = 1 << 20
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.port = free_port()
        self.reply = reply
        self.release = threading.Event()
        self.started = 0  # DATA transactions begun (a hanging sink never finishes them)
        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                sink.started += 1
                if hang:
                    while not sink.release.is_set():
                        await asyncio.sleep(0.05)
                reply = sink.reply
                if reply.startswith("2"):  # a refused message was not taken
                    with sink.lock:
                        sink.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                                              "raw": envelope.original_content, "peer": session.peer})
                return reply

        self.tls, self.implicit_tls = tls, implicit_tls
        if tls is None:
            self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        elif implicit_tls:
            self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, ssl_context=tls)
        else:
            self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, tls_context=tls,
                                         require_starttls=True)
        self.controller.start()

    @property
    def url(self) -> str:
        """The URL that reaches it: smtps://, smtp:// with ?starttls=require, or plain smtp://."""
        if self.tls is None:
            return f"smtp://127.0.0.1:{self.port}"
        if self.implicit_tls:
            return f"smtps://127.0.0.1:{self.port}"
        return f"smtp://127.0.0.1:{self.port}?starttls=require"

    def to(self, rcpt: str, kind: str = "any") -> list[dict[str, Any]]:
        """Messages to `rcpt`; kind "forward" (a party's message) or "notice" (the relay's own,
        marked Auto-Submitted) narrows them down."""
        with self.lock:
            found = [m for m in self.messages if rcpt.lower() in [t.lower() for t in m["to"]]]
        if kind == "any":
            return found
        notice = re.compile(rb"^Auto-Submitted: auto-generated\r?$", re.MULTILINE | re.IGNORECASE)
        return [m for m in found if bool(notice.search(m["raw"].split(b"\r\n\r\n", 1)[0])) == (kind == "notice")]

    def wait(self, rcpt: str, count: int = 1, timeout: float = 20.0, kind: str = "any") -> list[dict[str, Any]]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = self.to(rcpt, kind)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        return self.to(rcpt, kind)

    def stop(self) -> None:
        self.release.set()
        self.controller.stop()


class RunningRelay:
    """`serve(app)` on its own event loop in a background thread."""

    def __init__(self, app: App, background: bool = True) -> None:
        self.app = app
        self.port: int = app.settings.inbound.port
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)

            async def main() -> None:
                self.stop_event = asyncio.Event()
                started = asyncio.Event()
                task = asyncio.create_task(serve(app, stop=self.stop_event, ready=started, background=background))
                await started.wait()
                ready.set()
                await task

            self.loop.run_until_complete(main())

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        if not ready.wait(15):
            raise RuntimeError("relay did not start")

    def stop(self) -> None:
        if self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(15)


def raw_sql(db_url: str, statement: str) -> None:
    """Run one statement on a separate connection (to break or mend the database under a test)."""
    if db_url.startswith("sqlite:///"):
        conn: Any = pw.SqliteDatabase(db_url[len("sqlite:///"):])
        conn.execute_sql(statement)
        conn.close()
        return
    pg = psycopg2.connect(db_url)
    pg.autocommit = True
    with pg.cursor() as cur:
        cur.execute(statement)
    pg.close()

