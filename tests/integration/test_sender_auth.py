"""Who really sent it: SPF, DKIM and DMARC checked by the relay against a real DNS server of the
test's own (dnsmasq on a loopback port), over real SMTP, on SQLite and PostgreSQL. Messages are
signed with dkimpy by keys the test makes and publishes."""

from __future__ import annotations

import time
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from relay.core import dkim_sign
from relay.lifecycle.opening import Opened
from tests.helpers import outside_signer
from tests.helpers.dns import DnsServer
from tests.helpers.environment import Sink, new_case
from tests.helpers.smtp import smtp_send
from tests.helpers.waiting import log_text

GENUINE, FORGED, QUARANTINE, NO_POLICY = "example.de", "strict.example", "careful.example", "relaxed.example"


def rsa_pem() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    return pem, dkim_sign.public_record(dkim_sign.parse_key(pem))


@pytest.fixture
def zones(dns_server: DnsServer) -> bytes:
    """The domains of the tests and the key that signs for the genuine one."""
    pem, record = rsa_pem()
    dns_server.zone(GENUINE, {"@": [("TXT", "v=spf1 ip4:127.0.0.1 -all")],
                              "_dmarc": [("TXT", "v=DMARC1; p=reject")],
                              "mail._domainkey": [("TXT", tuple(dkim_sign.txt_strings(record)))]})
    dns_server.zone(FORGED, {"@": [("TXT", "v=spf1 ip4:192.0.2.1 -all")],
                             "_dmarc": [("TXT", "v=DMARC1; p=reject")]})
    dns_server.zone(QUARANTINE, {"@": [("TXT", "v=spf1 -all")], "_dmarc": [("TXT", "v=DMARC1; p=quarantine")]})
    dns_server.zone(NO_POLICY, {"@": [("TXT", "v=spf1 -all")]})
    return pem


def relay(db_url: str, app_factory: Any, relay_factory: Any, sink: Sink, dns_server: DnsServer, **auth: str) -> Any:
    app = app_factory(db_url, outbound={"url": sink.url}, auth={"mode": "verify", **auth},
                      dns={"nameservers": [dns_server.nameserver], "timeout": "2s"})
    return app, relay_factory(app)


def answer(reviewer: str, case: Opened, text: str = "Meine Bestellnummer ist BE-4711.", key: bytes | None = None,
           extra: str = "", signer: str | None = None) -> bytes:
    raw = (f"From: Max <{reviewer}>\r\nTo: {case.reviewer_address}\r\nSubject: Re: Anfrage\r\n"
           f"Message-ID: <{time.time_ns()}@{reviewer.split('@')[1]}>\r\n{extra}\r\n{text}\r\n").encode()
    if key is not None:
        raw = dkim.sign(raw, b"mail", (signer or reviewer.split("@")[1]).encode(), key,
                        include_headers=[b"from", b"to", b"subject", b"message-id"]) + raw
    return raw


def events_of(app: Any, case_id: int) -> list[tuple[str, str]]:
    from relay.store import case_records
    return [(e.name, e.detail) for e in case_records.case_detail(case_id).events]


def test_genuine_answers_pass_and_forged_ones_are_refused(db_url: str, app_factory: Any, relay_factory: Any,
                                                          sink: Sink, dns_server: DnsServer, zones: bytes) -> None:
    app, running = relay(db_url, app_factory, relay_factory, sink, dns_server)
    genuine = new_case(app, reviewer=f"max@{GENUINE}", review_id="R-genuine")
    code, text = smtp_send(running.port, f"max@{GENUINE}", genuine.reviewer_address,
                           answer(f"max@{GENUINE}", genuine, key=zones))
    assert code == 250, text
    verdicts = [d for n, d in events_of(app, genuine.case_id) if n == "message.authenticated"]
    assert verdicts == [f"reviewer: spf=pass({GENUINE}) dkim={GENUINE}:pass dmarc=pass p=reject"]

    # someone who knows the relay address and the reviewer's address writes as the reviewer
    forged = new_case(app, reviewer=f"max@{FORGED}", review_id="R-forged")
    code, text = smtp_send(running.port, f"max@{FORGED}", forged.reviewer_address, answer(f"max@{FORGED}", forged))
    assert code == 550 and text.startswith("5.7.26") and "DMARC" in text, text
    # a signature of another domain does not help a forged From
    code, text = smtp_send(running.port, f"max@{FORGED}", forged.reviewer_address,
                           answer(f"max@{FORGED}", forged, key=zones, signer=GENUINE))
    assert code == 550 and text.startswith("5.7.26"), text

    quarantined = new_case(app, reviewer=f"max@{QUARANTINE}", review_id="R-quarantine")
    code, _ = smtp_send(running.port, f"max@{QUARANTINE}", quarantined.reviewer_address,
                        answer(f"max@{QUARANTINE}", quarantined))
    assert code == 550

    # no DMARC record: the address check alone decides; the SPF fail is recorded, not refused
    relaxed = new_case(app, reviewer=f"max@{NO_POLICY}", review_id="R-relaxed")
    code, text = smtp_send(running.port, f"max@{NO_POLICY}", relaxed.reviewer_address,
                           answer(f"max@{NO_POLICY}", relaxed))
    assert code == 250, text
    assert [d for n, d in events_of(app, relaxed.case_id) if n == "message.authenticated"] == [
        f"reviewer: spf=fail({NO_POLICY}) dkim=none dmarc=none"]
    log = (app.settings.log.file).read_text()
    assert "5.7.26" in log and "max@" not in log  # refusals logged by domain, never the address
    counted = {(s.labels["dmarc"], s.labels["action"]): s.value
               for family in text_string_to_metric_families(generate_latest(app.metrics.registry).decode())
               if family.name == "relay_sender_auth" for s in family.samples if s.name.endswith("_total")}
    assert counted[("pass", "accepted")] == 1 and counted[("fail", "refused")] == 3
    assert counted[("none", "accepted")] == 1


