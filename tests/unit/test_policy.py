"""Recipient and sender policy, thread-id mapping and the retry schedule (pure functions)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from relay.core.cases import NotContactable, Standing, accepts_mail, decline_standing, validate_open_case
from relay.core.errors import InvalidInput, Refused
from relay.core.outcomes import Outcome, reply, translate_library_reply
from relay.core.policy import check_recipient, check_recipient_count, check_sender, map_thread_ids
from relay.core.retries import Attempt, Result, next_step, retry_delay
from relay.core.vocabulary import Conversation, Party, State

NOW = datetime(2026, 3, 2, 12, 0)
DOMAIN = "relay.test"
LIFETIME = timedelta(days=30)


def conversation(state: State = State.AWAITING_REPLY, writer: Party = Party.REVIEWER,
                 last: datetime = NOW, answered: bool = False) -> Conversation:
    return Conversation(case_id=1, local_part="a" * 32, state=state, last_activity_at=last, writer=writer,
                        writer_email="max@example.de", writer_name="Max M.", reader_email="shop@example.com",
                        reader_alias="b" * 32 + "@relay.test", locale="de", deadline=NOW + timedelta(days=5),
                        reviewer_answered=answered)


def test_recipient_decisions() -> None:
    conv = conversation()
    address = f"{'a' * 32}@relay.test"
    assert check_recipient(address, DOMAIN, conv, NOW, LIFETIME, "max@example.de") is Outcome.RECIPIENT_OK
    assert check_recipient(address.upper(), DOMAIN, conv, NOW, LIFETIME, "max@example.de") is Outcome.RECIPIENT_OK
    assert check_recipient("x@elsewhere.example", DOMAIN, None, NOW, LIFETIME, "max@example.de") is Outcome.FOREIGN_DOMAIN
    assert check_recipient(address, DOMAIN, None, NOW, LIFETIME, "max@example.de") is Outcome.UNKNOWN_ADDRESS
    assert check_recipient(address, DOMAIN, conv, NOW, LIFETIME, "<>") is Outcome.NULL_SENDER_REFUSED
    assert check_recipient_count(1, 10, accepted=False) is None
    assert check_recipient_count(2, 10, accepted=True) is Outcome.TOO_MANY_RECIPIENTS
    assert check_recipient_count(11, 10, accepted=False) is Outcome.TOO_MANY_RECIPIENTS
    closed = conversation(State.CLOSED)
    assert check_recipient(address, DOMAIN, closed, NOW, LIFETIME, "max@example.de") is Outcome.CONVERSATION_CLOSED
    quiet = conversation(last=NOW - LIFETIME - timedelta(seconds=1))
    assert check_recipient(address, DOMAIN, quiet, NOW, LIFETIME, "max@example.de") is Outcome.CONVERSATION_CLOSED


def test_the_reviewer_opens_the_conversation() -> None:
    """The business's relay address takes mail only once the reviewer has written (in time or
    late); before that, whatever became of the case, the business hears why at RCPT."""
    address = f"{'a' * 32}@relay.test"

    def rcpt(state: State, writer: Party, answered: bool, last: datetime = NOW) -> Outcome:
        return check_recipient(address, DOMAIN, conversation(state, writer, last, answered), NOW, LIFETIME,
                               "shop@example.com")

    for state in (State.AWAITING_REPLY, State.EXPIRED, State.DECLINED):
        assert rcpt(state, Party.BUSINESS, answered=False) is Outcome.REVIEWER_NOT_ANSWERED, state
    for state in (State.REPLIED, State.EXPIRED):  # answered in time, or late after the window
        assert rcpt(state, Party.BUSINESS, answered=True) is Outcome.RECIPIENT_OK, state
    assert rcpt(State.AWAITING_REPLY, Party.REVIEWER, answered=False) is Outcome.RECIPIENT_OK
    # closed (or quiet) says closed to both, answered or not; a decline closes the reviewer's side
    assert rcpt(State.CLOSED, Party.BUSINESS, answered=False) is Outcome.CONVERSATION_CLOSED
    assert rcpt(State.AWAITING_REPLY, Party.BUSINESS, False, NOW - LIFETIME - timedelta(1)) \
        is Outcome.CONVERSATION_CLOSED
    assert rcpt(State.DECLINED, Party.REVIEWER, answered=False) is Outcome.CONVERSATION_CLOSED
    assert rcpt(State.DECLINED, Party.BUSINESS, answered=True) is Outcome.CONVERSATION_CLOSED
    said = reply(Outcome.REVIEWER_NOT_ANSWERED)
    assert (said.code, said.status) == (550, "5.7.1") and "has not answered" in said.text


def test_a_declined_case_takes_no_mail_and_declining_is_open_while_an_answer_is_awaited() -> None:
    assert not accepts_mail(State.DECLINED, NOW, NOW, LIFETIME) and not accepts_mail(State.CLOSED, NOW, NOW, LIFETIME)
    assert accepts_mail(State.EXPIRED, NOW, NOW, LIFETIME)
    deadline = NOW + timedelta(days=1)

    def standing(state: State, answered: bool = False, declined: bool = False, at: datetime = NOW) -> Standing:
        return decline_standing(state, deadline, at, answered, declined)

    assert standing(State.AWAITING_REPLY) is Standing.OPEN
    assert standing(State.AWAITING_REPLY, at=deadline) is Standing.EXPIRED  # before the expiry job ran
    assert standing(State.EXPIRED) is Standing.EXPIRED
    assert standing(State.EXPIRED, answered=True) is Standing.ANSWERED  # a late answer
    assert standing(State.REPLIED, answered=True) is Standing.ANSWERED
    assert standing(State.DECLINED, declined=True) is Standing.DECLINED
    assert standing(State.CLOSED, declined=True) is Standing.DECLINED  # declined, then closed
    assert standing(State.CLOSED) is Standing.CLOSED


def test_refusal_replies_carry_codes_the_design_names() -> None:
    assert (reply(Outcome.FOREIGN_DOMAIN).code, reply(Outcome.FOREIGN_DOMAIN).status) == (550, "5.7.1")
    assert (reply(Outcome.UNKNOWN_ADDRESS).code, reply(Outcome.UNKNOWN_ADDRESS).status) == (550, "5.1.1")
    closed = reply(Outcome.CONVERSATION_CLOSED)
    assert (closed.code, closed.status) == (550, "5.1.1") and "closed" in closed.text
    wrong = reply(Outcome.WRONG_SENDER)
    assert (wrong.code, wrong.status) == (550, "5.7.1") and "address that received" in wrong.text
    assert str(reply(Outcome.TOO_LARGE)).startswith("552 5.3.4 ")
    assert str(reply(Outcome.TEMPORARY_FAILURE)).startswith("451 4.3.0 ")
    assert str(reply(Outcome.UNPROCESSABLE)).startswith("554 5.6.0 ")
    for outcome in Outcome:
        text = str(reply(outcome))
        code, status, sentence = text.split(" ", 2)
        assert code[0] == status[0] and len(sentence) > 10, text
    assert translate_library_reply("552 Error: Too much mail data")[0].startswith("552 5.3.4")
    assert translate_library_reply("250 OK") == ("250 OK", None)


def test_sender_must_be_the_owner_by_envelope_or_from() -> None:
    conv = conversation()
    assert check_sender(conv, "MAX@example.de", [], "forward", NOW) is Outcome.ACCEPTED
    assert check_sender(conv, "bounces+srs=x@forwarder.example", ["max@example.de"], "forward", NOW) is Outcome.ACCEPTED
    assert check_sender(conv, "intruder@evil.example", ["intruder@evil.example"], "forward", NOW) is Outcome.WRONG_SENDER
    assert check_sender(conv, "", [], "forward", NOW) is Outcome.WRONG_SENDER
    expired = conversation(State.EXPIRED)
    assert check_sender(expired, "max@example.de", [], "forward", NOW) is Outcome.ACCEPTED
    assert check_sender(expired, "max@example.de", [], "reject", NOW) is Outcome.LATE_REPLY_REJECTED
    overdue = Conversation(**{**conv.__dict__, "deadline": NOW})
    assert check_sender(overdue, "max@example.de", [], "reject", NOW) is Outcome.LATE_REPLY_REJECTED
    assert check_sender(overdue, "max@example.de", [], "reject", NOW - timedelta(seconds=1)) is Outcome.ACCEPTED
    replied = Conversation(**{**conv.__dict__, "state": State.REPLIED, "deadline": NOW - timedelta(days=1)})
    assert check_sender(replied, "max@example.de", [], "reject", NOW) is Outcome.ACCEPTED
    business_expired = conversation(State.EXPIRED, writer=Party.BUSINESS)
    business_expired = Conversation(**{**business_expired.__dict__, "writer_email": "shop@example.com"})
    assert check_sender(business_expired, "shop@example.com", [], "reject", NOW) is Outcome.ACCEPTED


def test_thread_ids_map_back_to_each_partys_own_ids() -> None:
    known = {
        "<fwd1@relay.test>": (Party.BUSINESS, Party.REVIEWER, "<orig-r1@example.de>"),
        "<fwd2@relay.test>": (Party.REVIEWER, Party.BUSINESS, "<orig-b1@shop.example>"),
        "<notice@relay.test>": (Party.REVIEWER, None, None),
    }
    # the business answers a forward: the reviewer gets their own original id back
    assert map_thread_ids(["<fwd1@relay.test>"], Party.BUSINESS, DOMAIN, known) == ["<orig-r1@example.de>"]
    # the reviewer answers a notice: relay ids stay, foreign ids (which may hold an address) go
    assert map_thread_ids(["<max.mueller@example.de>", "<notice@relay.test>"], Party.REVIEWER, DOMAIN,
                          known) == ["<notice@relay.test>"]
    # a reviewer can never make the relay send the reviewer's id to the business
    assert map_thread_ids(["<fwd1@relay.test>"], Party.REVIEWER, DOMAIN, known) == ["<fwd1@relay.test>"]
    assert map_thread_ids(["<fwd2@relay.test>"], Party.REVIEWER, DOMAIN, known) == ["<orig-b1@shop.example>"]


def test_retry_schedule_backs_off_and_gives_up_at_the_queue_lifetime() -> None:
    assert [retry_delay(n).total_seconds() for n in (1, 2, 3, 4)] == [60, 120, 240, 480]
    assert retry_delay(30) == timedelta(hours=1)
    expires = NOW + timedelta(days=5)
    temporary = Attempt(Result.TEMPORARY, "451 try later")
    step = next_step(temporary, 1, NOW, expires)
    assert step.state == "queued" and step.next_attempt_at == NOW + timedelta(minutes=1)
    late = next_step(temporary, 3, expires - timedelta(seconds=10), expires)
    assert late.state == "failed" and "lifetime" in late.reason and "451" in late.reason
    assert next_step(Attempt(Result.PERMANENT, "550 no such user"), 1, NOW, expires).state == "failed"
    assert next_step(Attempt(Result.SENT, "ok"), 1, NOW, expires).state == "sent"


BASE = {"review_id": "R-1", "business_id": "B-1", "business_name": "Shop", "business_email": "shop@example.com",
        "reviewer_email": "max@example.de", "reviewer_name": "Max M.", "origin": "organic", "locale": "de",
        "requests": ["order_number"], "message": "Hallo"}


@pytest.mark.parametrize(("change", "field"), [
    ({"origin": "viral"}, "origin"),
    ({"locale": "fr"}, "locale"), ({"requests": ["ssn"]}, "request"),
    ({"reviewer_email": "not-an-address"}, "reviewer_email"),
    ({"business_email": "shop@example.com\r\nBcc: x@y.z"}, "business_email"),
    ({"reviewer_name": "Max\r\nBcc: x@y.z"}, "reviewer_name"), ({"business_name": ""}, "business_name"),
    ({"message": "   "}, "message"), ({"reviewer_email": "shop@example.com"}, "reviewer_email"),
])
def test_open_case_input_is_validated(change: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_open_case(**{**BASE, **change})
    assert info.value.field == field
    assert f"--{field.replace('_', '-')}" in str(info.value)


def test_platform_invitations_are_not_contactable() -> None:
    """A refusal (exit 1), not invalid input (exit 2): the input is fine, the review may not be contacted."""
    with pytest.raises(NotContactable, match="invited_platform") as info:
        validate_open_case(**{**BASE, "origin": "invited_platform"})
    assert isinstance(info.value, Refused) and not isinstance(info.value, InvalidInput)
    assert info.value.field == "origin" and info.value.exit_code == 1
    ok = validate_open_case(**{**BASE, "origin": "invited_external", "message": "Zeile 1\nZeile 2"})
    assert ok.message == "Zeile 1\nZeile 2"
