"""One scheduler pass over a small and a large table with the same due work.

Fills a fresh SQLite database with N open cases (and their addresses and sent contact requests),
1,000 of them past their deadline, then times one pass of the jobs (`relay run-jobs` in-process:
expiry with its notices, reply notices, reminders, closing, purge, and the outbox delivering the
1,000 expiry notices to a maildir). The cost should follow the due work, not the table size.

Baseline measured in the same run, next to the database: the file work alone of delivering that
many notices to a maildir (create and write each file in `tmp/`, one sync of the file system, the
renames into `new/`), without the relay: on some machines creating files is slow, and a pass
cannot be faster than its files.

    .venv/bin/python bench/scheduler.py [--sizes 10000 1000000] [--json bench/results/scheduler.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from relay import config, logs  # noqa: E402
from relay.app import App  # noqa: E402
from relay.core import decline_tokens  # noqa: E402
from relay.core.sealing import Place  # noqa: E402
from relay.lifecycle import scheduler as jobs  # noqa: E402
from relay.outbound import durable  # noqa: E402
from relay.outbound import transports as transport  # noqa: E402
from relay.outbound.worker import Worker  # noqa: E402
from relay.store import database, vault  # noqa: E402
from relay.store.models import db  # noqa: E402

DUE = 1000


def fill(size: int, now: datetime) -> None:
    """N cases with their addresses and sent contact requests. The personal data is sealed under the
    storage key as the relay seals it (each value bound to its row), so the pass reads what a
    production database holds; the rows that hold none are made by SQL alone (a recursive CTE)."""
    fmt = "%Y-%m-%d %H:%M:%S"
    past, recent = (now - timedelta(days=6)).strftime(fmt), (now - timedelta(hours=1)).strftime(fmt)
    due, later = now - timedelta(hours=1), (now + timedelta(days=3)).strftime(fmt)
    seq = f"WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < {size}) "
    ring = vault.ring()

    def sealed(table: str, column: str, row: object, value: str) -> str:
        return ring.seal_text(Place(table, column, str(row)), value)

    with db.atomic():
        db.execute_sql("INSERT INTO business (id, external_id, name, email) VALUES (1, 'B-1', 'Bench Shop', ?)",
                       (sealed("business", "email", "B-1", "shop@bench.example"),))
        for first in range(1, size + 1, 10_000):
            numbers = range(first, min(size, first + 9_999) + 1)
            db.cursor().executemany(
                "INSERT INTO review (id, external_id, business_id, reviewer_email, reviewer_name, reviewer_digest, "
                "origin) VALUES (?, ?, 1, ?, ?, ?, 'organic')",
                [(x, f"R-{x}", sealed("review", "reviewer_email", f"R-{x}", f"r{x}@example.org"),
                  sealed("review", "reviewer_name", f"R-{x}", "R."), ring.digest(f"r{x}@example.org"))
                 for x in numbers])
            db.cursor().executemany(  # each due case with a deadline of its own, as in real life
                'INSERT INTO "case" (id, review_id, business_id, business_email, state, open_review_key, locale, '
                "requests, message, opened_at, deadline, last_activity_at, decline_value) "
                "VALUES (?, ?, 1, ?, 'awaiting_reply', ?, 'de', 'order_number', ?, ?, ?, ?, ?)",
                [(x, x, sealed("case", "business_email", x, "shop@bench.example"), f"R-{x}",
                  sealed("case", "message", x, "Bestellnummer?"), past,
                  (due - timedelta(seconds=x)).strftime(fmt) if x <= DUE else later, recent, decline_tokens.new_value())
                 for x in numbers])
            db.cursor().executemany(
                "INSERT INTO delivery (case_id, kind, recipient_party, recipient, message_id, queue_id, size, "
                "state, attempts, created_at, expires_at, next_attempt_at, sent_at) "  # bodies purged long ago
                "VALUES (?, 'contact_request', 'reviewer', ?, ?, ?, 0, 'sent', 1, ?, ?, ?, ?)",
                [(x, sealed("delivery", "recipient", f"<{x}@bench>", f"r{x}@example.org"), f"<{x}@bench>",
                  f"{x:012X}", past, past, past, past) for x in numbers])
        for party, prefix in (("reviewer", "r"), ("business", "b")):
            db.execute_sql(seq + "INSERT INTO relayaddress (local_part, case_id, party) "
                           f"SELECT '{prefix}' || printf('%031d', x), x, '{party}' FROM seq")


def file_floor(folder: Path, sizes: list[int]) -> float:
    """Seconds for the file work of a maildir delivery of files of `sizes`, without the relay."""
    for sub in ("tmp", "new"):
        (folder / sub).mkdir(parents=True)
    names = [f"{number:010d}.floor" for number in range(len(sizes))]
    started = time.perf_counter()
    for name, size in zip(names, sizes, strict=True):
        with open(folder / "tmp" / name, "wb") as handle:
            handle.write(os.urandom(size))
    durable.sync_files([folder / "tmp" / name for name in names])
    for name in names:
        os.replace(folder / "tmp" / name, folder / "new" / name)
    durable.sync_folder(folder / "new")
    return time.perf_counter() - started


def one(size: int, folder: Path) -> dict[str, float]:
    settings = config.from_mapping({
        "relay": {"domain": "relay.test", "templates": str(HERE.parent / "templates")},
        "storage": {"database": f"sqlite:///{folder}/relay.db"},
        "outbound": {"url": f"maildir:{folder}/outbox"},
        "log": {"file": str(folder / "relay.log"), "stderr": False},
    }, folder, {})
    logs.setup(settings.log.file, "info", stderr=False)
    app = App.open(settings)
    started = time.perf_counter()
    fill(size, datetime.now(UTC).replace(tzinfo=None))
    filled = time.perf_counter() - started
    worker = Worker(app, transport.from_url(settings.outbound.url, 30, helo="relay.test"))
    started = time.perf_counter()
    counts = asyncio.run(jobs.run_once(app, worker))
    elapsed = time.perf_counter() - started
    again = time.perf_counter()
    second = asyncio.run(jobs.run_once(app, worker))
    idle = time.perf_counter() - again
    app.close()
    database.close()
    if counts["cases"]["expired"] != DUE or counts["outbox"]["sent"] != DUE or second["cases"]["expired"]:
        sys.exit(f"bench: unexpected pass results {counts} / {second}")
    delivered = [file.stat().st_size for file in (folder / "outbox" / "new").iterdir()]
    floor = file_floor(folder / "floor", delivered)
    return {"cases": size, "fill_s": round(filled, 1), "pass_s": round(elapsed, 3), "idle_pass_s": round(idle, 3),
            "maildir_files_alone_s": round(floor, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--json", type=Path, default=HERE / "results" / "scheduler.json")
    args = parser.parse_args()
    results = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="relay-sched-") as tmp:
            results.append(one(size, Path(tmp)))
            run = results[-1]
            print(f"{size:>9} cases: pass {run['pass_s']:.3f} s with {DUE} due (the file work of its maildir "
                  f"delivery alone: {run['maildir_files_alone_s']:.3f} s); nothing due: {run['idle_pass_s']:.3f} s; "
                  f"filled in {run['fill_s']} s", flush=True)
    if len(results) > 1:
        print(f"ratio largest/smallest pass: {results[-1]['pass_s'] / results[0]['pass_s']:.2f}; "
              f"idle passes: {results[-1]['idle_pass_s'] / max(results[0]['idle_pass_s'], 1e-6):.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"measured": datetime.now(UTC).isoformat(timespec="seconds"), "due": DUE,
                                     "runs": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