def test_quarantine_may_be_accepted(db_url: str, app_factory: Any, relay_factory: Any, sink: Sink,
                                    dns_server: DnsServer, zones: bytes) -> None:
    app, running = relay(db_url, app_factory, relay_factory, sink, dns_server, quarantine="accept")
    case = new_case(app, reviewer=f"max@{QUARANTINE}", review_id="R-q")
    code, text = smtp_send(running.port, f"max@{QUARANTINE}", case.reviewer_address, answer(f"max@{QUARANTINE}", case))
    assert code == 250, text


def test_dns_trouble_is_a_temporary_refusal_until_it_answers(db_url: str, app_factory: Any, relay_factory: Any,
                                                              sink: Sink, dns_server: DnsServer, zones: bytes) -> None:
    app, running = relay(db_url, app_factory, relay_factory, sink, dns_server)
    case = new_case(app, reviewer=f"max@{GENUINE}", review_id="R-dns")
    with dns_server.unresponsive():
        code, text = smtp_send(running.port, f"max@{GENUINE}", case.reviewer_address,
                               answer(f"max@{GENUINE}", case, key=zones))
        assert code == 451 and text.startswith("4.4.3"), text
    code, text = smtp_send(running.port, f"max@{GENUINE}", case.reviewer_address,
                           answer(f"max@{GENUINE}", case, key=zones))
    assert code == 250, text  # the sender's retry, once the name servers answer again


def test_trust_mode_reads_only_its_own_front_mta(db_url: str, app_factory: Any, relay_factory: Any, sink: Sink,
                                                 dns_server: DnsServer, zones: bytes) -> None:
    app = app_factory(db_url, outbound={"url": sink.url},
                      auth={"mode": "trust", "trusted_authserv_id": "mx.relay.test"})
    running = relay_factory(app)
    case = new_case(app, reviewer=f"max@{FORGED}", review_id="R-trust")
    failed = "Authentication-Results: mx.relay.test; spf=fail smtp.mailfrom=strict.example; " \
             "dmarc=fail header.from=strict.example policy.dmarc=reject\r\n"
    code, text = smtp_send(running.port, f"max@{FORGED}", case.reviewer_address,
                           answer(f"max@{FORGED}", case, extra=failed))
    assert code == 550 and text.startswith("5.7.26"), text
    # a forged result from outside (another authserv-id) counts for nothing: no trusted result, as with mode off
    forged = "Authentication-Results: mx.relay.test.evil.example; dmarc=pass header.from=strict.example\r\n"
    code, text = smtp_send(running.port, f"max@{FORGED}", case.reviewer_address,
                           answer(f"max@{FORGED}", case, extra=forged))
    assert code == 250, text
    passed = "Authentication-Results: mx.relay.test; dkim=pass header.d=strict.example; " \
             "dmarc=pass header.from=strict.example policy.dmarc=reject\r\n"
    code, text = smtp_send(running.port, f"max@{FORGED}", case.reviewer_address,
                           answer(f"max@{FORGED}", case, extra=passed))
    assert code == 250, text


