"""The relay's tables (peewee). The same models run on SQLite and PostgreSQL.

Times are naive UTC (see relay.clock). Message bodies live only in `DeliveryBody.body` (the
sanitised copy that is sent); the party's original message is never stored, so nothing stored on the way to
the business holds the reviewer's address.

The columns marked *sealed* hold their values encrypted under the storage key, bound to their
table, column and row (relay.core.sealing; relay.store.sealed_columns lists them and the column
that names each row). They are text (PostgreSQL enforces a varchar's length, and a sealed address
is longer than the address), and nothing may look them up by value: the blind index
`Review.reviewer_digest` finds a reviewer's reviews by address.
"""

from __future__ import annotations

from typing import Any

import peewee as pw

from relay.core.vocabulary import DeliveryState, WebhookState

db = pw.DatabaseProxy()


class BaseModel(pw.Model):
    class Meta:
        database = db


class Setting(BaseModel):
    """Instance-wide values every relay process must share (the signing key)."""

    name = pw.CharField(primary_key=True, max_length=64)
    value = pw.TextField()  # sealed for the signing secret


class Business(BaseModel):
    """A business as the platform last named it; `email` is the address of its latest case (each
    case keeps its own: `Case.business_email`)."""

    id = pw.AutoField()
    external_id = pw.CharField(unique=True, max_length=200)
    name = pw.CharField(max_length=200)
    email = pw.TextField()  # sealed


class Review(BaseModel):
    id = pw.AutoField()
    external_id = pw.CharField(unique=True, max_length=200)
    business = pw.ForeignKeyField(Business, backref="reviews", on_delete="CASCADE")
    reviewer_email = pw.TextField(null=True)  # sealed; null once forgotten
    reviewer_name = pw.TextField()  # sealed
    # keyed hash of the address (relay.core.sealing: blind index; schema version 8): `forget` finds
    # the reviewer's reviews without decrypting every row; null once forgotten
    reviewer_digest = pw.CharField(max_length=64, null=True, index=True)
    origin = pw.CharField(max_length=32)


class Case(BaseModel):
    id = pw.AutoField()
    review = pw.ForeignKeyField(Review, backref="cases", on_delete="CASCADE")
    business = pw.ForeignKeyField(Business, backref="cases", on_delete="CASCADE")
    # The business's address as given when this case was opened (schema version 4): the one that
    # gets the case's forwards and notices and must send its answers. Not `Business.email`, which
    # the next case of the same business overwrites with the address of whoever opened that one.
    business_email = pw.TextField()  # sealed
    state = pw.CharField(max_length=32, index=True)
    # The review's id while the case is not closed: a unique index makes "one open case per
    # review" hold even when two `open-case` calls race.
    open_review_key = pw.CharField(max_length=200, null=True, unique=True)
    locale = pw.CharField(max_length=8)
    requests = pw.TextField(default="")  # comma-separated request kinds
    message = pw.TextField()  # sealed
    opened_at = pw.DateTimeField()
    deadline = pw.DateTimeField(index=True)
    last_activity_at = pw.DateTimeField()
    replied_at = pw.DateTimeField(null=True)
    expired_at = pw.DateTimeField(null=True)
    closed_at = pw.DateTimeField(null=True)
    close_reason = pw.TextField(null=True)
    # The random value behind the case's decline link (relay.core.decline_tokens; schema version 7):
    # the link is the value and its signature, so the value alone finds the case. Null only where a
    # case predates it and the migration has not filled it yet.
    decline_value = pw.CharField(max_length=64, null=True, unique=True)
    declined_at = pw.DateTimeField(null=True)

    class Meta:
        indexes = ((("state", "deadline"), False), (("state", "last_activity_at"), False))


class RelayAddress(BaseModel):
    """One of the case's two addresses; `party` is who writes to it."""

    local_part = pw.CharField(primary_key=True, max_length=64)
    case = pw.ForeignKeyField(Case, backref="addresses", on_delete="CASCADE")
    party = pw.CharField(max_length=16)


class Message(BaseModel):
    """One message a party sent through the relay (metadata only)."""

    id = pw.AutoField()

    case = pw.ForeignKeyField(Case, backref="messages", on_delete="CASCADE")
    queue_id = pw.CharField(unique=True, max_length=32)
    sender = pw.CharField(max_length=16)  # party
    received_at = pw.DateTimeField()
    size = pw.IntegerField()
    original_message_id = pw.TextField(null=True)  # sealed (a Message-ID may hold the address)
    late = pw.BooleanField(default=False)

    class Meta:
        indexes = ((("case", "received_at"), False),)  # the per-conversation rate limit counts by time


class Delivery(BaseModel):
    """The outbox: one message the relay sends to one recipient, and its delivery state."""

    id = pw.AutoField()

    case = pw.ForeignKeyField(Case, backref="deliveries", null=True, on_delete="CASCADE")
    source = pw.ForeignKeyField(Message, backref="deliveries", null=True, on_delete="CASCADE")
    kind = pw.CharField(max_length=32)  # forward, contact_request, ...
    recipient_party = pw.CharField(max_length=16)
    recipient = pw.TextField()  # sealed
    message_id = pw.CharField(max_length=255, unique=True)
    queue_id = pw.CharField(max_length=32, index=True)
    size = pw.IntegerField(default=0)
    state = pw.CharField(max_length=16, default=DeliveryState.QUEUED.value)  # queued, sending, sent, failed
    attempts = pw.IntegerField(default=0)
    created_at = pw.DateTimeField()
    expires_at = pw.DateTimeField()
    next_attempt_at = pw.DateTimeField()
    lease_until = pw.DateTimeField(null=True)
    claim_token = pw.CharField(max_length=32, null=True)
    last_error = pw.TextField(null=True)  # sealed (an error may quote an address)
    sent_at = pw.DateTimeField(null=True)

    class Meta:
        indexes = ((("state", "next_attempt_at"), False),)


