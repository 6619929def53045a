"""DKIM signing: what it costs per message, and how long the event loop waits while a thread signs.

    .venv/bin/python bench/signing.py [--json bench/results/signing.json]

The baseline, measured in the same run, is dkimpy's own `dkim.sign` (its RSA in Python, the whole
body canonicalised in one call). For a notice-sized message and for a 25 MB forward (base64, as an
attachment is): milliseconds per message with an RSA-2048 key, with RSA and Ed25519 (dual), and the
longest the event loop waited for its 1 ms timer while the signing ran in a thread.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from relay.core import dkim_sign

HERE = Path(__file__).resolve().parent
NOW = datetime(2026, 11, 22, 12, 0, 0)
HEAD = (b'From: "ReviewHub" <notices@relay.test>\r\nTo: service@shop.example\r\nSubject: Antwort auf Ihre Anfrage\r\n'
        b"Date: Sun, 22 Nov 2026 13:00:00 +0100\r\nMessage-ID: <bench@relay.test>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")


def per_message(sign: Callable[[bytes], bytes], message: bytes, rounds: int) -> float:
    sign(message)
    started = time.perf_counter()
    for _ in range(rounds):
        sign(message)
    return (time.perf_counter() - started) / rounds * 1000


async def worst_gap(sign: Callable[[bytes], bytes], message: bytes) -> tuple[float, float]:
    """(ms the signing took in a thread, the longest ms the loop waited for a 1 ms timer meanwhile)."""
    done = asyncio.Event()
    worst = 0.0

    async def tick() -> None:
        nonlocal worst
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            worst, last = max(worst, now - last), now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    await asyncio.to_thread(sign, message)
    took = time.perf_counter() - started
    done.set()
    await ticker
    return took * 1000, worst * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=HERE / "results" / "signing.json")
    args = parser.parse_args()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    keys = [dkim_sign.Key("relay.test", "relay", rsa_key)]
    dual = [*keys, dkim_sign.Key("relay.test", "relay-ed25519", ed25519.Ed25519PrivateKey.generate())]
    signers: dict[str, Callable[[bytes], bytes]] = {
        "dkimpy dkim.sign (baseline)": lambda m: dkim.sign(m, b"relay", b"relay.test", pem,
                                                           canonicalize=(b"relaxed", b"relaxed")) + m,
        "relay, RSA": lambda m: dkim_sign.sign(m, keys, NOW),
        "relay, RSA + Ed25519": lambda m: dkim_sign.sign(m, dual, NOW),
    }
    notice = HEAD + b"Guten Tag,=0D=0A=0D=0Ader Bewerter hat geantwortet.\r\n" * 40
    forward = HEAD + base64.encodebytes(os.urandom(25 * 1024 * 1024 * 3 // 4)).replace(b"\n", b"\r\n")
    results = []
    for name, sign in signers.items():
        small = per_message(sign, notice, 50 if "baseline" in name else 500)
        took, gap = asyncio.run(worst_gap(sign, forward))
        results.append({"signer": name, "notice_ms": round(small, 3), "forward_25mb_ms": round(took),
                        "worst_loop_wait_ms": round(gap, 1)})
        print(f"{name:<28} notice {small:7.3f} ms   25 MB forward {took:6.0f} ms, the loop waited at most "
              f"{gap:6.1f} ms", flush=True)
    base = results[0]
    for run in results[1:]:
        print(f"{run['signer']}: {base['notice_ms'] / run['notice_ms']:.0f}x faster per notice than the baseline")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"measured": datetime.now(UTC).isoformat(timespec="seconds"), "runs": results},
                                    indent=2) + "\n")


if __name__ == "__main__":
    main()
