"""DKIM signatures on everything the relay sends, judged by two verifiers that look the keys up in a
real DNS server (tests/helpers/dns.py): dkimpy, and OpenDKIM (tests/helpers/opendkim.py), which
nobody here wrote. Forwards and every notice the lifecycle sends, over SMTP and into the maildir;
a message changed after signing; dual signing; keys that stop start-up; `relay dkim keygen`."""

from __future__ import annotations

import asyncio
import calendar
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from relay.app import App
from relay.core import dkim_sign
from relay.core.clock import ManualClock
from relay.lifecycle import scheduler as jobs
from relay.outbound import worker as outbox_worker
from relay.outbound.worker import Worker
from relay.store import case_records as case_store
from tests.helpers import opendkim
from tests.helpers.cli import relay_cli, write_settings
from tests.helpers.dns import DnsServer
from tests.helpers.environment import REPO, Sink, new_case
from tests.helpers.smtp import smtp_send

REVIEWER, BUSINESS = "max.mueller@example.de", "service@shop.example"
DOMAIN = "relay.test"


def write_key(path: Path, key: dkim_sign.PrivateKey, mode: int = 0o600) -> Path:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.write_bytes(pem)
    path.chmod(mode)
    return path


def publish(dns_server: DnsServer, *keys: dkim_sign.Key) -> None:
    """The keys' records in the relay domain's zone, as keygen prints them (255-byte strings)."""
    records: dict[str, Any] = {f"{key.selector}._domainkey": [
        ("TXT", tuple(dkim_sign.txt_strings(dkim_sign.public_record(key.private))))] for key in keys}
    dns_server.zone(DOMAIN, records)


def signatures(raw: bytes) -> list[dict[str, str]]:
    """The tags of each DKIM-Signature field, topmost first."""
    fields = [value for name, value in dkim.rfc822_parse(raw)[0] if name.lower() == b"dkim-signature"]
    return [{k.strip(): re.sub(r"\s+", "", v) for k, v in (p.split("=", 1) for p in f.decode().split(";") if "=" in p)}
            for f in fields]


def dkimpy_results(raw: bytes, dns_server: DnsServer) -> list[bool]:
    """dkimpy's verdict on each signature, its keys looked up in the test's DNS server."""
    results = []
    for index in range(len(signatures(raw))):
        try:
            results.append(bool(dkim.DKIM(raw).verify(index, dnsfunc=dns_server.dkim_dnsfunc())))
        except dkim.DKIMException:
            results.append(False)
    return results


def opendkim_results(raw: bytes, dns_server: DnsServer, folder: Path) -> list[str]:
    return [f"{r.result} s={r.selector} a={r.algorithm}" for r in opendkim.verify(raw, dns_server, folder)]


class World:
    """A relay with a DKIM key on a manual clock: inbound SMTP in a thread, the outbox and the jobs
    when the test says (the worker as `relay serve` builds it, from the settings)."""

    def __init__(self, app_factory: Any, relay_factory: Any, tmp_path: Path, outbound: dict[str, Any]) -> None:
        self.clock = ManualClock()
        self.app: App = app_factory(f"sqlite:///{tmp_path}/relay.db", self.clock, outbound=outbound,
                                    scheduler={"interval": "1h"}, cases={"reminder_before": "1d"})
        self.relay = relay_factory(self.app, background=False)
        self.worker = Worker.for_app(self.app)

    def run_jobs(self) -> dict[str, dict[str, int]]:
        return asyncio.run(jobs.run_once(self.app, self.worker))

    def says(self, sender: str, address: str, text: str) -> None:
        raw = f"From: <{sender}>\r\nSubject: Re: Anfrage\r\n\r\n{text}\r\n".encode()
        assert smtp_send(self.relay.port, sender, address, raw)[0] == 250


@pytest.fixture
def rsa_key(tmp_path: Path) -> dkim_sign.Key:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_key(tmp_path / "dkim-relay.pem", key)
    return dkim_sign.Key(DOMAIN, "relay", key)


