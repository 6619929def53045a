"""Settings: one TOML file, overridable per key by `RELAY_<SECTION>_<KEY>` environment variables.

Every key is declared once in `SCHEMA` with its parser and default, so an unknown key, a malformed
duration or an out-of-range port stops start-up with one line that names the key and the problem,
instead of surfacing later as a confusing runtime error.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_CONFIG = "settings.toml"
ENV_CONFIG = "RELAY_CONFIG"


class ConfigError(Exception):
    """A setting that cannot be used; the message names the key."""


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


Parser = Callable[[Any, Path], Any]


def _string(value: Any, _base: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} must be a non-empty string")
    return value.strip()


def _duration(value: Any, _base: Path) -> timedelta:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} must be a string with a unit, such as \"5d\"")
    return parse_duration(value)


def _int_range(low: int, high: int) -> Parser:
    def parse(value: Any, _base: Path) -> int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"{value!r} is out of range {low}-{high}")
        return value
    return parse


def _choice(*options: str) -> Parser:
    def parse(value: Any, _base: Path) -> str:
        if value not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(options)}")
        return str(value)
    return parse


def _path(value: Any, base: Path) -> Path:
    return _resolve(Path(_string(value, base)), base)


def _resolve(path: Path, base: Path) -> Path:
    return path if path.is_absolute() else base / path


def _domain(value: Any, base: Path) -> str:
    text = _string(value, base).lower()
    if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+", text):
        raise ValueError(f"{value!r} is not a domain name")
    return text


def _timezone(value: Any, base: Path) -> str:
    text = _string(value, base)
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a known time zone") from None
    return text


def _database(value: Any, base: Path) -> str:
    """`sqlite:///relative.db`, `sqlite:////absolute.db` or `postgresql://user@host:port/name`."""
    text = _string(value, base)
    scheme = urlsplit(text).scheme
    if scheme == "sqlite":
        rest = text[len("sqlite:///"):] if text.startswith("sqlite:///") else ""
        if not rest:
            raise ValueError(f"{text!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db")
        return "sqlite:///" + str(_resolve(Path(rest), base))
    if scheme in ("postgresql", "postgres"):
        return text
    raise ValueError(f"{text!r} has an unknown scheme {scheme!r} (use sqlite:/// or postgresql://)")


def _outbound_url(value: Any, base: Path) -> str:
    """`maildir:PATH` (relative to the settings file), `smtp://host:port` or `smtps://host:port`."""
    text = _string(value, base)
    if text.startswith("maildir:"):
        path = text[len("maildir:"):]
        if not path:
            raise ValueError("maildir: needs a folder, for example maildir:storage/outbox")
        return "maildir:" + str(_resolve(Path(path), base))
    parts = urlsplit(text)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError(f"{text!r} is neither maildir:PATH nor smtp://host:port")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{text!r} has an invalid port") from None
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"{text!r} has a port out of range 1-65535")
    return text


def _optional_path(value: Any, base: Path) -> Path | None:
    """A file that may be left out ("" = not configured)."""
    if value in ("", None):
        return None
    path = _path(value, base)
    if not path.is_file():
        raise ValueError(f"{value!r}: no such file")
    return path


def _log_target(value: Any, base: Path) -> Path | None:
    """A log file, or "-" for JSON lines on stdout only (containers)."""
    return None if value == "-" else _path(value, base)


def _addresses(value: Any, _base: Path) -> tuple[str, ...]:
    """A list of IP addresses, e.g. ["127.0.0.1", "::1"]."""
    if not isinstance(value, list) and not isinstance(value, str):
        raise ValueError(f"{value!r} must be a list of IP addresses")
    items = value if isinstance(value, list) else [v for v in value.split(",") if v.strip()]
    out = []
    for item in items:
        try:
            out.append(str(ipaddress.ip_address(str(item).strip())))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address") from None
    return tuple(out)


def _boolean(value: Any, _base: Path) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    raise ValueError(f"{value!r} is not true or false")


# section -> key -> (parser, default). Defaults are what a fresh install runs with.
SCHEMA: dict[str, dict[str, tuple[Parser, Any]]] = {
    "relay": {
        "domain": (_domain, "relay.localhost"),
        "platform_name": (_string, "ReviewHub"),
        "timezone": (_timezone, "Europe/Berlin"),
        "templates": (_path, "templates"),
    },
    "inbound": {
        "host": (_string, "127.0.0.1"),
        "port": (_int_range(1, 65535), 2525),
        "max_message_bytes": (_int_range(1024, 1 << 30), 25 * 1024 * 1024),
        "tls_cert": (_optional_path, ""),
        "tls_key": (_optional_path, ""),
        "require_starttls": (_boolean, False),
    },
    "limits": {
        "max_recipients": (_int_range(1, 1000), 10),
        "messages_per_case_per_hour": (_int_range(1, 1_000_000), 30),
        "unknown_recipients_per_client": (_int_range(1, 1_000_000), 5),
        "exempt_clients": (_addresses, []),
        "max_line_bytes": (_int_range(1000, 1 << 30), 1024 * 1024),
        "max_header_count": (_int_range(10, 100_000), 500),
        "max_header_bytes": (_int_range(1024, 1 << 30), 256 * 1024),
    },
    "outbound": {
        "url": (_outbound_url, "maildir:storage/outbox"),
        "max_queue_lifetime": (_duration, "5d"),
        "timeout": (_duration, "60s"),
    },
    "storage": {
        "database": (_database, "sqlite:///storage/relay.db"),
        "retention": (_duration, "90d"),
    },
    "cases": {
        "reply_window": (_duration, "5d"),
        "reminder_before": (_duration, "1d"),
        "reply_notice_after": (_duration, "10m"),
        "late_replies": (_choice("forward", "reject"), "forward"),
        "conversation_lifetime": (_duration, "30d"),
    },
    "scheduler": {
        "interval": (_duration, "1m"),
    },
    "log": {
        "file": (_log_target, "storage/logs/relay.log"),
        "level": (_choice("debug", "info", "warning", "error"), "info"),
        "stderr": (_boolean, True),
        "max_bytes": (_int_range(0, 1 << 40), 10 * 1024 * 1024),
        "backups": (_int_range(0, 1000), 5),
        "mask_business": (_boolean, True),
    },
}


@dataclass(frozen=True)
class Settings:
    """Validated settings; `values[section][key]` holds parsed values (durations are timedeltas)."""

    source: Path | None
    values: Mapping[str, Mapping[str, Any]]

    def __getitem__(self, section: str) -> Mapping[str, Any]:
        return self.values[section]

    @property
    def domain(self) -> str:
        return str(self.values["relay"]["domain"])


def load(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings file (explicit path, else RELAY_CONFIG, else ./settings.toml) and the environment.

    A missing default file is not an error: the embedded defaults then apply relative to the current
    folder, so `relay serve` works on a fresh checkout. A missing file that was named explicitly is.
    """
    env = os.environ if environ is None else environ
    named = str(path) if path else env.get(ENV_CONFIG)
    file = Path(named or DEFAULT_CONFIG).absolute()
    raw: dict[str, Any] = {}
    if file.exists():
        try:
            raw = tomllib.loads(file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file.name}: not valid TOML: {exc}") from None
    elif named:
        raise ConfigError(f"settings file {named} does not exist")
    return from_mapping(raw, file.parent, env, file if file.exists() else None)


