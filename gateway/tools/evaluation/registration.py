"""Register a fine-tuned model as a route's candidate on a running gateway (admin API).

``POST /admin/flags/{route}/candidate`` with ``{model, reason, source}`` puts the model behind
the route's candidate at weight 0 with a new rollout id; the audit entry keeps ``source``
(``fine_tuning_job:<job id>``) as evidence. :func:`register_model` first reads the flag and does
nothing when the model already is the candidate, so running it twice is harmless.
Errors are :class:`~gateway.tools.admin_client.AdminAPIError` with the ``gateway flags`` exit codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.tools.admin_client import AdminClient, flag_path

__all__ = ["CandidateClient", "Registration", "register_model", "registration_reason"]


def registration_reason(job_id: str) -> str:
    """The audit reason of a registration: ``fine-tuning job <id> succeeded``."""
    return f"fine-tuning job {job_id} succeeded"


class CandidateClient(AdminClient):
    """:class:`AdminClient` plus ``POST /admin/flags/{route}/candidate``."""

    def __enter__(self) -> CandidateClient:
        return self

    def register_candidate(
        self, route: str, *, model: str, reason: str, source: str
    ) -> dict[str, Any]:
        """Register ``model`` as ``route``'s candidate (weight 0); the new flag."""
        path = flag_path(route) + "/candidate"
        body = {"model": model, "reason": reason, "source": source}
        result: dict[str, Any] = self._call("POST", path, json=body)
        return result


@dataclass(frozen=True, slots=True)
class Registration:
    """The flag after registering; ``already`` when the model was the candidate before."""

    flag: dict[str, Any]
    already: bool


def register_model(client: CandidateClient, route: str, model: str, job_id: str) -> Registration:
    """Make ``model`` the candidate of ``route`` unless it already is.

    Raises:
        AdminAPIError: the gateway is unreachable, refuses the key, or rejects the change.
    """
    flag = client.flag(route)
    if flag.get("candidate_model") == model:
        return Registration(flag, already=True)
    after = client.register_candidate(
        route, model=model, reason=registration_reason(job_id), source=f"fine_tuning_job:{job_id}"
    )
    return Registration(after, already=False)
