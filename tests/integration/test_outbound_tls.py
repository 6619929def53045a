"""Outbound TLS against a real smarthost with a self-signed certificate, over STARTTLS and smtps://:
the default verification refuses it (the delivery is deferred and the log says what to set),
`?cafile=` naming its certificate delivers, `?verify=no` delivers; a `?cafile=` that cannot be
used stops start-up with one line naming `[outbound] url` and the path."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relay import config, logs
from relay.core.clock import ManualClock
from relay.outbound.worker import Worker
from relay.store import case_records as case_store
from tests.helpers.cli import relay_cli
from tests.helpers.environment import Sink, new_case
from tests.helpers.tls import self_signed, server_context

REVIEWER = "max.mueller@example.de"


@pytest.fixture(params=["starttls", "smtps"])
def tls_sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sink]:
    """A loopback smarthost with a self-signed certificate (in tmp_path/certs/smarthost.pem)."""
    cert, key = self_signed(tmp_path / "certs")
    sink = Sink(tls=server_context(cert, key), implicit_tls=request.param == "smtps")
    yield sink
    sink.stop()


def option(url: str, extra: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{extra}" if extra else url


def log_lines(tmp_path: Path, event: str) -> list[dict[str, Any]]:
    logs.close()  # everything queued is written
    lines = [json.loads(line) for line in (tmp_path / "relay.log").read_text().splitlines()]
    return [line for line in lines if line["event"] == event]


def test_a_self_signed_smarthost_is_refused_by_default(app_factory: Any, tls_sink: Sink, tmp_path: Path) -> None:
    app = app_factory(f"sqlite:///{tmp_path}/r.db", ManualClock(), outbound={"url": tls_sink.url})
    worker = Worker.for_app(app)
    opened = new_case(app)
    counts = asyncio.run(worker.run_pass())
    assert (counts.sent, counts.deferred) == (0, 1)
    delivery = case_store.case_detail(opened.case_id).deliveries[0]
    assert delivery.state == "queued"
    assert "certificate verify failed" in delivery.last_error and "?cafile=" in delivery.last_error
    [line] = log_lines(tmp_path, "delivery.deferred")
    assert "certificate verify failed: self-signed certificate" in line["msg"]
    assert "[outbound] url" in line["msg"] and "?cafile=PATH" in line["msg"]
    assert tls_sink.to(REVIEWER) == []


@pytest.mark.parametrize("trust", ["cafile=certs/smarthost.pem", "verify=no"])
def test_a_self_signed_smarthost_delivers_when_trusted(app_factory: Any, tls_sink: Sink, tmp_path: Path,
                                                       trust: str) -> None:
    """`?cafile=` relative to the settings file (here the test's folder), or `?verify=no`."""
    app = app_factory(f"sqlite:///{tmp_path}/r.db", ManualClock(), outbound={"url": option(tls_sink.url, trust)})
    if trust.startswith("cafile"):
        assert f"cafile={tmp_path}/certs/smarthost.pem" in app.settings.outbound.url
    opened = new_case(app)
    counts = asyncio.run(Worker.for_app(app).run_pass())
    assert (counts.sent, counts.deferred) == (1, 0), case_store.case_detail(opened.case_id).deliveries[0].last_error
    assert len(tls_sink.to(REVIEWER)) == 1


def test_a_cafile_of_another_ca_is_refused(app_factory: Any, tls_sink: Sink, tmp_path: Path) -> None:
    """Only the named bundle is trusted: a bundle that does not hold the smarthost's CA refuses it."""
    self_signed(tmp_path / "other")
    url = option(tls_sink.url, "cafile=other/smarthost.pem")
    app = app_factory(f"sqlite:///{tmp_path}/r.db", ManualClock(), outbound={"url": url})
    new_case(app)
    assert asyncio.run(Worker.for_app(app).run_pass()).deferred == 1
    assert tls_sink.to(REVIEWER) == []


def _settings_error(tmp_path: Path, url: str) -> str:
    folder = tmp_path / "conf"
    folder.mkdir(exist_ok=True)
    (folder / "settings.toml").write_text(f'[outbound]\nurl = "{url}"\n')
    with pytest.raises(config.ConfigError) as info:
        config.load(folder / "settings.toml", environ={})
    return str(info.value)


@pytest.mark.parametrize(("make", "words"), [
    (lambda conf: None, "no such file"),
    (lambda conf: (conf / "ca.pem").mkdir(), "not a file"),
    (lambda conf: (conf / "ca.pem").write_text("not a certificate\n"), "not a PEM file of CA certificates"),
    (lambda conf: (conf / "ca.pem").write_bytes(b"\x30\x82\x01\x0a" + bytes(266)), "not a PEM file"),
])
def test_a_bad_cafile_is_one_settings_line_naming_the_key_and_path(tmp_path: Path, make: Any, words: str) -> None:
    """Relative to the settings file (conf/), like every path; the password is not repeated."""
    (tmp_path / "conf").mkdir()
    make(tmp_path / "conf")
    message = _settings_error(tmp_path, "smtp://relay:s3cret@127.0.0.1:587?starttls=require&cafile=ca.pem")
    assert "\n" not in message
    assert message.startswith("[outbound] url: ") and f"{tmp_path}/conf/ca.pem" in message and words in message
    assert "s3cret" not in message


def test_an_unreadable_cafile_is_a_settings_error() -> None:
    """Read by a user who may not read the file (root reads any file: the relay runs as another user)."""
    assert os.geteuid() == 0, "this test runs as root (tests/run does), to act as a second user"
    folder = Path(tempfile.mkdtemp(prefix="relay-cafile-"))
    try:
        folder.chmod(0o755)
        cert, _ = self_signed(folder / "conf", "ca")
        (folder / "conf").chmod(0o755)
        cert.chmod(0o600)  # root's alone
        settings = folder / "conf" / "settings.toml"
        settings.write_text('[outbound]\nurl = "smtps://127.0.0.1?cafile=ca.pem"\n')
        settings.chmod(0o644)
        result = relay_cli(settings, "status", user="nobody")
        message = result.stderr.strip()
        assert result.returncode == 2 and "\n" not in message, result.stderr
        assert "[outbound] url" in message and str(cert) in message and "cannot be read" in message
    finally:
        shutil.rmtree(folder)


def test_a_cafile_of_a_key_alone_is_a_settings_error(tmp_path: Path) -> None:
    """A PEM file, but no certificate in it (the key was named instead of the certificate)."""
    _, key = self_signed(tmp_path / "conf", "ca")
    message = _settings_error(tmp_path, "smtps://127.0.0.1?cafile=ca.key")
    assert "[outbound] url" in message and str(key) in message and "not a PEM file of CA certificates" in message
