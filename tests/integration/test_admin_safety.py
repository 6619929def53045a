"""What an admin's command may and may not do to a deployment: reject bad input with a line
naming the option, never create a database or log by only reading, never leave files that others
can read or that the relay's own user cannot write, and say which path is wrong instead of a
traceback. The commands run as real subprocesses; the permission cases as a real other user."""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import Serve, open_case, relay_cli, write_settings
from tests.helpers.environment import REPO
from tests.helpers.smtp import smtp_send

OTHER_USER = "nobody"  # a real account without root's powers, present on every Debian system


def sqlite_settings(folder: Path, **extra: dict[str, object]) -> Path:
    return write_settings(folder, "sqlite:///storage/relay.db", "maildir:storage/outbox",
                          log={"file": "storage/logs/relay.log"}, **extra)


def refused_with(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)


@pytest.mark.parametrize(("args", "option"), [
    (["cases", "--status", "nonsense"], "--status"),
    (["tail", "-n", "-3"], "-n/--lines"),
    (["tail", "--case", "abc"], "--case"),
    (["tail", "--case", "0"], "--case"),
    (["tail", "--event", "nonsense"], "--event"),
    (["tail", "--since", "0s"], "--since"),
    (["tail", "--since", "5 dayz"], "--since"),
    (["forget", "--reviewer-email", "notanaddress"], "--reviewer-email"),
    (["case", "show", "-7"], "id"),
    (["case", "close", "x"], "id"),
    (["outbox", "retry", "0"], "id"),
])
def test_bad_values_are_one_line_naming_the_option(tmp_path: Path, args: list[str], option: str) -> None:
    config = sqlite_settings(tmp_path)
    open_case(config, "R-1")
    before = sorted(p.name for p in (tmp_path / "storage").rglob("*"))
    result = relay_cli(config, *args)
    refused_with(result, 2, f"argument {option}")
    assert sorted(p.name for p in (tmp_path / "storage").rglob("*")) == before


def test_forgetting_an_address_no_review_names_erases_and_logs_nothing(tmp_path: Path) -> None:
    config = sqlite_settings(tmp_path)
    open_case(config, "R-1")
    result = relay_cli(config, "forget", "--reviewer-email", "someone.else@example.org")
    assert result.returncode == 0 and "nothing was erased" in result.stderr
    assert json.loads(result.stdout)["reviews"] == 0
    assert "reviewer.forgotten" not in (tmp_path / "storage" / "logs" / "relay.log").read_text()
    forgotten = relay_cli(config, "forget", "--reviewer-email", "MAX.MUELLER@example.de")
    assert forgotten.returncode == 0 and json.loads(forgotten.stdout)["reviews"] == 1
    assert "reviewer.forgotten" in (tmp_path / "storage" / "logs" / "relay.log").read_text()


@pytest.mark.parametrize("args", [["status"], ["cases"], ["case", "show", "1"], ["outbox"], ["status", "--json"]])
def test_reading_commands_never_create_a_database(tmp_path: Path, args: list[str]) -> None:
    config = sqlite_settings(tmp_path, storage={"database": "sqlite:///storgae/relay.db"})  # mistyped
    result = relay_cli(config, *args)
    refused_with(result, 2, str(tmp_path / "storgae" / "relay.db"), "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.toml"]  # no database, folder or log


def test_tail_of_a_missing_log_names_it(tmp_path: Path) -> None:
    config = sqlite_settings(tmp_path)
    refused_with(relay_cli(config, "tail"), 2, str(tmp_path / "storage" / "logs" / "relay.log"))
    assert not (tmp_path / "storage").exists()


