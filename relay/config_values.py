"""The values settings hold, each parsed once, with a sentence for what is wrong: durations with
a unit, ports and sizes in range, paths relative to the settings file, domains, time zones, the
database and outbound URLs, lists of IP addresses, name servers, DKIM keys and selectors. Used by
relay.config's typed sections."""

from __future__ import annotations

import ipaddress
import json
import re
import ssl
import stat
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, NamedTuple
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator

from relay.core import addresses, dkim_sign, smarthost, webhooks

BUNDLED_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+)\s*([smhdw])")


def parse_duration(text: str) -> timedelta:
    """`30s`, `15m`, `5d`, `1d12h` -> timedelta. A unit is required: a bare number is ambiguous."""
    cleaned = text.strip().lower()
    if not cleaned or _DURATION.sub("", cleaned).strip():
        raise ValueError(f"{text!r} is not a duration (use a number with a unit: 30s, 15m, 2h, 5d, 1w)")
    return timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in _DURATION.findall(cleaned)))


def format_duration(value: timedelta) -> str:
    """The inverse of parse_duration, for messages and `relay status`."""
    seconds = int(value.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


# the folder relative paths are resolved against while a file is loaded (the settings file's), and
# the environment the overrides come from (the process's, or a test's own)
BASE: ContextVar[Path] = ContextVar("settings_base")
ENVIRON: ContextVar[Mapping[str, str]] = ContextVar("settings_environ")


def _resolve(path: Path) -> Path:
    return path if path.is_absolute() else BASE.get(Path.cwd()) / path


def _string(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} must be a non-empty string")
    return value.strip()


def _duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} must be a string with a unit, such as \"5d\"")
    return parse_duration(value)


def _duration_up_to(high: timedelta) -> Callable[[object], timedelta]:
    def parse(value: object) -> timedelta:
        duration = _duration(value)
        if duration > high:
            raise ValueError(f"{value!r} is longer than {format_duration(high)}")
        return duration
    return parse


def _int_range(low: int, high: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"{value!r} is out of range {low}-{high}")
        return value
    return parse


def _choice(*options: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if value not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(options)}")
        return str(value)
    return parse


def _path(value: object) -> Path:
    return _resolve(value if isinstance(value, Path) else Path(_string(value)))


def domain_name(value: object) -> str:
    text = _string(value).lower()
    if not addresses.is_domain(text):
        raise ValueError(f"{value!r} is not a domain name")
    return text


def optional_domain(value: object) -> str:
    """A domain name, or "" for a default filled in later."""
    return "" if value in ("", None) else domain_name(value)


def time_zone(value: object) -> str:
    text = _string(value)
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a known time zone") from None
    return text


def database_url(value: object) -> str:
    """`sqlite:///relative.db`, `sqlite:////absolute.db` or `postgresql://user@host:port/name`."""
    text = _string(value)
    scheme = urlsplit(text).scheme
    if scheme == "sqlite":
        rest = text[len("sqlite:///"):] if text.startswith("sqlite:///") else ""
        if not rest:
            raise ValueError(f"{text!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db")
        return "sqlite:///" + str(_resolve(Path(rest)))
    if scheme in ("postgresql", "postgres"):
        return text
    raise ValueError(f"{text!r} has an unknown scheme {scheme!r} (use sqlite:/// or postgresql://)")


def storage_key(value: object) -> str:
    """Where the storage key comes from: `file:PATH` (relative to `[relay] home`), `env:NAME`,
    `off` (values stored as they are: for measuring, never for a relay with real data), or ""
    for the default, `relay.key` beside the SQLite database (in `[relay] home` on PostgreSQL),
    made on the first start."""
    if value in ("", None):
        return ""
    text = _string(value)
    kind, _, rest = text.partition(":")
    if text == "off":
        return text
    if kind == "file" and rest.strip():
        return "file:" + str(_resolve(Path(rest.strip()).expanduser()))
    if kind == "env" and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rest.strip()):
        return "env:" + rest.strip()
    raise ValueError(f"{text!r}: write file:PATH, env:NAME or off")


