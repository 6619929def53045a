"""`relay dkim keygen`: a new DKIM signing key, written where the relay's settings can name it,
and what to do with it: the DNS record that publishes its public half and the settings lines.

The key is written 0600 (the relay refuses a key others can read) and never over an existing file:
a key that is replaced while its DNS record is still the old one fails every signature it makes.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from relay.config import Settings
from relay.core import dkim_sign
from relay.core.errors import Refused

RSA_BITS = 2048  # RFC 8301's recommendation; 4096 makes a TXT record too long for some DNS forms
KINDS = ("rsa", "ed25519")


class KeyExists(Refused):
    """The key file is there already."""


def default_path(settings: Settings, selector: str) -> Path:
    """Next to the SQLite database (`storage/dkim-<selector>.pem` in the default install), else in
    `storage/` under `[relay] home`."""
    database = settings.storage.database
    folder = Path(database[len("sqlite:///"):]).parent if database.startswith("sqlite:///") \
        else settings.relay.home / "storage"
    return folder / f"dkim-{selector}.pem"


def generate(kind: str) -> dkim_sign.PrivateKey:
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)


def write_key(path: Path, key: dkim_sign.PrivateKey) -> None:
    """PKCS#8 PEM, mode 0600, created only if nothing is at `path`."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyExists(f"{path} exists: a key is never overwritten (its DNS record may still be the one "
                        "receivers check); choose another --selector or --out") from None
    with open(descriptor, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())


def keygen(settings: Settings, selector: str, kind: str, out: Path | None) -> str:
    """Write a new key; what to tell the admin (the DNS record and the settings lines)."""
    path = (out if out is not None else default_path(settings, selector)).absolute()
    key = dkim_sign.Key(settings.outbound.dkim_domain, selector, generate(kind))
    write_key(path, key.private)
    shown = _relative(path, settings.relay.home)
    dual = kind == "ed25519"
    names = ("dkim_key_ed25519", "dkim_selector_ed25519") if dual else ("dkim_key", "dkim_selector")
    settings_lines = [f'{names[0]} = "{shown}"', f'{names[1]} = "{selector}"']
    if settings.outbound.dkim_domain != settings.relay.domain:
        settings_lines.append(f'dkim_domain = "{settings.outbound.dkim_domain}"')
    lines = [f"wrote {'an Ed25519 key' if dual else f'a {RSA_BITS}-bit RSA key'} to {path} (mode 0600)", "",
             "Publish its public half in DNS (one TXT record; the quoted strings are one value, split as DNS needs):",
             "", dkim_sign.zone_line(key), "",
             "Then add to the settings file and restart the relay:", "", "[outbound]", *settings_lines]
    if dual:
        lines += ["", "(beside the RSA key in dkim_key: receivers that do not know Ed25519 check that signature)"]
    return "\n".join(lines)


def _relative(path: Path, home: Path) -> str:
    """The path as the settings file would name it: relative to `[relay] home` where it lies below."""
    try:
        return str(path.relative_to(home.absolute()))
    except ValueError:
        return str(path)
