"""Settings: one TOML file, overridable per key by `RELAY_<SECTION>_<KEY>` environment variables.

Each section is a frozen, typed object (pydantic), loaded by pydantic-settings: the TOML file's
tables are the initial values, the environment overrides them key by key. Values are parsed once
(durations become timedeltas, relative paths are resolved against the settings file's folder), and
an unknown key, a malformed duration or an out-of-range port stops start-up with one line that
names the key and the problem, instead of surfacing later as a confusing runtime error.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from relay.core import addresses
from relay.core.errors import InvalidInput

DEFAULT_CONFIG = "settings.toml"
BUNDLED_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
ENV_CONFIG = "RELAY_CONFIG"
ENV_PREFIX = "RELAY_"


class ConfigError(InvalidInput):
    """A setting that cannot be used; the message names the key."""

    prefix = "settings: "

    def __init__(self, message: str) -> None:
        super().__init__("settings", message, message)


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


# --- value types: each parses once and says in words what is wrong ------------------------------

# the folder relative paths are resolved against while a file is loaded (the settings file's), and
# the environment the overrides come from (the process's, or a test's own)
_BASE: ContextVar[Path] = ContextVar("settings_base")
_ENVIRON: ContextVar[Mapping[str, str]] = ContextVar("settings_environ")


def _resolve(path: Path) -> Path:
    return path if path.is_absolute() else _BASE.get(Path.cwd()) / path


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} must be a non-empty string")
    return value.strip()


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} must be a string with a unit, such as \"5d\"")
    return parse_duration(value)


def _int_range(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"{value!r} is out of range {low}-{high}")
        return value
    return parse


def _choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(options)}")
        return str(value)
    return parse


def _path(value: Any) -> Path:
    return _resolve(value if isinstance(value, Path) else Path(_string(value)))


def _domain(value: Any) -> str:
    text = _string(value).lower()
    if not addresses.is_domain(text):
        raise ValueError(f"{value!r} is not a domain name")
    return text


def _timezone(value: Any) -> str:
    text = _string(value)
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a known time zone") from None
    return text


def _database(value: Any) -> str:
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


def _outbound_url(value: Any) -> str:
    """`maildir:PATH` (relative to the settings file), `smtp://host:port` or `smtps://host:port`."""
    text = _string(value)
    if text.startswith("maildir:"):
        path = text[len("maildir:"):]
        if not path:
            raise ValueError("maildir: needs a folder, for example maildir:storage/outbox")
        return "maildir:" + str(_resolve(Path(path)))
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


def _optional_file(value: Any) -> Path | None:
    """A file that may be left out ("" = not configured)."""
    if value in ("", None):
        return None
    path = _path(value)
    if not path.is_file():
        raise ValueError(f"{value!r}: no such file")
    return path


def _log_target(value: Any) -> Path | None:
    """A log file, or "-" for JSON lines on stdout only (containers)."""
    return None if value in ("-", None) else _path(value)


def _ip_addresses(value: Any) -> tuple[str, ...]:
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


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    raise ValueError(f"{value!r} is not true or false")


def between(low: int, high: int) -> BeforeValidator:
    return BeforeValidator(_int_range(low, high))


def one_of(*options: str) -> BeforeValidator:
    return BeforeValidator(_choice(*options))


Text = Annotated[str, BeforeValidator(_string)]
Duration = Annotated[timedelta, BeforeValidator(_duration)]
Folder = Annotated[Path, BeforeValidator(_path)]
Flag = Annotated[bool, BeforeValidator(_boolean)]
OptionalFile = Annotated[Path | None, BeforeValidator(_optional_file)]


# --- the sections ----------------------------------------------------------------------------------

class Section(BaseModel):
    # defaults are validated too: a default path is resolved like a given one
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


def _templates(value: Any) -> Path:
    """The notice templates' folder; the templates shipped with the code where it does not exist
    (an install that keeps only its settings file elsewhere)."""
    folder = _path(value)
    return folder if folder.is_dir() else BUNDLED_TEMPLATES


class RelaySection(Section):
    domain: Annotated[str, BeforeValidator(_domain)] = "relay.localhost"
    platform_name: Text = "ReviewHub"
    timezone: Annotated[str, BeforeValidator(_timezone)] = "Europe/Berlin"
    templates: Annotated[Path, BeforeValidator(_templates)] = Path("templates")


class InboundSection(Section):
    host: Text = "127.0.0.1"
    port: Annotated[int, between(1, 65535)] = 2525
    max_message_bytes: Annotated[int, between(1024, 1 << 30)] = 25 * 1024 * 1024
    tls_cert: OptionalFile = None
    tls_key: OptionalFile = None
    require_starttls: Flag = False


class LimitsSection(Section):
    max_recipients: Annotated[int, between(1, 1000)] = 10
    messages_per_case_per_hour: Annotated[int, between(1, 1_000_000)] = 30
    unknown_recipients_per_client: Annotated[int, between(1, 1_000_000)] = 5
    exempt_clients: Annotated[tuple[str, ...], BeforeValidator(_ip_addresses)] = ()
    max_line_bytes: Annotated[int, between(1000, 1 << 30)] = 1024 * 1024
    max_header_count: Annotated[int, between(10, 100_000)] = 500
    max_header_bytes: Annotated[int, between(1024, 1 << 30)] = 256 * 1024


class OutboundSection(Section):
    url: Annotated[str, BeforeValidator(_outbound_url)] = "maildir:storage/outbox"
    max_queue_lifetime: Duration = timedelta(days=5)
    timeout: Duration = timedelta(seconds=60)


class StorageSection(Section):
    database: Annotated[str, BeforeValidator(_database)] = "sqlite:///storage/relay.db"
    retention: Duration = timedelta(days=90)


class CasesSection(Section):
    reply_window: Duration = timedelta(days=5)
    reminder_before: Duration = timedelta(days=1)
    reply_notice_after: Duration = timedelta(minutes=10)
    late_replies: Annotated[Literal["forward", "reject"], one_of("forward", "reject")] = "forward"
    conversation_lifetime: Duration = timedelta(days=30)


class SchedulerSection(Section):
    interval: Duration = timedelta(minutes=1)


class LogSection(Section):
    file: Annotated[Path | None, BeforeValidator(_log_target)] = Path("storage/logs/relay.log")
    level: Annotated[Literal["debug", "info", "warning", "error"], one_of("debug", "info", "warning", "error")] = "info"
    stderr: Flag = True
    max_bytes: Annotated[int, between(0, 1 << 40)] = 10 * 1024 * 1024
    backups: Annotated[int, between(0, 1000)] = 5
    mask_business: Flag = True


class Settings(BaseSettings):
    """Validated settings, one frozen object per section (`settings.inbound.port`)."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", env_prefix=ENV_PREFIX,
                                      env_nested_delimiter="_", env_nested_max_split=1,
                                      case_sensitive=False, validate_default=True)

    relay: RelaySection = Field(default_factory=RelaySection)
    inbound: InboundSection = Field(default_factory=InboundSection)
    limits: LimitsSection = Field(default_factory=LimitsSection)
    outbound: OutboundSection = Field(default_factory=OutboundSection)
    storage: StorageSection = Field(default_factory=StorageSection)
    cases: CasesSection = Field(default_factory=CasesSection)
    scheduler: SchedulerSection = Field(default_factory=SchedulerSection)
    log: LogSection = Field(default_factory=LogSection)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The environment over the file (given as init values); no .env files, no secrets folder."""
        return (_Environment(settings_cls), init_settings)


class _Environment(EnvSettingsSource):
    """`RELAY_<SECTION>_<KEY>` from the environment the load was given (a test's own, or the
    process's), split once after the section: `RELAY_INBOUND_MAX_MESSAGE_BYTES`."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(_ENVIRON.get(os.environ), self.case_sensitive, self.env_ignore_empty,
                              self.env_parse_none_str)


