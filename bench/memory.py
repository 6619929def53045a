"""Peak memory of `relay serve` while it accepts and forwards one 25 MB message.

Starts `relay serve` (SQLite, delivering to Postfix's smtp-sink), reads its resident set size at
rest, sends a 25 MB answer with an attachment, waits until the forward has been delivered and
reads the peak resident set size (VmHWM) of the process. Baseline: the same process at rest.

    .venv/bin/python bench/memory.py [--megabytes 25] [--json bench/results/memory.json]
"""

from __future__ import annotations

import argparse
import json
import os
import smtplib
import tempfile
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=25)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "memory.json")
    args = parser.parse_args()
    ensure_tools()
    with tempfile.TemporaryDirectory(prefix="relay-mem-") as tmp:
        folder = Path(tmp)
        sink_port, port = free_port(), free_port()
        settings = relay_settings(folder, port, sink_port, f"sqlite:///{folder}/relay.db",
                                  inbound=f"max_message_bytes = {(args.megabytes + 10) * 1024 * 1024}\n")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with process(smtp_sink(sink_port), sink_port, cwd=folder), \
                process([*RELAY, "--config", str(settings), "serve"], port, cwd=folder, env=env) as relay:
            recipient = open_bench_case(settings, "R-mem", env)
            time.sleep(1.0)
            at_rest = rss_mb(relay.pid, "VmRSS")
            msg = EmailMessage()
            msg["From"] = REVIEWER
            msg["Subject"] = "Rechnung"
            msg.set_content("Die Rechnung als Beleg anbei.")
            msg.add_attachment(os.urandom(args.megabytes * 1024 * 1024 * 3 // 4), maintype="application",
                               subtype="pdf", filename="rechnung.pdf")  # base64 makes it the full size
            raw = msg.as_bytes()
            started = time.perf_counter()
            with smtplib.SMTP("127.0.0.1", port, timeout=300) as client:
                client.sendmail(REVIEWER, [recipient], raw)
            accepted = time.perf_counter() - started
            deadline = time.monotonic() + 120
            log = folder / "relay.log"
            while time.monotonic() < deadline and "forward delivered" not in log.read_text():
                time.sleep(0.2)
            peak = rss_mb(relay.pid, "VmHWM")
    report = {"measured": datetime.now(UTC).isoformat(timespec="seconds"), "message_mb": round(len(raw) / 2**20, 1),
              "rss_at_rest_mb": round(at_rest, 1), "peak_rss_mb": round(peak, 1), "accept_s": round(accepted, 2)}
    print(f"message {report['message_mb']} MB accepted in {accepted:.2f} s; RSS at rest {at_rest:.0f} MB, "
          f"peak {peak:.0f} MB (ratio {peak / at_rest:.1f})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
