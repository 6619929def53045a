"""Decline tokens (pure): a token finds its case's value only under the instance's key, and a
forged, tampered, truncated or swapped one finds nothing; the token names nothing about the case."""

from __future__ import annotations

import re

import pytest

from relay.core import decline_tokens

KEY = b"k" * 32


def test_a_token_gives_back_its_value_and_nothing_else() -> None:
    value = decline_tokens.new_value()
    token = decline_tokens.token(value, KEY)
    assert decline_tokens.value_of(token, KEY) == value
    assert re.fullmatch(r"[a-z2-7]{32}-[a-z2-7]{24}", token)  # URL-safe as it stands, case-insensitive mail
    assert decline_tokens.token(value, KEY) == token  # one per case: the same value, the same link
    assert decline_tokens.link("https://relay.example/", value, KEY) == f"https://relay.example/decline/{token}"


def test_values_are_random_and_name_nothing() -> None:
    values = {decline_tokens.new_value() for _ in range(1000)}
    assert len(values) == 1000
    # made from `secrets` alone: nothing of a case (its id, its addresses) goes in
    assert all(len(v) == 32 for v in values)


def test_forged_tampered_and_other_cases_tokens_are_refused() -> None:
    first, second = decline_tokens.new_value(), decline_tokens.new_value()
    token = decline_tokens.token(first, KEY)
    value, signature = token.split("-")
    other_signature = decline_tokens.token(second, KEY).split("-")[1]
    flipped = value[:-1] + ("a" if value[-1] != "a" else "b")
    refused = {
        "another case's signature": f"{value}-{other_signature}",
        "another case's value": f"{second}-{signature}",
        "a value changed by one letter": f"{flipped}-{signature}",
        "a signature changed by one letter": f"{value}-{signature[:-1]}{'a' if signature[-1] != 'a' else 'b'}",
        "no signature": value,
        "a cut signature": token[:-1],
        "upper case": token.upper(),
        "extra text": token + "x",
        "a guess": "a" * 32 + "-" + "a" * 24,
        "empty": "",
        "a path": f"../{token}",
    }
    for what, candidate in refused.items():
        assert decline_tokens.value_of(candidate, KEY) is None, what
    assert decline_tokens.value_of(token, b"another instance's key") is None


def test_only_values_get_tokens() -> None:
    with pytest.raises(ValueError):
        decline_tokens.token("42", KEY)
