"""Held-out evaluation against a running gateway: examples in, one result per (example, variant).

Three parts, each usable alone:

* **Examples** (:func:`read_examples`): fine-tuning JSONL, one ``{"messages": [...]}`` per line.
  The gold answer is the last message, which must be the assistant's; the messages before it,
  minus system messages, are sent (the gateway applies each variant's own prompt).
* **State** (:func:`read_state`, :class:`StateWriter`, :func:`plan_run`): every finished
  (example, variant) is appended as one JSON line and flushed at once, so an interrupted run
  resumes where it stopped and no example is paid for twice. A record applies to an example only
  while the example is unchanged (``example_hash``); the newest record of a pair wins.
* **Calls** (:class:`Evaluator`): the official ``openai`` SDK against ``<url>/v1``, each request
  forcing its variant with ``x-gateway-variant`` (the key must be allowed to override), at most
  ``concurrency`` in flight. Upstream failures (5xx, 429, timeouts, a wrong variant, an invalid
  answer) become results with an ``error``; only an unreachable gateway
  (:class:`GatewayUnreachableError`) or a rejected key (:class:`EvalAuthError`) stops a run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from time import perf_counter
from types import TracebackType
from typing import IO, Any, cast

import openai
from openai.types.chat import ChatCompletionMessageParam

from gateway.config import Price, Variant

__all__ = [
    "DatasetError",
    "EvalAbortError",
    "EvalAuthError",
    "Evaluator",
    "Example",
    "GatewayUnreachableError",
    "Plan",
    "Result",
    "StateWriter",
    "plan_run",
    "price_per_token",
    "read_examples",
    "read_state",
]

VARIANT_HEADER = "x-gateway-variant"


# -- examples ----------------------------------------------------------------------------------


class DatasetError(ValueError):
    """The held-out file cannot be used; ``problems`` holds one ``FILE:LINE: what`` per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Example:
    """One held-out example.

    Attributes:
        index: 0-based position among the file's non-blank lines (the resume key).
        messages: what is sent: the conversation before the gold answer, no system messages.
        gold: the expected answer (the last assistant message's content).
        example_hash: 16 hex digits of sha256 over messages and gold; a state record whose hash
            differs belongs to an edited example and is not reused.
    """

    index: int
    messages: tuple[dict[str, str], ...]
    gold: str
    example_hash: str


def parse_example(item: Any, index: int) -> Example:
    """One decoded JSONL line as an :class:`Example`.

    Raises:
        ValueError: not ``{"messages": [...]}``, a message without a string ``role`` and
            ``content``, a role other than system/user/assistant, the last message not an
            assistant's, or no user message before it. The message says what to fix.
    """
    messages = item.get("messages") if isinstance(item, dict) else None
    if not isinstance(messages, list) or not messages:
        raise ValueError('expected {"messages": [...]} with at least one message')
    clean: list[dict[str, str]] = []
    for position, message in enumerate(messages):
        if (
            not isinstance(message, dict)
            or message.get("role") not in ("system", "user", "assistant")
            or not isinstance(message.get("content"), str)
        ):
            raise ValueError(
                f'messages[{position}]: expected {{"role": system|user|assistant, '
                '"content": string}'
            )
        clean.append({"role": message["role"], "content": message["content"]})
    if clean[-1]["role"] != "assistant":
        raise ValueError("the last message must be the assistant's answer (the gold)")
    gold = clean[-1]["content"]
    sent = tuple(m for m in clean[:-1] if m["role"] != "system")
    if not any(m["role"] == "user" for m in sent):
        raise ValueError("no user message before the gold answer")
    digest = hashlib.sha256(
        json.dumps({"messages": sent, "gold": gold}, sort_keys=True).encode()
    ).hexdigest()[:16]
    return Example(index=index, messages=sent, gold=gold, example_hash=digest)


