"""Sender authentication in the SMTP path: which mode the relay runs in, and the verdict for one
message, worked out on threads of its own (DNS look-ups must never hold the database thread or
the event loop).

`[auth] mode = "auto"` (the default) verifies when the name servers answer at start and otherwise
checks nothing, and says which in the log: a relay without DNS still relays, on the address check
alone, and an admin sees why.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import dns.exception
import dns.resolver
from aiosmtpd.smtp import Session

from relay import logs, resolver
from relay.app import App
from relay.core import dmarc
from relay.core.vocabulary import Event
from relay.inbound import sender_checks


@dataclass
class SenderAuth:
    mode: str                            # off | verify | trust (auto resolved at start)
    why: str
    resolve: dns.resolver.Resolver | None = None
    trusted_id: str | None = None
    accept_quarantine: bool = False
    timeout: float = 5.0
    threads: ThreadPoolExecutor | None = None

    @classmethod
    def for_app(cls, app: App) -> SenderAuth:
        settings = app.settings.auth
        quarantine = settings.quarantine == "accept"
        if settings.mode == "off":
            return cls("off", "[auth] mode = \"off\"")
        if settings.mode == "trust":
            return cls("trust", f"Authentication-Results of {settings.trusted_authserv_id}",
                       trusted_id=settings.trusted_authserv_id, accept_quarantine=quarantine)
        resolve = resolver.from_settings(app.settings.dns)
        answered = _answers(resolve, app.settings.relay.domain)
        if settings.mode == "auto" and not answered:
            return cls("off", "no name server answered at start ([auth] mode = \"auto\"); set [dns] nameservers "
                              "or [auth] mode")
        sender_checks.use(resolve)
        where = ", ".join(f"{s}" for s in resolve.nameservers)
        return cls("verify", f"SPF, DKIM and DMARC checked here (DNS at {where})", resolve=resolve,
                   accept_quarantine=quarantine, timeout=app.settings.dns.timeout.total_seconds(),
                   threads=ThreadPoolExecutor(max_workers=8, thread_name_prefix="relay-auth"))

    def describe(self) -> None:
        logs.event(Event.AUTH_MODE, f"sender authentication: {self.mode} ({self.why})")

    async def verdict(self, raw: bytes, session: Session, mail_from: str) -> dmarc.Verdict | None:
        """The verdict on one message; None where nothing is checked or there is no From domain."""
        if self.mode == "trust" and self.trusted_id:
            checks = sender_checks.trusted(raw, self.trusted_id)
        elif self.mode == "verify" and self.resolve is not None:
            client = session.peer[0] if session.peer else "0.0.0.0"  # noqa: S104 (an address, not a bind)
            helo = session.host_name or ""
            try:
                checks = await asyncio.get_running_loop().run_in_executor(
                    self.threads, sender_checks.look_up, raw, client, helo, mail_from, self.resolve, self.timeout)
            except Exception as exc:  # a message the libraries cannot read: the address check decides
                logs.event(Event.INBOUND_ERROR, f"sender authentication could not read the message: "
                           f"{type(exc).__name__}", level=logging.WARNING)
                return None
        else:
            return None
        return dmarc.evaluate(checks) if checks is not None else None

    def close(self) -> None:
        if self.threads is not None:
            self.threads.shutdown(wait=False, cancel_futures=True)


def _answers(resolve: dns.resolver.Resolver, domain: str) -> bool:
    """Whether the name servers answer at all (a name that does not exist is an answer)."""
    try:
        resolve.resolve(f"_dmarc.{domain}", "TXT", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return True
    except (dns.exception.DNSException, OSError):
        return False
    return True
