"""Peak memory of `relay serve` while it accepts and forwards 25 MB messages, one, then eight at once.

Starts `relay serve` (SQLite, delivering to Postfix's smtp-sink), reads its resident set size at
rest, sends the 25 MB answers with an attachment (each over its own connection, all at once),
waits until every forward has been delivered and reads the peak resident set size (VmHWM) of the
process. Baseline: the same process at rest. A fresh relay for each count.

    .venv/bin/python bench/memory.py [--megabytes 25] [--at-once 1 8] [--json bench/results/memory.json]
"""

from __future__ import annotations

import argparse
import json
import os
import smtplib
import tempfile
import threading
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from acceptance import (
    RELAY,
    REPO,
    REVIEWER,
    ensure_tools,
    free_port,
    open_bench_case,
    process,
    relay_settings,
    smtp_sink,
)


def rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def answer(megabytes: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = REVIEWER
    msg["Subject"] = "Rechnung"
    msg.set_content("Die Rechnung als Beleg anbei.")
    msg.add_attachment(os.urandom(megabytes * 1024 * 1024 * 3 // 4), maintype="application",
                       subtype="pdf", filename="rechnung.pdf")  # base64 makes it the full size
    # CRLF line ends, as SMTP has them (smtplib sends bytes as they are: with bare LF, aiosmtpd
    # reads the whole message as one line and holds that line twice)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def measure(megabytes: int, at_once: int) -> dict[str, float]:
    """A fresh `relay serve` at rest, then `at_once` answers sent together over their own
    connections; its peak RSS once every forward is delivered."""
    with tempfile.TemporaryDirectory(prefix="relay-mem-") as tmp:
        folder = Path(tmp)
        sink_port, port = free_port(), free_port()
        settings = relay_settings(folder, port, sink_port, f"sqlite:///{folder}/relay.db",
                                  inbound=f"max_message_bytes = {(megabytes + 10) * 1024 * 1024}\n")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        raw = answer(megabytes)
        with process(smtp_sink(sink_port), sink_port, cwd=folder), \
                process([*RELAY, "--config", str(settings), "serve"], port, cwd=folder, env=env) as relay:
            recipient = open_bench_case(settings, "R-mem", env)
            time.sleep(1.0)
            at_rest = rss_mb(relay.pid, "VmRSS")

            def send() -> None:
                with smtplib.SMTP("127.0.0.1", port, timeout=300) as client:
                    client.sendmail(REVIEWER, [recipient], raw)

            started = time.perf_counter()
            senders = [threading.Thread(target=send) for _ in range(at_once)]
            for sender in senders:
                sender.start()
            for sender in senders:
                sender.join(600)
            accepted = time.perf_counter() - started
            deadline = time.monotonic() + 300
            log = folder / "relay.log"
            while time.monotonic() < deadline and log.read_text().count("forward delivered") < at_once:
                time.sleep(0.2)
            if log.read_text().count("forward delivered") != at_once:
                raise SystemExit(f"bench: {at_once} answers sent, not all forwarded; see {log}")
            peak = rss_mb(relay.pid, "VmHWM")
    return {"at_once": at_once, "message_mb": round(len(raw) / 2**20, 1), "rss_at_rest_mb": round(at_rest, 1),
            "peak_rss_mb": round(peak, 1), "accept_s": round(accepted, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=25)
    parser.add_argument("--at-once", type=int, nargs="+", default=[1, 8],
                        help="answers sent together, one fresh relay per count (default: 1, then 8)")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "memory.json")
    args = parser.parse_args()
    ensure_tools()
    runs = [measure(args.megabytes, count) for count in args.at_once]
    for run in runs:
        print(f"{run['at_once']} x {run['message_mb']} MB accepted in {run['accept_s']:.2f} s; RSS at rest "
              f"{run['rss_at_rest_mb']:.0f} MB, peak {run['peak_rss_mb']:.0f} MB")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"measured": datetime.now(UTC).isoformat(timespec="seconds"), "runs": runs},
                                    indent=2) + "\n")


if __name__ == "__main__":
    main()