SECTIONS: dict[str, type[BaseModel]] = {
    name: field.annotation for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, Section)}


# --- loading ---------------------------------------------------------------------------------------

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
    return from_mapping(raw, file.parent, env)


def from_mapping(raw: Mapping[str, Any], base: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Validate a parsed TOML mapping plus environment overrides; relative paths against `base`."""
    _check_names(raw, environ or {})
    with _context(base, environ or {}):
        try:
            given: dict[str, Any] = {section: dict(keys) for section, keys in raw.items()}
            return Settings(**given)
        except ValidationError as exc:
            raise ConfigError(_one_line(exc)) from None


def _check_names(raw: Mapping[str, Any], environ: Mapping[str, str]) -> None:
    """Unknown sections and keys, in the file or the environment, named as such (pydantic would
    only say "extra inputs are not permitted")."""
    for section, keys in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"[{section}]: unknown section (known: {', '.join(SECTIONS)})")
        if not isinstance(keys, dict):
            raise ConfigError(f"[{section}]: must be a table of keys")
        known = SECTIONS[section].model_fields
        for key in keys:
            if key not in known:
                raise ConfigError(f"[{section}] {key}: unknown key (known: {', '.join(known)})")
    for name in environ:
        if not name.upper().startswith(ENV_PREFIX) or name.upper() == ENV_CONFIG:
            continue
        rest = name[len(ENV_PREFIX):].lower()
        for section, model in SECTIONS.items():
            if rest.startswith(section + "_") and rest[len(section) + 1:] not in model.model_fields:
                raise ConfigError(f"{name}: [{section}] has no key {rest[len(section) + 1:]!r}")


def _one_line(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = [str(part) for part in error["loc"]]
    message = str(error["msg"]).removeprefix("Value error, ")
    if len(where) >= 2:
        return f"[{where[0]}] {where[1]}: {message}"
    return f"[{where[0] if where else '?'}]: {message}"


@contextmanager
def _context(base: Path, environ: Mapping[str, str]) -> Iterator[None]:
    base_token, environ_token = _BASE.set(base), _ENVIRON.set(environ)
    try:
        yield
    finally:
        _BASE.reset(base_token)
        _ENVIRON.reset(environ_token)
