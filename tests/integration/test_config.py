"""Settings: defaults, durations, relative paths, environment overrides, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from relay import config, config_values

REPO = Path(__file__).resolve().parents[2]


def test_shipped_settings_file_matches_schema_defaults() -> None:
    shipped = config.load(REPO / "settings.toml", environ={})
    embedded = config.from_mapping({}, REPO, environ={})
    assert shipped == embedded


def test_durations_need_units() -> None:
    assert config_values.parse_duration("30s") == timedelta(seconds=30)
    assert config_values.parse_duration("15m") == timedelta(minutes=15)
    assert config_values.parse_duration("5d") == timedelta(days=5)
    assert config_values.parse_duration("1d12h") == timedelta(hours=36)
    assert config_values.parse_duration("0s") == timedelta(0)
    for bad in ("5 dayz", "5", "", "d", "5x", "-1d"):
        with pytest.raises(ValueError):
            config_values.parse_duration(bad)
    assert config_values.format_duration(timedelta(days=5)) == "5d"
    assert config_values.format_duration(timedelta(seconds=90)) == "90s"


def test_relative_paths_are_relative_to_the_settings_file(tmp_path: Path) -> None:
    file = tmp_path / "conf" / "settings.toml"
    file.parent.mkdir()
    file.write_text('[storage]\ndatabase = "sqlite:///data/r.db"\n[outbound]\nurl = "maildir:out"\n'
                    '[log]\nfile = "logs/x.log"\n')
    settings = config.load(file, environ={})
    assert settings.storage.database == f"sqlite:///{file.parent}/data/r.db"
    assert settings.outbound.url == f"maildir:{file.parent}/out"
    assert settings.log.file == file.parent / "logs" / "x.log"
    absolute = config.from_mapping({"storage": {"database": "sqlite:////srv/relay.db"}}, tmp_path, {})
    assert absolute.storage.database == "sqlite:////srv/relay.db"


def test_environment_overrides_every_key(tmp_path: Path) -> None:
    env = {"RELAY_INBOUND_PORT": "2600", "RELAY_CASES_REPLY_WINDOW": "3d", "RELAY_RELAY_DOMAIN": "r.example",
           "RELAY_CONFIG": "ignored-here", "RELAYED_OTHER": "x"}
    settings = config.from_mapping({"inbound": {"port": 2525}}, tmp_path, env)
    assert settings.inbound.port == 2600
    assert settings.cases.reply_window == timedelta(days=3)
    assert settings.relay.domain == "r.example"


def test_name_servers_with_and_without_ports(tmp_path: Path) -> None:
    given = ["127.0.0.1", "127.0.0.1:5353", "::1", "[::1]:5354", "[fe80::1]"]
    servers = config.from_mapping({"dns": {"nameservers": given}}, tmp_path, {}).dns.nameservers
    assert [(s.address, s.port) for s in servers] == [("127.0.0.1", 53), ("127.0.0.1", 5353), ("::1", 53),
                                                      ("::1", 5354), ("fe80::1", 53)]
    from_env = config.from_mapping({}, tmp_path, {"RELAY_DNS_NAMESERVERS": "10.0.0.2, 10.0.0.3:54"}).dns
    assert [(s.address, s.port) for s in from_env.nameservers] == [("10.0.0.2", 53), ("10.0.0.3", 54)]
    as_json = config.from_mapping({}, tmp_path, {"RELAY_DNS_NAMESERVERS": '["10.0.0.2", "[::1]:54"]'}).dns
    assert [(s.address, s.port) for s in as_json.nameservers] == [("10.0.0.2", 53), ("::1", 54)]
    assert config.from_mapping({}, tmp_path, {}).dns.nameservers == ()  # the system's


@pytest.mark.parametrize(("raw", "env", "words"), [
    ({"cases": {"reply_window": "5 dayz"}}, {}, ["[cases] reply_window", "5 dayz"]),
    ({"inbound": {"port": 70000}}, {}, ["[inbound] port", "out of range"]),
    ({"inbound": {"nope": 1}}, {}, ["[inbound] nope", "unknown key"]),
    ({"bogus": {"x": 1}}, {}, ["[bogus]", "unknown section"]),
    ({"storage": {"database": "mysql://x/y"}}, {}, ["[storage] database", "unknown scheme"]),
    ({"outbound": {"url": "ftp://x"}}, {}, ["[outbound] url"]),
    ({"outbound": {"url": "smtp://x?startls=require"}}, {}, ["[outbound] url", "unknown option ?startls"]),
    ({"outbound": {"url": "smtps://x?cafile=missing.pem"}}, {}, ["[outbound] url", "missing.pem", "no such file"]),
    ({"relay": {"domain": "not a domain"}}, {}, ["[relay] domain"]),
    ({"relay": {"timezone": "Mars/Olympus"}}, {}, ["[relay] timezone"]),
    ({"cases": {"late_replies": "maybe"}}, {}, ["[cases] late_replies"]),
    ({}, {"RELAY_INBOUND_PORT": "0"}, ["[inbound] port"]),
    ({"limits": {"exempt_clients": ["not-an-ip"]}}, {}, ["[limits] exempt_clients", "not an IP address"]),
    ({"inbound": {"tls_cert": "missing.pem"}}, {}, ["[inbound] tls_cert", "no such file"]),
    ({}, {"RELAY_INBOUND_PROT": "25"}, ["RELAY_INBOUND_PROT", "no key"]),
    ({"inbound": {"drain_timeout": "1h"}}, {}, ["[inbound] drain_timeout", "longer than 10m"]),
    ({}, {"RELAY_INBOUND_DRAIN_TIMEOUT": "30"}, ["[inbound] drain_timeout", "not a duration"]),
    ({"webhooks": {"url": "https://platform.example/hooks"}}, {}, ["[webhooks] secret", "required when url is set"]),
    ({"webhooks": {"url": "ftp://platform.example/hooks"}}, {}, ["[webhooks] url", "http"]),
    ({}, {"RELAY_WEBHOOKS_URL": "https://p.example/h", "RELAY_WEBHOOKS_SECRET": "whsec_%%%"},
     ["[webhooks] secret", "base64"]),
    ({"webhooks": {"timeout": "1h"}}, {}, ["[webhooks] timeout", "between 1s and 5m"]),
    ({}, {"RELAY_WEBHOOKS_MAX_AGE": "0s"}, ["[webhooks] max_age"]),
    ({"dns": {"nameservers": ["resolver.example"]}}, {}, ["[dns] nameservers", "not a name server's IP address"]),
    ({"dns": {"nameservers": ["127.0.0.1:99999"]}}, {}, ["[dns] nameservers", "port"]),
    ({}, {"RELAY_DNS_TIMEOUT": "0s"}, ["[dns] timeout", "no time at all"]),
    ({"dns": {"timeout": "2m"}}, {}, ["[dns] timeout", "longer than 1m"]),
    ({"outbound": {"dkim_selector": "re_lay"}}, {}, ["[outbound] dkim_selector", "not a selector"]),
    ({"outbound": {"dkim_domain": "other.example"}}, {}, ["[outbound] dkim_domain", "DMARC"]),
    ({"outbound": {"dkim_key": "missing.pem"}}, {}, ["[outbound] dkim_key", "missing.pem", "No such file"]),
])
def test_bad_values_name_the_key(tmp_path: Path, raw: dict, env: dict, words: list[str]) -> None:
    with pytest.raises(config.ConfigError) as info:
        config.from_mapping(raw, tmp_path, env)
    for word in words:
        assert word in str(info.value)


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.toml", environ={})


def test_start_up_stops_with_one_line_naming_the_key(tmp_path: Path) -> None:
    file = tmp_path / "settings.toml"
    file.write_text('[cases]\nreply_window = "5 dayz"\n')
    result = subprocess.run([sys.executable, "-m", "relay", "--config", str(file), "serve"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "[cases] reply_window" in lines[0] and "5 dayz" in lines[0]


def test_a_webhook_secret_is_never_repeated(tmp_path: Path) -> None:
    """A secret of the wrong shape is named as the key, not shown: the line goes to terminals and
    service logs. A good one is not shown by the settings' repr either."""
    wrong = "whsec_" + "Zm9v" * 3  # base64, but 12 bytes
    with pytest.raises(config.ConfigError) as info:
        config.from_mapping({"webhooks": {"url": "https://p.example/h", "secret": wrong}}, tmp_path, {})
    assert "[webhooks] secret" in str(info.value) and wrong not in str(info.value)
    good = "whsec_" + "Zm9v" * 8
    settings = config.from_mapping({}, tmp_path, {"RELAY_WEBHOOKS_URL": "https://p.example/h",
                                                  "RELAY_WEBHOOKS_SECRET": good})
    assert settings.webhooks.enabled and settings.webhooks.secret.get_secret_value() == good
    assert good not in repr(settings)
