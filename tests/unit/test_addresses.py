"""Relay address tokens, party address validation, log masking and signed VERP senders."""

from __future__ import annotations

import pytest

from relay.core import addresses, verp


def test_tokens_carry_160_random_bits_in_lowercase_base32() -> None:
    tokens = {addresses.new_token() for _ in range(2000)}
    assert len(tokens) == 2000
    for token in list(tokens)[:50]:
        assert len(token) == 32 and token == token.lower() and "+" not in token
        assert addresses.is_token(token)
    assert not addresses.is_token("postmaster")
    assert not addresses.is_token(addresses.new_token()[:-1])


@pytest.mark.parametrize("good", ["max@example.de", "Max.Mueller@Example.DE", "a+b@sub.example.org"])
def test_valid_addresses_are_normalised(good: str) -> None:
    assert addresses.validate(good) == good.lower()


@pytest.mark.parametrize("bad", ["", "max", "max@", "@example.de", "max@localhost", "a b@example.de",
                                 "max@example.de\r\nBcc: x@y.z", "<max@example.de>", "x@exa_mple.de",
                                 "a@b@example.de"])
def test_invalid_addresses_are_refused(bad: str) -> None:
    with pytest.raises(addresses.InvalidAddress):
        addresses.validate(bad)


def test_mask_is_stable_keyed_and_hides_the_address() -> None:
    key = b"k" * 32
    tag = addresses.mask("Max@Example.de", key)
    assert tag == addresses.mask("max@example.de", key)
    assert tag != addresses.mask("max@example.de", b"x" * 32)
    assert "max" not in tag and "example" not in tag


def test_verp_round_trip_and_forgery() -> None:
    key = b"s" * 32
    sender = verp.envelope_sender(42, key, "relay.test")
    local, _, domain = sender.partition("@")
    assert domain == "relay.test" and verp.looks_like_verp(local)
    assert verp.delivery_id(local, key) == 42
    assert verp.delivery_id(local.upper(), key) == 42  # mail systems may change case
    assert verp.delivery_id(local, b"t" * 32) is None
    forged = local.replace("bounce-42-", "bounce-43-")
    assert verp.delivery_id(forged, key) is None
    assert verp.delivery_id("bounce-42-zz", key) is None
    assert len(local.rsplit("-", 1)[1]) * 4 >= 64  # at least 64 bits of signature
