"""The smarthost URL of `[outbound] url` as the transport and the settings read it: defaults, the
TLS options, and every option the transport would otherwise ignore refused with one sentence."""

from __future__ import annotations

import pytest

from relay.core import smarthost


def test_defaults_and_options() -> None:
    plain = smarthost.parse("smtp://mail.example.org")
    assert (plain.host, plain.port, plain.tls, plain.verify, plain.cafile) == ("mail.example.org", 25, False, True, None)
    implicit = smarthost.parse("smtps://mail.example.org")
    assert (implicit.port, implicit.implicit_tls, implicit.starttls, implicit.tls) == (465, True, False, True)
    login = smarthost.parse("smtp://relay:p%40ss%2Fw@127.0.0.1:587?starttls=require&cafile=/etc/ssl/ca.pem")
    assert (login.username, login.password, login.port, login.starttls) == ("relay", "p@ss/w", 587, True)
    assert login.cafile == "/etc/ssl/ca.pem" and login.verify
    assert not smarthost.parse("smtps://h?verify=no").verify
    assert not smarthost.parse("smtp://h?starttls=no").starttls


def test_with_cafile_replaces_only_the_path() -> None:
    url = "smtp://relay:p%40ss@127.0.0.1:587?starttls=require&cafile=ca.pem"
    rewritten = smarthost.with_cafile(url, "/srv/relay/my ca.pem")
    assert rewritten == "smtp://relay:p%40ss@127.0.0.1:587?starttls=require&cafile=/srv/relay/my%20ca.pem"
    assert smarthost.parse(rewritten).cafile == "/srv/relay/my ca.pem"


@pytest.mark.parametrize(("url", "words"), [
    ("smtp://h?startls=require", "unknown option ?startls"),
    ("smtp://h?starttls=require&foo=1&bar=2", "unknown options ?bar, ?foo"),
    ("smtp://h?starttls=maybe", "?starttls=maybe is not one of"),
    ("smtps://h?verify=perhaps", "?verify=perhaps is not one of"),
    ("smtp://h?cafile=ca.pem", "TLS options"),
    ("smtp://h?verify=no", "TLS options"),
    ("smtps://h?starttls=require", "smtps:// speaks TLS from the start"),
    ("smtps://h?cafile=ca.pem&verify=no", "contradict"),
    ("smtps://h?cafile=", "needs a path"),
    ("smtps://h?verify=no&verify=no", "given twice"),
    ("smtp://relay:s3cret@h:0", "'smtp://relay:***@h:0' has a port out of range"),
    ("smtp://relay:s3cret@h:x", "'smtp://relay:***@h:x' has an invalid port"),
    ("ftp://h", "neither maildir:PATH nor smtp://host:port"),
])
def test_what_the_transport_cannot_use_is_refused(url: str, words: str) -> None:
    with pytest.raises(ValueError) as info:
        smarthost.parse(url)
    assert words in str(info.value) and "s3cret" not in str(info.value)