def test_every_message_the_relay_sends_verifies(app_factory: Any, relay_factory: Any, sink: Sink,
                                                dns_server: DnsServer, rsa_key: dkim_sign.Key,
                                                tmp_path: Path) -> None:
    """Contact requests, a reminder, the forwards both ways, the reply notice and the expiry
    notice, as the smarthost receives them: each carries one rsa-sha256 signature by d=relay.test
    s=relay over the listed header fields (From oversigned), which dkimpy and OpenDKIM both find
    valid; a forward changed after signing fails both."""
    publish(dns_server, rsa_key)
    world = World(app_factory, relay_factory, tmp_path, {"url": sink.url, "dkim_key": "dkim-relay.pem"})
    started = calendar.timegm(world.clock.now().timetuple())
    answered = new_case(world.app, review_id="R-answered")
    silent = new_case(world.app, review_id="R-silent", reviewer="anna@example.de")
    world.run_jobs()  # the two contact requests
    world.clock.advance(timedelta(days=2))
    world.says(REVIEWER, answered.reviewer_address, "Meine Bestellnummer ist BE-48213.")
    world.run_jobs()  # the forward to the business
    world.says(BUSINESS, answered.business_address, "Danke, gefunden.")
    world.clock.advance(timedelta(hours=2))
    world.run_jobs()  # the forward to the reviewer, the reply notice
    world.clock.advance(timedelta(days=2))
    world.run_jobs()  # the reminder to the silent reviewer
    world.clock.advance(timedelta(days=1))
    world.run_jobs()  # the expiry notice

    sent = [d for case in (answered, silent) for d in case_store.case_detail(case.case_id).deliveries]
    assert sorted(d.kind for d in sent) == ["contact_request", "contact_request", "expiry_notice", "forward",
                                            "forward", "reminder", "reply_notice"]
    assert all(d.state == "sent" for d in sent)
    assert len(sink.messages) == len(sent)
    for number, message in enumerate(sink.messages):
        raw = message["raw"]
        [tags] = signatures(raw)
        assert (tags["a"], tags["d"], tags["s"], tags["c"]) == ("rsa-sha256", DOMAIN, "relay", "relaxed/relaxed")
        signed = tags["h"].split(":")
        assert signed.count("from") == 2 and signed[-1] == "from"  # oversigned
        present = {name.decode().lower() for name, _ in dkim.rfc822_parse(raw)[0]}
        listed = {"from", "to", "subject", "date", "message-id", "reply-to", "in-reply-to", "references",
                  "mime-version", "content-type", "content-transfer-encoding"}
        assert set(signed) == listed & present and {"to", "subject", "date", "message-id"} <= set(signed)
        assert started <= int(tags["t"]) <= calendar.timegm(world.clock.now().timetuple())  # the relay's clock
        assert dkimpy_results(raw, dns_server) == [True], message["to"]
        assert opendkim_results(raw, dns_server, tmp_path / f"opendkim-{number}") == ["pass s=relay a=rsa-sha256"]

    forward = sink.to(BUSINESS, "forward")[0]["raw"]
    changed = forward.replace(b"BE-48213", b"BE-48214")
    assert changed != forward
    assert dkimpy_results(changed, dns_server) == [False]
    assert opendkim_results(changed, dns_server, tmp_path / "opendkim-changed") == ["fail s=relay a=rsa-sha256"]
    log = (tmp_path / "relay.log").read_text()
    assert '"event": "dkim.signing"' in log and "d=relay.test s=relay (rsa-sha256)" in log


def test_dual_signing_gives_two_signatures_that_both_verify(app_factory: Any, sink: Sink, dns_server: DnsServer,
                                                            rsa_key: dkim_sign.Key, tmp_path: Path) -> None:
    ed = dkim_sign.Key(DOMAIN, "relay-ed25519", ed25519.Ed25519PrivateKey.generate())
    write_key(tmp_path / "dkim-ed.pem", ed.private)
    publish(dns_server, rsa_key, ed)
    app = app_factory(f"sqlite:///{tmp_path}/relay.db", ManualClock(), outbound={
        "url": sink.url, "dkim_key": "dkim-relay.pem", "dkim_key_ed25519": "dkim-ed.pem"})
    new_case(app)
    assert asyncio.run(Worker.for_app(app).run_pass()).sent == 1
    [message] = sink.messages
    raw = message["raw"]
    assert [(t["a"], t["s"]) for t in signatures(raw)] == [("rsa-sha256", "relay"), ("ed25519-sha256", "relay-ed25519")]
    assert dkimpy_results(raw, dns_server) == [True, True]
    assert opendkim_results(raw, dns_server, tmp_path / "opendkim") == [
        "pass s=relay a=rsa-sha256", "pass s=relay-ed25519 a=ed25519-sha256"]
    publish(dns_server, rsa_key)  # a receiver that finds no Ed25519 key still has the RSA signature
    assert dkimpy_results(raw, dns_server) == [True, False]
    rsa_only = opendkim.verify(raw, dns_server, tmp_path / "opendkim-rsa-only")
    assert [r.result for r in rsa_only] == ["pass", "fail"] and rsa_only[1].reason == "key not found in DNS"


