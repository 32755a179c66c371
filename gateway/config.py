"""The routes file (``config/gateway.yaml``): its schema, its loading and its resolved form.

Loading reads YAML, validates it with pydantic, checks cross references (a variant's upstream
exists, candidate and fallback name variants, prompt files exist) and reads prompt files relative
to the routes file. Every problem is reported at once, one line each, as
``FILE: key.path: what is wrong (how to fix it)``, in a :class:`~gateway.errors.ConfigError`.

The result is a :class:`GatewayConfig` of frozen, precomputed :class:`Route` and :class:`Variant`
objects: the request path reads them and never touches YAML or pydantic.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jsonschema
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.errors import ConfigError, FailoverReason

__all__ = [
    "ContractConfig",
    "FlagConfig",
    "GatewayConfig",
    "GuardConfig",
    "Price",
    "Route",
    "RoutesFile",
    "ShadowConfig",
    "ToolCallsConfig",
    "UpstreamConfig",
    "Variant",
    "VariantConfig",
    "load_config",
]

FAILOVER_REASONS: tuple[FailoverReason, ...] = (
    "connect",
    "timeout",
    "5xx",
    "429",
    "invalid_response",
    "pool_exhausted",
)
MAX_WEIGHT = 100_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UpstreamConfig(_Strict):
    """An OpenAI-compatible API. The key is read from the environment variable ``api_key_env``."""

    base_url: str = Field(description="Up to and including /v1, e.g. https://api.openai.com/v1")
    api_key_env: str | None = Field(None, description="Environment variable holding the key.")
    timeout_s: float = Field(30.0, gt=0, description="Read timeout in seconds.")
    deadline_s: float | None = Field(
        None,
        gt=0,
        description="Whole-call deadline in seconds: a unary answer in full, a stream up to its "
        "first event (default: 4 x timeout_s).",
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra static headers.")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class VariantConfig(_Strict):
    """One concrete way to answer: upstream + model + prompt + parameters."""

    upstream: str
    model: str = Field(min_length=1)
    system_prompt: str | None = None
    system_prompt_file: str | None = None
    few_shot_file: str | None = Field(None, description="JSONL of messages or of examples.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Request fields set on every call (temperature...)."
    )
    params_mode: Literal["enforce", "default"] = Field(
        "enforce",
        description="enforce: params replace the client's values (reported in "
        "x-gateway-overridden); default: params fill only fields the client did not send.",
    )


class FlagConfig(_Strict):
    """The flag's initial state; the flag store overrides it at run time."""

    enabled: bool = True
    weight: int = Field(0, ge=0, le=MAX_WEIGHT, description="Thousandths of a percent.")
    salt: str | None = Field(None, description="Bucketing salt; default: the route name.")


class ToolCallsConfig(_Strict):
    """Which functions a route's answers may call and what their arguments must look like."""

    allowed: dict[str, dict[str, Any] | None] = Field(
        description="Function name -> JSON Schema of its arguments, or null for any JSON "
        "object. An empty mapping allows no tool call at all."
    )


class ContractConfig(_Strict):
    """What a valid answer looks like (checked by the quality module)."""

    labels: list[str] | None = None
    case_insensitive: bool = False
    strip: bool = True
    json_schema: dict[str, Any] | None = None
    regex: str | None = None
    max_length: int | None = Field(None, gt=0)
    non_empty: bool = True
    tool_calls: ToolCallsConfig | None = None


class GuardConfig(_Strict):
    """Automatic rollback policy (see DESIGN.md section 5)."""

    mode: Literal["enforce", "observe", "off"] = "enforce"
    ceiling: float = Field(0.20, gt=0, lt=1)
    margin: float = Field(0.02, ge=0, lt=1)
    alpha: float = Field(0.05, gt=0, lt=1)
    min_samples: int = Field(50, ge=1)
    latency_slo_s: float | None = Field(None, gt=0)


class ShadowConfig(_Strict):
    """Serve the fallback; also ask the candidate, in the background, for a share of requests."""

    share: float = Field(1.0, gt=0, le=1, description="Share of requests mirrored (0..1].")
    max_concurrency: int = Field(8, ge=1, description="Shadow calls in flight at most.")


class RouteConfig(_Strict):
    description: str = ""
    contract: ContractConfig | None = None
    variants: dict[str, VariantConfig] = Field(min_length=1)
    candidate: str
    fallback: str
    flag: FlagConfig = Field(default_factory=FlagConfig)
    failover_on: list[FailoverReason] = Field(default_factory=lambda: list(FAILOVER_REASONS))

    @field_validator("failover_on", mode="before")
    @classmethod
    def _status_as_text(cls, value: Any) -> Any:
        # YAML reads `429` as a number; the policy names it as text.
        return (
            [str(v) if isinstance(v, int) else v for v in value]
            if isinstance(value, list)
            else value
        )

    system_prompt_mode: Literal["replace", "prepend"] = "replace"
    guard: GuardConfig | None = None
    on_violation: Literal["record", "fallback"] = Field(
        "record", description="fallback: answer from the fallback when a check fails"
    )
    shadow: ShadowConfig | None = None
    response_model: Literal["route", "upstream"] = Field(
        "route",
        description="The answer's `model`: the route name (hides the variant's model id) or "
        "the upstream's own model id.",
    )