def test_dkim_alone_carries_forwarded_mail_and_a_broken_signature_does_not(
        db_url: str, app_factory: Any, relay_factory: Any, sink: Sink, dns_server: DnsServer) -> None:
    """A domain whose SPF never allows the relay's client (mail that came through a forwarder):
    its own valid signature passes DMARC, a signature by a key it did not publish fails it. And
    SPF softfail without a DMARC record is recorded only."""
    pem, record = rsa_pem()
    other, _ = rsa_pem()
    dns_server.zone("forwarded.example", {"@": [("TXT", "v=spf1 -all")], "_dmarc": [("TXT", "v=DMARC1; p=reject")],
                                          "mail._domainkey": [("TXT", tuple(dkim_sign.txt_strings(record)))]})
    dns_server.zone("soft.example", {"@": [("TXT", "v=spf1 ~all")]})
    app, running = relay(db_url, app_factory, relay_factory, sink, dns_server)
    case = new_case(app, reviewer="max@forwarded.example", review_id="R-fwd")
    code, text = smtp_send(running.port, "max@forwarded.example", case.reviewer_address,
                           answer("max@forwarded.example", case, key=pem))
    assert code == 250, text
    code, text = smtp_send(running.port, "max@forwarded.example", case.reviewer_address,
                           answer("max@forwarded.example", case, key=other))
    assert code == 550 and text.startswith("5.7.26"), text
    verdicts = [d for n, d in events_of(app, case.case_id) if n == "message.authenticated"]
    assert verdicts == ["reviewer: spf=fail(forwarded.example) dkim=forwarded.example:pass dmarc=pass p=reject"]

    soft = new_case(app, reviewer="max@soft.example", review_id="R-soft")
    code, text = smtp_send(running.port, "max@soft.example", soft.reviewer_address, answer("max@soft.example", soft))
    assert code == 250, text
    assert [d for n, d in events_of(app, soft.case_id) if n == "message.authenticated"] == [
        "reviewer: spf=softfail(soft.example) dkim=none dmarc=none"]


def test_an_internationalised_domain_is_checked_by_its_ascii_name(
        db_url: str, app_factory: Any, relay_factory: Any, sink: Sink, dns_server: DnsServer) -> None:
    ascii_name = "xn--bcher-kva.example"  # bücher.example
    dns_server.zone(ascii_name, {"@": [("TXT", "v=spf1 ip4:127.0.0.1 -all")], "_dmarc": [("TXT", "v=DMARC1; p=reject")]})
    app, running = relay(db_url, app_factory, relay_factory, sink, dns_server)
    case = new_case(app, reviewer="max@bücher.example", review_id="R-idn")
    # the From header in UTF-8 (as an SMTPUTF8 client writes it), the envelope in the ASCII form
    code, text = smtp_send(running.port, f"max@{ascii_name}", case.reviewer_address,
                           answer("max@bücher.example", case))
    assert code == 250, text
    assert [d for n, d in events_of(app, case.case_id) if n == "message.authenticated"] == [
        f"reviewer: spf=pass({ascii_name}) dkim=none dmarc=pass p=reject"]


def test_a_signature_made_by_an_outside_signer_counts(db_url: str, app_factory: Any, relay_factory: Any,
                                                      sink: Sink, dns_server: DnsServer, zones: bytes,
                                                      tmp_path: Any) -> None:
    """Signed by Perl's Mail::DKIM, not by the library the relay verifies with; the domain's SPF
    does not allow the client, so only the signature can make DMARC pass."""
    pem, record = rsa_pem()
    dns_server.zone("perl.example", {"@": [("TXT", "v=spf1 -all")], "_dmarc": [("TXT", "v=DMARC1; p=reject")],
                                     "outside._domainkey": [("TXT", tuple(dkim_sign.txt_strings(record)))]})
    app, running = relay(db_url, app_factory, relay_factory, sink, dns_server)
    case = new_case(app, reviewer="max@perl.example", review_id="R-perl")
    signed = outside_signer.sign(answer("max@perl.example", case), "perl.example", "outside", pem, tmp_path)
    code, text = smtp_send(running.port, "max@perl.example", case.reviewer_address, signed)
    assert code == 250, text
    assert [d for n, d in events_of(app, case.case_id) if n == "message.authenticated"] == [
        "reviewer: spf=fail(perl.example) dkim=perl.example:pass dmarc=pass p=reject"]


def test_no_spf_record_and_a_monitoring_policy_only_record(db_url: str, app_factory: Any, relay_factory: Any,
                                                           sink: Sink, dns_server: DnsServer) -> None:
    """SPF `none` (the domain publishes no SPF record) and DMARC `p=none` (a domain that only
    watches): both accepted on the address check, the verdict stored as it is."""
    dns_server.zone("nospf.example", {"_dmarc": [("TXT", "v=DMARC1; p=reject")], "www": [("A", "127.0.0.2")]})
    dns_server.zone("watching.example", {"@": [("TXT", "v=spf1 -all")], "_dmarc": [("TXT", "v=DMARC1; p=none")]})
    app, running = relay(db_url, app_factory, relay_factory, sink, dns_server)
    watched = new_case(app, reviewer="max@watching.example", review_id="R-watch")
    code, text = smtp_send(running.port, "max@watching.example", watched.reviewer_address,
                           answer("max@watching.example", watched))
    assert code == 250, text
    assert [d for n, d in events_of(app, watched.case_id) if n == "message.authenticated"] == [
        "reviewer: spf=fail(watching.example) dkim=none dmarc=fail p=none"]
    unpublished = new_case(app, reviewer="max@nospf.example", review_id="R-nospf")
    code, text = smtp_send(running.port, "max@nospf.example", unpublished.reviewer_address,
                           answer("max@nospf.example", unpublished))
    assert code == 550 and text.startswith("5.7.26"), text  # SPF none aligns nothing: p=reject refuses
    log_text(app.settings.log.file, "spf=none(nospf.example)")
