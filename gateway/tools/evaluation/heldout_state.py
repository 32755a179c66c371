"""The resumable state of a held-out evaluation: one :class:`Result` per (example, variant).

Every finished (example, variant) is appended as one JSON line and flushed at once
(:class:`StateWriter`), so an interrupted run resumes where it stopped and no example is paid
for twice. :func:`plan_run` (pure) merges the records read back (:func:`read_state`) with the
examples: a record applies to an example only while the example is unchanged
(``example_hash``); the newest record of a pair wins.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from gateway.tools.evaluation.heldout_examples import Example

__all__ = ["Plan", "Result", "StateWriter", "plan_run", "read_state"]


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
        model: the ``model`` the answer names (the route's name under the default
            ``response_model: route``, else the upstream's model).
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