def from_mapping(raw: Mapping[str, Any], base: Path, environ: Mapping[str, str] | None = None,
                 source: Path | None = None) -> Settings:
    """Validate a parsed TOML mapping plus environment overrides against SCHEMA."""
    merged: dict[str, dict[str, Any]] = {}
    for section, keys in raw.items():
        if section not in SCHEMA:
            raise ConfigError(f"[{section}]: unknown section (known: {', '.join(SCHEMA)})")
        if not isinstance(keys, dict):
            raise ConfigError(f"[{section}]: must be a table of keys")
        for key, value in keys.items():
            if key not in SCHEMA[section]:
                raise ConfigError(f"[{section}] {key}: unknown key (known: {', '.join(SCHEMA[section])})")
            merged.setdefault(section, {})[key] = value
    for name, value in (environ or {}).items():
        target = _env_target(name)
        if target:
            merged.setdefault(target[0], {})[target[1]] = value
    values: dict[str, dict[str, Any]] = {}
    for section, keys in SCHEMA.items():
        values[section] = {}
        for key, (parser, default) in keys.items():
            given = merged.get(section, {}).get(key, default)
            try:
                values[section][key] = parser(given, base)
            except ValueError as exc:
                raise ConfigError(f"[{section}] {key}: {exc}") from None
    return Settings(source=source, values=values)


def _env_target(name: str) -> tuple[str, str] | None:
    """RELAY_INBOUND_PORT -> ("inbound", "port"); RELAY_INBOUND_NOPE -> ConfigError; others ignored."""
    if not name.startswith("RELAY_") or name == ENV_CONFIG:
        return None
    rest = name[len("RELAY_"):].lower()
    for section, keys in SCHEMA.items():
        if rest.startswith(section + "_"):
            key = rest[len(section) + 1:]
            if key not in keys:
                raise ConfigError(f"{name}: [{section}] has no key {key!r}")
            return section, key
    return None