class DeliveryBody(BaseModel):
    """A delivery's message, in a table of its own: SQLite writes a row anew on every update, so a
    body in the delivery's row was read and written again by each claim and each result. A row
    here is written once and deleted by the retention purge (or when the reviewer is forgotten);
    the delivery keeps its metadata. The body is the last column, so that SQLite writes a large
    one in place (relay.store.blobs)."""

    delivery = pw.ForeignKeyField(Delivery, primary_key=True, on_delete="CASCADE", backref="bodies")
    message_id = pw.CharField(max_length=255)  # the delivery's: names the row the sealed body is bound to
    created_at = pw.DateTimeField(index=True)  # the delivery's: the retention purge finds old bodies by it
    body = pw.BlobField()  # sealed

    class Meta:
        table_name = "delivery_body"


class Notice(BaseModel):
    """One notice of one kind for one case: the unique index is what makes each notice exactly-once,
    however many processes try to send it at the same moment."""

    id = pw.AutoField()
    case = pw.ForeignKeyField(Case, backref="notices", on_delete="CASCADE", index=False)  # (case, kind) covers it
    kind = pw.CharField(max_length=32, index=True)
    delivery = pw.ForeignKeyField(Delivery, null=True, on_delete="SET NULL")
    created_at = pw.DateTimeField()

    class Meta:
        indexes = ((("case", "kind"), True),)


class Event(BaseModel):
    """What happened to a case, for the platform and for `relay case show`."""

    id = pw.AutoField()

    case = pw.ForeignKeyField(Case, backref="events", null=True, on_delete="CASCADE")
    name = pw.CharField(max_length=64, index=True)
    at = pw.DateTimeField(index=True)
    detail = pw.TextField(default="")

    class Meta:
        indexes = ((("case", "at"), False),)  # a case's timeline, in time order (schema version 2)


class RefusalCount(BaseModel):
    """Refused SMTP transactions per outcome and minute (schema version 3): `relay status` and
    monitoring read them from here, wherever the log goes. Several instances add to one row."""

    minute = pw.DateTimeField()
    outcome = pw.CharField(max_length=40)
    count = pw.IntegerField(default=0)

    class Meta:
        primary_key = pw.CompositeKey("minute", "outcome")


class ApiKey(BaseModel):
    """A platform's key to the HTTP API (schema version 5). Only its SHA-256 is kept: keys are
    random and long, so the digest cannot be searched back, and a stolen database opens no door."""

    id = pw.AutoField()
    name = pw.CharField(max_length=100, unique=True)
    digest = pw.CharField(max_length=64, unique=True)
    created_at = pw.DateTimeField()
    last_used_at = pw.DateTimeField(null=True)
    revoked_at = pw.DateTimeField(null=True)


class IdempotentResponse(BaseModel):
    """The first response to a request with an `Idempotency-Key` (schema version 5), replayed for
    the same key and body within a day. Stored in the transaction that did the work, so a second
    request with the key finds either nothing (and waits on the key's unique index) or this."""

    id = pw.AutoField()
    api_key = pw.ForeignKeyField(ApiKey, on_delete="CASCADE", index=False)
    key = pw.CharField(max_length=200)
    request_digest = pw.CharField(max_length=64)
    status = pw.IntegerField()
    body = pw.TextField()
    created_at = pw.DateTimeField(index=True)

    class Meta:
        indexes = ((("api_key", "key"), True),)


class Webhook(BaseModel):
    """The webhook outbox (schema version 6): one signed POST to the platform per case event that is
    one, written in the transaction that records the event, claimed and retried like a delivery."""

    id = pw.AutoField()
    msg_id = pw.CharField(max_length=64, unique=True)  # the `webhook-id` header, the same on every attempt
    event = pw.ForeignKeyField(Event, null=True, on_delete="SET NULL", index=True)
    case = pw.ForeignKeyField(Case, null=True, on_delete="SET NULL", index=False)
    type = pw.CharField(max_length=40)
    body = pw.TextField()
    state = pw.CharField(max_length=16, default=WebhookState.PENDING.value)
    attempts = pw.IntegerField(default=0)
    created_at = pw.DateTimeField()
    expires_at = pw.DateTimeField()
    next_attempt_at = pw.DateTimeField()
    lease_until = pw.DateTimeField(null=True)
    claim_token = pw.CharField(max_length=32, null=True)
    last_error = pw.TextField(null=True)
    sent_at = pw.DateTimeField(null=True)

    class Meta:
        indexes = ((("state", "next_attempt_at"), False),)


MODELS: list[type[BaseModel]] = [Setting, Business, Review, Case, RelayAddress, Message, Delivery, DeliveryBody,
                                  Notice, Event, RefusalCount, ApiKey, IdempotentResponse, Webhook]


def rows(query: Any) -> list[dict[str, Any]]:
    """A query's results as plain dicts (foreign keys as ids): what the rest of the relay gets."""
    return list(query.dicts())
