"""The exit codes every ``gateway`` sub-command shares, and the one error class that carries them.

The rule, for every command:

====  ======================================================================================
0     success (warnings allowed)
1     rejected or data errors: the gateway or an API refused the request (400, 404, 422), a
      file's content is invalid (routes file, training data, held-out set), a job failed, or
      a gate failed
2     usage only: bad options or arguments (typer's own, a bad ``--weight`` or ``--url``, an
      unknown ``--route``, a file that does not exist or cannot be read)
3     the gateway or the API could not be reached, or answered 5xx
4     conflict (409): the flag changed since it was read, or is not in the state required
5     authentication (401, 403): no key, a wrong one, or one not allowed to do this
130   interrupted (Ctrl-C, SIGTERM); the commands that can resume say how
====  ======================================================================================

Commands raise :class:`CliError` (or the subclass named after its exit code); the command line
turns it into output and the exit code in one place (``gateway.tools.cli.failure``). Errors of
the parts that drive a gateway (the admin client, fine-tuning jobs, evaluation) are
:class:`CliError` subclasses too, classified where they happen. No command-line library is
imported here, so those parts stay independent of the command line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

__all__ = [
    "EXIT_AUTH",
    "EXIT_CONFLICT",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "AuthError",
    "CliError",
    "ConflictError",
    "InterruptedRunError",
    "RejectedError",
    "UnreachableError",
    "UsageError",
]

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_CONFLICT = 4
EXIT_AUTH = 5
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A failure a command reports: what went wrong, what to do, and the exit code.

    Attributes:
        message: what went wrong, one line.
        hint: what to do about it (``None``: nothing useful to say).
        exit_code: one of the ``EXIT_*`` codes above (the class default unless given).
        status: the HTTP status of the answer that failed, if any.
        code: the gateway's or the API's ``error.code`` (e.g. ``route_not_found``), if any.
        problems: every problem found (e.g. one per invalid line or key), listed after the
            message and under ``problems`` in JSON.
        details: more output for people after the message (e.g. the flag as it is now, as a
            ``rich`` renderable); never in JSON.
        extra: more top-level keys for the JSON object (e.g. ``current``: the flag now).
    """

    default_exit_code: ClassVar[int] = EXIT_REJECTED

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        exit_code: int | None = None,
        status: int | None = None,
        code: str | None = None,
        problems: Sequence[str] = (),
        details: Sequence[Any] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = self.default_exit_code if exit_code is None else exit_code
        self.status = status
        self.code = code
        self.problems = list(problems)
        self.details = list(details)
        self.extra = dict(extra or {})

    def to_json(self) -> dict[str, Any]:
        """``{"error": {message, hint, status, code, exit_code, problems?}, **extra}``."""
        error: dict[str, Any] = {
            "message": self.message,
            "hint": self.hint,
            "status": self.status,
            "code": self.code,
            "exit_code": self.exit_code,
        }
        if self.problems:
            error["problems"] = self.problems
        return {"error": error, **self.extra}


class RejectedError(CliError):
    """Exit 1: refused (400, 404, 422), invalid data, a failed job or gate."""

    default_exit_code = EXIT_REJECTED


class UsageError(CliError):
    """Exit 2: bad options or arguments (including a file that cannot be read)."""

    default_exit_code = EXIT_USAGE


class UnreachableError(CliError):
    """Exit 3: no answer from the gateway or the API, or a 5xx."""

    default_exit_code = EXIT_UNREACHABLE


class ConflictError(CliError):
    """Exit 4: 409, the flag changed since it was read or is not in the state required."""

    default_exit_code = EXIT_CONFLICT


class AuthError(CliError):
    """Exit 5: 401 or 403, no key, a wrong one, or one not allowed to do this."""

    default_exit_code = EXIT_AUTH


class InterruptedRunError(CliError):
    """Exit 130: stopped by Ctrl-C or SIGTERM; the hint says how to resume."""

    default_exit_code = EXIT_INTERRUPTED
