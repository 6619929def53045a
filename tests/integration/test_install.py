"""The install section of docs/operations.md, run as written: a clean clone of the repository is
installed into a scratch /srv/relay and /etc/relay, with a venv of the system's Python, and the
relay then runs as an unprivileged user with settings outside its home. What it creates is that
user's and private; root's admin commands refuse to touch it."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.environment import REPO, free_port

USER = "nobody"  # an existing unprivileged account stands in for the `relay` user
USER_GROUP = "nogroup"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def install_block() -> str:
    text = (REPO / "docs" / "operations.md").read_text()
    return text.split("# install-begin\n", 1)[1].split("# install-end\n", 1)[0]


@pytest.fixture
def root() -> Iterator[Path]:
    assert os.geteuid() == 0, "the install test runs as root (tests/run does), as an admin would"
    folder = Path(tempfile.mkdtemp(prefix="relay-install-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-800:]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the installed relay did not listen within 30 s")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_documented_install_runs_from_a_clean_clone(root: Path) -> None:
    source = root / "src"
    subprocess.run(["git", "clone", "-q", str(REPO), str(source)], check=True, timeout=120)
    home, etc, port = root / "srv" / "relay", root / "etc" / "relay", free_port()
    env = {"PATH": SYSTEM_PATH, "HOME": "/root", "src": str(source), "home": str(home), "etc": str(etc),
           "user": USER, "port": str(port), "outbound": "maildir:storage/outbox", "domain": "relay.test"}
    installed = subprocess.run(["bash", "-euo", "pipefail", "-c", install_block()], cwd=root, env=env,
                               capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    relay = home / "venv" / "bin" / "relay"
    settings = etc / "settings.toml"
    owner = pwd.getpwnam(USER).pw_uid

    log = root / "serve.out"
    with open(log, "wb") as out:
        # RELAY_AUTH_MODE: no look-ups at this machine's name servers, which are not on loopback
        serving = subprocess.Popen([str(relay), "--config", str(settings), "serve"], user=USER, group=USER_GROUP,
                                   cwd="/", stdout=out, stderr=subprocess.STDOUT,
                                   env={"PATH": SYSTEM_PATH, "RELAY_AUTH_MODE": "off"},
                                   start_new_session=True)
    try:
        wait_for_port(port, serving, log)
        opened = subprocess.run(["runuser", "-u", USER, "--", str(relay), "--config", str(settings), "open-case",
                                 "--review-id", "R-1", "--business-id", "B-1", "--business-name", "Shop",
                                 "--business-email", "service@shop.example", "--reviewer-email",
                                 "max@example.de", "--reviewer-name", "Max", "--message", "Bitte melden."],
                                cwd="/", capture_output=True, text=True, timeout=60, env={"PATH": SYSTEM_PATH})
        assert opened.returncode == 0, opened.stderr
        assert json.loads(opened.stdout)["reviewer_address"].endswith("@relay.test")
        new = home / "storage" / "outbox" / "new"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (new.is_dir() and any(new.iterdir())):
            time.sleep(0.1)
        [request] = new.iterdir()  # the contact request, written by the running relay
        assert b"max@example.de" in request.read_bytes()
    finally:
        serving.send_signal(signal.SIGTERM)
        assert serving.wait(timeout=30) == 0, log.read_text()[-800:]

    storage = home / "storage"
    for path in [storage, *storage.rglob("*")]:
        assert path.stat().st_uid == owner, path
        assert mode(path) & 0o007 == 0, (path, oct(mode(path)))  # nothing for others
    assert mode(storage / "relay.db") == 0o600 and mode(request) == 0o600
    assert not (etc / "storage").exists()  # relative paths went to [relay] home, not /etc/relay

    as_root = subprocess.run([str(relay), "--config", str(settings), "status"], capture_output=True, text=True,
                             timeout=60, cwd="/", env={"PATH": SYSTEM_PATH})
    assert as_root.returncode == 1 and f"sudo -u {USER} relay status" in as_root.stderr, as_root.stderr
    as_user = subprocess.run(["runuser", "-u", USER, "--", str(relay), "--config", str(settings), "status",
                              "--json"], capture_output=True, text=True, timeout=60, cwd="/",
                             env={"PATH": SYSTEM_PATH})
    assert as_user.returncode == 0 and json.loads(as_user.stdout)["cases"] == {"awaiting_reply": 1}
