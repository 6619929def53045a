"""Reading what the relay stored, opened with the process's storage keyring (values in sealed
columns are encrypted: relay.store.sealed_columns)."""

from __future__ import annotations

from relay.store import sealed_columns
from relay.store.models import Business, Case, Delivery, DeliveryBody, Review


def body(row: Delivery) -> bytes:
    """The delivery's body (b"" once purged)."""
    held = DeliveryBody.get_or_none(DeliveryBody.delivery == row.id)
    if held is None:
        return b""
    return bytes(sealed_columns.open_bytes(DeliveryBody, "body", row.message_id, held.body) or b"")


def business_email(case: Case) -> str | None:
    return sealed_columns.open_text(Case, "business_email", case.id, case.business_email)


def reviewer(row: Review) -> tuple[str | None, str | None]:
    """The review's reviewer address and name."""
    return (sealed_columns.open_text(Review, "reviewer_email", row.external_id, row.reviewer_email),
            sealed_columns.open_text(Review, "reviewer_name", row.external_id, row.reviewer_name))


def business_address(row: Business) -> str | None:
    """The business's latest address (each case keeps its own: `business_email`)."""
    return sealed_columns.open_text(Business, "email", row.external_id, row.email)
