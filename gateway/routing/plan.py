"""The plan of one request, and the rules that change it on the way (pure; no I/O).

:func:`plan_request` turns what is known before any upstream call (the route, its flag, the
caller's subject and key, a forced variant) into a :class:`Plan`: the variant asked first and
the decision reason (``x-gateway-decision``). Every operation (chat completions, responses)
plans the same way. Order, first match wins:

1. ``override``: a key allowed to override forced a variant with ``x-gateway-variant``
   (``candidate``, ``fallback`` or a variant's name);
2. ``passthrough``: a model called as-is (no flag, no prompt);
3. the flag's decision (:func:`gateway.routing.decision.decide`), where a candidate decision on
   a shadow route becomes ``shadow``: the fallback answers, the candidate only in the background.

While the request runs, two rules may hand it to the fallback; both are pure and live here:
:func:`failover_to` (the candidate's upstream failed before any byte reached the client) and
:func:`retry_on_violation` (the candidate's answer broke the contract and the route says
``on_violation: fallback``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gateway.config import Price, Route, Variant
from gateway.errors import InvalidRequestError, PermissionDeniedError
from gateway.routing.decision import Decision, FlagState, decide

__all__ = [
    "FAILOVER",
    "VIOLATION",
    "CandidateModels",
    "Plan",
    "failover_to",
    "plan_request",
    "retry_on_violation",
]

FAILOVER = Decision("fallback", "failover")
"""The decision of a fallback that answers after the candidate's upstream failed."""
VIOLATION = Decision("fallback", "violation")
"""The decision of a fallback that answers after the candidate's answer broke the contract."""
_PASSTHROUGH = Decision("fallback", "passthrough")
_SHADOW = Decision("fallback", "shadow")
_OVERRIDE_CANDIDATE = Decision("candidate", "override")
_OVERRIDE_FALLBACK = Decision("fallback", "override")
_NO_FAILOVER = frozenset({"override", "failover", "passthrough"})


@dataclass(frozen=True, slots=True)
class Plan:
    """Who is asked first and why.

    ``rollout_id`` is the flag's rollout when the flag decided (the guard counts the outcome
    against it), ``None`` for overrides, pass-through models and unknown flag state.
    """

    route: Route
    variant: Variant
    decision: Decision
    rollout_id: str | None = None


class CandidateModels:
    """The candidate variant as the flag serves it: with ``candidate_model`` registered at run
    time (``gateway finetune watch --register``) in place of the routes file's model, priced
    from ``prices`` (USD per million tokens; an unpriced model costs 0 and logs ``cost_usd``
    null). Each (route, model) variant is built once and kept (bounded by the models
    registered)."""

    __slots__ = ("_prices", "_registered")

    def __init__(self, prices: dict[str, Price]) -> None:
        self._prices = prices
        self._registered: dict[tuple[str, str], Variant] = {}

    def candidate(self, route: Route, flag: FlagState | None) -> Variant:
        """The route's candidate variant under ``flag``."""
        variant = route.variants[route.candidate]
        model = flag.candidate_model if flag is not None else None
        if model is None or model == variant.model:
            return variant
        key = (route.name, model)
        registered = self._registered.get(key)
        if registered is None:
            price = self._prices.get(model)
            registered = self._registered[key] = dataclasses.replace(
                variant,
                model=model,
                input_usd_per_token=price.input / 1e6 if price else 0.0,
                output_usd_per_token=price.output / 1e6 if price else 0.0,
                priced=price is not None,
            )
        return registered


def plan_request(
    route: Route,
    flag: FlagState | None,
    candidates: CandidateModels,
    *,
    subject: str | None,
    key_name: str | None,
    forced_variant: str | None = None,
    may_override: bool = False,
) -> Plan:
    """Plan one request on ``route`` (pure but for :func:`decide`'s random draw when the
    request has no subject).

    Args:
        route: the resolved route the client named.
        flag: the route's flag as served now (``None``: unknown, the fallback answers).
        candidates: resolves the candidate variant with a model registered at run time.
        subject: the sticky bucketing key (``x-gateway-subject``, else the body's ``user``).
        key_name: the client key's configured name (key targeting).
        forced_variant: ``x-gateway-variant``: ``candidate``, ``fallback`` or a variant name.
        may_override: whether the client key may force a variant (``GATEWAY_OVERRIDE_KEYS``).

    Raises:
        PermissionDeniedError: a variant forced by a key not allowed to (403).
        InvalidRequestError: a forced variant the route does not have (400,
            ``param: x-gateway-variant``).
    """
    if forced_variant is not None:
        if not may_override:
            raise PermissionDeniedError(
                "x-gateway-variant needs a key allowed to override variants "
                "(GATEWAY_OVERRIDE_KEYS)."
            )
        if forced_variant == "candidate":
            name = route.candidate
        elif forced_variant == "fallback":
            name = route.fallback
        else:
            name = forced_variant
        if name not in route.variants:
            raise InvalidRequestError(
                f"Unknown variant '{forced_variant}' for route '{route.name}' "
                f"(variants: {', '.join(route.variants)}).",
                param="x-gateway-variant",
            )
        if name == route.candidate:
            return Plan(route, candidates.candidate(route, flag), _OVERRIDE_CANDIDATE)
        return Plan(route, route.variants[name], _OVERRIDE_FALLBACK)
    if route.passthrough:
        return Plan(route, route.variants[route.fallback], _PASSTHROUGH)
    decision = decide(flag, subject, key_name)
    rollout_id = None
    if flag is not None:
        rollout_id = flag.rollout_id
        if route.shadow is not None and decision.reason in ("rollout", "targeted"):
            decision = _SHADOW  # the candidate answers in the background, never the client
    if decision.role == "candidate":
        return Plan(route, candidates.candidate(route, flag), decision, rollout_id)
    return Plan(route, route.variants[route.fallback], decision, rollout_id)


def failover_to(
    route: Route, variant: Variant, decision: Decision, reason: str | None
) -> Variant | None:
    """The variant that answers after ``variant``'s upstream failed for ``reason`` (a
    :data:`~gateway.errors.FailoverReason`), or ``None`` when the failure is the answer.

    Only the candidate fails over, only on a reason in the route's ``failover_on``, never
    after an override, a failover or on a pass-through model, and an exhausted pool only to a
    fallback on another upstream (the same pool would keep it waiting again, for nothing).
    """
    if (
        reason is None
        or decision.reason in _NO_FAILOVER
        or variant.name != route.candidate
        or route.candidate == route.fallback
        or reason not in route.failover_on
    ):
        return None
    fallback = route.variants[route.fallback]
    if reason == "pool_exhausted" and fallback.upstream == variant.upstream:
        return None
    return fallback


def retry_on_violation(
    route: Route, variant: Variant, decision: Decision, failed_checks: list[str]
) -> Variant | None:
    """The variant that answers instead of a candidate's unary answer that failed
    ``failed_checks`` (``on_violation: fallback``), or ``None`` to send the answer as it is.
    An override is never replaced (an evaluation asked for that variant)."""
    if (
        failed_checks
        and route.on_violation == "fallback"
        and variant.name == route.candidate
        and decision.reason != "override"
    ):
        return route.variants[route.fallback]
    return None