def outbound_url(value: object) -> str:
    """`maildir:PATH` (relative to the settings file), or a smarthost: `smtp://host:port` or
    `smtps://host:port` with the options relay.core.smarthost reads. A `?cafile=` is resolved like
    every other path and checked here, so a missing or broken CA bundle stops start-up instead of
    deferring every delivery."""
    text = _string(value)
    if text.startswith("maildir:"):
        path = text[len("maildir:"):]
        if not path:
            raise ValueError("maildir: needs a folder, for example maildir:storage/outbox")
        return "maildir:" + str(_resolve(Path(path)))
    target = smarthost.parse(text)
    if target.cafile is None:
        return text
    cafile = _resolve(Path(target.cafile))
    _check_ca_bundle(cafile)
    return smarthost.with_cafile(text, str(cafile))


def _check_ca_bundle(path: Path) -> None:
    """A readable PEM file with at least one certificate, loaded the way the transport loads it."""
    if not path.exists():
        raise ValueError(f"?cafile={path}: no such file")
    if not path.is_file():
        raise ValueError(f"?cafile={path}: not a file")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(path))
    except ssl.SSLError as exc:
        raise ValueError(f"?cafile={path}: not a PEM file of CA certificates ({exc.reason or exc})") from None
    except OSError as exc:
        raise ValueError(f"?cafile={path}: cannot be read ({exc.strerror or exc})") from None


def http_url(value: object) -> str:
    """An absolute http(s) URL without a trailing slash (links are built by appending paths)."""
    text = _string(value).rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"{text!r} is not an http:// or https:// base URL")
    return text


def webhook_url(value: object) -> str:
    """Where webhooks go: an absolute http(s) URL, or "" for none (webhooks off)."""
    if value in ("", None):
        return ""
    text = _string(value)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        raise ValueError(f"{webhooks.endpoint(text)!r} is not an http:// or https:// URL")
    return text


def webhook_secret(value: object) -> str:
    """A Standard Webhooks secret (`whsec_` and base64), or "" for none. The message never repeats
    it: a settings error goes to the terminal and to service logs."""
    if hasattr(value, "get_secret_value"):  # the default, or settings validated again
        value = value.get_secret_value()
    if value in ("", None):
        return ""
    if not isinstance(value, str):
        raise ValueError("must be a string: whsec_ and base64")
    text = value.strip()
    webhooks.secret_key(text)
    return text


def _optional_file(value: object) -> Path | None:
    """A file that may be left out ("" = not configured)."""
    if value in ("", None):
        return None
    path = _path(value)
    if not path.is_file():
        raise ValueError(f"{value!r}: no such file")
    return path


def log_target(value: object) -> Path | None:
    """A log file, or "-" for JSON lines on stdout only (containers)."""
    return None if value in ("-", None) else _path(value)


def ip_addresses(value: object) -> tuple[str, ...]:
    """A list of IP addresses, e.g. ["127.0.0.1", "::1"] (or a comma-separated string)."""
    if not isinstance(value, list | tuple | str):
        raise ValueError(f"{value!r} must be a list of IP addresses")
    items = value.split(",") if isinstance(value, str) else value
    out = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        try:
            out.append(str(ipaddress.ip_address(item)))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address") from None
    return tuple(out)


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    raise ValueError(f"{value!r} is not true or false")


def between(low: int, high: int) -> BeforeValidator:
    return BeforeValidator(_int_range(low, high))


def at_most(high: timedelta) -> BeforeValidator:
    """A duration no longer than `high` (a wait that a service manager's stop timeout must cover)."""
    return BeforeValidator(_duration_up_to(high))


def between_durations(low: timedelta, high: timedelta) -> BeforeValidator:
    """A duration from `low` to `high`."""
    def parse(value: object) -> timedelta:
        duration = _duration(value)
        if not low <= duration <= high:
            raise ValueError(f"{value!r} is not between {format_duration(low)} and {format_duration(high)}")
        return duration
    return BeforeValidator(parse)


