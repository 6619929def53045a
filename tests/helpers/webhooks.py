"""A real webhook endpoint on loopback for tests: an HTTP server in a thread that checks every
request's signature with the Standard Webhooks reference library (`standardwebhooks`), records it,
and answers as the test says: 2xx, a status of the test's choosing, 410, held without an answer
(to kill the relay while a webhook is in flight), or not at all (stopped: connection refused)."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.helpers.environment import free_port


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class Received:
    """One request as the endpoint got it."""

    headers: dict[str, str]
    body: bytes
    verified: bool
    payload: dict[str, Any] | None
    status: int | None = None  # what it answered; None: no answer (held, or the relay went away)

    @property
    def id(self) -> str:
        return self.headers.get("webhook-id", "")

    @property
    def type(self) -> str:
        return str((self.payload or {}).get("type", ""))

    @property
    def data(self) -> dict[str, Any]:
        return dict((self.payload or {}).get("data", {}))


@dataclass
class Receiver:
    secret: str = field(default_factory=new_secret)
    port: int = field(default_factory=free_port)
    answers: list[int] = field(default_factory=list)   # statuses for the next requests, in order
    status: int = 204                                   # the answer after those
    delay: float = 0.0                                  # seconds before each answer
    hold: bool = False                                  # keep requests unanswered until released
    gather: int = 0            # answer nothing until this many requests are in flight at once (once)
    gather_timeout: float = 20.0                        # ... or until this many seconds have passed
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.gathered = threading.Condition(self.lock)
        self.in_flight = 0
        self.most_at_once = 0
        self.server: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/relay?token=t0ken"

    def start(self) -> None:
        """Listen (again, on the same port)."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload = Webhook(receiver.secret).verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    payload, verified = None, False
                item = Received(headers, body, verified, payload)
                with receiver.lock:
                    receiver.received.append(item)
                    status = receiver.answers.pop(0) if receiver.answers else receiver.status
                    receiver.in_flight += 1
                    receiver.most_at_once = max(receiver.most_at_once, receiver.in_flight)
                    receiver.gathered.notify_all()
                    receiver.gathered.wait_for(lambda: receiver.most_at_once >= receiver.gather,
                                               receiver.gather_timeout)
                try:
                    self._answer(item, status)
                finally:
                    with receiver.lock:
                        receiver.in_flight -= 1

            def _answer(self, item: Received, status: int) -> None:
                if receiver.hold:
                    receiver.release.wait(120)
                    return  # no answer: the relay never learns whether this one arrived
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = status if item.verified else 400
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()
                item.status = status

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the listen backlog: a burst of webhooks must not be reset

        self.server = Server(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop listening: the relay's next attempts find the connection refused."""
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def answered(self) -> list[Received]:
        """Requests answered 2xx: what the relay may count as delivered."""
        with self.lock:
            return [r for r in self.received if r.status is not None and 200 <= r.status < 300]

    def all(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def wait(self, count: int, timeout: float = 30.0, answered: bool = True) -> list[Received]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = self.answered() if answered else self.all()
            if len(got) >= count:
                return got
            time.sleep(0.05)
        return self.answered() if answered else self.all()

    def settings(self, **more: Any) -> dict[str, Any]:
        """The `[webhooks]` section that points a relay here."""
        return {"url": self.url, "secret": self.secret, **more}


def texts(received: list[Received]) -> list[str]:
    """Everything the endpoint got, as text: headers, the raw body and the body's decoded values
    (a value JSON escaped would not be found in the raw text)."""
    out = []
    for item in received:
        out.append(json.dumps(item.headers))
        out.append(item.body.decode("utf-8", "replace"))
        if item.payload is not None:
            out.append(json.dumps(item.payload, ensure_ascii=False))
    return out
