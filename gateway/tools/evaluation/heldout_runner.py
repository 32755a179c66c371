"""The calls of a held-out evaluation: examples to a running gateway, one forced variant each.

:class:`Evaluator` uses the official ``openai`` SDK against ``<url>/v1``, each request forcing
its variant with ``x-gateway-variant`` (the key must be allowed to override), at most
``concurrency`` in flight. Upstream failures (5xx, 429, timeouts, a wrong variant, an invalid
answer) become results with an ``error``; only an unreachable gateway
(:class:`~gateway.tools.evaluation.heldout_errors.GatewayUnreachableError`) or a rejected key
(:class:`~gateway.tools.evaluation.heldout_errors.EvalAuthError`) stops a run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from time import perf_counter
from typing import Any, cast

import openai
from openai.types.chat import ChatCompletionMessageParam

from gateway.config import Price, Variant
from gateway.tools.evaluation.heldout_errors import EvalAbortError, auth_error, unreachable
from gateway.tools.evaluation.heldout_examples import Example
from gateway.tools.evaluation.heldout_state import Result

__all__ = ["VARIANT_HEADER", "Evaluator", "price_per_token"]

VARIANT_HEADER = "x-gateway-variant"


def price_per_token(
    model: str | None, variant: Variant, prices: Mapping[str, Price]
) -> tuple[float, float] | None:
    """USD per (input, output) token for an answer from ``model`` served by ``variant``.

    The routes file's ``prices[model]`` when the answer's model is priced; else the variant's
    own model's price (an upstream may name a dated snapshot, e.g. ``gpt-4o-mini-2024-07-18``);
    ``None`` when neither is priced. An answer whose ``model`` is the route's own name (the
    route's ``response_model: route``, the default) says nothing of what was paid for: the
    variant's price is used, even when a priced model has the route's name.
    """
    if model == variant.route:
        model = None
    if model is not None and model in prices:
        price = prices[model]
        return price.input / 1e6, price.output / 1e6
    if variant.priced:
        return variant.input_usd_per_token, variant.output_usd_per_token
    return None


def _float_header(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _gateway_headers(headers: Mapping[str, str]) -> dict[str, Any]:
    """What the gateway says of a call, as :class:`Result` fields: the variant it served, its
    decision, the request id and its own overhead (milliseconds)."""
    return {
        "served_variant": headers.get(VARIANT_HEADER),
        "decision": headers.get("x-gateway-decision"),
        "request_id": headers.get("x-request-id"),
        "overhead_ms": _float_header(headers.get("x-gateway-overhead-ms")),
    }


class Evaluator:
    """Sends examples to a route of a running gateway, one forced variant at a time.

    Args:
        client: an ``AsyncOpenAI`` whose ``base_url`` is the gateway's ``/v1`` and whose key
            may override variants (``GATEWAY_OVERRIDE_KEYS``); ``max_retries=0`` is expected
            (an error is recorded, not retried, unless the run is resumed with retries).
        route: the route name sent as ``model``.
        variants: the route's variants by name (for prices).
        prices: the routes file's ``prices`` (USD per million tokens by model name).
        clock: Unix time, for :attr:`Result.at`.
    """

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        route: str,
        variants: Mapping[str, Variant],
        prices: Mapping[str, Price],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._route = route
        self._variants = variants
        self._prices = prices
        self._clock = clock

    async def preflight(self) -> None:
        """Check that the gateway answers, accepts the key and serves the route.

        Raises:
            GatewayUnreachableError: no connection, a timeout or a 5xx.
            EvalAuthError: 401 or 403.
            EvalAbortError: the gateway does not list the route in ``GET /v1/models``.
        """
        try:
            page = await self._client.models.list()
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise auth_error(exc) from None
        except openai.APIConnectionError as exc:
            raise unreachable(self._client, str(exc)) from None
        except openai.APIStatusError as exc:
            if exc.status_code >= 500:
                raise unreachable(self._client, exc.message, exc.status_code) from None
            raise EvalAbortError(
                f"GET /v1/models answered {exc.status_code}: {exc.message}",
                "is --url the gateway's base URL (without /v1)?",
                exc.status_code,
            ) from None
        names = {model.id for model in page.data}
        if self._route not in names:
            raise EvalAbortError(
                f"the gateway does not serve the route '{self._route}'",
                f"it serves: {', '.join(sorted(names)) or 'nothing'}; does --config match the "
                "gateway's routes file?",
            )

    async def ask(self, example: Example, variant: str) -> Result:
        """Send one example to one forced variant and describe what came back.

        Raises:
            GatewayUnreachableError: the connection failed (not a timeout).
            EvalAuthError: 401 or 403.
        """
        base = Result(
            index=example.index,
            example_hash=example.example_hash,
            route=self._route,
            variant=variant,
        )
        started = perf_counter()
        try:
            raw = await self._client.chat.completions.with_raw_response.create(
                model=self._route,
                messages=cast("list[ChatCompletionMessageParam]", list(example.messages)),
                extra_headers={VARIANT_HEADER: variant},
            )
            completion = raw.parse()
        except openai.APITimeoutError as exc:
            return self._failed(base, started, "timeout", str(exc))
        except openai.APIConnectionError as exc:
            raise unreachable(self._client, str(exc)) from None
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise auth_error(exc) from None
        except openai.APIStatusError as exc:
            return self._failed(
                base,
                started,
                f"http_{exc.status_code}",
                exc.message,
                status=exc.status_code,
                **_gateway_headers(exc.response.headers),
            )
        except openai.APIError as exc:  # e.g. a 200 whose body is not a completion
            return self._failed(base, started, "invalid_response", str(exc))
        latency_ms = (perf_counter() - started) * 1000
        served = raw.headers.get(VARIANT_HEADER)
        usage = completion.usage
        input_tokens = usage.prompt_tokens if usage is not None else None
        output_tokens = usage.completion_tokens if usage is not None else None
        price = price_per_token(completion.model, self._variants[variant], self._prices)
        cost = (
            input_tokens * price[0] + output_tokens * price[1]
            if price is not None and input_tokens is not None and output_tokens is not None
            else None
        )
        answer = completion.choices[0].message.content if completion.choices else None
        wrong = served != variant
        return replace(
            base,
            answer=None if wrong else answer,
            error="wrong_variant" if wrong else None,
            status=raw.status_code,
            detail=f"forced {variant}, served {served}" if wrong else None,
            model=completion.model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            latency_ms=latency_ms,
            cost_usd=cost,
            at=self._clock(),
            **_gateway_headers(raw.headers),
        )

    def _failed(self, base: Result, started: float, error: str, detail: str, **more: Any) -> Result:
        """``base`` as a failed result: the error's kind and message, latency since ``started``."""
        latency_ms = (perf_counter() - started) * 1000
        return replace(
            base, error=error, detail=detail, latency_ms=latency_ms, at=self._clock(), **more
        )

    async def run(
        self,
        todo: Sequence[tuple[Example, str]],
        *,
        concurrency: int,
        on_result: Callable[[Result], None],
        stop: asyncio.Event,
    ) -> bool:
        """Send every pair of ``todo``, at most ``concurrency`` at a time, in ``todo``'s order.

        ``on_result`` is called once per finished pair (record it before anything else). Setting
        ``stop`` (e.g. on SIGINT) starts no new request; those in flight finish and are
        reported, so nothing paid for is lost.

        Returns:
            ``True`` when every pair was sent, ``False`` when ``stop`` cut the run short.

        Raises:
            EvalAbortError: the first fatal failure, after the requests in flight finished.
        """
        semaphore = asyncio.Semaphore(concurrency)
        fatal: list[EvalAbortError] = []

        async def one(example: Example, variant: str) -> None:
            async with semaphore:
                if stop.is_set():
                    return
                try:
                    result = await self.ask(example, variant)
                except EvalAbortError as exc:
                    fatal.append(exc)
                    stop.set()
                    return
                on_result(result)

        await asyncio.gather(*(one(example, variant) for example, variant in todo))
        if fatal:
            raise fatal[0]
        return not stop.is_set()
