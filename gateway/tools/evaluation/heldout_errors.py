"""The failures that stop a held-out evaluation, and how ``openai`` exceptions become them.

One example's failure (a 5xx, a 429, a timeout...) is a result with an ``error``, never one of
these: only a gateway that cannot be reached (:class:`GatewayUnreachableError`), a key it
refuses (:class:`EvalAuthError`) or a gateway that does not serve the route stops the run.
Each carries a ``hint`` that says what to do, and the command line's exit code (they are
:class:`~gateway.tools.exit_codes.CliError`): 1 refused, 3 unreachable, 5 auth.
"""

from __future__ import annotations

import openai

from gateway.tools.exit_codes import EXIT_AUTH, EXIT_UNREACHABLE, RejectedError

__all__ = [
    "EvalAbortError",
    "EvalAuthError",
    "GatewayUnreachableError",
    "auth_error",
    "unreachable",
]


class EvalAbortError(RejectedError):
    """A failure that stops the whole run (not one example's error); exit 1 unless a subclass
    says otherwise. ``hint`` says what to do."""

    def __init__(self, message: str, hint: str, status: int | None = None) -> None:
        super().__init__(message, hint, status=status)


class GatewayUnreachableError(EvalAbortError):
    """No connection to the gateway, or it answered the pre-flight check with a 5xx (exit 3)."""

    default_exit_code = EXIT_UNREACHABLE


class EvalAuthError(EvalAbortError):
    """401 or 403: the key is missing, wrong, or not allowed to force a variant (exit 5)."""

    default_exit_code = EXIT_AUTH


def unreachable(
    client: openai.AsyncOpenAI, detail: str, status: int | None = None
) -> GatewayUnreachableError:
    """No connection to the gateway behind ``client`` (its base URL without ``/v1``)."""
    url = str(client.base_url).removesuffix("/").removesuffix("/v1")
    return GatewayUnreachableError(
        f"cannot reach the gateway at {url}: {detail}",
        "is the gateway running? set --url or GATEWAY_URL (its base URL, without /v1)",
        status,
    )


def auth_error(exc: openai.APIStatusError) -> EvalAuthError:
    """A 401 or 403, with the hint that fits it (403: the key may not force variants)."""
    if exc.status_code == 403:
        hint = (
            "the key may not force variants: use an evaluation key whose name is in the "
            "gateway's GATEWAY_OVERRIDE_KEYS (--api-key or GATEWAY_EVAL_KEY)"
        )
    else:
        hint = "set --api-key, GATEWAY_EVAL_KEY or GATEWAY_API_KEY to one of the gateway's keys"
    return EvalAuthError(
        f"the gateway refused the key ({exc.status_code}): {exc.message}", hint, exc.status_code
    )
