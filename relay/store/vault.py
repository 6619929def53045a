"""The process's storage keyring, and what the database says about keys.

Two rows of `setting` hold the key state, neither a key in the clear:

- `storage_key_check`: a known value sealed under the key the database is sealed with. A relay
  whose keyring does not open it has the wrong key (or none) and must not start: it would fail
  on the first case, or worse, seal new values under a key nobody else has.
- `storage_rotation`, while `relay storage-key rotate` runs: the new key sealed under the old one,
  and the key check under the new key. Every running relay learns the new key from it (at most a
  second after it appears, before it seals anything: `for_sealing`) and seals with the new key from
  then on while still opening values under the old one, so a rotation needs no restart. Once the
  rotation completes the row is gone; a relay that never learnt the new key refuses to seal or
  open rather than guess (`KeyRotated`), and is restarted with the new key.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass

from relay.core import sealing
from relay.core.errors import RelayError, Unavailable
from relay.core.sealing import Keyring, Place
from relay.store.models import Setting

CHECK = "storage_key_check"
ROTATION = "storage_rotation"          # where a rotation has got to
ROTATION_KEY = "storage_rotation_key"  # its new key, sealed under the old one (written once)
REFRESH_SECONDS = 1.0  # how stale a process's view of a rotation may be when it seals

_CHECK_PLACE = Place("setting", "value", CHECK)
_WRAPPED_PLACE = Place("setting", "value", ROTATION_KEY)


class StorageKeyError(RelayError):
    """The storage key is missing, unusable or not the database's: the relay must not start."""

    exit_code = 2
    prefix = "storage key: "


class KeyRotated(Unavailable):
    """The database moved to a key this process does not hold (a rotation it did not see)."""


@dataclass(frozen=True)
class Rotation:
    """A rotation under way, as its row holds it."""

    to: str          # the new key's id
    check: str       # the key check, sealed under the new key
    table: int = 0   # where it has got to: index into relay.store.sealed_columns.TABLES,
    after: int = 0   # and the last primary key done there (rows are done in id order)
    passes: int = 0

    def as_json(self) -> str:
        return json.dumps(self.__dict__)


_lock = threading.Lock()
_ring = Keyring(None)
_checked = 0.0


def install(ring: Keyring) -> None:
    global _ring, _checked
    with _lock:
        _ring, _checked = ring, time.monotonic()


def ring() -> Keyring:
    return _ring


def check_value(ring: Keyring) -> str:
    return ring.seal_text(_CHECK_PLACE, sealing.CHECK.decode())


def opens_check(ring: Keyring, value: str) -> bool:
    try:
        return ring.open_text(_CHECK_PLACE, value) == sealing.CHECK.decode()
    except sealing.SealingError:
        return False


def wrap(old: Keyring, new_key: bytes) -> str:
    return old.seal_text(_WRAPPED_PLACE, new_key.hex())


def _setting(name: str) -> str | None:
    row = Setting.get_or_none(Setting.name == name)
    return str(row.value) if row is not None else None


def stored_check() -> str | None:
    return _setting(CHECK)


def rotation() -> Rotation | None:
    text = _setting(ROTATION)
    return Rotation(**json.loads(text)) if text else None


def learn(ring: Keyring) -> Keyring:
    """`ring` with what the database says: the new key of a rotation under way becomes the one
    that seals. KeyRotated when the database is sealed under a key `ring` cannot have."""
    if not ring.on:
        return ring
    under_way = rotation()
    wrapped = _setting(ROTATION_KEY) if under_way is not None and under_way.to not in ring.ids() else None
    if under_way is not None and wrapped is not None:
        # a rotation from a key this process does not hold: the check below says so
        with contextlib.suppress(sealing.SealingError):
            ring = ring.with_key(bytes.fromhex(ring.open_text(_WRAPPED_PLACE, wrapped)), current=True)
    elif under_way is not None and under_way.to in ring.ids() and ring.current_id != under_way.to:
        ring = ring.with_key(next(k for k in _keys(ring) if sealing.key_id(k) == under_way.to), current=True)
    check = stored_check()
    named = sealing.text_id(check) if check else None
    if named is not None and named not in ring.ids():
        raise KeyRotated(f"the database is sealed with storage key {named}, which this relay does not hold "
                         "(the key was rotated while it ran): restart it with the new [storage] key")
    return ring


def _keys(ring: Keyring) -> list[bytes]:
    return ([ring.current] if ring.current else []) + ring.others


def refresh(force: bool = False) -> Keyring:
    """The keyring, brought up to date with the database at most once a second (or now)."""
    global _ring, _checked
    if not _ring.on:
        return _ring
    now = time.monotonic()
    if force or now - _checked >= REFRESH_SECONDS:
        learnt = learn(_ring)
        with _lock:
            _ring, _checked = learnt, now
    return _ring


def for_sealing() -> Keyring:
    """The keyring to seal with: a rotation that began elsewhere is seen before anything is sealed."""
    return refresh()