def test_maildir_output_is_signed_and_unsigned_without_a_key(app_factory: Any, dns_server: DnsServer,
                                                             rsa_key: dkim_sign.Key, tmp_path: Path) -> None:
    publish(dns_server, rsa_key)
    signed_app = app_factory(f"sqlite:///{tmp_path}/relay.db", ManualClock(), outbound={
        "url": f"maildir:{tmp_path}/signed", "dkim_key": "dkim-relay.pem"})
    new_case(signed_app)
    assert asyncio.run(Worker.for_app(signed_app).run_pass()).sent == 1
    [file] = (tmp_path / "signed" / "new").iterdir()
    raw = file.read_bytes()
    assert raw.startswith(b"Return-Path: <bounce-") and len(signatures(raw)) == 1  # delivery headers on top
    assert dkimpy_results(raw, dns_server) == [True]
    assert opendkim_results(raw, dns_server, tmp_path / "opendkim") == ["pass s=relay a=rsa-sha256"]

    unsigned = Worker(signed_app, Worker.for_app(signed_app).transport)  # a worker built without keys
    new_case(signed_app, review_id="R-unsigned")
    assert asyncio.run(unsigned.run_pass()).sent == 1
    newest = max((tmp_path / "signed" / "new").iterdir(), key=lambda f: f.stat().st_mtime_ns)
    assert newest != file and signatures(newest.read_bytes()) == []
    assert outbox_worker.signing_line(()).startswith("outbound mail leaves unsigned")


def test_start_up_says_whether_mail_is_signed(app_factory: Any, relay_factory: Any, tmp_path: Path) -> None:
    relay = relay_factory(app_factory(f"sqlite:///{tmp_path}/relay.db", ManualClock()))
    relay.stop()
    events = [json.loads(line) for line in (tmp_path / "relay.log").read_text().splitlines()]
    [line] = [e for e in events if e["event"] == "dkim.signing"]
    assert line["msg"].startswith("outbound mail leaves unsigned: [outbound] dkim_key is empty")


