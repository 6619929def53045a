"""The smarthost URL of `[outbound] url`, read in one place: `smtp://[user:pass@]host[:port]` with
`?starttls=require`, or `smtps://host[:port]` (TLS from the first byte), each with the TLS options
`?verify=no` and `?cafile=PATH`.

Settings validation and the SMTP transport both read the URL with `parse`, so what start-up accepts
is exactly what the transport does: an option it would ignore (a typo such as `?startls=require`
that would silently send in clear) stops start-up instead. Checking that the `cafile` exists and
holds certificates is file work, done by the settings (relay.config_values).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

OPTIONS = ("starttls", "verify", "cafile")
_YES = ("require", "required", "yes", "true", "1")
_NO = ("no", "false", "0")


@dataclass(frozen=True)
class Smarthost:
    host: str
    port: int
    implicit_tls: bool  # smtps://: TLS from the first byte
    starttls: bool  # smtp:// with ?starttls=require: STARTTLS or no delivery
    verify: bool  # check the certificate and the host name (?verify=no turns both off)
    cafile: str | None  # trust these certificates instead of the system's (?cafile=PATH)
    username: str | None
    password: str | None

    @property
    def tls(self) -> bool:
        return self.implicit_tls or self.starttls


def shown(url: str) -> str:
    """The URL for an error message: the password is not repeated on a terminal or in a journal."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def parse(url: str) -> Smarthost:
    """Read a smarthost URL; ValueError with one sentence for anything the transport could not use."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError(f"{shown(url)!r} is neither maildir:PATH nor smtp://host:port")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{shown(url)!r} has an invalid port") from None
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"{shown(url)!r} has a port out of range 1-65535")
    options = _options(parts.query)
    implicit_tls = parts.scheme == "smtps"
    starttls = _switch(options, "starttls", _YES, default=False)
    verify = _switch(options, "verify", ("yes", "true", "1"), default=True)
    cafile = options.get("cafile")
    if implicit_tls and "starttls" in options:
        raise ValueError("?starttls= is for smtp://; smtps:// speaks TLS from the start")
    if not (implicit_tls or starttls) and ("verify" in options or "cafile" in options):
        raise ValueError("?verify= and ?cafile= are TLS options: add ?starttls=require, or use smtps://")
    if cafile is not None and not verify:
        raise ValueError("?cafile= and ?verify=no contradict each other: a CA bundle is only used to verify")
    if cafile == "":
        raise ValueError("?cafile= needs a path to a PEM file of CA certificates")
    return Smarthost(host=parts.hostname, port=port or (465 if implicit_tls else 25), implicit_tls=implicit_tls,
                     starttls=starttls, verify=verify, cafile=cafile,
                     username=unquote(parts.username) if parts.username else None,
                     password=unquote(parts.password) if parts.password else None)


def with_cafile(url: str, cafile: str) -> str:
    """The URL with its `?cafile=` replaced (by the resolved path); the rest as it was written."""
    parts = urlsplit(url)
    pairs = [(name, cafile if name == "cafile" else value)
             for name, value in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(pairs, quote_via=quote, safe="/")))


def _options(query: str) -> dict[str, str]:
    pairs = parse_qsl(query, keep_blank_values=True)
    unknown = sorted({name for name, _ in pairs if name not in OPTIONS})
    if unknown:
        raise ValueError(f"unknown option{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join('?' + name for name in unknown)} (known: {', '.join(OPTIONS)})")
    options: dict[str, str] = {}
    for name, value in pairs:
        if name in options:
            raise ValueError(f"?{name}= is given twice")
        options[name] = value
    return options


def _switch(options: dict[str, str], name: str, yes: tuple[str, ...], default: bool) -> bool:
    if name not in options:
        return default
    value = options[name].lower()
    if value not in yes + _NO:
        raise ValueError(f"?{name}={options[name]} is not one of {', '.join(yes + _NO)}")
    return value in yes
