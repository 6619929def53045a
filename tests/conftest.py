"""Shared fixtures: real SQLite files and the real PostgreSQL, a real capturing SMTP sink, and a
real `relay serve` in a thread. What they build on is in tests/helpers/environment.py."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from relay import logs
from relay.app import App
from relay.core.clock import Clock
from relay.store import database
from tests.helpers import dns as test_dns
from tests.helpers.environment import (
    PG_URL,
    RunningRelay,
    Sink,
    _reset_postgres,
    make_settings,
)


def _connect(url: str) -> tuple[Any, str]:
    try:
        return psycopg2.connect(url, connect_timeout=5), ""
    except psycopg2.OperationalError as exc:
        return None, (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped at the end)."""
    name = f"relay_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin, reason = _connect(PG_URL)
    if admin is None:  # one clear line for every PostgreSQL variant, not a connection traceback each
        pytest.fail(f"PostgreSQL at {PG_URL} cannot be reached ({reason}): start it (tests/run does) "
                    "or point RELAY_TEST_POSTGRES at one", pytrace=False)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    base = PG_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    database.close()
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that takes this runs twice: on a new SQLite file and on an emptied PostgreSQL."""
    database.close()
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/relay.db"
    url: str = request.getfixturevalue("pg_database")
    _reset_postgres(url)
    return url


@pytest.fixture
def app_factory(tmp_path: Path) -> Iterator[Any]:
    opened: list[App] = []

    def make(db_url: str, clock: Clock | None = None, **sections: dict[str, Any]) -> App:
        settings = make_settings(tmp_path, db_url, **sections)
        logs.setup(settings.log.file, "info", stderr=False)
        app = App.open(settings, clock)
        opened.append(app)
        return app

    yield make
    database.close()


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.stop()


@pytest.fixture
def relay_factory() -> Iterator[Any]:
    running: list[RunningRelay] = []

    def start(app: App, background: bool = True) -> RunningRelay:
        relay = RunningRelay(app, background)
        running.append(relay)
        return relay

    yield start
    for relay in running:
        relay.stop()



@pytest.fixture
def dns_server(tmp_path: Path) -> Iterator[test_dns.DnsServer]:
    """A real DNS server of the test's own (dnsmasq on a loopback port): tests/helpers/dns.py."""
    reason = test_dns.unavailable()
    if reason:
        pytest.fail(reason, pytrace=False)
    server = test_dns.DnsServer(tmp_path / "dns")
    yield server
    server.close()
