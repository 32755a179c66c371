"""How a simulated model behaves, and the simulator's YAML configuration.

A config file looks like ``config/simulator.example.yaml``::

    seed: 7                 # optional; makes every random draw reproducible
    api_key: null           # optional; when set, /v1/* requires "Authorization: Bearer <key>"
    default:                # behaviour of any model name not listed under `models`
      latency_ms: 0
    models:
      "ft:support-classifier": {accuracy: 0.95}

Every field of ``ModelBehaviour`` has a default, so ``{}`` is a perfect, instant model.
Values are validated when converted (``load_simulator_config``, ``merge_behaviour``): rates lie
in ``[0, 1]``, times are milliseconds ``>= 0``, ``error_status`` is an HTTP error ``400..599``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import yaml

__all__ = [
    "ModelBehaviour",
    "SimulatorConfig",
    "SimulatorConfigError",
    "load_simulator_config",
    "merge_behaviour",
]

_T = TypeVar("_T")

Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Millis = Annotated[float, msgspec.Meta(ge=0.0)]


class SimulatorConfigError(ValueError):
    """A simulator config or behaviour patch is invalid; the message names the file and key."""


class ModelBehaviour(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """What one simulated model does with a chat completion request.

    Draws happen per request, in this order: error, garbage, invalid label, accuracy.

    Attributes:
        latency_ms: delay before answering (before response headers), milliseconds.
        chunk_delay_ms: delay between stream events, milliseconds.
        stream_chunks: a streamed answer is split into exactly this many content chunks
            (characters spread evenly; trailing chunks are empty when the answer is shorter).
        accuracy: probability of the correct label; otherwise another valid label.
        invalid_label_rate: probability of a label outside billing/technical/account.
        error_rate: probability of answering ``error_status`` with OpenAI's error envelope
            (``retry-after: 1`` is added for 429).
        error_status: the HTTP status of injected errors, 400..599.
        garbage_rate: probability of a 200 whose body is not JSON (in streams: one
            ``data: {garbage`` event in place of the content).
        cut_stream_after: in streams, abort the connection without ``[DONE]`` after this many
            content chunks (0 = right after the role chunk); ``None`` never cuts.
        mode: ``classify`` answers a label for the last user message; ``echo`` repeats it.
        tool_call_rate: probability that a request offering ``tools`` (with ``tool_choice``
            absent or ``auto``) is answered with a tool call instead of text; ``required`` or a
            named function always gets one, ``none`` never (``tool_calls.py``).
        wrong_tool_rate: probability that a tool call names ``unknown_function``.
        bad_arguments_rate: probability that a tool call's arguments are cut-short JSON.
    """

    latency_ms: Millis = 0.0
    chunk_delay_ms: Millis = 0.0
    stream_chunks: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 4
    accuracy: Rate = 1.0
    invalid_label_rate: Rate = 0.0
    error_rate: Rate = 0.0
    error_status: Annotated[int, msgspec.Meta(ge=400, le=599)] = 500
    garbage_rate: Rate = 0.0
    cut_stream_after: Annotated[int, msgspec.Meta(ge=0)] | None = None
    mode: Literal["classify", "echo"] = "classify"
    tool_call_rate: Rate = 0.0
    wrong_tool_rate: Rate = 0.0
    bad_arguments_rate: Rate = 0.0


class SimulatorConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The whole simulator configuration.

    Attributes:
        default: behaviour of model names not listed in ``models``.
        models: behaviour per model name; these names are what ``GET /v1/models`` lists.
        seed: seed of the simulator's ``random.Random``; ``None`` seeds from the OS.
        api_key: when set, ``/v1/*`` requires ``Authorization: Bearer <api_key>`` (else 401).
    """

    default: ModelBehaviour = msgspec.field(default_factory=ModelBehaviour)
    models: dict[str, ModelBehaviour] = msgspec.field(default_factory=dict)
    seed: int | None = None
    api_key: str | None = None

    def behaviour_for(self, model: str) -> ModelBehaviour:
        """Return the configured behaviour of ``model``, or ``default`` for unknown names."""
        return self.models.get(model, self.default)


def merge_behaviour(base: ModelBehaviour, patch: Mapping[str, Any]) -> ModelBehaviour:
    """Return ``base`` with the fields in ``patch`` replaced, validated.

    Args:
        base: the current behaviour.
        patch: a partial ``ModelBehaviour`` as decoded JSON, e.g. ``{"error_rate": 1}``.

    Raises:
        SimulatorConfigError: unknown field, wrong type or out-of-range value; the message
            names the field (e.g. ``Expected `float` >= 0.0 - at `$.latency_ms```).
    """
    merged = msgspec.structs.asdict(base)
    merged.update(patch)
    try:
        return msgspec.convert(merged, ModelBehaviour)
    except msgspec.ValidationError as exc:
        raise SimulatorConfigError(f"invalid model behaviour: {exc}") from exc


def load_simulator_config(path: Path | str) -> SimulatorConfig:
    """Read and validate a simulator config from a YAML file.

    An empty file gives the all-defaults config.

    Raises:
        SimulatorConfigError: the file is unreadable, not YAML, not a mapping, or a key is
            unknown or invalid; the message starts with the path and names the key
            (e.g. ``sim.yaml: Expected `float` <= 1.0 - at `$.models.m.accuracy```).
    """
    path = Path(path)
    try:
        raw: object = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SimulatorConfigError(f"{path}: cannot read simulator config: {exc}") from exc
    except yaml.YAMLError as exc:
        raise SimulatorConfigError(f"{path}: not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SimulatorConfigError(f"{path}: the top level must be a mapping")
    # Models are converted one by one because msgspec reports a bad dict value as
    # `$.models[...]`; the error should say which model.
    models_raw = raw.get("models") or {}
    if not isinstance(models_raw, dict):
        raise SimulatorConfigError(f"{path}: `models` must map model names to behaviours")
    models: dict[str, ModelBehaviour] = {}
    for name, behaviour in models_raw.items():
        if not isinstance(name, str):
            raise SimulatorConfigError(f"{path}: model name {name!r} must be a string")
        models[name] = _convert(path, behaviour or {}, ModelBehaviour, f"$.models.{name}")
    rest = {key: value for key, value in raw.items() if key != "models"}
    return msgspec.structs.replace(_convert(path, rest, SimulatorConfig, "$"), models=models)


def _convert(path: Path, raw: object, kind: type[_T], where: str) -> _T:
    """``msgspec.convert`` with errors as ``SimulatorConfigError`` located under ``where``."""
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if "`$" in message:
            message = message.replace("`$", f"`{where}", 1)
        else:
            message = f"{message} - at `{where}`"
        raise SimulatorConfigError(f"{path}: {message}") from exc