class Price(_Strict):
    """USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)


class RoutesFile(_Strict):
    """The routes file as written."""

    upstreams: dict[str, UpstreamConfig] = Field(min_length=1)
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
    passthrough: dict[str, list[str]] = Field(
        default_factory=dict, description="upstream name -> model names callable as-is"
    )
    prices: dict[str, Price] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Variant:
    """A resolved variant: prompt files read, price per token precomputed.

    ``few_shot`` holds the messages inserted between the system message and the conversation.
    ``input_usd_per_token`` and ``output_usd_per_token`` come from ``prices[model]`` (0 if absent,
    with ``priced`` False so the log can say the cost is unknown).
    """

    name: str
    route: str
    upstream: str
    model: str
    system_prompt: str | None
    few_shot: tuple[dict[str, str], ...]
    params: dict[str, Any]
    input_usd_per_token: float
    output_usd_per_token: float
    priced: bool
    params_mode: Literal["enforce", "default"] = "enforce"

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        """Cost in USD of one call with these token counts."""
        return input_tokens * self.input_usd_per_token + output_tokens * self.output_usd_per_token


@dataclass(frozen=True, slots=True)
class Route:
    """A resolved route. ``passthrough`` routes have one variant, no prompt and no flag."""

    name: str
    variants: dict[str, Variant]
    candidate: str
    fallback: str
    flag: FlagConfig
    failover_on: frozenset[str]
    system_prompt_mode: Literal["replace", "prepend"]
    contract: ContractConfig | None = None
    guard: GuardConfig | None = None
    description: str = ""
    passthrough: bool = False
    on_violation: Literal["record", "fallback"] = "record"
    shadow: ShadowConfig | None = None
    response_model: Literal["route", "upstream"] = "route"


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The whole resolved routes file."""

    path: Path
    upstreams: dict[str, UpstreamConfig]
    routes: dict[str, Route]
    prices: dict[str, Price] = field(default_factory=dict)


def load_config(path: Path) -> GatewayConfig:
    """Load, validate and resolve a routes file.

    Raises:
        ConfigError: with every problem found, each naming the file and the key path.
    """
    raw = _read_yaml(path)
    try:
        parsed = RoutesFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([_describe(path, err) for err in exc.errors()]) from None
    problems: list[str] = []
    routes = _resolve(path, parsed, problems)
    if problems:
        raise ConfigError(problems)
    return GatewayConfig(path=path, upstreams=parsed.upstreams, routes=routes, prices=parsed.prices)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [f"{path}: cannot read the routes file ({exc.strerror}); set GATEWAY_CONFIG"]
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError([f"{path}: {where}{problem} (fix the YAML syntax)"]) from None
    if not isinstance(data, dict):
        raise ConfigError(
            [f"{path}: the top level must be a mapping with 'upstreams' and 'routes'"]
        )
    return data