def read_examples(path: Path) -> list[Example]:
    """Read a held-out JSONL file (blank lines skipped).

    Raises:
        DatasetError: the file cannot be read, is empty, or has invalid lines (every invalid
            line is reported, as ``FILE:LINE: problem``).
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise DatasetError([f"{path}: cannot read the held-out file ({reason})"]) from None
    examples: list[Example] = []
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            examples.append(parse_example(json.loads(line), len(examples)))
        except json.JSONDecodeError:
            problems.append(f"{path}:{number}: not valid JSON")
        except ValueError as exc:
            problems.append(f"{path}:{number}: {exc}")
    if problems:
        raise DatasetError(problems)
    if not examples:
        raise DatasetError([f"{path}: no examples (one JSON object per line)"])
    return examples


# -- results and the state file ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one example sent to one forced variant (one line of the state file).

    Attributes:
        index, example_hash: the example (see :class:`Example`).
        route, variant: the route called and the variant forced.
        answer: the answer's text (``None``: an error, or an answer without content).
        error: ``None`` when answered; else a kind: ``http_<status>``, ``timeout``,
            ``wrong_variant`` (the gateway did not serve the forced variant),
            ``invalid_response``.
        status: the HTTP status (``None`` for a timeout).
        detail: the error's message, if any.
        served_variant, decision, request_id: the gateway's ``x-gateway-variant``,
            ``x-gateway-decision`` and ``x-request-id`` headers.
        model: the ``model`` the answer names (the upstream's model).
        input_tokens, output_tokens: the answer's ``usage``.
        latency_ms: client-side wall time of the call, milliseconds.
        overhead_ms: the gateway's ``x-gateway-overhead-ms`` (time in the gateway itself).
        cost_usd: tokens times the price of ``model`` (else of the variant's model); ``None``
            when neither is priced or no usage came back.
        at: Unix seconds when the result was recorded.
    """

    index: int
    example_hash: str
    route: str
    variant: str
    answer: str | None = None
    error: str | None = None
    status: int | None = None
    detail: str | None = None
    served_variant: str | None = None
    decision: str | None = None
    request_id: str | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float = 0.0
    overhead_ms: float | None = None
    cost_usd: float | None = None
    at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object (every field, ``None`` as ``null``)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Result:
        """A record from :meth:`to_json`'s object; unknown keys are ignored.

        Raises:
            ValueError: a required field is missing or has the wrong type.
        """
        known = {f.name for f in fields(cls)}
        try:
            result = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        if not isinstance(result.index, int) or not isinstance(result.variant, str):
            raise ValueError("index must be an integer and variant a string")
        return result


def read_state(path: Path) -> tuple[list[Result], int]:
    """Every record of a state file, oldest first, and how many lines were unreadable.

    A missing file is an empty state. An unreadable line (e.g. the last one, cut by a kill in
    the middle of a write) is skipped and counted, never fatal: its pair simply runs again.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return [], 0
    records: list[Result] = []
    bad = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            records.append(Result.from_json(data))
        except ValueError:
            bad += 1
    return records, bad


class StateWriter:
    """Appends results to a state file, one JSON line each, flushed before :meth:`append` returns.

    Use as a context manager. If the file ends in a partial line (a killed writer), a newline is
    written first so that the next record starts on a line of its own.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def __enter__(self) -> StateWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        needs_newline = False
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open("rb") as existing:
                existing.seek(-1, 2)
                needs_newline = existing.read(1) != b"\n"
        self._file = self.path.open("a", encoding="utf-8")
        if needs_newline:
            self._file.write("\n")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def append(self, result: Result) -> None:
        """Write one record and flush it to the operating system."""
        if self._file is None:
            raise RuntimeError("StateWriter used outside its context manager")
        self._file.write(json.dumps(result.to_json(), separators=(",", ":")) + "\n")
        self._file.flush()


@dataclass(frozen=True, slots=True)
class Plan:
    """What a run still has to do, given the examples and the previous records (pure).

    Attributes:
        done: the newest applicable record per ``(index, variant)``.
        todo: the pairs to send, ordered by example then by the order of ``variants``.
        stale: records ignored (another route, an unknown variant or example, an edited example).
    """

    done: dict[tuple[int, str], Result]
    todo: list[tuple[Example, str]]
    stale: int


