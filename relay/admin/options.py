"""The `relay` command line: its commands and options, each value checked where it is parsed.

A value argparse cannot use ends the command before anything is opened, with argparse's one line
naming the option (`argument --status: ...`) and exit 2: a mistyped state, a negative count or a
case id that is not a number must not run as "nothing found" and exit 0.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from relay import __version__, config_values
from relay.admin import tail
from relay.core import addresses, credentials, dkim_sign
from relay.core.errors import RelayError
from relay.core.vocabulary import Event, State


def _checked(kind: str, parse: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse type: argparse turns the ValueError's sentence into `argument --x: sentence`.
    (argparse shows only an ArgumentTypeError's own words; any other error becomes a bare
    "invalid value".)"""
    def check(text: str) -> object:
        try:
            return parse(text)
        except (ValueError, RelayError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    check.__name__ = kind
    return check


def _whole(text: str, least: int) -> int:
    try:
        number = int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if number < least:
        raise ValueError(f"{text!r} must be {least} or more")
    return number


def _event_prefix(text: str) -> str:
    if not any(str(known).startswith(text) for known in Event):
        raise ValueError(f"no event starts with {text!r} (events: case., inbound., delivery., notice., "
                         "bounce., storage., serve. ...; docs/operations.md lists them)")
    return text


def _webhook(text: str) -> str:
    text = text.strip()
    if not (text.isdigit() and int(text) >= 1) and not (text.startswith("msg_") and text[4:].isalnum()):
        raise ValueError(f"{text!r} is neither a webhook's number nor its webhook-id (msg_...)")
    return text


def _duration(text: str) -> timedelta:
    value = config_values.parse_duration(text)
    if not value:
        raise ValueError(f"{text!r} is no time at all")
    return value


case_id = _checked("case id", lambda text: _whole(text, 1))
delivery_id = _checked("delivery id", lambda text: _whole(text, 1))
count = _checked("count", lambda text: _whole(text, 0))
batch_size = _checked("batch size", lambda text: _whole(text, 1))
address = _checked("address", addresses.validate)
event_prefix = _checked("event", _event_prefix)
duration = _checked("duration", _duration)
key_name = _checked("name", credentials.key_name)
webhook_ref = _checked("webhook", _webhook)
selector = _checked("selector", dkim_sign.selector)
STATES = [state.value for state in State]


def _api_keys(sub: Any) -> None:
    keys = sub.add_parser("api-key", help="keys for the HTTP API: create (printed once), list, revoke")
    keys_sub = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    created = keys_sub.add_parser("create", help="make a new key and print it once")
    created.add_argument("name", type=key_name, help="who uses it, e.g. platform-prod")
    listed = keys_sub.add_parser("list", help="names, created, last used (never the keys)")
    listed.add_argument("--json", action="store_true")
    revoked = keys_sub.add_parser("revoke", help="stop a key working (within 10 s on every instance)")
    revoked.add_argument("name", type=key_name)


def _webhooks(sub: Any) -> None:
    wh = sub.add_parser("webhooks", help="pending and failed webhooks; retry one; resume after a 410 Gone")
    wh.add_argument("--json", action="store_true")
    wh_sub = wh.add_subparsers(dest="action", metavar="ACTION")
    retry = wh_sub.add_parser("retry", help="send one webhook again now (its number or webhook-id)")
    retry.add_argument("id", type=webhook_ref)
    wh_sub.add_parser("enable", help="send to the endpoint again after it answered 410 Gone")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay", description="Review-contact mail relay.")
    parser.add_argument("--config", metavar="PATH",
                        help="settings file (default: $RELAY_CONFIG or ./settings.toml)")
    parser.add_argument("--version", action="version", version=f"relay {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("serve", help="run inbound SMTP, the API, the outbox and webhook workers and the scheduler")

    oc = sub.add_parser("open-case", help="open a case and queue the contact request to the reviewer")
    for name in ("review-id", "business-id", "business-name", "business-email", "reviewer-email",
                 "reviewer-name", "message"):
        oc.add_argument(f"--{name}", required=True)
    oc.add_argument("--origin", default="organic", help="organic | invited_external | invited_platform")
    oc.add_argument("--locale", default="de", help="de | en")
    oc.add_argument("--request", action="append", default=[],
                    help="what the business asks for: order_number | reference | contact_details")

    cs = sub.add_parser("cases", help="list cases")
    cs.add_argument("--status", choices=STATES, help=" | ".join(STATES))
    cs.add_argument("--business", help="only this business id")
    cs.add_argument("--review", help="only this review id")
    cs.add_argument("--json", action="store_true")

    case = sub.add_parser("case", help="show or close one case")
    case_sub = case.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = case_sub.add_parser("show", help="a case's timeline")
    show.add_argument("id", type=case_id)
    show.add_argument("--json", action="store_true")
    close = case_sub.add_parser("close", help="close a case; its relay addresses stop accepting mail")
    close.add_argument("id", type=case_id)
    close.add_argument("--reason", default=None)

    sub.add_parser("run-jobs", help="one scheduler pass (deliveries due now), then exit")

    tl = sub.add_parser("tail", help="the relay log, readable or raw")
    tl.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    tl.add_argument("-n", "--lines", type=count, default=20, help="how many past lines (default 20)")
    tl.add_argument("--case", type=case_id, help="only lines of this case")
    tl.add_argument("--event", type=event_prefix, help="only events starting with this name (e.g. delivery)")
    tl.add_argument("--level", choices=list(tail.LEVELS), help="only this level and above")
    tl.add_argument("--since", type=duration, metavar="DURATION", help="only the last DURATION (10m, 2h, 1d)")
    tl.add_argument("--json", action="store_true", help="raw JSON lines (for jq)")

    ob = sub.add_parser("outbox", help="pending and failed deliveries; retry one now")
    ob.add_argument("--json", action="store_true")
    ob_sub = ob.add_subparsers(dest="action", metavar="ACTION")
    retry = ob_sub.add_parser("retry", help="send one delivery again now")
    retry.add_argument("id", type=delivery_id)

    fg = sub.add_parser("forget", help="erase a reviewer's address and their message bodies")
    fg.add_argument("--reviewer-email", type=address, required=True)

    _api_keys(sub)

    _webhooks(sub)
    _dkim(sub.add_parser("dkim", help="DKIM signing keys: make one and print its DNS record"))
    _storage_key(sub.add_parser("storage-key", help="the key the database is sealed with: make one, rotate to one"))
    sub.add_parser("migrate", help="bring the database's schema to this version (serve does it too)")

    st = sub.add_parser("status", help="cases by state and the delivery queue")
    st.add_argument("--json", action="store_true")
    return parser


def _storage_key(sk: argparse.ArgumentParser) -> None:
    sk_sub = sk.add_subparsers(dest="action", required=True, metavar="ACTION")
    gen = sk_sub.add_parser("generate", help="write a new storage key to PATH (0600, never over a file)")
    gen.add_argument("path", type=Path, metavar="PATH")
    rot = sk_sub.add_parser("rotate", help="re-seal the database under a new key while relays keep running "
                                           "(resumable: run it again after a crash)")
    rot.add_argument("--new", type=Path, required=True, metavar="PATH", help="the new key's file")
    rot.add_argument("--batch", type=batch_size, default=500, help="rows per transaction (default 500)")


def _dkim(dk: argparse.ArgumentParser) -> None:
    dk_sub = dk.add_subparsers(dest="action", required=True, metavar="ACTION")
    gen = dk_sub.add_parser("keygen", help="write a new key (0600, never over a file) and print its DNS record")
    gen.add_argument("--selector", type=selector, required=True, help="s= of the signatures, e.g. relay or 2026a")
    gen.add_argument("--type", choices=["rsa", "ed25519"], default="rsa", help="rsa (2048 bits, default) | ed25519")
    gen.add_argument("--out", metavar="PATH", type=Path,
                     help="where to write it (default: storage/dkim-SELECTOR.pem next to the database)")
