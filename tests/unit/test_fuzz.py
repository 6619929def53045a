"""A bounded fuzz run over everything that reads untrusted bytes: shape limits, parsing,
classification, bounce reading and sanitising never raise anything but Unprocessable."""

from __future__ import annotations

from datetime import datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.core import bounces, classify, leaks, limits, sanitize
from tests.helpers import leak_reader
from tests.helpers.corpus import CORPUS

SEEDS = [p.read_bytes()[:20_000] for p in sorted(CORPUS.rglob("*.eml"))[::7]] if CORPUS.is_dir() else []
SEEDS += [b"From: a@b.de\r\nSubject: x\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n\r\nhi\r\n--q--\r\n"]
SENDER = "fuzz.sender@example.de"
ROUTE = sanitize.Route(hidden=(SENDER,), alias="f" * 32 + "@relay.test", sender_name="F.", platform_name="P",
                       recipient="shop@example.net", message_id="<fuzz@relay.test>", date=datetime(2026, 1, 1),
                       block_remote=True)
SHAPE = limits.Shape(max_line_bytes=1 << 20, max_header_count=500, max_header_bytes=256 * 1024)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    seed = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        choice = draw(st.integers(0, 3))
        at = draw(st.integers(0, max(0, len(seed) - 1)))
        if choice == 0 and seed:
            del seed[at: at + draw(st.integers(1, 200))]
        elif choice == 1:
            seed[at:at] = draw(st.binary(max_size=200))
        elif choice == 2:
            seed[at:at] = draw(st.sampled_from([b"\r\n--q\r\n", b"=?utf-8?B?", b"Content-Type: multipart/mixed;",
                                                b"\r\n\r\n", b"charset=x-unknown", b"=\r\n", SENDER.encode(),
                                                b"Content-Transfer-Encoding: base64\r\n", b"<img src=http://t/x>"]))
        else:
            seed[at:at] = SENDER.upper().encode()
    return bytes(seed)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(raw=st.one_of(mutated(), st.binary(max_size=3000)))
def test_untrusted_bytes_never_crash(raw: bytes) -> None:
    limits.check_shape(raw, SHAPE)
    try:
        msg = sanitize.parse(raw)
        classify.classify(msg, SENDER, "relay.test")
        bounces.read(msg)
        out = sanitize.forward(sanitize.parse(raw), ROUTE)
    except sanitize.Unprocessable:
        return
    assert not leaks.found(out, SENDER)
    assert leak_reader.finds(out, SENDER) == []
