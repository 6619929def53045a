"""The `relay` command: a thin shell over the relay's functions. Exit codes: 0 done, 1 refused or
failed (the message says why), 2 bad usage or invalid input."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__, config, logs, tail, views
from .app import App
from .cases import InvalidInput, NotContactable, validate_open_case
from .notices import TemplateProblem
from .store import cases as case_store
from .store import outbox as outbox_store
from .store.database import StorageUnavailable


class Failure(Exception):
    """A refusal or failure to report on stderr with exit code `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


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
    tl.add_argument("--json", action="store_true", help="raw JSON lines (for jq)")

    st = sub.add_parser("status", help="cases by state and the delivery queue")
    st.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = config.load(args.config)
        return COMMANDS[args.command](settings, args)
    except config.ConfigError as exc:
        print(f"relay: settings: {exc}", file=sys.stderr)
        return 2
    except InvalidInput as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, NotContactable) else 2
    except (Failure, StorageUnavailable, TemplateProblem) as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return getattr(exc, "code", 1)
    except KeyboardInterrupt:
        return 130


def _open(settings: config.Settings, stderr_log: bool = False) -> App:
    logs.setup(Path(settings["log"]["file"]), settings["log"]["level"],
               stderr=stderr_log and settings["log"]["stderr"])
    return App.open(settings)


def cmd_serve(settings: config.Settings, args: argparse.Namespace) -> int:
    from .server import serve
    app = _open(settings, stderr_log=True)
    try:
        asyncio.run(serve(app))
    except OSError as exc:
        raise Failure(f"cannot listen on {settings['inbound']['host']}:{settings['inbound']['port']}: "
                      f"{exc.strerror or exc}") from None
    finally:
        app.close()
    return 0


def cmd_open_case(settings: config.Settings, args: argparse.Namespace) -> int:
    from .opening import open_case
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
    rows = case_store.case_rows(args.status)
    app.close()
    print(views.to_json(rows) if args.json else views.cases_table(rows))
    return 0


def cmd_case(settings: config.Settings, args: argparse.Namespace) -> int:
    app = _open(settings)
    try:
        if args.action == "close":
            changed = case_store.close_case(args.id, args.reason, app.clock.now())
            if changed:
                logs.event("case.closed", f"case closed{': ' + args.reason if args.reason else ''}",
                           case=args.id)
            print(f"case {args.id} closed" if changed else f"case {args.id} was already closed")
            return 0
        detail = case_store.case_detail(args.id)
        print(views.to_json(detail) if args.json else views.case_timeline(detail))
        return 0
    except case_store.NoSuchCase as exc:
        raise Failure(str(exc)) from None
    finally:
        app.close()


def cmd_run_jobs(settings: config.Settings, args: argparse.Namespace) -> int:
    from . import jobs, transport
    from .outbox import Worker
    app = _open(settings)
    outbound = settings["outbound"]
    worker = Worker(app, transport.from_url(outbound["url"], outbound["timeout"].total_seconds(),
                                            helo=app.domain))
    try:
        counts = asyncio.run(jobs.run_once(app, worker))
    finally:
        app.close()
    for job, numbers in counts.items():
        print(f"{job}: " + ", ".join(f"{k} {v}" for k, v in numbers.items()))
    return 0


def cmd_tail(settings: config.Settings, args: argparse.Namespace) -> int:
    path = Path(settings["log"]["file"])
    keep = tail.Filter(case=args.case, event=args.event)
    show: Callable[[str, dict[str, object]], str] = (
        (lambda raw, _e: raw) if args.json else (lambda _r, entry: tail.render(entry)))
    for raw, entry in tail.last_lines(path, max(0, args.lines), keep):
        print(show(raw, entry))
    if args.follow:
        sys.stdout.flush()
        for raw, entry in tail.follow(path, keep):
            print(show(raw, entry), flush=True)
    return 0


def cmd_status(settings: config.Settings, args: argparse.Namespace) -> int:
    app = _open(settings)
    status = {"cases": case_store.state_counts(), "outbox": outbox_store.state_counts(),
              "oldest_pending": outbox_store.oldest_pending()}
    app.close()
    print(views.to_json(status) if args.json else views.status_text(status))
    return 0


COMMANDS: dict[str, Callable[[config.Settings, argparse.Namespace], int]] = {
    "serve": cmd_serve, "open-case": cmd_open_case, "cases": cmd_cases, "case": cmd_case,
    "run-jobs": cmd_run_jobs, "tail": cmd_tail, "status": cmd_status,
}


if __name__ == "__main__":
    sys.exit(main())
