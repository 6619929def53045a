"""Settings: one TOML file, overridable per key by `RELAY_<SECTION>_<KEY>` environment variables.

Each section is a frozen, typed object (pydantic), loaded by pydantic-settings: the TOML file's
tables are the initial values, the environment overrides them key by key. Values are parsed once
(durations become timedeltas, relative paths are resolved against `[relay] home`, by default
the settings file's folder), and
an unknown key, a malformed duration or an out-of-range port stops start-up with one line that
names the key and the problem, instead of surfacing later as a confusing runtime error.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from relay.config_values import (
    BASE,
    ENVIRON,
    Duration,
    Flag,
    KeyFile,
    Nameserver,
    OptionalFile,
    Text,
    at_most,
    between,
    between_durations,
    database_url,
    dkim_key_file,
    domain_name,
    home_folder,
    http_url,
    ip_addresses,
    log_target,
    nameserver_list,
    one_of,
    optional_domain,
    outbound_url,
    positive_duration,
    selector,
    storage_key,
    templates_folder,
    time_zone,
    webhook_secret,
    webhook_url,
)
from relay.core import dkim_sign
from relay.core.errors import InvalidInput

DEFAULT_CONFIG = "settings.toml"
ENV_CONFIG = "RELAY_CONFIG"
ENV_PREFIX = "RELAY_"


class ConfigError(InvalidInput):
    """A setting that cannot be used; the message names the key."""

    prefix = "settings: "

    def __init__(self, message: str) -> None:
        super().__init__("settings", message, message)


# --- the sections ----------------------------------------------------------------------------------

class Section(BaseModel):
    # defaults are validated too: a default path is resolved like a given one
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class RelaySection(Section):
    home: Annotated[Path, BeforeValidator(home_folder)] = Path(".")
    domain: Annotated[str, BeforeValidator(domain_name)] = "relay.localhost"
    platform_name: Text = "ReviewHub"
    timezone: Annotated[str, BeforeValidator(time_zone)] = "Europe/Berlin"
    templates: Annotated[Path, BeforeValidator(templates_folder)] = Path("templates")


class InboundSection(Section):
    host: Text = "127.0.0.1"
    port: Annotated[int, between(1, 65535)] = 2525
    max_message_bytes: Annotated[int, between(1024, 1 << 30)] = 25 * 1024 * 1024
    tls_cert: OptionalFile = None
    tls_key: OptionalFile = None
    require_starttls: Flag = False
    # on SIGTERM: how long SMTP sessions in a command (a message being sent) get to finish
    drain_timeout: Annotated[timedelta, at_most(timedelta(minutes=10))] = timedelta(seconds=30)
    # processes of `relay serve` sharing the ports (relay.workers): one per core is the usual choice
    workers: Annotated[int, between(1, 256)] = 1


class LimitsSection(Section):
    max_recipients: Annotated[int, between(1, 1000)] = 10
    messages_per_case_per_hour: Annotated[int, between(1, 1_000_000)] = 30
    unknown_recipients_per_client: Annotated[int, between(1, 1_000_000)] = 5
    exempt_clients: Annotated[tuple[str, ...], BeforeValidator(ip_addresses)] = ()
    max_line_bytes: Annotated[int, between(1000, 1 << 30)] = 1024 * 1024
    max_header_count: Annotated[int, between(10, 100_000)] = 500
    max_header_bytes: Annotated[int, between(1024, 1 << 30)] = 256 * 1024
    # messages above this size are processed a few at a time (their cleaning copies them a few
    # times): a burst of large answers waits in line instead of taking the machine's memory
    large_message_bytes: Annotated[int, between(1024, 1 << 30)] = 1024 * 1024
    large_messages_at_once: Annotated[int, between(1, 1000)] = 2
    # (at most 110 s: a client waits two minutes for the reply to DATA, RFC 5321 4.5.3.2)
    large_message_wait: Annotated[timedelta, between_durations(timedelta(seconds=1), timedelta(seconds=110))] = \
        timedelta(seconds=60)


class OutboundSection(Section):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, arbitrary_types_allowed=True)

    url: Annotated[str, BeforeValidator(outbound_url)] = "maildir:storage/outbox"
    max_queue_lifetime: Duration = timedelta(days=5)
    timeout: Duration = timedelta(seconds=60)
    # DKIM: d= (empty: [relay] domain, filled in at load), the key that signs (empty: none) and its
    # selector; a second, Ed25519 key signs each message once more (RFC 8463 dual signing)
    dkim_domain: Annotated[str, BeforeValidator(optional_domain)] = ""
    dkim_selector: Annotated[str, BeforeValidator(selector)] = "relay"
    dkim_key: Annotated[KeyFile | None, BeforeValidator(dkim_key_file)] = None
    dkim_selector_ed25519: Annotated[str, BeforeValidator(selector)] = "relay-ed25519"
    dkim_key_ed25519: Annotated[KeyFile | None, BeforeValidator(dkim_key_file)] = None

    def signing_keys(self) -> tuple[dkim_sign.Key, ...]:
        """The keys every message is signed with, in the order their signatures are added (none
        when `dkim_key` is empty)."""
        keys = []
        if self.dkim_key is not None:
            keys.append(dkim_sign.Key(self.dkim_domain, self.dkim_selector, self.dkim_key.private))
        if self.dkim_key_ed25519 is not None:
            keys.append(dkim_sign.Key(self.dkim_domain, self.dkim_selector_ed25519, self.dkim_key_ed25519.private))
        return tuple(keys)


class StorageSection(Section):
    database: Annotated[str, BeforeValidator(database_url)] = "sqlite:///storage/relay.db"
    retention: Duration = timedelta(days=90)
    key: Annotated[str, BeforeValidator(storage_key)] = ""


class CasesSection(Section):
    reply_window: Duration = timedelta(days=5)
    reminder_before: Duration = timedelta(days=1)
    reply_notice_after: Duration = timedelta(minutes=10)
    late_replies: Annotated[Literal["forward", "reject"], one_of("forward", "reject")] = "forward"
    conversation_lifetime: Duration = timedelta(days=30)


class ApiSection(Section):
    enabled: Flag = True
    host: Text = "127.0.0.1"
    port: Annotated[int, between(1, 65535)] = 8025
    public_url: Annotated[str, BeforeValidator(http_url)] = "http://127.0.0.1:8025"
    requests_per_minute: Annotated[int, between(1, 1_000_000)] = 600
    metrics: Flag = True


class WebhooksSection(Section):
    """Signed webhooks to the platform (Standard Webhooks); off while `url` is empty."""

    url: Annotated[str, BeforeValidator(webhook_url)] = ""
    # never shown by repr() or in a settings error (SecretStr; `.get_secret_value()` where it signs)
    secret: Annotated[SecretStr, BeforeValidator(webhook_secret)] = SecretStr("")
    timeout: Annotated[timedelta, between_durations(timedelta(seconds=1), timedelta(minutes=5))] = \
        timedelta(seconds=10)
    max_age: Annotated[timedelta, between_durations(timedelta(minutes=1), timedelta(days=30))] = timedelta(days=3)

    @field_validator("secret")
    @classmethod
    def _needed(cls, secret: SecretStr, info: ValidationInfo) -> SecretStr:
        if info.data.get("url") and not secret.get_secret_value():
            raise ValueError("required when url is set: whsec_ and base64 of 24 to 64 random bytes "
                             "(docs/api.md, \"Webhooks\", says how to make one)")
        return secret

    @property
    def enabled(self) -> bool:
        return bool(self.url)


class AuthSection(Section):
    """Who really sent an answer (relay.core.dmarc): `verify` checks SPF, DKIM and DMARC itself,
    `trust` reads the `Authentication-Results` of a front MTA whose authserv-id is
    `trusted_authserv_id`, `off` checks nothing; `auto` (the default) verifies when the name
    servers answer at start and says which it chose."""

    mode: Annotated[Literal["auto", "off", "verify", "trust"], one_of("auto", "off", "verify", "trust")] = "auto"
    trusted_authserv_id: Text | None = None
    quarantine: Annotated[Literal["reject", "accept"], one_of("reject", "accept")] = "reject"

    @field_validator("trusted_authserv_id")
    @classmethod
    def _needed(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("mode") == "trust" and not value:
            raise ValueError("required with mode = \"trust\": the authserv-id the front MTA writes")
        return value


class DnsSection(Section):
    # empty: the system's name servers (/etc/resolv.conf); from the environment a comma-separated
    # list or a JSON one (NoDecode: the validator reads both)
    nameservers: Annotated[tuple[Nameserver, ...], NoDecode, BeforeValidator(nameserver_list)] = ()
    timeout: Annotated[timedelta, positive_duration(timedelta(minutes=1))] = timedelta(seconds=5)


class SchedulerSection(Section):
    interval: Duration = timedelta(minutes=1)


class LogSection(Section):
    file: Annotated[Path | None, BeforeValidator(log_target)] = Path("storage/logs/relay.log")
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
    api: ApiSection = Field(default_factory=ApiSection)
    webhooks: WebhooksSection = Field(default_factory=WebhooksSection)
    dns: DnsSection = Field(default_factory=DnsSection)
    auth: AuthSection = Field(default_factory=AuthSection)
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
        return parse_env_vars(ENVIRON.get(os.environ), self.case_sensitive, self.env_ignore_empty,
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
    with _context(_home(raw, base, environ or {}), environ or {}):
        try:
            given: dict[str, Any] = {section: dict(keys) for section, keys in raw.items()}
            settings = Settings(**given)
        except ValidationError as exc:
            raise ConfigError(_one_line(exc)) from None
    return _with_signing(settings)


def _with_signing(settings: Settings) -> Settings:
    """`[outbound] dkim_domain` filled in, and the DKIM keys checked together: the Ed25519 key of
    dual signing beside an RSA key (receivers that do not know Ed25519 yet, most of them, need the
    RSA signature), under its own selector, and d= a domain the From addresses align with (DMARC)."""
    outbound, domain = settings.outbound, settings.relay.domain
    signing = outbound.dkim_domain or domain
    if signing != domain and not domain.endswith("." + signing):
        raise ConfigError(f"[outbound] dkim_domain: {signing!r} is neither [relay] domain {domain!r} nor a domain "
                          "above it: receivers would not count its signatures for the From addresses (DMARC)")
    second = outbound.dkim_key_ed25519
    if second is not None:
        first = outbound.dkim_key
        if second.kind != "ed25519":
            raise ConfigError(f"[outbound] dkim_key_ed25519: {second.path} is an RSA key; this key takes an "
                              "Ed25519 one (the RSA key goes in dkim_key)")
        if first is None or first.kind != "rsa":
            raise ConfigError("[outbound] dkim_key_ed25519: dual signing needs an RSA key in dkim_key as well "
                              "(receivers that do not know Ed25519 check that one)")
        if outbound.dkim_selector_ed25519 == outbound.dkim_selector:
            raise ConfigError("[outbound] dkim_selector_ed25519: must differ from dkim_selector (one DNS "
                              "record per key)")
    if signing == outbound.dkim_domain:
        return settings
    return settings.model_copy(update={"outbound": outbound.model_copy(update={"dkim_domain": signing})})


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


def _home(raw: Mapping[str, Any], base: Path, environ: Mapping[str, str]) -> Path:
    """The folder relative paths resolve against: `[relay] home` (itself relative to the settings
    file's folder), else that folder. An install with its settings in /etc/relay and its storage in
    /srv/relay sets `home = "/srv/relay"`."""
    names = {name.upper(): value for name, value in environ.items()}
    section = raw.get("relay", {})
    given = names.get(f"{ENV_PREFIX}RELAY_HOME") or (section.get("home") if isinstance(section, dict) else None)
    if given in (None, ""):
        return base
    if not isinstance(given, str):
        raise ConfigError(f"[relay] home: {given!r} must be a folder's path")
    home = base / Path(given).expanduser()
    if not home.is_dir():
        raise ConfigError(f"[relay] home: {home} is not a folder")
    return home


def _one_line(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = [str(part) for part in error["loc"]]
    message = str(error["msg"]).removeprefix("Value error, ")
    if len(where) >= 2:
        return f"[{where[0]}] {where[1]}: {message}"
    return f"[{where[0] if where else '?'}]: {message}"


@contextmanager
def _context(base: Path, environ: Mapping[str, str]) -> Iterator[None]:
    base_token, environ_token = BASE.set(base), ENVIRON.set(environ)
    try:
        yield
    finally:
        BASE.reset(base_token)
        ENVIRON.reset(environ_token)
