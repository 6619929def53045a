"""`relay storage-key generate PATH` and `relay storage-key rotate --new PATH`.

A rotation re-seals every value under the new key while relays keep running (ADR 21): it first
puts the new key into the database sealed under the old one, waits until every running relay has
seen it (they look at most once a second before they seal anything), then re-seals in batches,
recording after each where it got to. Killed half-way, the same command goes on from there. When
nothing is left under the old key, the key check moves to the new key and the wrapped copy is
deleted: from then on the database opens with the new key alone.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from relay import config, logs
from relay.app import key_source
from relay.core import sealing
from relay.core.errors import Refused
from relay.core.sealing import Keyring
from relay.core.vocabulary import Event
from relay.store import database, key_check, key_files, resealing, vault

GRACE_SECONDS = 2 * vault.REFRESH_SECONDS + 0.5  # running relays look at the database this often, and then some


class RotationRefused(Refused):
    """A rotation that cannot start (another one is under way, or the key is the database's already)."""


def generate(path: Path) -> str:
    made = key_files.generate(path)
    return (f"storage key {made} written to {path} (0600). Keep a copy apart from the database's backups; "
            f"point [storage] key at it with key = \"file:{path}\"")


def rotate(settings: config.Settings, new_path: Path, batch: int, grace: float = GRACE_SECONDS) -> str:
    """Re-seal the database under the key in `new_path`; what to tell the admin."""
    opened, _ = database.open_database(settings.storage.database, key_source(settings))
    try:
        new_key = key_files.read(key_files.KeySource("file", str(new_path)))
        assert new_key is not None
        return _rotate(opened, new_key, new_path, batch, grace)
    finally:
        database.close()


def _rotate(opened: Any, new_key: bytes, new_path: Path, batch: int, grace: float) -> str:
    ring, target = vault.ring(), sealing.key_id(new_key)
    if not ring.on:
        raise RotationRefused("[storage] key is \"off\": there is nothing to rotate from (start the relay with "
                              "a key first; it seals the database)")
    state = vault.rotation()
    if state is None:
        if ring.current_id == target:
            raise RotationRefused(f"the database is sealed with key {target} already")
        state = resealing.announce(vault.Rotation(to=target, check=vault.check_value(Keyring(new_key))),
                                   vault.wrap(ring, new_key))
        if state.to == target:
            logs.event(Event.STORAGE_ROTATION_STARTED, f"storage key rotation from {ring.current_id} to {target} "
                       "started")
            _say(f"rotation to key {target} announced; waiting {grace:.1f}s for running relays to learn it")
            time.sleep(grace)
    elif state.to == target:
        _say(f"rotation to key {target} resumed (pass {state.passes + 1}, table {state.table})")
    if state.to != target:
        raise RotationRefused(f"a rotation to key {state.to} is under way: finish it first with that key's file")
    both = ring.with_key(new_key, current=True)
    vault.install(both)
    counts: dict[str, int] = {}

    def progress(table: str, done: int) -> None:
        counts[table] = counts.get(table, 0) + done
        _say(f"  {table}: {counts[table]} row(s) re-sealed")

    state, tally = resealing.rotate(both, state, batch, progress)
    key_check.complete_rotation(Keyring(new_key), opened)
    logs.event(Event.STORAGE_ROTATION_COMPLETED, f"storage key rotation to {target} completed: {tally.resealed} "
               f"row(s) re-sealed in {state.passes} pass(es)")
    for place in tally.unopenable:
        _say(f"  left as it was (does not open): {place}")
    for place in tally.clear:
        _say(f"  left as it was (in the clear: written by a relay older than schema version 8?): {place}")
    return (f"rotation complete: the database is sealed with key {target} ({tally.resealed} row(s) re-sealed"
            + (f"; {len(tally.unopenable) + len(tally.clear)} value(s) left as they were, listed above" if
               tally.unopenable or tally.clear else "")
            + f"). Set [storage] key = \"file:{new_path}\" and restart each relay when convenient (running ones "
            "already use the new key); then destroy the old key and the backups made before the rotation")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
