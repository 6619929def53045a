"""Every message of the shared corpus, treated as a reviewer's answer from its own From address:
forwarded without that address anywhere (by the relay's scan and by the tests' own leak reader), or
refused with a reason. Never a crash, never a leak."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import pytest

from relay.core import headers, leaks, sanitize
from tests.helpers import leak_reader
from tests.helpers.corpus import CORPUS, SKIP_REASON, messages

ALIAS = "q" * 32 + "@relay.test"


def route_for(sender: str, block_remote: bool = False) -> sanitize.Route:
    return sanitize.Route(hidden=(sender,), alias=ALIAS, sender_name="R. P.", platform_name="ReviewHub",
                          recipient="service@shop.example", message_id="<corpus@relay.test>",
                          date=datetime(2026, 3, 2, 12, 0), block_remote=block_remote)


@pytest.mark.skipif(not CORPUS.is_dir(), reason=SKIP_REASON)
@pytest.mark.parametrize("block_remote", [False, True], ids=["to-business", "to-reviewer"])
def test_corpus_forwards_without_leaks(block_remote: bool, capsys: pytest.CaptureFixture[str]) -> None:
    counts: Counter[str] = Counter()
    leaked: list[str] = []
    for name, raw in messages():
        msg = sanitize.parse(raw)
        senders = headers.addresses(msg, "From")
        if not senders:
            counts["refused: no From address (550 5.7.1 at DATA)"] += 1
            continue
        sender = senders[0]
        try:
            out = sanitize.forward(msg, route_for(sender, block_remote))
        except sanitize.Unprocessable as exc:
            counts[f"refused: {str(exc).split(':')[0]}"] += 1
            continue
        counts["forwarded"] += 1
        if leaks.found(out, sender) or leak_reader.finds(out, sender):
            leaked.append(name)
    total = sum(counts.values())
    with capsys.disabled():
        print(f"\ncorpus ({'business -> reviewer' if block_remote else 'reviewer -> business'}): "
              f"{total} messages, leaks {len(leaked)}")
        for outcome, n in counts.most_common():
            print(f"  {n:4d}  {outcome}")
    assert total > 500
    assert leaked == []
    assert counts["forwarded"] > total * 0.8
