"""Certificates for tests: a self-signed one for a loopback smarthost, made with the openssl
command line (valid for `localhost` and `127.0.0.1`, so host-name checks pass once it is trusted)."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path


def self_signed(folder: Path, name: str = "smarthost") -> tuple[Path, Path]:
    """(certificate, key) as PEM files in `folder`; the certificate is its own CA."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
