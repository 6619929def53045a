"""Schema migrations, on SQLite and PostgreSQL: a database of the relay before migrations existed
(schema version 1, built by tests/fixtures/schema_1/make.py with that code, with cases, messages
and queued deliveries in it) is upgraded, and the relay carries on with it: the pending
deliveries go out, an open case still takes answers. Instances that start at once migrate once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import peewee as pw
import pytest
from playhouse.migrate import SchemaMigrator

from relay.core.clock import ManualClock
from relay.core.outcomes import Outcome
from relay.inbound import intake
from relay.outbound.worker import Worker
from relay.store import migrations, refusal_counts, sealed_columns
from relay.store.models import Case, RelayAddress, Setting, db
from tests.helpers import fixtures, stored
from tests.helpers.cli import relay_cli, write_settings
from tests.helpers.environment import REPO, Sink, new_case


def load_version_1(db_url: str) -> None:
    fixtures.load(db_url, 1)


def test_a_version_1_database_is_upgraded_and_carries_on(db_url: str, app_factory: Any, sink: Sink) -> None:
    load_version_1(db_url)
    # a day after the old code opened the cases: they are within their reply window
    app = app_factory(db_url, ManualClock(datetime(2026, 11, 21, 9, 0)), outbound={"url": sink.url})  # migrates
    assert migrations.version(db.obj) == migrations.CURRENT
    assert db.obj.table_exists("webhook")  # version 6: the webhook outbox
    assert "event_case_id_at" in {index.name for index in db.obj.get_indexes("event")}
    refusal_counts.add({(datetime(2026, 11, 21, 8, 30), "wrong_sender"): 2})  # version 3's table, in use
    refusal_counts.add({(datetime(2026, 11, 21, 8, 30), "wrong_sender"): 1})
    assert refusal_counts.since(datetime(2026, 11, 21, 8, 0)) == {"wrong_sender": 3}
    assert Setting.get(Setting.name == "secret").value  # the instance's signing key was kept
    # version 4: each case keeps the business address it is answered at today, its business's
    assert {c.id: stored.business_email(c) for c in Case.select()} == {
        n: f"service{n}@shop.example" for n in (1, 2, 3)}
    column = next(c for c in db.obj.get_columns("case") if c.name == "business_email")
    assert column.null is False
    if isinstance(db.obj, pw.PostgresqlDatabase):  # as a new database has it (SQLite keeps its default)
        assert column.default is None

    # version 7: every case has its own decline value (the reminders of old cases carry a working
    # link), unique, and none declined yet
    values = {c.id: c.decline_value for c in Case.select()}
    assert len(set(values.values())) == 3 and all(v and len(v) == 32 for v in values.values())
    assert all(c.declined_at is None for c in Case.select())
    assert "case_decline_value" in {i.name for i in db.obj.get_indexes("case") if i.unique}
    with pytest.raises(pw.IntegrityError), db.obj.atomic():
        Case.update(decline_value=values[1]).where(Case.id == 2).execute()

    counts = asyncio.run(Worker.for_app(app).run_pass())
    assert counts.sent == 4 and counts.failed == 0  # three contact requests and the queued forward
    assert len(sink.to("max.mueller@example.de")) == 1 and len(sink.to("service2@shop.example")) == 1
    # a colleague's new case from another address leaves case 1 its own
    new_case(app, reviewer="jonas@example.net", business="kollegin@shop.example", review_id="R-9")

    first = Case.get(Case.id == 1)
    reviewer_side = RelayAddress.get((RelayAddress.case == first.id) & (RelayAddress.party == "reviewer"))
    conversation = intake.lookup(app, reviewer_side.local_part)
    assert conversation is not None and conversation.state.value == "awaiting_reply"
    answer = (f"From: Max <max.mueller@example.de>\r\nTo: {reviewer_side.local_part}@relay.test\r\n"
              "Subject: Re: Anfrage\r\n\r\nBestellnummer BE-1.\r\n").encode()
    assert intake.process(app, conversation, "max.mueller@example.de", answer).outcome is Outcome.ACCEPTED
    assert Case.get(Case.id == 1).state == "replied"
    asyncio.run(Worker.for_app(app).run_pass())
    assert len(sink.to("service1@shop.example")) == 1 and sink.to("kollegin@shop.example") == []
    assert migrations.migrate(db.obj) == []  # a second start finds nothing to do
    with db.obj.atomic():  # version 4 run again adds nothing and overwrites no case's own address
        Case.update(business_email=sealed_columns.seal(Case, "business_email", 3, "kollegin@shop.example")).where(
            Case.id == 3).execute()
        version_4 = next(m for m in migrations.MIGRATIONS if m.version == 4)
        version_4.apply(db.obj, SchemaMigrator.from_database(db.obj))
    assert stored.business_email(Case.get(Case.id == 3)) == "kollegin@shop.example"
    with db.obj.atomic():  # version 7 run again adds nothing and fills only an empty value
        Case.update(decline_value=None).where(Case.id == 3).execute()
        version_7 = next(m for m in migrations.MIGRATIONS if m.version == 7)
        version_7.apply(db.obj, SchemaMigrator.from_database(db.obj))
    again = {c.id: c.decline_value for c in Case.select().where(Case.id <= 3)}
    assert again[1] == values[1] and again[2] == values[2] and again[3] and again[3] != values[3]


def test_instances_starting_at_once_migrate_once(db_url: str, tmp_path: Path) -> None:
    load_version_1(db_url)
    config = write_settings(tmp_path, db_url, f"maildir:{tmp_path}/outbox")
    runs = [subprocess.Popen([sys.executable, "-m", "relay", "--config", str(config), "migrate"], cwd=tmp_path,
                             env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [run.communicate(timeout=60) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    said = sorted(out for out, _ in outputs)
    assert said == ["migrated to schema version 9 (ran 2, 3, 4, 5, 6, 7, 8, 9)\n",
                    "schema version 9: nothing to do\n", "schema version 9: nothing to do\n"], said


def test_a_newer_schema_is_refused(db_url: str, app_factory: Any, tmp_path: Path) -> None:
    app_factory(db_url)
    Setting.update(value="99").where(Setting.name == migrations.VERSION_KEY).execute()
    result = relay_cli(write_settings(tmp_path, db_url, f"maildir:{tmp_path}/outbox"), "status")
    assert result.returncode == 1
    assert "schema version 99" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.fixture(autouse=True)
def _fresh_connection() -> Any:
    yield
    if db.obj is not None and not db.obj.is_closed():
        db.obj.close()
