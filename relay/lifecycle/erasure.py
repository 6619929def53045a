"""Forgetting a reviewer, as `relay forget` and the API's `POST /v1/erasure` both ask for it."""

from __future__ import annotations

from relay.app import App
from relay.core import addresses
from relay.core.errors import InvalidInput
from relay.core.vocabulary import Event
from relay.store import events
from relay.store.privacy import forget_reviewer


def forget(app: App, address: str) -> dict[str, int]:
    """Erase the reviewer with this address (InvalidInput for something that is no address). The
    event is logged only when a review named the address: an erasure of nobody erased nothing."""
    try:
        valid = addresses.validate(address)
    except addresses.InvalidAddress as exc:
        raise InvalidInput("reviewer_email", str(exc)) from None
    counts = forget_reviewer(valid, app.clock.now())
    if counts["reviews"]:
        events.log(Event.REVIEWER_FORGOTTEN, f"a reviewer was forgotten: {counts['cases']} case(s), "
                   f"{counts['message_bodies']} message bodies erased")
    return counts
