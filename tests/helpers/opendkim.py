"""OpenDKIM as an outside verifier: `opendkim -t` (its test mode, the milter's own code fed one
message from a file) with a configuration of the test's own, looking keys up in the test's DNS
server (tests/helpers/dns.py).

OpenDKIM resolves with libunbound; its `ResolverConfiguration` names an unbound configuration that
forwards every query to the test's server and nowhere else (no recursion from the root, no
DNSSEC). Unbound answers the special-use domains (`test.`, `localhost.`, `invalid.`) itself unless
told not to; the tests' relay domain is one of them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.dns import SBIN, DnsServer


@dataclass(frozen=True)
class Result:
    """OpenDKIM's verdict on one signature, from the Authentication-Results field it adds."""

    result: str  # pass, fail, neutral, temperror, permerror, ...
    domain: str
    selector: str
    algorithm: str
    reason: str


def unavailable() -> str | None:
    if shutil.which("opendkim", path=SBIN) is None:
        return "opendkim is not installed (tests/run installs Debian's opendkim)"
    return None


def verify(message: bytes, server: DnsServer, folder: Path) -> list[Result]:
    """OpenDKIM's result for each DKIM signature of `message`, topmost first."""
    reason = unavailable()
    assert reason is None, reason
    folder.mkdir(parents=True, exist_ok=True)
    unbound = folder / "unbound.conf"
    unbound.write_text("server:\n  do-not-query-localhost: no\n  do-ip6: no\n  module-config: \"iterator\"\n"
                       "  local-zone: \"test.\" nodefault\n  local-zone: \"localhost.\" nodefault\n"
                       "  local-zone: \"invalid.\" nodefault\n"
                       f"forward-zone:\n  name: \".\"\n  forward-addr: {server.address}@{server.port}\n")
    conf = folder / "opendkim.conf"
    conf.write_text(f"Mode v\nResolverConfiguration {unbound}\nSyslog no\nAuthservID relay-test\n"
                    "AlwaysAddARHeader yes\nMinimumKeyBits 1024\nMaximumSignaturesToVerify 5\n")
    path = folder / "message.eml"
    path.write_bytes(message)
    done = subprocess.run([shutil.which("opendkim", path=SBIN) or "opendkim", "-x", str(conf), "-vvv", "-t", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-1000:]
    header = re.search(r"hname='Authentication-Results' hvalue='([^']*)'", done.stdout)
    assert header, f"OpenDKIM added no Authentication-Results: {done.stdout[-1000:]} {done.stderr[-1000:]}"
    results = []
    # one "dkim=RESULT [reason="..."] [(comment; more)] header.x=... ..." per signature, ";" between
    for found in re.finditer(r'dkim=(\w+)((?:"[^"]*"|\([^)]*\)|[^;"(])*)', header.group(1)):
        details = found.group(2)
        tags = dict(re.findall(r"header\.(\w)=(\S+)", details))
        why = re.search(r'reason="([^"]*)"', details)
        results.append(Result(found.group(1), tags.get("d", ""), tags.get("s", ""), tags.get("a", ""),
                              why.group(1) if why else ""))
    return results
