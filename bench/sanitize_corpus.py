"""Sanitising throughput over the shared corpus of real mail.

Prints messages per second for the relay's sanitiser and, measured in the same run on the same
messages, for a bare parse-and-serialise with the standard library (the floor any sanitiser built
on it pays), and the ratio between the two. Usage:

    .venv/bin/python bench/sanitize_corpus.py [--rounds 3] [--corpus PATH]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from pathlib import Path

from relay.core import headers, sanitize
from relay.core.compose import to_bytes

HERE = Path(__file__).resolve().parent
DEFAULT_CORPUS = HERE.parent.parent / "shared" / "corpus"


def load(corpus: Path) -> list[bytes]:
    out = []
    for path in sorted(corpus.rglob("*")):
        if path.is_file() and not path.name.startswith(("README", "LICENSE")) and "quote-bodies" not in path.parts:
            out.append(path.read_bytes())
    return out


def baseline(messages: list[bytes]) -> None:
    for raw in messages:
        to_bytes(sanitize.parse(raw))


def relay(messages: list[bytes]) -> dict[str, int]:
    counts = {"forwarded": 0, "refused": 0}
    for raw in messages:
        msg = sanitize.parse(raw)
        senders = headers.addresses(msg, "From")
        if not senders:
            counts["refused"] += 1
            continue
        route = sanitize.Route(hidden=(senders[0],), alias="q" * 32 + "@relay.test", sender_name="R. P.",
                               platform_name="ReviewHub", recipient="shop@example.net",
                               message_id="<bench@relay.test>", date=datetime(2026, 3, 2))
        try:
            sanitize.forward(msg, route)
            counts["forwarded"] += 1
        except sanitize.Unprocessable:
            counts["refused"] += 1
    return counts


def best_rate(fn: object, messages: list[bytes], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn(messages)  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return len(messages) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args()
    messages = load(args.corpus)
    counts = relay(messages)
    base = best_rate(baseline, messages, args.rounds)
    ours = best_rate(relay, messages, args.rounds)
    result = {"messages": len(messages), **counts, "baseline_msgs_per_s": round(base, 1),
              "sanitise_msgs_per_s": round(ours, 1), "ratio": round(ours / base, 3)}
    print(f"corpus: {len(messages)} messages ({counts['forwarded']} forwarded, {counts['refused']} refused)")
    print(f"baseline parse+serialise: {base:8.1f} msg/s")
    print(f"relay sanitise:           {ours:8.1f} msg/s   ratio {ours / base:.2f}")
    print(json.dumps(result))
    out = HERE / "results" / "sanitize.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
