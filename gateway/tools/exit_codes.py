"""The exit codes every ``gateway`` sub-command shares, so that scripts can rely on them.

====  ======================================================================================
0     success
1     rejected: the gateway or the API refused the request (400, 404, 422), the data has
      errors, a job failed, or a gate failed
2     wrong usage (typer's own; also bad option values, unreadable files, unknown routes)
3     the gateway or the API could not be reached, or answered 5xx
4     conflict (409): the flag changed since it was read, or is not in the state required
5     authentication (401, 403): no key, a wrong one, or one not allowed to do this
130   interrupted (Ctrl-C); the commands that can resume say how
====  ======================================================================================

Plain constants, no imports: the admin client and the fine-tuning job helpers classify their
errors with them without depending on the command line.
"""

from __future__ import annotations

__all__ = [
    "EXIT_AUTH",
    "EXIT_CONFLICT",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
]

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_CONFLICT = 4
EXIT_AUTH = 5
EXIT_INTERRUPTED = 130
