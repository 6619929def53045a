"""What kind of message arrived: a person's message, an automatic reply, a bounce, or a loop
(pure: a parsed message in, a Kind out).

Automatic replies (out of office, vacation) must not count as the reviewer's answer, must not be
forwarded and must never be answered (RFC 3834). Bounces are the relay's business, not the other
party's. A message carrying the relay's own loop marker, or one that has passed through too many
servers, is going round in circles.
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from enum import Enum

from .compose import LOOP_HEADER

MAX_RECEIVED = 30

# Subjects of out-of-office replies in German, English, French, Spanish, Italian and Dutch.
_OOO_SUBJECT = re.compile(
    r"abwesenheitsnotiz|automatische antwort|\bout of (the )?office\b|\bautomatic reply\b|\bauto[- ]?reply\b"
    r"|\bautoreply\b|r[ée]ponse automatique|\babsence du bureau\b|\bje suis absent|respuesta autom[áa]tica"
    r"|fuera de la oficina|risposta automatica|fuori (sede|ufficio)|automatisch antwoord|\bafwezig(heid)?\b"
    r"|\bich bin (derzeit |zurzeit )?nicht im b[üu]ro|\bvacation reply\b|\bon vacation\b|\bim urlaub\b",
    re.IGNORECASE)
_AUTO_PRECEDENCE = {"bulk", "junk", "list", "auto_reply", "auto-reply"}
_DAEMON = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon)@", re.IGNORECASE)


class Kind(Enum):
    PERSON = "person"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    LOOP = "loop"


def classify(msg: EmailMessage, envelope_from: str, domain: str) -> tuple[Kind, str]:
    """The kind of message and the clue that decided it (for the log)."""
    loop = _loop(msg, domain)
    if loop:
        return Kind.LOOP, loop
    bounce = _bounce(msg, envelope_from)
    if bounce:
        return Kind.BOUNCE, bounce
    auto = _auto_reply(msg)
    if auto:
        return Kind.AUTO_REPLY, auto
    return Kind.PERSON, ""


def _get(msg: EmailMessage, name: str) -> str:
    try:
        value = msg.get(name)
    except (ValueError, IndexError, TypeError, AttributeError):
        # the header parser itself fails on some garbage (a group where a mailbox is expected):
        # use the raw text, which get_all would parse again
        value = next((v for k, v in msg.raw_items() if k.lower() == name.lower()), None)
    return str(value).strip() if value is not None else ""


def _loop(msg: EmailMessage, domain: str) -> str:
    markers = [str(v).strip().lower() for v in msg.get_all(LOOP_HEADER, [])]
    if domain.lower() in markers:
        return f"{LOOP_HEADER}: {domain}"
    received = len(msg.get_all("Received", []))
    if received > MAX_RECEIVED:
        return f"{received} Received headers"
    return ""


def _bounce(msg: EmailMessage, envelope_from: str) -> str:
    if msg.get_content_type() == "multipart/report":
        report = msg.get_param("report-type", "")
        if str(report).lower() == "delivery-status":
            return "multipart/report; report-type=delivery-status"
    if (envelope_from or "").strip("<>"):
        return ""  # a bounce has the null sender; From is read (and parsed) only then
    address = re.search(r"[^\s<>\"]+@[^\s<>\"]+", _get(msg, "From"))
    if address and _DAEMON.match(address.group(0)):
        return f"null sender, From {address.group(0).split('@')[0]}"
    return ""


def _auto_reply(msg: EmailMessage) -> str:
    auto = _get(msg, "Auto-Submitted").lower().split(";")[0].strip()
    if auto and auto != "no":
        # only the keyword reaches the log: RFC 3834 parameters may name the sender
        return f"Auto-Submitted: {auto if re.fullmatch(r'[a-z-]{1,40}', auto) else 'set'}"
    for header in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress"):
        if header in msg:
            return header
    precedence = _get(msg, "Precedence").lower()
    if precedence in _AUTO_PRECEDENCE:
        return f"Precedence: {precedence}"
    subject = _get(msg, "Subject")
    if _OOO_SUBJECT.search(subject):
        return "out-of-office subject"
    return ""
