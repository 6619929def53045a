"""Sealed values: bound to their place, opened only by their key, and a blind index that finds
every spelling of an address without revealing it."""

from __future__ import annotations

import base64

import pytest

from relay.core import sealing
from relay.core.sealing import Keyring, Place

KEY, OTHER = b"k" * 32, b"o" * 32
HERE = Place("review", "reviewer_email", "R-1")


def test_a_sealed_value_opens_where_it_was_sealed_and_names_its_key() -> None:
    ring = Keyring(KEY)
    sealed = ring.seal_text(HERE, "max.mueller@example.de")
    assert "max" not in sealed and sealed.startswith(f"s1.{sealing.key_id(KEY)}.")
    assert sealing.text_id(sealed) == sealing.key_id(KEY)
    assert ring.open_text(HERE, sealed) == "max.mueller@example.de"
    assert ring.seal_text(HERE, "same") != ring.seal_text(HERE, "same")  # a nonce of its own each time
    body = ring.seal_bytes(Place("delivery", "body", "<m@relay.test>"), b"Hallo Welt")
    assert b"Hallo" not in body and sealing.binary_id(body) == sealing.key_id(KEY)
    assert ring.open_bytes(Place("delivery", "body", "<m@relay.test>"), body) == b"Hallo Welt"


@pytest.mark.parametrize("elsewhere", [Place("review", "reviewer_email", "R-2"),   # another row
                                       Place("review", "reviewer_name", "R-1"),    # another column
                                       Place("business", "reviewer_email", "R-1")])  # another table
def test_a_value_moved_elsewhere_does_not_open(elsewhere: Place) -> None:
    ring = Keyring(KEY)
    with pytest.raises(sealing.Tampered):
        ring.open_text(elsewhere, ring.seal_text(HERE, "max.mueller@example.de"))


def test_a_changed_value_or_a_value_in_the_clear_does_not_open() -> None:
    ring = Keyring(KEY)
    sealed = ring.seal_text(HERE, "max.mueller@example.de")
    flipped = sealed[:-3] + ("A" if sealed[-3] != "A" else "B") + sealed[-2:]
    with pytest.raises(sealing.Tampered):
        ring.open_text(HERE, flipped)
    with pytest.raises(sealing.Tampered):
        ring.open_text(HERE, "max.mueller@example.de")


def test_only_a_keyring_with_the_key_opens_it() -> None:
    sealed = Keyring(KEY).seal_text(HERE, "x")
    with pytest.raises(sealing.UnknownKey):
        Keyring(OTHER).open_text(HERE, sealed)
    both = Keyring(OTHER, [KEY])  # a rotation: the new key seals, the old one still opens
    assert both.open_text(HERE, sealed) == "x"
    assert sealing.text_id(both.seal_text(HERE, "y")) == sealing.key_id(OTHER)
    assert "k" * 10 not in repr(both)


def test_without_a_key_values_stay_as_they_are() -> None:
    off = Keyring(None)
    assert off.seal_text(HERE, "max@example.de") == "max@example.de"
    assert off.open_bytes(HERE, b"body") == b"body"


def test_the_blind_index_finds_every_spelling_and_depends_on_the_key() -> None:
    ring = Keyring(KEY)
    assert ring.digest("Anna@Bücher.example") == ring.digest("anna@xn--bcher-kva.example") == ring.digest(
        " anna@BÜCHER.example ")
    assert ring.digest("anna@bücher.example") != ring.digest("anne@bücher.example")
    assert ring.digest("anna@bücher.example") != Keyring(OTHER).digest("anna@bücher.example")
    assert Keyring(OTHER, [KEY]).digests("anna@bücher.example")[1] == ring.digest("anna@bücher.example")


@pytest.mark.parametrize(("text", "problem"), [("", "holds 0 bytes"), ("not base64!", "is not base64"),
                                               (base64.b64encode(b"x" * 16).decode(), "holds 16 bytes")])
def test_a_key_file_must_hold_32_bytes_of_base64(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        sealing.parse_key(text)
    assert len(sealing.parse_key(sealing.new_key_text())) == 32
