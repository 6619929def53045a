"""DMARC (RFC 7489) as a function of what was looked up: given the From domain, the SPF and DKIM
results, and the DMARC record found, the verdict and what the relay does with it. Pure: the
look-ups (SPF with pyspf, DKIM with dkimpy, the `_dmarc` TXT records with dnspython) happen in the
shell; the organizational domain comes from the Public Suffix List (the `publicsuffixlist`
package, which ships the list).

What the relay does (the policy of issue "who really sent it"):
- DMARC `fail` at a domain whose policy is `reject` is refused (`550 5.7.26`); `quarantine` too,
  unless `[auth] quarantine = "accept"`;
- DNS trouble that could change the answer is a temporary refusal (`451 4.4.3`), never a silent
  accept;
- no DMARC record: the relay's own address check alone decides (an SPF `fail` is recorded);
- DMARC `pass` through an aligned DKIM signature is a pass even when SPF fails (forwarded mail).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from publicsuffixlist import PublicSuffixList

from relay.core.outcomes import Outcome

_PSL = PublicSuffixList()
TEMPORARY = "temperror"
POLICIES = ("none", "quarantine", "reject")


def organizational_domain(domain: str) -> str:
    """The registrable domain under a public suffix (`mail.shop.example.co.uk` -> `example.co.uk`);
    the domain itself where the list knows no suffix for it."""
    name = domain.lower().rstrip(".")
    return _PSL.privatesuffix(name) or name


@dataclass(frozen=True)
class Record:
    policy: str                 # p=
    subdomain_policy: str | None  # sp=
    strict_dkim: bool           # adkim=s
    strict_spf: bool            # aspf=s


def parse_record(texts: Sequence[str]) -> Record | None:
    """The one `v=DMARC1` record among a name's TXT strings (RFC 7489 6.6.3: none, or more than
    one, is no record); a record without a valid `p=` is no policy either."""
    records = [t for t in texts if t.replace(" ", "").lower().startswith("v=dmarc1")]
    if len(records) != 1:
        return None
    tags: dict[str, str] = {}
    for part in records[0].split(";"):
        name, _, value = part.partition("=")
        if name.strip():
            tags.setdefault(name.strip().lower(), value.strip().lower())
    policy = tags.get("p")
    if policy not in POLICIES:
        return None
    sub = tags.get("sp")
    return Record(policy=policy, subdomain_policy=sub if sub in POLICIES else None,
                  strict_dkim=tags.get("adkim") == "s", strict_spf=tags.get("aspf") == "s")


def aligned(domain: str, from_domain: str, strict: bool,
            org: Callable[[str], str] = organizational_domain) -> bool:
    a, b = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    return a == b if strict else org(a) == org(b)


@dataclass(frozen=True)
class Checks:
    """What the shell found: SPF for the envelope sender's domain (or HELO's), each DKIM signature,
    and the DMARC record (at the From domain, else at its organizational domain)."""

    from_domain: str
    spf: str = "none"                 # pass fail softfail neutral none temperror permerror
    spf_domain: str = ""
    dkim: tuple[tuple[str, str], ...] = ()   # (d=, result) per signature
    record: Record | None = None
    record_at_org: bool = False       # the record came from the organizational domain
    record_lookup: str = "ok"         # ok | none | temperror
    reported: str | None = None       # a trusted front MTA's own DMARC result (trust mode)


@dataclass(frozen=True)
class Verdict:
    from_domain: str
    spf: str
    spf_domain: str
    dkim: tuple[tuple[str, str], ...]
    dmarc: str                        # pass fail none temperror
    policy: str | None                # the policy that applies to the From domain, where there is one
    reasons: tuple[str, ...] = field(default=())

    def summary(self) -> str:
        """One line for the log and the case's timeline (domains only, never an address)."""
        dkim = ",".join(f"{d}:{r}" for d, r in self.dkim) or "none"
        policy = f" p={self.policy}" if self.policy else ""
        return f"spf={self.spf}({self.spf_domain or '-'}) dkim={dkim} dmarc={self.dmarc}{policy}"


def evaluate(checks: Checks, org: Callable[[str], str] = organizational_domain) -> Verdict:
    """The DMARC verdict for one message."""
    if checks.record_lookup == TEMPORARY:
        return _verdict(checks, TEMPORARY, None)
    record = checks.record
    if checks.reported is not None:  # the front MTA judged: its result stands
        result = checks.reported if checks.reported in ("pass", "fail", TEMPORARY) else "none"
        return _verdict(checks, result, record.policy if record else None)
    if record is None:
        return _verdict(checks, "none", None)
    policy = record.policy
    if checks.record_at_org and record.subdomain_policy and org(checks.from_domain) != checks.from_domain.lower():
        policy = record.subdomain_policy
    dkim_pass = any(result == "pass" and aligned(domain, checks.from_domain, record.strict_dkim, org)
                    for domain, result in checks.dkim)
    spf_pass = checks.spf == "pass" and aligned(checks.spf_domain, checks.from_domain, record.strict_spf, org)
    if dkim_pass or spf_pass:
        return _verdict(checks, "pass", policy)
    # could an answer that did not come have made it pass? then it is not a fail yet
    maybe = checks.spf == TEMPORARY or any(result == TEMPORARY for _, result in checks.dkim)
    return _verdict(checks, TEMPORARY if maybe else "fail", policy)


def _verdict(checks: Checks, dmarc: str, policy: str | None) -> Verdict:
    return Verdict(from_domain=checks.from_domain, spf=checks.spf, spf_domain=checks.spf_domain, dkim=checks.dkim,
                   dmarc=dmarc, policy=policy)


def decide(verdict: Verdict, accept_quarantine: bool) -> Outcome | None:
    """What the verdict means for the message: a refusal, or None (the address check decides)."""
    if verdict.dmarc == TEMPORARY:
        return Outcome.AUTH_UNAVAILABLE
    if verdict.dmarc == "fail" and (verdict.policy == "reject"
                                    or (verdict.policy == "quarantine" and not accept_quarantine)):
        return Outcome.AUTH_FAILED
    return None
