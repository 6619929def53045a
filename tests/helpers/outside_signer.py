"""A DKIM signer nobody here wrote: Perl's Mail::DKIM (Debian's libmail-dkim-perl), run as a small
script through `perl -e`, signing rsa-sha256 with relaxed canonicalization."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SCRIPT = r"""
use strict; use warnings;
use Mail::DKIM::Signer; use Mail::DKIM::TextWrap;
my ($domain, $selector, $keyfile) = @ARGV;
my $dkim = Mail::DKIM::Signer->new(Algorithm => "rsa-sha256", Method => "relaxed", Domain => $domain,
                                   Selector => $selector, KeyFile => $keyfile);
binmode STDIN; binmode STDOUT; my @lines = <STDIN>;
for my $line (@lines) { $line =~ s/\r?\n\z/\r\n/; $dkim->PRINT($line); }
$dkim->CLOSE;
print $dkim->signature->as_string, "\r\n", @lines;
"""


def sign(message: bytes, domain: str, selector: str, key_pem: bytes, folder: Path) -> bytes:
    """`message` with Mail::DKIM's DKIM-Signature on top."""
    assert shutil.which("perl"), "perl is needed (Debian's perl-base)"
    found = subprocess.run(["perl", "-MMail::DKIM::Signer", "-e", "1"], capture_output=True)
    assert found.returncode == 0, "Mail::DKIM is missing: tests/run installs libmail-dkim-perl"
    key = folder / f"{selector}.{domain}.pem"
    key.write_bytes(key_pem)
    key.chmod(0o600)
    signed = subprocess.run(["perl", "-e", SCRIPT, domain, selector, str(key)], input=message,
                            capture_output=True, timeout=60, check=True)
    return signed.stdout