def plan_run(
    examples: Sequence[Example],
    variants: Sequence[str],
    records: Iterable[Result],
    *,
    route: str,
    retry_errors: bool = False,
) -> Plan:
    """Merge previous records with the examples: which pairs are done, which still to send.

    A pair is done when its newest record belongs to ``route``, names a variant in ``variants``
    and carries the example's current hash. With ``retry_errors``, a pair whose newest record
    is an error is sent again (and leaves ``done``): the new record then supersedes it.
    """
    by_index = {example.index: example for example in examples}
    wanted = set(variants)
    done: dict[tuple[int, str], Result] = {}
    stale = 0
    for record in records:
        example = by_index.get(record.index)
        if (
            record.route != route
            or record.variant not in wanted
            or example is None
            or example.example_hash != record.example_hash
        ):
            stale += 1
            continue
        done[(record.index, record.variant)] = record  # newest wins
    if retry_errors:
        done = {pair: r for pair, r in done.items() if r.error is None}
    todo = [
        (example, variant)
        for example in examples
        for variant in variants
        if (example.index, variant) not in done
    ]
    return Plan(done=done, todo=todo, stale=stale)


# -- calls -------------------------------------------------------------------------------------


class EvalAbortError(Exception):
    """A failure that stops the whole run (not one example's error). ``hint`` says what to do."""

    def __init__(self, message: str, hint: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.status = status


class GatewayUnreachableError(EvalAbortError):
    """No connection to the gateway, or it answered the pre-flight check with a 5xx."""


class EvalAuthError(EvalAbortError):
    """401 or 403: the key is missing, wrong, or not allowed to force a variant."""


def price_per_token(
    model: str | None, variant: Variant, prices: Mapping[str, Price]
) -> tuple[float, float] | None:
    """USD per (input, output) token for an answer from ``model`` served by ``variant``.

    The routes file's ``prices[model]`` when the answer's model is priced; else the variant's
    own model's price (an upstream may name a dated snapshot, e.g. ``gpt-4o-mini-2024-07-18``);
    ``None`` when neither is priced.
    """
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
            raise _auth_error(exc) from None
        except openai.APIConnectionError as exc:
            raise _unreachable(self._client, str(exc)) from None
        except openai.APIStatusError as exc:
            if exc.status_code >= 500:
                raise _unreachable(self._client, exc.message, exc.status_code) from None
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
            return replace(
                base,
                error="timeout",
                detail=str(exc),
                latency_ms=(perf_counter() - started) * 1000,
                at=self._clock(),
            )
        except openai.APIConnectionError as exc:
            raise _unreachable(self._client, str(exc)) from None
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise _auth_error(exc) from None
        except openai.APIStatusError as exc:
            headers = exc.response.headers
            return replace(
                base,
                error=f"http_{exc.status_code}",
                status=exc.status_code,
                detail=exc.message,
                served_variant=headers.get(VARIANT_HEADER),
                decision=headers.get("x-gateway-decision"),
                request_id=headers.get("x-request-id"),
                latency_ms=(perf_counter() - started) * 1000,
                overhead_ms=_float_header(headers.get("x-gateway-overhead-ms")),
                at=self._clock(),
            )
        except openai.APIError as exc:  # e.g. a 200 whose body is not a completion
            return replace(
                base,
                error="invalid_response",
                detail=str(exc),
                latency_ms=(perf_counter() - started) * 1000,
                at=self._clock(),
            )
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
            served_variant=served,
            decision=raw.headers.get("x-gateway-decision"),
            request_id=raw.headers.get("x-request-id"),
            model=completion.model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            latency_ms=latency_ms,
            overhead_ms=_float_header(raw.headers.get("x-gateway-overhead-ms")),
            cost_usd=cost,
            at=self._clock(),
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


def _unreachable(
    client: openai.AsyncOpenAI, detail: str, status: int | None = None
) -> GatewayUnreachableError:
    url = str(client.base_url).removesuffix("/").removesuffix("/v1")
    return GatewayUnreachableError(
        f"cannot reach the gateway at {url}: {detail}",
        "is the gateway running? set --url or GATEWAY_URL (its base URL, without /v1)",
        status,
    )


def _auth_error(exc: openai.APIStatusError) -> EvalAuthError:
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
