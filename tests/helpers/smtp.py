"""SMTP clients for tests: smtplib, and swaks (a client nobody here wrote)."""

from __future__ import annotations

import re
import shutil
import smtplib
import socket
import subprocess


def smtp_send(port: int, mail_from: str, rcpts: list[str] | str, raw: bytes) -> tuple[int, str]:
    """Send with smtplib; the reply (code, text) of whichever step answered last."""
    rcpts = [rcpts] if isinstance(rcpts, str) else rcpts
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.ehlo("client.example")
            code, msg = s.mail(mail_from)
            if code >= 400:
                return code, msg.decode(errors="replace")
            for rcpt in rcpts:
                code, msg = s.rcpt(rcpt)
                if code >= 400:
                    return code, msg.decode(errors="replace")
            code, msg = s.data(raw)
            return code, msg.decode(errors="replace")
    except smtplib.SMTPResponseException as e:
        return e.smtp_code, e.smtp_error.decode(errors="replace")


def swaks(port: int, mail_from: str, rcpt: str, body: str, header_from: str | None = None,
          extra: list[str] | None = None) -> tuple[int, str]:
    """Send with swaks; returns the last server reply before QUIT."""
    assert shutil.which("swaks"), "swaks is not installed (tests/run installs it)"
    cmd = ["swaks", "--server", f"127.0.0.1:{port}", "--from", mail_from, "--to", rcpt,
           "--helo", "client.example", "--body", body, "--header", "Subject: Re: Ihre Anfrage"]
    if header_from:
        cmd += ["--header", f"From: {header_from}"]
    result = subprocess.run(cmd + (extra or []), capture_output=True, text=True, timeout=60)
    replies = [line for line in result.stdout.splitlines() if line[:3] in ("<~ ", "<**", "<- ")]
    if replies and " 221" in replies[-1]:
        replies = replies[:-1]
    match = re.search(r"(\d{3})[ -](.*)", replies[-1] if replies else "")
    return (int(match.group(1)), match.group(2)) if match else (0, result.stdout[-300:])


class LineClient:
    """A raw SMTP client that sends exactly what a test says when it says it (a message in parts,
    a client that stops in DATA) and reads the server's replies; a reply that does not come within
    `timeout` seconds fails the test (socket.timeout)."""

    def __init__(self, port: int, timeout: float = 20) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, line: str) -> tuple[int, str]:
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def reply(self) -> tuple[int, str]:
        """The next reply (code, text of its last line); (0, "") once the server closed the connection."""
        while True:
            while b"\r\n" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\r\n", 1)
                line = raw.decode(errors="replace")
                if line[3:4] != "-":
                    return int(line[:3]), line[4:]
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return 0, ""
            self.buffer += chunk

    def close(self) -> None:
        self.sock.close()