def test_a_database_without_relay_tables_is_not_migrated_by_reading(tmp_path: Path) -> None:
    config = sqlite_settings(tmp_path)
    (tmp_path / "storage").mkdir()
    (tmp_path / "storage" / "relay.db").touch()
    refused_with(relay_cli(config, "status"), 1, "has no relay tables", "relay migrate")
    assert (tmp_path / "storage" / "relay.db").stat().st_size == 0


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    config = sqlite_settings(tmp_path)
    case = open_case(config, "R-1")
    # the reader has gone before the command writes (what `| head -c 1` does to a longer output)
    process = subprocess.Popen([sys.executable, "-m", "relay", "--config", str(config), "case", "show",
                                str(case["case"]), "--json"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    error = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0, error
    assert error == ""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_the_relay_creates_are_private(tmp_path: Path) -> None:
    config = sqlite_settings(tmp_path)
    open_case(config, "R-1")
    assert relay_cli(config, "run-jobs").returncode == 0  # the contact request into the maildir
    storage = tmp_path / "storage"
    database = storage / "relay.db"
    assert mode(database) == 0o600
    for companion in (storage / "relay.db-wal", storage / "relay.db-shm"):
        assert not companion.exists() or mode(companion) == 0o600
    [message] = (storage / "outbox" / "new").iterdir()
    assert mode(message) == 0o600
    assert mode(storage / "logs" / "relay.log") & 0o007 == 0  # never world-readable
    for folder in (storage, storage / "logs", storage / "outbox" / "new"):
        assert mode(folder) & 0o007 == 0, folder
    database.chmod(0o644)  # a database from before: tightened when it is next opened
    assert relay_cli(config, "cases").returncode == 0 and mode(database) == 0o600


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder another user can reach (pytest's own tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="relay-perm-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=False)


def needs_root() -> None:
    assert os.geteuid() == 0, "these tests run as root (tests/run does), to act as a second user"


def test_root_refuses_storage_of_another_user(shared_tmp: Path) -> None:
    needs_root()
    config = sqlite_settings(shared_tmp)
    open_case(config, "R-1")
    other = pwd.getpwnam(OTHER_USER)
    for path in [shared_tmp / "storage", *(shared_tmp / "storage").rglob("*")]:
        os.chown(path, other.pw_uid, other.pw_gid)
    before = {p: p.stat().st_uid for p in (shared_tmp / "storage").rglob("*")}
    for args in (["status"], ["case", "close", "1"], ["tail"], ["run-jobs"]):
        result = relay_cli(config, *args)
        refused_with(result, 1, f"belongs to user {OTHER_USER}", f"sudo -u {OTHER_USER} relay {args[0]}")
    assert {p: p.stat().st_uid for p in (shared_tmp / "storage").rglob("*")} == before  # nothing root-owned
    as_owner = relay_cli(config, "case", "close", "1", user=OTHER_USER)
    assert as_owner.returncode == 0, as_owner.stderr


def test_permission_problems_name_the_path(shared_tmp: Path) -> None:
    needs_root()
    config = sqlite_settings(shared_tmp)
    open_case(config, "R-1")  # storage owned by root; the commands below run as another user
    storage = shared_tmp / "storage"
    for path in [storage, *storage.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    written = relay_cli(config, "case", "close", "1", user=OTHER_USER)
    refused_with(written, 1, str(storage / "logs"))
    (storage / "logs" / "relay.log").chmod(0o666)  # the log may be written: now the database is the problem
    (storage / "logs").chmod(0o777)
    closed = relay_cli(config, "case", "close", "1", user=OTHER_USER)
    refused_with(closed, 1, str(storage / "relay.db"), "readonly database")
    fresh = shared_tmp / "fresh"
    fresh.mkdir(mode=0o755)
    config = sqlite_settings(fresh)
    os.chmod(fresh, 0o755)  # the settings folder is not writable: storage cannot be created
    served = relay_cli(config, "serve", user=OTHER_USER)
    refused_with(served, 1, str(fresh / "storage"), "Permission denied")


def test_status_counts_refusals_with_the_log_on_stdout(db_url: str, tmp_path: Path) -> None:
    config = write_settings(tmp_path, db_url, "maildir:outbox", log={"file": "-"})
    port = int(config.read_text().split("port = ")[1].split("\n")[0])
    case = open_case(config, "R-1")
    serve = Serve(config, port)
    try:
        assert smtp_send(port, "intruder@evil.example", case["reviewer_address"], b"Subject: x\r\n\r\nx\r\n")[0] == 550
        assert smtp_send(port, "max.mueller@example.de", "nobody-" + "q" * 25 + "@relay.test",
                         b"Subject: x\r\n\r\nx\r\n")[0] == 550
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status = json.loads(relay_cli(config, "status", "--json").stdout)
            if sum(status["refusals_last_hour"].values()) >= 2:
                break
            time.sleep(0.2)
        assert status["refusals_last_hour"] == {"wrong_sender": 1, "unknown_address": 1}
        assert set(status["windows"]) == {"cases", "outbox", "oldest_pending", "last_24h", "refusals_last_hour",
                                          "webhooks"}
        assert "refusals last hour" in relay_cli(config, "status").stdout
    finally:
        assert serve.kill() == 0
    assert '"event": "inbound.refused"' in (tmp_path / "serve.out").read_text()  # the log went to stdout
