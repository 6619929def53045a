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
from email.utils import collapse_rfc2231_value
from enum import Enum

from relay.core.addresses import is_null_sender
from relay.core.compose import LOOP_HEADER, PARSE_ERRORS

MAX_RECEIVED = 30

# How out-of-office and vacation replies word the start of their subject, in German, English, French,
# Spanish, Italian and Dutch: the phrase alone, or followed by ":" ("Automatic reply: Re: ..."), or in
# square brackets ("[Auto-Reply] ..."). Only at the start: "Re: ich war im Urlaub" is a person writing.
_OOO_PHRASES = (
    r"abwesenheits(?:notiz|nachricht|meldung|benachrichtigung)|automatische (?:antwort|rückantwort|abwesenheitsnotiz)"
    r"|out of (?:the )?office(?: auto-?reply)?|automatic (?:reply|response)|auto[- ]?(?:reply|response)"
    r"|vacation (?:reply|response|notice)|away from (?:the )?office"
    r"|r[ée]ponse automatique(?: d'absence)?|absente? du bureau|absence du bureau|message d'absence"
    r"|respuesta autom[áa]tica|fuera de (?:la )?oficina|(?:mensaje|aviso) de ausencia"
    r"|risposta automatica|fuori (?:sede|ufficio|dall'ufficio)|messaggio di assenza"
    r"|automatisch antwoord|afwezig(?:heid|heidsbericht|heidsmelding)?|buiten kantoor")
_OOO_SUBJECT = re.compile(rf"^\s*(?:\[\s*(?:{_OOO_PHRASES})\s*[]:]|(?:{_OOO_PHRASES})\s*(?::|$))", re.IGNORECASE)
_AUTO_PRECEDENCE = {"bulk", "junk", "list", "auto_reply", "auto-reply"}
_DAEMON = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon)@", re.IGNORECASE)


class Kind(Enum):
    PERSON = "person"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    LOOP = "loop"


# Reports (RFC 6522) by their report-type: delivery status notifications are bounces; read receipts
# (MDN, RFC 8098) and abuse feedback (ARF, RFC 5965) are automatic, never a person's answer.
_REPORTS = {"delivery-status": Kind.BOUNCE, "disposition-notification": Kind.AUTO_REPLY,
            "feedback-report": Kind.AUTO_REPLY}


def classify(msg: EmailMessage, envelope_from: str, domain: str) -> tuple[Kind, str]:
    """The kind of message and the clue that decided it (for the log)."""
    loop = _loop(msg, domain)
    if loop:
        return Kind.LOOP, loop
    report = _report(msg)
    if report:
        return report
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
    except PARSE_ERRORS:
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


def _report(msg: EmailMessage) -> tuple[Kind, str] | None:
    if msg.get_content_type() != "multipart/report":
        return None
    report = collapse_rfc2231_value(msg.get_param("report-type", "")).strip().lower()
    if report not in _REPORTS:
        return None  # the clue is one of a fixed few: the parameter is the sender's text
    return _REPORTS[report], f"multipart/report; report-type={report}"


def _bounce(msg: EmailMessage, envelope_from: str) -> str:
    if not is_null_sender(envelope_from):
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
    # not X-Auto-Response-Suppress: Outlook puts it on people's mail (it asks others not to answer)
    for header in ("X-Autoreply", "X-Autorespond"):
        if header in msg:
            return header
    precedence = _get(msg, "Precedence").lower()
    if precedence in _AUTO_PRECEDENCE:
        return f"Precedence: {precedence}"
    subject = _get(msg, "Subject")
    if _OOO_SUBJECT.search(subject):
        return "out-of-office subject"
    return ""