def one_of(*options: str) -> BeforeValidator:
    return BeforeValidator(_choice(*options))


Text = Annotated[str, BeforeValidator(_string)]
Duration = Annotated[timedelta, BeforeValidator(_duration)]
Folder = Annotated[Path, BeforeValidator(_path)]
Flag = Annotated[bool, BeforeValidator(_boolean)]
OptionalFile = Annotated[Path | None, BeforeValidator(_optional_file)]


def home_folder(value: object) -> Path:
    """`[relay] home`: the folder relative paths resolve against. relay.config resolves it (from
    the file or the environment) before anything else is validated, so here it is that folder."""
    return BASE.get(Path.cwd())


def templates_folder(value: object) -> Path:
    """The notice templates' folder; the templates shipped with the code where it does not exist
    (an install that keeps only its settings file elsewhere)."""
    folder = _path(value)
    return folder if folder.is_dir() else BUNDLED_TEMPLATES



class Nameserver(NamedTuple):
    """A DNS server the relay asks: its IP address and port."""

    address: str
    port: int = 53


def nameserver_list(value: object) -> tuple[Nameserver, ...]:
    """`[dns] nameservers`: IP addresses, each with an optional port ("127.0.0.1", "127.0.0.1:5353",
    "::1", "[::1]:5353"); a list, or from the environment a comma-separated or JSON list. Empty:
    the system's (/etc/resolv.conf). Names are refused: the server that would resolve them is the
    one being named."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"{value!r} is neither a JSON list nor a comma-separated one") from None
    if not isinstance(value, list | tuple | str):
        raise ValueError(f"{value!r} must be a list of name servers (\"127.0.0.1\" or \"127.0.0.1:5353\")")
    items = value.split(",") if isinstance(value, str) else value
    return tuple(_nameserver(str(item).strip()) for item in items if str(item).strip())


def _nameserver(text: str) -> Nameserver:
    host, port = text, "53"
    if text.startswith("["):  # [IPv6]:port
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") if rest.startswith(":") else ("" if rest else "53")
    elif text.count(":") == 1:  # IPv4:port (an IPv6 address has several colons)
        host, port = text.split(":")
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f"{text!r} is not a name server's IP address (with an optional :port)") from None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number 1-65535")
    return Nameserver(address, int(port))


def positive_duration(high: timedelta) -> BeforeValidator:
    """A duration above zero and no longer than `high` (a wait that must end, and not too late)."""
    def parse(value: object) -> timedelta:
        duration = _duration_up_to(high)(value)
        if not duration:
            raise ValueError(f"{value!r} is no time at all")
        return duration
    return BeforeValidator(parse)


@dataclass(frozen=True)
class KeyFile:
    """A DKIM private key as read at start-up: where it came from and the key. The file is read
    once, when the settings are loaded; the worker signs with `private` from then on."""

    path: Path
    private: dkim_sign.PrivateKey

    @property
    def kind(self) -> str:
        return dkim_sign.kind_of(self.private)

    def __repr__(self) -> str:  # never the key, wherever settings are shown
        return f"KeyFile({str(self.path)!r}, {self.kind})"


def dkim_key_file(value: object) -> KeyFile | None:
    """A DKIM private key file ("" = none): the owner's alone (no permission bits for group or
    others, as OpenDKIM demands too), readable, and a key the relay can sign with."""
    if value in ("", None) or isinstance(value, KeyFile):
        return value if isinstance(value, KeyFile) else None
    path = _path(value)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path}: not a file")
    if mode & 0o077:
        access = "is readable by group or others" if mode & 0o044 else "gives group or others access"
        raise ValueError(f"{path} {access} (mode {stat.S_IMODE(mode):04o}): a signing key must be its "
                         f"owner's alone (chmod 600 {path})")
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return KeyFile(path, dkim_sign.parse_key(pem))
    except ValueError as exc:
        raise ValueError(f"{path} {exc}") from None


def selector(value: object) -> str:
    """A DKIM selector (s=): the DNS labels in front of `._domainkey.<domain>`."""
    return dkim_sign.selector(_string(value))
