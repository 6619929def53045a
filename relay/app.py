"""The running relay's shared context: settings, clock, database and signing key, opened once."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from relay.config import Settings
from relay.core import addresses
from relay.core.clock import Clock
from relay.store import database, key_files, webhook_queue
from relay.store.group_commit import GroupCommitExecutor

if TYPE_CHECKING:
    from relay.metrics import Metrics

T = TypeVar("T")

class SystemClock:
    """The wall clock (naive UTC, as everything inside the relay)."""

    def now(self) -> datetime:
        return datetime.now(UTC).replace(tzinfo=None)


def key_source(settings: Settings) -> key_files.KeySource:
    """Where `[storage] key` says the storage key is (by default beside the SQLite database)."""
    return key_files.source(settings.storage.key, database.sqlite_path(settings.storage.database),
                            settings.relay.home)


@dataclass
class App:
    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    key: bytes = b""
    executor: Executor | None = None

    @classmethod
    def open(cls, settings: Settings, clock: Clock | None = None, create: bool = True) -> App:
        """Open (and if needed create and migrate) the database; raises StorageUnavailable.
        `create=False` opens an existing, current database only (commands that only read)."""
        database.open_database(settings.storage.database, key_source(settings), create)
        # case events write their webhooks from now on (relay.store.events), or, with no URL, none
        webhook_queue.configure(settings.webhooks.enabled, settings.webhooks.max_age)
        return cls(settings=settings, clock=clock or SystemClock(), key=database.instance_key())

    @functools.cached_property
    def metrics(self) -> Metrics:
        """This instance's own counters (relay.metrics), made at the first count: the commands that
        only read the database never load prometheus_client. Used from the event loop's thread."""
        from relay.metrics import Metrics
        return Metrics()

    def mask(self, address: str) -> str:
        return addresses.mask(address, self.key)

    def shown(self, address: str, party: str) -> str:
        """An address as the log may show it: a reviewer's always masked, a business's masked unless
        `[log] mask_business = false`."""
        if party == "business" and not self.settings.log.mask_business:
            return address
        return self.mask(address)

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work (database, parsing) off the event loop, in the relay's own threads.

        With SQLite one thread does it all: SQLite allows one writer at a time, and writers in
        several threads of one process only wait on each other in SQLite's busy loop (sleeps of up
        to 100 ms). That thread commits the work of messages that arrive together at once (see
        relay.store.group_commit). With PostgreSQL a few threads work at once.
        """
        if self.executor is None:
            if self.settings.storage.database.startswith("sqlite"):
                self.executor = GroupCommitExecutor()
            else:
                self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="relay-db")
        if isinstance(self.executor, ThreadPoolExecutor):  # PostgreSQL: a connection per thread
            return await asyncio.get_running_loop().run_in_executor(self.executor, _revived, fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True)
            self.executor = None
        database.close()


def _revived(fn: Callable[..., T], *args: Any) -> T:
    """Run `fn` on a live connection: one the server ended is replaced first (see database.revive)."""
    database.revive()
    return fn(*args)
