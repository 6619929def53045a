"""Text renderings of cases and queues for the CLI (pure: rows in, lines out)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from relay.core.vocabulary import DeliveryState
from relay.store.records import CaseDetail, CaseRow, DeliveryEntry, Record, WebhookEntry


def to_json(value: object) -> str:
    return json.dumps(_plain(value), default=_json_default, ensure_ascii=False, indent=None)


def _plain(value: object) -> object:
    """Records as the dictionaries JSON shows them."""
    if isinstance(value, Record):
        return value.as_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds") + "Z"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def table(rows: Sequence[Record], columns: Sequence[tuple[str, str]]) -> str:
    """Aligned columns with a header line; `columns` is (field, heading)."""
    cells = [[heading.upper() for _, heading in columns]]
    cells += [[_cell(getattr(row, key)) for key, _ in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in cells)


CASE_COLUMNS = (("id", "case"), ("state", "state"), ("review", "review"), ("business", "business"),
                ("opened_at", "opened (UTC)"), ("deadline", "deadline (UTC)"))


def cases_table(rows: Sequence[CaseRow]) -> str:
    return table(rows, CASE_COLUMNS) if rows else "no cases"


def case_timeline(detail: CaseDetail) -> str:
    """A case as a timeline: what happened when, messages and deliveries, no addresses."""
    case = detail.case
    head = [f"case {case.id}  {case.state}",
            f"  review    {case.review} ({case.origin})",
            f"  business  {case.business} ({case.business_name})",
            f"  locale    {case.locale}   requests: {case.requests or '-'}",
            f"  opened    {_cell(case.opened_at)} UTC   deadline {_cell(case.deadline)} UTC"]
    if case.close_reason:
        head.append(f"  closed    {_cell(case.closed_at)} UTC: {case.close_reason}")
    events = [(e.at, f"{e.name:<16} {e.detail}".rstrip()) for e in detail.events]
    for m in detail.messages:
        late = " (late)" if m.late else ""
        events.append((m.received_at, f"{'message':<16} from {m.sender}{late}, {m.size} bytes, "
                                      f"queue id {m.queue_id}"))
    for d in detail.deliveries:
        status = d.state + (f": {d.last_error}" if d.last_error and d.state != DeliveryState.SENT else "")
        events.append((d.sent_at or d.created_at,
                       f"{'delivery':<16} {d.kind} to {d.recipient_party}, {status}, "
                       f"{d.attempts} attempt(s), queue id {d.queue_id}"))
    events.sort(key=lambda item: item[0])
    return "\n".join([*head, "", *(f"{_cell(at)}  {text}" for at, text in events)])


OUTBOX_COLUMNS = (("id", "id"), ("queue_id", "queue id"), ("case", "case"), ("kind", "kind"),
                  ("recipient_party", "to"), ("state", "state"), ("attempts", "tries"),
                  ("next_attempt_at", "next try (UTC)"), ("last_error", "last error"))


def outbox_table(rows: Sequence[DeliveryEntry]) -> str:
    return table(rows, OUTBOX_COLUMNS) if rows else "outbox empty: nothing pending or failed"


# what each count of `relay status` covers, said in its output too
STATUS_WINDOWS = {
    "cases": "every case in the database, by state",
    "outbox": "every delivery still queued, being sent or failed, whatever its age (sent ones are not counted)",
    "oldest_pending": "the oldest queued or sending delivery",
    "last_24h": "events of the 24 hours before now",
    "refusals_last_hour": "refused SMTP transactions of the last 60 minutes (counted to the minute), by outcome",
    "webhooks": "every webhook still pending, being sent or failed, whatever its age (sent ones are not counted), "
                "and whether the endpoint is stopped",
}


def webhooks_text(hooks: dict[str, Any]) -> str:
    """The webhook lines of `relay status` and `relay webhooks`."""
    if not hooks["enabled"]:
        head = "webhooks: off ([webhooks] url is empty)"
    elif hooks["stopped_since"] is not None:
        head = (f"webhooks to {hooks['endpoint']}: STOPPED since {_cell(hooks['stopped_since'])} UTC "
                f"({hooks['stopped_by']}); `relay webhooks enable` resumes")
    else:
        head = f"webhooks to {hooks['endpoint']}: sending"
    lines = [head, f"webhooks (pending, sending and failed, any age): pending {hooks['pending']}, "
                   f"sending {hooks['sending']}, failed {hooks['failed']}"]
    oldest = hooks.get("oldest_pending")
    if isinstance(oldest, WebhookEntry):
        error = f", last error: {oldest.last_error}" if oldest.last_error else ""
        lines.append(f"oldest pending webhook: {oldest.msg_id} ({oldest.type}, case {oldest.case}) since "
                     f"{_cell(oldest.created_at)} UTC, {oldest.attempts} attempt(s){error}")
    return "\n".join(lines)


def status_text(status: dict[str, Any]) -> str:
    cases = ", ".join(f"{k} {v}" for k, v in sorted(status["cases"].items())) or "none"
    queue = ", ".join(f"{k} {v}" for k, v in sorted(status["outbox"].items())) or "empty"
    lines = [f"cases (all):   {cases}", f"outbox (queued, sending and failed, any age):  {queue}"]
    oldest = status.get("oldest_pending")
    if isinstance(oldest, DeliveryEntry):
        error = f", last error: {oldest.last_error}" if oldest.last_error else ""
        lines.append(f"oldest pending: queue id {oldest.queue_id} ({oldest.kind}) since "
                     f"{_cell(oldest.created_at)} UTC, {oldest.attempts} attempt(s){error}")
    else:
        lines.append("oldest pending: none")
    day = status.get("last_24h", {})
    lines.append("last 24 h: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in day.items()))
    refusals = status.get("refusals_last_hour", {})
    lines.append("refusals last hour: " + (", ".join(f"{k} {v}" for k, v in sorted(refusals.items()))
                                           or "none"))
    if "webhooks" in status:
        lines.append(webhooks_text(status["webhooks"]))
    return "\n".join(lines)
