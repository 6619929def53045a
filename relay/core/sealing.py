"""Sealing values for the database: authenticated encryption under the storage key, and blind
indexes that find an address without decrypting anything.

A sealed value is AES-256-GCM under one key of the keyring, with a random nonce of its own and,
as associated data, the place it belongs to: table, column and the row's key. Moved to another
row or column, it no longer opens (`Tampered`): copying ciphertexts around gives a database writer
no value in a place where the relay would use it. (What binds rows to each other, such as which
review a case belongs to, is not sealed; sealing keeps values secret, it does not authenticate the
database's structure.) The envelope names the key by a short id
derived from it, so a keyring of the old and the new key opens both while a rotation runs, and a
rotation can find what is still under the old key by its first characters:

    text:   s1.<key id, 8 hex>.<base64url of nonce + ciphertext>
    binary: 0xC5 0x01 <key id, 4 bytes> <nonce> <ciphertext>   (message bodies: no base64 growth)

A keyring without a key (`[storage] key = "off"`, for measuring what encryption costs) stores
values as they are; the relay refuses to start that way on a database that was ever sealed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from relay.core import addresses

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16  # AES-GCM's authentication tag, after the ciphertext
TEXT_PREFIX = "s1."
BINARY_PREFIX = b"\xc5\x01"
ID_HEX = 8
TEXT_HEAD = len(TEXT_PREFIX) + ID_HEX + 1   # "s1.0123abcd." : what names the key of a text value
BINARY_HEAD = len(BINARY_PREFIX) + ID_HEX // 2
CHECK = b"the relay's storage key"  # what the key check seals


class SealingError(ValueError):
    """A value that cannot be opened: its text says which place, never the value."""


class Tampered(SealingError):
    """The value does not open under its key at this place: changed, or moved from another row or column."""


class UnknownKey(SealingError):
    """The value was sealed with a key this keyring does not hold."""


@dataclass(frozen=True)
class Place:
    """Where a sealed value lives: it is bound to exactly this table, column and row."""

    table: str
    column: str
    row: str

    def associated(self) -> bytes:
        return f"{self.table}\x00{self.column}\x00{self.row}".encode()

    def __str__(self) -> str:
        return f"{self.table}.{self.column} of row {self.row}"


def parse_key(text: str | bytes) -> bytes:
    """A storage key from its file or variable: 32 random bytes in base64 (standard or URL-safe)."""
    raw = text.strip() if isinstance(text, str) else text.strip().decode("ascii", "replace")
    try:
        key = base64.b64decode(raw.replace("-", "+").replace("_", "/") + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not base64 (write it with `relay storage-key generate PATH`)") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"holds {len(key)} bytes, a storage key has {KEY_BYTES}")
    return key


def new_key_text() -> str:
    """A new storage key as its file holds it."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def key_id(key: bytes) -> str:
    """The key's name inside envelopes (8 hex characters): derived, so it says nothing about the key."""
    return hmac.new(key, b"relay storage key id", hashlib.sha256).hexdigest()[:ID_HEX]


def text_id(value: str) -> str | None:
    """The key id of a sealed text value; None for anything else."""
    if value.startswith(TEXT_PREFIX) and len(value) > TEXT_HEAD and value[TEXT_HEAD - 1] == ".":
        return value[len(TEXT_PREFIX):TEXT_HEAD - 1]
    return None


def binary_id(value: bytes | bytearray | memoryview) -> str | None:
    head = bytes(memoryview(value)[:BINARY_HEAD])
    if head.startswith(BINARY_PREFIX) and len(value) > BINARY_HEAD:
        return head[len(BINARY_PREFIX):].hex()
    return None


