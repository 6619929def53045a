"""The `relay` command: a thin shell over the relay's functions. Exit codes: 0 done, 1 refused or
failed (the message says why), 2 bad usage or invalid input."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from relay import __version__, config, config_values, logs
from relay.admin import tail, views
from relay.app import App
from relay.core.cases import validate_open_case
from relay.core.errors import InvalidInput, Refused, RelayError
from relay.core.vocabulary import DeliveryState, Event
from relay.store import case_records as case_store
from relay.store import database, migrations
from relay.store import outbox as outbox_store


class Failure(Refused):
    """A command that cannot do what it was asked (a port taken, a delivery that is not pending)."""


class BadOption(InvalidInput):
    """An option's value the command cannot use; the message names the option."""

    def __init__(self, message: str) -> None:
        super().__init__("option", message, message)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay", description="Review-contact mail relay.")
    parser.add_argument("--config", metavar="PATH",
                        help="settings file (default: $RELAY_CONFIG or ./settings.toml)")
    parser.add_argument("--version", action="version", version=f"relay {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("serve", help="run inbound SMTP, the outbox worker and the scheduler")

    oc = sub.add_parser("open-case", help="open a case and queue the contact request to the reviewer")
    for name in ("review-id", "business-id", "business-name", "business-email", "reviewer-email",
                 "reviewer-name", "message"):
        oc.add_argument(f"--{name}", required=True)
    oc.add_argument("--origin", default="organic", help="organic | invited_external | invited_platform")
    oc.add_argument("--locale", default="de", help="de | en")
    oc.add_argument("--request", action="append", default=[],
                    help="what the business asks for: order_number | reference | contact_details")

    cs = sub.add_parser("cases", help="list cases")
    cs.add_argument("--status", help="awaiting_reply | replied | expired | closed")
    cs.add_argument("--business", help="only this business id")
    cs.add_argument("--review", help="only this review id")
    cs.add_argument("--json", action="store_true")

    case = sub.add_parser("case", help="show or close one case")
    case_sub = case.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = case_sub.add_parser("show", help="a case's timeline")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")
    close = case_sub.add_parser("close", help="close a case; its relay addresses stop accepting mail")
    close.add_argument("id", type=int)
    close.add_argument("--reason", default=None)

    sub.add_parser("run-jobs", help="one scheduler pass (deliveries due now), then exit")

    tl = sub.add_parser("tail", help="the relay log, readable or raw")
    tl.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    tl.add_argument("-n", "--lines", type=int, default=20, help="how many past lines (default 20)")
    tl.add_argument("--case", help="only lines of this case")
    tl.add_argument("--event", help="only events starting with this name (e.g. delivery)")
    tl.add_argument("--level", choices=list(tail.LEVELS), help="only this level and above")
    tl.add_argument("--since", metavar="DURATION", help="only the last DURATION (10m, 2h, 1d)")
    tl.add_argument("--json", action="store_true", help="raw JSON lines (for jq)")

    ob = sub.add_parser("outbox", help="pending and failed deliveries; retry one now")
    ob.add_argument("--json", action="store_true")
    ob_sub = ob.add_subparsers(dest="action", metavar="ACTION")
    retry = ob_sub.add_parser("retry", help="send one delivery again now")
    retry.add_argument("id", type=int)

    fg = sub.add_parser("forget", help="erase a reviewer's address and their message bodies")
    fg.add_argument("--reviewer-email", required=True)

    sub.add_parser("migrate", help="bring the database's schema to this version (serve does it too)")

    st = sub.add_parser("status", help="cases by state and the delivery queue")
    st.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = config.load(args.config)
        return COMMANDS[args.command](settings, args)
    except RelayError as exc:  # every error meant for the person at the command line, mapped once
        print(f"relay: {exc.prefix}{exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _open(settings: config.Settings, serving: bool = False) -> App:
    """Logging and the database for one command; only `serve` prints to stderr and rotates."""
    log = settings.log
    logs.setup(log.file, log.level, stderr=serving and log.stderr,
               rotate_bytes=log.max_bytes if serving else 0, backups=log.backups,
               stream=sys.stdout if serving else sys.stderr)  # a command's stdout stays its output
    return App.open(settings)


def cmd_serve(settings: config.Settings, args: argparse.Namespace) -> int:
    from relay import libc
    from relay.server import serve
    libc.keep_large_blocks_mapped()  # a long-running process: large messages' memory goes back
    app = _open(settings, serving=True)
    try:
        asyncio.run(serve(app))
    except OSError as exc:
        raise Failure(f"cannot listen on {settings.inbound.host}:{settings.inbound.port}: "
                      f"{exc.strerror or exc}") from None
    finally:
        app.close()
    return 0


def cmd_open_case(settings: config.Settings, args: argparse.Namespace) -> int:
    from relay.lifecycle.opening import open_case
    request = validate_open_case(
        review_id=args.review_id, business_id=args.business_id, business_name=args.business_name,
        business_email=args.business_email, reviewer_email=args.reviewer_email,
        reviewer_name=args.reviewer_name, origin=args.origin, locale=args.locale,
        requests=args.request, message=args.message)
    app = _open(settings)
    try:
        opened = open_case(app, request)
    except case_store.CaseAlreadyOpen as exc:
        raise Failure(f"{exc}; close it first (relay case close ID)") from None
    finally:
        app.close()
    print(views.to_json(opened.as_json()))
    return 0


def cmd_cases(settings: config.Settings, args: argparse.Namespace) -> int:
    app = _open(settings)
    rows = case_store.case_rows(args.status, args.business, args.review)
    app.close()
    print(views.to_json(rows) if args.json else views.cases_table(rows))
    return 0


def cmd_case(settings: config.Settings, args: argparse.Namespace) -> int:
    app = _open(settings)
    try:
        if args.action == "close":
            changed = case_store.close_case(args.id, args.reason, app.clock.now())
            print(f"case {args.id} closed" if changed else f"case {args.id} was already closed")
            return 0
        detail = case_store.case_detail(args.id)
        print(views.to_json(detail) if args.json else views.case_timeline(detail))
        return 0
    finally:
        app.close()


def cmd_run_jobs(settings: config.Settings, args: argparse.Namespace) -> int:
    from relay.lifecycle import scheduler as jobs
    from relay.outbound.worker import Worker, then_close
    app = _open(settings)
    worker = Worker.for_app(app)
    try:
        counts = asyncio.run(then_close(worker, jobs.run_once(app, worker)))
    finally:
        app.close()
    for job, numbers in counts.items():
        print(f"{job}: " + ", ".join(f"{k} {v}" for k, v in numbers.items()))
    return 0


def cmd_tail(settings: config.Settings, args: argparse.Namespace) -> int:
    path = settings.log.file
    if path is None:
        raise Failure("the log goes to stdout ([log] file = \"-\"); read it where stdout is collected")
    since = None
    if args.since:
        try:
            since = datetime.now(UTC).replace(tzinfo=None) - config_values.parse_duration(args.since)
        except ValueError as exc:
            raise BadOption(f"--since: {exc}") from None
    keep = tail.Filter(case=args.case, event=args.event, level=args.level, since=since)
    terminal = sys.stdout.isatty() and not args.json

    def show(raw: str, entry: tail.Entry) -> str:
        if args.json:
            return raw
        text = tail.render(entry)
        return tail.colour(entry, text) if terminal else text

    for raw, entry in tail.last_lines(Path(path), max(0, args.lines), keep):
        print(show(raw, entry))
    if args.follow:
        sys.stdout.flush()
        for raw, entry in tail.follow(Path(path), keep):
            print(show(raw, entry), flush=True)
    return 0


def cmd_migrate(settings: config.Settings, args: argparse.Namespace) -> int:
    """Migrate explicitly (before starting new code on several hosts, say) and say what happened."""
    logs.setup(settings.log.file, settings.log.level, stderr=False, stream=sys.stderr)
    try:
        applied = database.migrate(settings.storage.database)
    finally:
        database.close()
    if applied:
        print(f"migrated to schema version {applied[-1]} (ran {', '.join(str(v) for v in applied)})")
    else:
        print(f"schema version {migrations.CURRENT}: nothing to do")
    return 0


def cmd_status(settings: config.Settings, args: argparse.Namespace) -> int:
    app = _open(settings)
    try:
        now = app.clock.now()
        day = case_store.event_counts([Event.DELIVERY_FAILED, Event.BOUNCE_RECEIVED, Event.AUTOREPLY_DROPPED],
                                      now - timedelta(days=1))
        status = {"cases": case_store.state_counts(), "outbox": outbox_store.state_counts(),
                  "oldest_pending": outbox_store.oldest_pending(),
                  "last_24h": {"deliveries_failed": day[Event.DELIVERY_FAILED], "bounces": day[Event.BOUNCE_RECEIVED],
                               "autoreplies_dropped": day[Event.AUTOREPLY_DROPPED]},
                  "refusals_last_hour": _refusals(settings, now - timedelta(hours=1))}
    finally:
        app.close()
    print(views.to_json(status) if args.json else views.status_text(status))
    return 0


def _refusals(settings: config.Settings, since: datetime) -> dict[str, int]:
    """Refused SMTP transactions by reason, read from the log (refusals are not stored)."""
    path = settings.log.file
    if path is None:
        return {}
    counts: dict[str, int] = {}
    for _, entry in tail.last_lines(Path(path), 1_000_000, tail.Filter(event="inbound.", since=since)):
        outcome = str(entry.get("outcome") or "")
        if str(entry.get("reply", ""))[:1] in ("4", "5") and outcome:
            counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def cmd_outbox(settings: config.Settings, args: argparse.Namespace) -> int:
    from relay.outbound.worker import Worker, then_close
    app = _open(settings)
    try:
        if args.action != "retry":
            rows = outbox_store.listing([DeliveryState.QUEUED, DeliveryState.SENDING, DeliveryState.FAILED])
            print(views.to_json(rows) if args.json else views.outbox_table(rows))
            return 0
        if not outbox_store.retry_now(args.id, app.clock.now(), app.settings.outbound.max_queue_lifetime):
            raise Failure(f"delivery {args.id} is not pending or failed (or its body was purged)")
        logs.event(Event.DELIVERY_RETRY, f"delivery {args.id} retried by an admin")
        worker = Worker.for_app(app)
        counts = asyncio.run(then_close(worker, worker.run_pass(only=args.id)))
        if counts.sent or counts.failed or counts.deferred:
            state: str = DeliveryState.SENT if counts.sent else (
                DeliveryState.FAILED if counts.failed else "deferred (see relay outbox)")
        else:  # a running relay's worker took it first: its outcome is the answer
            state = _settled(app, args.id)
        print(f"delivery {args.id}: {state}")
        return 0 if state == DeliveryState.SENT else 1
    finally:
        app.close()


def _settled(app: App, delivery_id: int, wait: float = 30.0) -> str:
    """The state another process's attempt left a delivery in (waiting at most `wait` seconds)."""
    deadline = time.monotonic() + wait
    while True:
        facts = outbox_store.delivery_facts(delivery_id)
        state = facts.state if facts else DeliveryState.FAILED
        if state not in (DeliveryState.QUEUED, DeliveryState.SENDING) or time.monotonic() > deadline:
            return state if state != DeliveryState.QUEUED else "deferred (see relay outbox)"
        time.sleep(0.2)


def cmd_forget(settings: config.Settings, args: argparse.Namespace) -> int:
    from relay.store.privacy import forget_reviewer
    app = _open(settings)
    try:
        counts = forget_reviewer(args.reviewer_email, app.clock.now())
    finally:
        app.close()
    logs.event(Event.REVIEWER_FORGOTTEN, f"a reviewer was forgotten: {counts['cases']} case(s), "
               f"{counts['message_bodies']} message bodies erased")
    print(views.to_json(counts))
    return 0


COMMANDS: dict[str, Callable[[config.Settings, argparse.Namespace], int]] = {
    "serve": cmd_serve, "open-case": cmd_open_case, "cases": cmd_cases, "case": cmd_case,
    "run-jobs": cmd_run_jobs, "tail": cmd_tail, "status": cmd_status, "outbox": cmd_outbox,
    "forget": cmd_forget, "migrate": cmd_migrate,
}


if __name__ == "__main__":
    sys.exit(main())
