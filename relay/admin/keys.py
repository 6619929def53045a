"""`relay api-key create|list|revoke`: the platform's keys to the HTTP API (relay.core.credentials)."""

from __future__ import annotations

import argparse

from relay import logs
from relay.admin import views
from relay.app import App
from relay.core import credentials
from relay.core.vocabulary import Event
from relay.store import api_keys


def run(app: App, args: argparse.Namespace) -> str:
    """What the command prints."""
    now = app.clock.now()
    if args.action == "create":
        key = credentials.new_api_key()
        api_keys.create(args.name, credentials.digest(key), now)
        logs.event(Event.API_KEY_CREATED, f"API key {args.name} created")
        return key
    if args.action == "revoke":
        changed = api_keys.revoke(args.name, now)
        if changed:
            logs.event(Event.API_KEY_REVOKED, f"API key {args.name} revoked")
        return f"API key {args.name} revoked" if changed else f"API key {args.name} was revoked already"
    entries = api_keys.listing()
    if args.json:
        return views.to_json(entries)
    return views.table(entries, (("name", "name"), ("created_at", "created (UTC)"),
                                 ("last_used_at", "last used (UTC)"), ("revoked_at", "revoked (UTC)"))) \
        if entries else "no API keys (relay api-key create NAME)"
