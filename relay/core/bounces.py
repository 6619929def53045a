"""Reading a bounce: did the delivery fail for good, and with which status code? (pure)

Standard delivery status notifications (RFC 3464) carry `Action:` and `Status:` per recipient; the
standard library parses them. The many non-standard formats (qmail, old Exchange, providers'
own) are what flufl.bounce (Mailman's detectors) is made for. A bounce's content is never
forwarded: it quotes the address it failed on.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from email.message import EmailMessage, Message

from flufl.bounce import all_failures

# flufl.bounce logs a traceback when one of its detectors trips over a malformed message; the
# other detectors still run, so that is noise, not an error of the relay's.
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True)
class Report:
    permanent: bool | None   # True: failed for good; False: delayed; None: not a recognisable bounce
    status: str              # enhanced status code, e.g. 5.1.1
    detail: str              # the diagnostic in the relay's words (no addresses)


def read(msg: EmailMessage) -> Report:
    dsn = _from_dsn(msg)
    if dsn is not None:
        return dsn
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # flufl.bounce raises on some broken messages; then it is not recognisable
        temporary, permanent = frozenset(), frozenset()
    if permanent:
        return Report(True, "5.0.0", "permanent failure (non-standard bounce)")
    if temporary:
        return Report(False, "4.0.0", "temporary failure (non-standard bounce)")
    return Report(None, "", "not a recognisable bounce")


def _from_dsn(msg: EmailMessage) -> Report | None:
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        fields = [b for b in blocks if isinstance(b, Message)] if isinstance(blocks, list) else []
        for block in fields[1:] or fields:  # the first block is per message, the rest per recipient
            action = str(block.get("Action", "")).strip().lower()
            status = _STATUS.search(str(block.get("Status", "")))
            code = ".".join(status.groups()) if status else ""
            if action == "failed" or code.startswith("5"):
                return Report(True, code or "5.0.0", f"delivery failed ({code or 'no status'})")
            if action == "delayed" or code.startswith("4"):
                return Report(False, code or "4.0.0", f"delivery delayed ({code or 'no status'})")
    return None
