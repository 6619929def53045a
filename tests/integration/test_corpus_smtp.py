"""The whole shared corpus sent over SMTP to a running relay as answers on open cases: no crash, no
hang; every message forwarded clean, dropped as auto-reply or bounce, or refused with its reply."""

from __future__ import annotations

import smtplib
import time
from collections import Counter
from typing import Any

import pytest

from relay.core import addresses, headers, leaks, sanitize
from relay.core.outcomes import Outcome, reply
from tests.helpers.corpus import CORPUS, SKIP_REASON, messages
from tests.helpers.environment import Sink, new_case


def outcome_of(code: int, text: str) -> str:
    for outcome in Outcome:
        expected = reply(outcome)
        if expected.code == code and text.startswith(f"{expected.status} {expected.text}"):
            return outcome.value
    return f"unexpected {code} {text[:60]}"


@pytest.mark.skipif(not CORPUS.is_dir(), reason=SKIP_REASON)
def test_corpus_over_smtp(app_factory: Any, relay_factory: Any, sink: Sink, tmp_path: Any,
                          capsys: pytest.CaptureFixture[str]) -> None:
    app = app_factory(f"sqlite:///{tmp_path}/relay.db", outbound={"url": sink.url},
                      inbound={"max_message_bytes": 4 * 1024 * 1024},
                      limits={"messages_per_case_per_hour": 100_000, "unknown_recipients_per_client": 100_000})
    relay = relay_factory(app)
    counts: Counter[str] = Counter()
    senders: dict[str, str] = {}
    for n, (_name, raw) in enumerate(messages()):
        found = headers.addresses(sanitize.parse(raw), "From")
        try:
            sender = addresses.validate(found[0]) if found else ""
        except addresses.InvalidAddress:
            sender = ""
        if not sender or sender == "service@shop.example":
            counts["no case possible: no usable From address"] += 1
            continue
        business = f"shop{n}@example.com"
        opened = new_case(app, reviewer=sender, business=business, business_id=f"B-{n}", review_id=f"R-{n}")
        senders[business] = sender
        try:
            with smtplib.SMTP("127.0.0.1", relay.port, timeout=60) as s:
                s.ehlo("corpus.example")
                s.mail(sender)
                code, text = s.rcpt(opened.reviewer_address)
                if code == 250:
                    code, text = s.data(raw)
        except smtplib.SMTPResponseException as exc:
            code, text = exc.smtp_code, exc.smtp_error
        except (smtplib.SMTPException, OSError) as exc:  # a crash or a hang of the relay
            counts[f"CRASH/HANG {type(exc).__name__}"] += 1
            continue
        counts[outcome_of(code, text.decode(errors="replace"))] += 1

    forwarded = counts[Outcome.ACCEPTED.value]
    deadline = time.monotonic() + 60
    while True:
        delivered = [m for business in senders for m in sink.to(business, "forward")]
        if len(delivered) >= forwarded or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    leaked = [m["to"][0] for m in delivered if leaks.found(m["raw"], senders[m["to"][0]])]
    with capsys.disabled():
        print(f"\ncorpus over SMTP: {sum(counts.values())} messages, {len(delivered)} forwards delivered, "
              f"leaks {len(leaked)}")
        for outcome, count in counts.most_common():
            print(f"  {count:4d}  {outcome}")
    assert not [k for k in counts if k.startswith(("CRASH", "unexpected"))], counts
    assert counts[Outcome.TEMPORARY_FAILURE.value] == 0
    assert len(delivered) == forwarded
    assert leaked == []
