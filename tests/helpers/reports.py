"""Delivery reports as mail servers write them, for tests."""

from __future__ import annotations


def dsn(action: str, status: str) -> bytes:
    return (b"From: MAILER-DAEMON@mx.example.de\r\nSubject: Undelivered Mail Returned to Sender\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
            b"--B\r\nContent-Type: text/plain\r\n\r\nmax@example.de: user unknown\r\n"
            b"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.de\r\n\r\n"
            b"Final-Recipient: rfc822; max@example.de\r\nAction: " + action.encode() + b"\r\nStatus: "
            + status.encode() + b"\r\n\r\n--B--\r\n")

