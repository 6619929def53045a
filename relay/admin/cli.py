"""The `relay` command: a thin shell over the relay's functions. Exit codes: 0 done, 1 refused or
failed (the message says why), 2 bad usage or invalid input."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from relay import config, logs
from relay.admin import guard, options, tail, views, webhook_commands
from relay.app import App, key_source
from relay.core.cases import validate_open_case
from relay.core.errors import Refused, RelayError
from relay.core.vocabulary import DeliveryState, Event
from relay.store import case_records as case_store
from relay.store import database, migrations, refusal_counts
from relay.store import outbox as outbox_store


class Failure(Refused):
    """A command that cannot do what it was asked (a port taken, a delivery that is not pending)."""


def main(argv: Sequence[str] | None = None) -> int:
    guard.restrict_umask()
    args = options.parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `relay serve` with workers starts itself again
    settings: config.Settings | None = None
    try:
        settings = config.load(args.config)
        # even a command that only reads may leave SQLite's -wal and -shm files behind
        guard.refuse_root_in_foreign_storage(settings, args.command)
        return COMMANDS[args.command](settings, args)
    except RelayError as exc:  # every error meant for the person at the command line, mapped once
        return _fail(f"{exc.prefix}{exc}", exc.exit_code)
    except BrokenPipeError:  # `relay case show 7 --json | head`: the reader has all it wanted
        _quiet_stdout()
        return 0
    except OSError as exc:  # a file or folder the relay cannot use: its path, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}", 1)
    except database.StorageError as exc:
        where = f" {database.describe(settings.storage.database)}" if settings else ""
        return _fail(f"database{where}: {_database_error(exc)}", 1)
    except KeyboardInterrupt:
        return 130


def _fail(message: str, code: int) -> int:
    with contextlib.suppress(BrokenPipeError):
        print(f"relay: {message}", file=sys.stderr)
    return code


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush finds no closed pipe to complain about."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _database_error(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    if "readonly database" in text or "read-only" in text:
        text += " (the database file, its -wal and -shm files and their folder must be writable by this user)"
    return text


def _open(settings: config.Settings, serving: bool = False, create: bool = True, rotate: bool = True) -> App:
    """Logging and the database for one command; only `serve` prints to stderr and rotates. A
    command that only reads (`create=False`) creates no log, folder or database: what is missing
    is an error naming it."""
    log = settings.log
    if not create:
        guard.require_existing(settings)
        logs.setup(None, "warning", stderr=False, stream=sys.stderr)
        return App.open(settings, create=False)
    logs.setup(log.file, log.level, stderr=serving and log.stderr,
               rotate_bytes=log.max_bytes if serving and rotate else 0, backups=log.backups,
               stream=sys.stdout if serving else sys.stderr)  # a command's stdout stays its output
    return App.open(settings)


def cmd_serve(settings: config.Settings, args: argparse.Namespace) -> int:
    from relay import libc, loops, workers
    from relay.server import serve
    libc.keep_large_blocks_mapped()  # a long-running process: large messages' memory goes back
    several = settings.inbound.workers > 1
    workers.follow_parent()
    app = _open(settings, serving=True, rotate=not several)  # with workers, the parent rotates the log
    if several and workers.number() is None:
        app.close()  # migrated once, here; each worker opens the database itself
        return workers.supervise(settings, args.argv)
    try:
        loops.run(serve(app))
    except OSError as exc:
        # (uvloop words its errors its own way: the system's sentence for the error number)
        reason = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
        raise Failure(f"cannot listen on {settings.inbound.host}:{settings.inbound.port}: {reason}") from None
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
    app = _open(settings, create=False)
    rows = case_store.case_rows(args.status, args.business, args.review)
    app.close()
    print(views.to_json(rows) if args.json else views.cases_table(rows))
    return 0


def cmd_case(settings: config.Settings, args: argparse.Namespace) -> int:
    app = _open(settings, create=args.action != "show")
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
    if not Path(path).is_file():
        raise guard.MissingStorage(f"log file {path} does not exist (check [log] file; the relay creates it "
                                   "when it first logs)")
    since = datetime.now(UTC).replace(tzinfo=None) - args.since if args.since else None
    keep = tail.Filter(case=None if args.case is None else str(args.case), event=args.event, level=args.level,
                       since=since)
    terminal = sys.stdout.isatty() and not args.json

    def show(raw: str, entry: tail.Entry) -> str:
        if args.json:
            return raw
        text = tail.render(entry)
        return tail.colour(entry, text) if terminal else text

    for raw, entry in tail.last_lines(Path(path), args.lines, keep):
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
        applied = database.migrate(settings.storage.database, key_source(settings))
    finally:
        database.close()
    if applied:
        print(f"migrated to schema version {applied[-1]} (ran {', '.join(str(v) for v in applied)})")
    else:
        print(f"schema version {migrations.CURRENT}: nothing to do")
    return 0


def cmd_status(settings: config.Settings, args: argparse.Namespace) -> int:
    app = _open(settings, create=False)
    try:
        now = app.clock.now()
        day = case_store.event_counts([Event.DELIVERY_FAILED, Event.BOUNCE_RECEIVED, Event.AUTOREPLY_DROPPED],
                                      now - timedelta(days=1))
        status = {"cases": case_store.state_counts(), "outbox": outbox_store.state_counts(),
                  "oldest_pending": outbox_store.oldest_pending(),
                  "last_24h": {"deliveries_failed": day[Event.DELIVERY_FAILED], "bounces": day[Event.BOUNCE_RECEIVED],
                               "autoreplies_dropped": day[Event.AUTOREPLY_DROPPED]},
                  "refusals_last_hour": refusal_counts.since(now - timedelta(hours=1)),
                  "webhooks": webhook_commands.summary(app), "windows": views.STATUS_WINDOWS}
    finally:
        app.close()
    print(views.to_json(status) if args.json else views.status_text(status))
    return 0


def cmd_outbox(settings: config.Settings, args: argparse.Namespace) -> int:
    from relay.outbound.worker import Worker, then_close
    app = _open(settings, create=args.action == "retry")
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
    from relay.lifecycle.erasure import forget
    app = _open(settings)
    try:
        counts = forget(app, args.reviewer_email)
    finally:
        app.close()
    if not counts["reviews"]:
        print("relay: no review names this address: nothing was erased", file=sys.stderr)
    print(views.to_json(counts))
    return 0


def cmd_api_key(settings: config.Settings, args: argparse.Namespace) -> int:
    from relay.admin import keys
    app = _open(settings, create=args.action != "list")
    try:
        print(keys.run(app, args))
    finally:
        app.close()
    return 0


def cmd_webhooks(settings: config.Settings, args: argparse.Namespace) -> int:
    app = _open(settings, create=args.action is not None)
    try:
        text, code = webhook_commands.run(app, args)
    finally:
        app.close()
    print(text)
    return code


def cmd_dkim(settings: config.Settings, args: argparse.Namespace) -> int:
    from relay.admin import dkim_keys
    print(dkim_keys.keygen(settings, args.selector, args.type, args.out))
    return 0


def cmd_storage_key(settings: config.Settings, args: argparse.Namespace) -> int:
    from relay.admin import storage_keys
    if args.action == "generate":
        print(storage_keys.generate(args.path))
        return 0
    logs.setup(settings.log.file, settings.log.level, stderr=False, stream=sys.stderr)
    print(storage_keys.rotate(settings, args.new, args.batch))
    return 0


COMMANDS: dict[str, Callable[[config.Settings, argparse.Namespace], int]] = {
    "serve": cmd_serve, "open-case": cmd_open_case, "cases": cmd_cases, "case": cmd_case,
    "run-jobs": cmd_run_jobs, "tail": cmd_tail, "status": cmd_status, "outbox": cmd_outbox,
    "forget": cmd_forget, "migrate": cmd_migrate, "api-key": cmd_api_key, "webhooks": cmd_webhooks,
    "dkim": cmd_dkim, "storage-key": cmd_storage_key,
}


if __name__ == "__main__":
    sys.exit(main())