def test_a_message_that_cannot_be_signed_is_retried_not_sent_unsigned(app_factory: Any, sink: Sink,
                                                                      rsa_key: dkim_sign.Key, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    app = app_factory(f"sqlite:///{tmp_path}/relay.db", ManualClock(), outbound={
        "url": sink.url, "dkim_key": "dkim-relay.pem"})
    opened = new_case(app)

    def broken(message: bytes, keys: Any, now: Any) -> bytes:
        raise ValueError("the message cannot be signed: it has no From")

    monkeypatch.setattr(outbox_worker.dkim_sign, "sign", broken)
    counts = asyncio.run(Worker.for_app(app).run_pass())
    assert (counts.sent, counts.deferred) == (0, 1) and sink.messages == []
    delivery = case_store.case_detail(opened.case_id).deliveries[0]
    assert delivery.state == "queued" and "could not sign the message (DKIM)" in delivery.last_error


def with_key(config: Path, lines: str = 'dkim_key = "dkim-relay.pem"') -> Path:
    """The settings file with `lines` added to its [outbound] section."""
    config.write_text(config.read_text().replace("[outbound]\n", f"[outbound]\n{lines}\n"))
    return config


@pytest.mark.parametrize(("setup", "words"), [
    (lambda key: key.chmod(0o644), ["is readable by group or others (mode 0644)", "chmod 600"]),
    (lambda key: key.chmod(0o620), ["gives group or others access (mode 0620)"]),
    (lambda key: key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"),
     ["holds no PEM private key"]),
    (lambda key: key.unlink(), ["No such file or directory"]),
], ids=["readable-by-others", "writable-by-group", "not-a-key", "missing"])
def test_a_key_that_cannot_be_used_stops_start_up_with_one_line(tmp_path: Path, rsa_key: dkim_sign.Key,
                                                                 setup: Any, words: list[str]) -> None:
    key = tmp_path / "dkim-relay.pem"
    setup(key)
    config = with_key(write_settings(tmp_path, f"sqlite:///{tmp_path}/relay.db", "maildir:outbox"))
    result = subprocess.run([sys.executable, "-m", "relay", "--config", str(config), "serve"], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("relay: settings: [outbound] dkim_key: ") and str(key) in line
    for word in words:
        assert word in line
    assert not (tmp_path / "relay.db").exists()  # stopped before anything was opened


def test_a_key_its_user_cannot_read_stops_start_up(rsa_key: dkim_sign.Key, tmp_path: Path) -> None:
    """The relay's user (here `nobody`) cannot read a key that belongs to root, mode 0600."""
    assert os.geteuid() == 0, "this test runs as root (tests/run does), to act as a second user"
    shared = Path(tempfile.mkdtemp(prefix="relay-dkim-"))  # pytest's tmp_path is private to root
    try:
        shared.chmod(0o755)
        key = write_key(shared / "dkim-relay.pem", rsa_key.private)
        config = with_key(write_settings(shared, "sqlite:///storage/relay.db", "maildir:outbox", log={"file": "-"}))
        config.chmod(0o644)
        result = relay_cli(config, "status", user="nobody")
    finally:
        shutil.rmtree(shared)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line == f"relay: settings: [outbound] dkim_key: {key}: cannot be read (Permission denied)"


def test_keygen_writes_a_key_whose_record_verifies_once_published(tmp_path: Path, dns_server: DnsServer) -> None:
    """`relay dkim keygen` writes the key 0600 next to the database and prints the record and the
    settings lines; with the record in DNS and the lines in the settings file, what the relay sends
    verifies. It never writes over a key. The same for an Ed25519 key added for dual signing."""
    config = write_settings(tmp_path, "sqlite:///storage/relay.db", "maildir:outbox")
    made = relay_cli(config, "dkim", "keygen", "--selector", "s2026")
    assert made.returncode == 0, made.stderr
    key = tmp_path / "storage" / "dkim-s2026.pem"
    assert key.stat().st_mode & 0o777 == 0o600 and b"PRIVATE KEY" in key.read_bytes()
    again = relay_cli(config, "dkim", "keygen", "--selector", "s2026")
    assert again.returncode == 1 and "exists" in again.stderr and key.read_bytes() == key.read_bytes()
    ed = relay_cli(config, "dkim", "keygen", "--selector", "s2026e", "--type", "ed25519", "--out", "keys/ed.pem")
    assert ed.returncode == 0, ed.stderr
    assert (tmp_path / "keys" / "ed.pem").stat().st_mode & 0o777 == 0o600

    records: dict[str, Any] = {}
    settings_lines = []
    for output in (made.stdout, ed.stdout):
        [line] = [line for line in output.splitlines() if " IN TXT " in line]
        name, _, rest = line.partition(" IN TXT ")
        strings = re.findall(r'"([^"]*)"', rest)
        assert all(len(s) <= 255 for s in strings)
        assert name.endswith(f"._domainkey.{DOMAIN}.")
        records[name.removesuffix(f"{DOMAIN}.").rstrip(".")] = [("TXT", tuple(strings))]
        settings_lines += [line for line in output.splitlines() if re.match(r"dkim_\w+ = ", line)]
    assert len(records["s2026._domainkey"][0][1]) == 2  # a 2048-bit key's record needs two strings
    assert settings_lines == ['dkim_key = "storage/dkim-s2026.pem"', 'dkim_selector = "s2026"',
                              'dkim_key_ed25519 = "keys/ed.pem"', 'dkim_selector_ed25519 = "s2026e"']
    dns_server.zone(DOMAIN, records)
    with_key(config, "\n".join(settings_lines))

    opened = relay_cli(config, "open-case", "--review-id", "R-1", "--business-id", "B-1", "--business-name", "Shop",
                       "--business-email", BUSINESS, "--reviewer-email", REVIEWER, "--reviewer-name", "Max M.",
                       "--message", "Bitte nennen Sie uns Ihre Bestellnummer.")
    assert opened.returncode == 0, opened.stderr
    assert json.loads(opened.stdout)["case"] == 1
    assert relay_cli(config, "run-jobs").returncode == 0
    [file] = (tmp_path / "outbox" / "new").iterdir()
    raw = file.read_bytes()
    assert [(t["s"], t["a"]) for t in signatures(raw)] == [("s2026", "rsa-sha256"), ("s2026e", "ed25519-sha256")]
    assert dkimpy_results(raw, dns_server) == [True, True]
    assert opendkim_results(raw, dns_server, tmp_path / "opendkim") == [
        "pass s=s2026 a=rsa-sha256", "pass s=s2026e a=ed25519-sha256"]
