"""Running the real `relay` command in a subprocess against a settings file of the test's own."""

from __future__ import annotations

import json
import os
import signal
import site
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.helpers import keys
from tests.helpers.environment import REPO, free_port


def write_settings(folder: Path, db_url: str, outbound: str, **extra: dict[str, Any]) -> Path:
    sections: dict[str, dict[str, Any]] = {
        "relay": {"domain": "relay.test", "platform_name": "ReviewHub"},
        "inbound": {"host": "127.0.0.1", "port": free_port(), "max_message_bytes": 1048576},
        "api": {"port": free_port()},
        # no look-ups at the system's name servers (which are not on loopback): a test that checks
        # senders gives its own DNS server
        "auth": {"mode": "off"},
        "outbound": {"url": outbound},
        "storage": {"database": db_url, "key": keys.for_database(db_url)},
        "scheduler": {"interval": "1s"},
        "log": {"file": "relay.log"},
    }
    for section, values in extra.items():
        sections.setdefault(section, {}).update(values)
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path = folder / "settings.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def relay_cli(config: Path, *args: str, env: dict[str, str] | None = None,
              user: str | None = None) -> subprocess.CompletedProcess[str]:
    """`relay --config CONFIG ARGS...` in the settings file's folder (as `user`, when given)."""
    python, path = as_user(user)
    return subprocess.run([python, "-m", "relay", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=60, cwd=config.parent, user=user,
                          env={**os.environ, **(env or {}), "PYTHONPATH": path})


def as_user(user: str | None) -> tuple[str, str]:
    """The interpreter and PYTHONPATH that run the relay as `user`: this one, or, for another user
    (who may not reach this interpreter's folder), the system's Python of the same version with
    this environment's packages on its path."""
    if user is None:
        return sys.executable, str(REPO)
    system = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    assert Path(system).exists(), f"{system} is needed to run the relay as another user"
    return system, os.pathsep.join([str(REPO), *site.getsitepackages()])


def open_case(config: Path, review_id: str, reviewer: str = "max.mueller@example.de",
              **options: str) -> dict[str, Any]:
    args = ["open-case", "--review-id", review_id, "--business-id", "B-1", "--business-name", "Beispiel Shop GmbH",
            "--business-email", "service@shop.example", "--reviewer-email", reviewer, "--reviewer-name", "Max M.",
            "--request", "order_number", "--message", "Bitte nennen Sie uns Ihre Bestellnummer."]
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", value]
    result = relay_cli(config, *args)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


class Serve:
    """`relay serve` as a subprocess, so a test can kill it with SIGKILL."""

    def __init__(self, config: Path, port: int, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.log = open(config.parent / "serve.out", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "relay", "--config", str(config), "serve"],
                                     cwd=config.parent, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {}), "PYTHONPATH": str(REPO)},
                                     start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (config.parent / "serve.out").read_text()[-500:]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("relay serve did not listen within 20 s")

    def kill(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        return self.wait(20)

    def signal(self, sig: int) -> None:
        """Send `sig` to the relay process alone (as systemd's `kill -s` or logrotate's postrotate do)."""
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        """The exit status, waiting at most `timeout` seconds for it."""
        code = self.proc.wait(timeout=timeout)
        self.log.close()
        return code