def _describe(path: Path, err: Any) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        model = _model_at(err["loc"][:-1])
        known = list(model.model_fields) if model else []
        hint = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
        fix = f"did you mean '{hint[0]}'?" if hint else f"allowed keys: {', '.join(known)}"
        return f"{path}: {loc}: unknown key ({fix})"
    if kind == "missing":
        return f"{path}: {loc}: required key is missing (add it)"
    return f"{path}: {loc}: {err['msg']} (got {err.get('input')!r})"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that a location path points into (for 'did you mean')."""
    model: type[BaseModel] = RoutesFile
    keyed = False
    for part in loc:
        if keyed:
            keyed = False
            continue
        info = model.model_fields.get(str(part))
        if info is None:
            return None
        ann = info.annotation
        inner = _first_model(ann)
        if inner is None:
            return None
        model = inner
        keyed = getattr(ann, "__origin__", None) is dict
    return model


def _first_model(ann: Any) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()):
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def _resolve(path: Path, parsed: RoutesFile, problems: list[str]) -> dict[str, Route]:
    routes: dict[str, Route] = {}
    for name, rc in parsed.routes.items():
        where = f"{path}: routes.{name}"
        for role in ("candidate", "fallback"):
            target = getattr(rc, role)
            if target not in rc.variants:
                problems.append(
                    f"{where}.{role}: '{target}' is not a variant of this route "
                    f"(variants: {', '.join(rc.variants)})"
                )
        variants = {
            vname: _resolve_variant(path, parsed, name, vname, vc, problems)
            for vname, vc in rc.variants.items()
        }
        if rc.contract and rc.contract.labels is not None and not rc.contract.labels:
            problems.append(f"{where}.contract.labels: empty list (list the allowed labels)")
        if rc.contract is not None:
            _check_schemas(rc.contract, f"{where}.contract", problems)
        routes[name] = Route(
            name=name,
            variants=variants,
            candidate=rc.candidate,
            fallback=rc.fallback,
            flag=rc.flag,
            failover_on=frozenset(rc.failover_on),
            system_prompt_mode=rc.system_prompt_mode,
            contract=rc.contract,
            guard=rc.guard,
            description=rc.description,
            on_violation=rc.on_violation,
            shadow=rc.shadow,
            response_model=rc.response_model,
        )
    for upstream, models in parsed.passthrough.items():
        if upstream not in parsed.upstreams:
            problems.append(
                f"{path}: passthrough.{upstream}: unknown upstream "
                f"(upstreams: {', '.join(parsed.upstreams)})"
            )
            continue
        for model in models:
            if model in routes:
                problems.append(
                    f"{path}: passthrough.{upstream}: '{model}' is already a route name "
                    "(rename the route or drop the pass-through)"
                )
                continue
            price = parsed.prices.get(model)
            variant = Variant(
                name="passthrough",
                route=model,
                upstream=upstream,
                model=model,
                system_prompt=None,
                few_shot=(),
                params={},
                input_usd_per_token=price.input / 1e6 if price else 0.0,
                output_usd_per_token=price.output / 1e6 if price else 0.0,
                priced=price is not None,
            )
            routes[model] = Route(
                name=model,
                variants={"passthrough": variant},
                candidate="passthrough",
                fallback="passthrough",
                flag=FlagConfig(enabled=False, weight=0),
                failover_on=frozenset(),
                system_prompt_mode="replace",
                passthrough=True,
                response_model="upstream",
            )
    return routes


def _resolve_variant(
    path: Path,
    parsed: RoutesFile,
    route: str,
    name: str,
    vc: VariantConfig,
    problems: list[str],
) -> Variant:
    where = f"{path}: routes.{route}.variants.{name}"
    if vc.upstream not in parsed.upstreams:
        problems.append(
            f"{where}.upstream: unknown upstream '{vc.upstream}' "
            f"(upstreams: {', '.join(parsed.upstreams)})"
        )
    if vc.system_prompt is not None and vc.system_prompt_file is not None:
        problems.append(f"{where}: set system_prompt or system_prompt_file, not both")
    system_prompt = vc.system_prompt
    base = path.parent
    if vc.system_prompt_file is not None:
        try:
            system_prompt = (base / vc.system_prompt_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            problems.append(
                f"{where}.system_prompt_file: cannot read {base / vc.system_prompt_file} "
                f"({exc.strerror}); paths are relative to the routes file"
            )
    few_shot: tuple[dict[str, str], ...] = ()
    if vc.few_shot_file is not None:
        few_shot = _read_few_shot(base / vc.few_shot_file, f"{where}.few_shot_file", problems)
    for reserved in ("model", "messages", "stream"):
        if reserved in vc.params:
            problems.append(f"{where}.params.{reserved}: set by the gateway, remove it")
    price = parsed.prices.get(vc.model)
    return Variant(
        name=name,
        route=route,
        upstream=vc.upstream,
        model=vc.model,
        system_prompt=system_prompt,
        few_shot=few_shot,
        params=dict(vc.params),
        input_usd_per_token=price.input / 1e6 if price else 0.0,
        output_usd_per_token=price.output / 1e6 if price else 0.0,
        priced=price is not None,
        params_mode=vc.params_mode,
    )


def _check_schemas(contract: ContractConfig, where: str, problems: list[str]) -> None:
    """Every JSON Schema of a contract must be a valid schema of its draft (jsonschema's
    ``check_schema``), so a typo fails at load, not as a failed check on every answer."""
    schemas: list[tuple[str, dict[str, Any]]] = []
    if contract.json_schema is not None:
        schemas.append(("json_schema", contract.json_schema))
    if contract.tool_calls is not None:
        for name, schema in contract.tool_calls.allowed.items():
            if schema is not None:
                schemas.append((f"tool_calls.allowed.{name}", schema))
    for key, schema in schemas:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            path = ".".join(str(p) for p in exc.absolute_path)
            at = f" at {path}" if path else ""
            problems.append(f"{where}.{key}: not a valid JSON Schema{at}: {exc.message}")


def _read_few_shot(file: Path, where: str, problems: list[str]) -> tuple[dict[str, str], ...]:
    """Few-shot JSONL: each line a message ``{"role", "content"}`` or an example ``{"messages"}``.

    System messages inside examples are dropped: the variant's own system prompt is used.
    """
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        problems.append(f"{where}: cannot read {file} ({reason}); paths are relative to the file")
        return ()
    messages: list[dict[str, str]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"{where}: {file}:{number}: not valid JSON")
            continue
        batch = item.get("messages") if isinstance(item, dict) else None
        for msg in batch if isinstance(batch, list) else [item]:
            if (
                not isinstance(msg, dict)
                or msg.get("role") not in ("system", "user", "assistant")
                or not isinstance(msg.get("content"), str)
            ):
                problems.append(
                    f'{where}: {file}:{number}: expected {{"role": user|assistant, '
                    '"content": string}} or {"messages": [...]}'
                )
                break
            if msg["role"] != "system":
                messages.append({"role": msg["role"], "content": msg["content"]})
    return tuple(messages)
