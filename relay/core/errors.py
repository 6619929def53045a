"""The errors the relay reports to a person, under one root that carries what the CLI exits with.

Two kinds the caller must tell apart: a request that is understood and refused (a second open
case for a review, a review from the platform's own invitation, an unknown case: exit 1), and
input that is not valid (a bad option or setting, named in the message: exit 2). What is wrong
with the relay's surroundings (the database cannot be opened, a template is missing) is neither
and exits 1 too. The CLI maps the root once; an HTTP API maps the same kinds to its statuses.
"""

from __future__ import annotations


class RelayError(Exception):
    """An error with a message for a person; `exit_code` is what the CLI exits with."""

    exit_code = 1
    prefix = ""  # what the CLI's line says before the message ("settings: ")


class Refused(RelayError):
    """The request was understood and is refused."""

    exit_code = 1


class InvalidInput(RelayError, ValueError):
    """Input that cannot be used; `field` names the option or key, so the message can point at it."""

    exit_code = 2

    def __init__(self, field: str, problem: str, message: str | None = None) -> None:
        super().__init__(message or f"--{field.replace('_', '-')}: {problem}")
        self.field = field
        self.problem = problem


class Unavailable(RelayError):
    """Something the relay needs is not there or not working (database, templates, a port)."""

    exit_code = 1
