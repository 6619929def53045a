"""DMARC as a function of what was looked up (relay.core.dmarc): records, alignment, the verdict,
and what the relay does with it."""

from __future__ import annotations

import pytest

from relay.core.dmarc import Checks, Record, aligned, decide, evaluate, organizational_domain, parse_record
from relay.core.outcomes import Outcome

REJECT = Record(policy="reject", subdomain_policy=None, strict_dkim=False, strict_spf=False)


def test_records_are_read_as_the_rfc_says() -> None:
    assert parse_record(["v=DMARC1; p=reject; sp=none; adkim=s; rua=mailto:x@example.org"]) == Record(
        policy="reject", subdomain_policy="none", strict_dkim=True, strict_spf=False)
    assert parse_record(["v=spf1 -all", "v=DMARC1;p=quarantine"]) == Record("quarantine", None, False, False)
    assert parse_record([]) is None
    assert parse_record(["v=DMARC1; p=reject", "v=DMARC1; p=none"]) is None  # two records: none
    assert parse_record(["v=DMARC1; rua=mailto:x@example.org"]) is None       # no policy
    assert parse_record(["v=DMARC1; p=bogus"]) is None


def test_organizational_domains_come_from_the_public_suffix_list() -> None:
    assert organizational_domain("mail.shop.example.co.uk") == "example.co.uk"
    assert organizational_domain("News.Example.DE.") == "example.de"
    assert aligned("mail.example.de", "example.de", strict=False)
    assert not aligned("mail.example.de", "example.de", strict=True)
    assert not aligned("example.co.uk", "other.co.uk", strict=False)  # a public suffix aligns nothing


@pytest.mark.parametrize(("checks", "dmarc", "outcome"), [
    # a forged From at a p=reject domain: nothing aligned passes
    (Checks("example.de", spf="pass", spf_domain="evil.example", dkim=(("evil.example", "pass"),), record=REJECT),
     "fail", Outcome.AUTH_FAILED),
    # the genuine answer: DKIM of the From domain
    (Checks("example.de", spf="none", dkim=(("example.de", "pass"),), record=REJECT), "pass", None),
    # forwarded mail: SPF fails at the forwarder, the aligned signature still passes
    (Checks("example.de", spf="fail", spf_domain="forwarder.example", dkim=(("mail.example.de", "pass"),),
            record=REJECT), "pass", None),
    # SPF alone, aligned relaxed
    (Checks("example.de", spf="pass", spf_domain="bounces.example.de", record=REJECT), "pass", None),
    # no DMARC record: the relay's own address check decides, an SPF fail is only recorded
    (Checks("example.de", spf="fail", spf_domain="example.de"), "none", None),
    # DNS trouble that could change the answer: try again
    (Checks("example.de", record_lookup="temperror"), "temperror", Outcome.AUTH_UNAVAILABLE),
    (Checks("example.de", spf="temperror", spf_domain="example.de", record=REJECT), "temperror",
     Outcome.AUTH_UNAVAILABLE),
    # a p=none domain is only reported on
    (Checks("example.de", spf="fail", spf_domain="example.de", record=Record("none", None, False, False)),
     "fail", None),
])
def test_the_verdict_and_what_the_relay_does(checks: Checks, dmarc: str, outcome: Outcome | None) -> None:
    verdict = evaluate(checks)
    assert verdict.dmarc == dmarc
    assert decide(verdict, accept_quarantine=False) is outcome


def test_quarantine_is_refused_unless_accepted_and_subdomains_follow_sp() -> None:
    quarantine = Checks("example.de", spf="fail", spf_domain="example.de", record=Record("quarantine", None, False, False))
    assert decide(evaluate(quarantine), accept_quarantine=False) is Outcome.AUTH_FAILED
    assert decide(evaluate(quarantine), accept_quarantine=True) is None
    sub = Checks("mail.example.de", spf="fail", spf_domain="x.example", record=Record("reject", "none", False, False),
                 record_at_org=True)
    assert evaluate(sub).policy == "none" and decide(evaluate(sub), accept_quarantine=False) is None


def test_the_summary_names_domains_only() -> None:
    verdict = evaluate(Checks("example.de", spf="pass", spf_domain="example.de", dkim=(("example.de", "pass"),),
                              record=REJECT))
    assert verdict.summary() == "spf=pass(example.de) dkim=example.de:pass dmarc=pass p=reject"
    assert "@" not in verdict.summary()