@dataclass
class Keyring:
    """The keys a process holds: `current` seals, every key opens what it sealed. No key: values
    stay as they are (encryption off)."""

    current: bytes | None
    others: list[bytes] = field(default_factory=list)
    _ciphers: dict[str, AESGCM] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for key in ([self.current] if self.current else []) + self.others:
            self._ciphers[key_id(key)] = AESGCM(key)

    def __repr__(self) -> str:  # never a key, wherever a keyring is shown
        return f"Keyring(current={self.current_id!r}, ids={sorted(self._ciphers)})"

    @property
    def on(self) -> bool:
        return self.current is not None

    @property
    def current_id(self) -> str | None:
        return key_id(self.current) if self.current else None

    def ids(self) -> set[str]:
        return set(self._ciphers)

    def with_key(self, key: bytes, current: bool) -> Keyring:
        """This keyring and `key` (as the one that seals, or one more that opens)."""
        keys = [k for k in ([self.current] if self.current else []) + self.others if k != key]
        return Keyring(key, keys) if current else Keyring(self.current, [*self.others, key])

    def _seal(self, place: Place, plain: bytes | bytearray | memoryview, lead: int = 0) -> tuple[str, bytearray]:
        """(key id, nonce and ciphertext) written once into one buffer, after `lead` bytes left for
        the caller's header: a 25 MB body costs one more copy of itself, not one per piece joined."""
        assert self.current is not None
        name = key_id(self.current)
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = bytearray(lead + NONCE_BYTES + len(plain) + TAG_BYTES)
        sealed[lead:lead + NONCE_BYTES] = nonce
        self._ciphers[name].encrypt_into(nonce, plain, place.associated(), memoryview(sealed)[lead + NONCE_BYTES:])
        return name, sealed

    def _open(self, place: Place, name: str, sealed: bytes | bytearray | memoryview) -> bytearray:
        """The plain value, decrypted into a buffer of its own size from a view of the sealed one."""
        cipher = self._ciphers.get(name)
        if cipher is None:
            raise UnknownKey(f"{place} was sealed with storage key {name}, which this relay does not hold")
        view = memoryview(sealed)
        if len(view) < NONCE_BYTES + TAG_BYTES:
            raise Tampered(f"{place} is not a sealed value")
        plain = bytearray(len(view) - NONCE_BYTES - TAG_BYTES)
        try:
            cipher.decrypt_into(view[:NONCE_BYTES], view[NONCE_BYTES:], place.associated(), plain)
        except InvalidTag:
            raise Tampered(f"{place} does not open: it was changed, or moved from another row or column") from None
        return plain

    def seal_text(self, place: Place, value: str) -> str:
        if not self.on:
            return value
        name, sealed = self._seal(place, value.encode("utf-8"))
        return f"{TEXT_PREFIX}{name}.{base64.urlsafe_b64encode(sealed).decode('ascii').rstrip('=')}"

    def open_text(self, place: Place, value: str) -> str:
        name = text_id(value)
        if name is None:
            if self.on:
                raise Tampered(f"{place} is not sealed, yet the database is")
            return value
        body = value[TEXT_HEAD:]
        try:
            sealed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise Tampered(f"{place} is not a sealed value") from None
        return self._open(place, name, sealed).decode("utf-8")

    def seal_bytes(self, place: Place, value: bytes | bytearray | memoryview) -> bytes | bytearray:
        if not self.on:
            return bytes(value) if isinstance(value, memoryview) else value
        name, sealed = self._seal(place, value, lead=BINARY_HEAD)
        sealed[:BINARY_HEAD] = BINARY_PREFIX + bytes.fromhex(name)
        return sealed

    def open_bytes(self, place: Place, value: bytes | bytearray | memoryview) -> bytes | bytearray | memoryview:
        name = binary_id(value)
        if name is None:
            if self.on:
                raise Tampered(f"{place} is not sealed, yet the database is")
            return value
        return self._open(place, name, memoryview(value)[BINARY_HEAD:])

    def digests(self, address: str) -> list[str]:
        """The blind index of an address under each key (the current one first): a keyed hash of
        its canonical form, so both spellings of an internationalised domain and any case find it.
        Without a key the hash is keyed with nothing, and protects nothing."""
        keys = ([self.current] if self.current else [b""]) + self.others
        canonical = addresses.canonical(address).encode("utf-8")
        return [hmac.new(_index_key(key), canonical, hashlib.sha256).hexdigest() for key in keys]

    def digest(self, address: str) -> str:
        return self.digests(address)[0]


def _index_key(key: bytes) -> bytes:
    """The blind index's own key, derived from the storage key (never the encryption key itself)."""
    return hmac.new(key, b"relay blind index", hashlib.sha256).digest()
