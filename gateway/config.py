"""The routes file (``config/gateway.yaml``): its schema, its loading and its resolved form.

Loading reads YAML, validates it with pydantic, checks cross references (a variant's upstream
exists, candidate and fallback name variants, prompt files exist) and reads prompt files relative
to the routes file. Every problem is reported at once, one line each, as
``FILE: key.path: what is wrong (how to fix it)``, in a :class:`~gateway.errors.ConfigError`.

The result is a :class:`GatewayConfig` of frozen, precomputed :class:`Route` and :class:`Variant`
objects: the request path reads them and never touches YAML or pydantic.
"""

from __future__ import annotations

import copy
import difflib
import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal, TypeVar

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
    "RampConfig",
    "Route",
    "RoutesFile",
    "ShadowConfig",
    "ToolCallsConfig",
    "UpstreamConfig",
    "Variant",
    "VariantConfig",
    "check_config",
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
    provider: str = "openai"
    responses_api: bool = Field(
        True,
        description="Whether the upstream offers the Responses API (POST /responses); false: "
        "/v1/responses on a route using it answers 400 responses_api_unsupported.",
    )

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


def _weight_value(value: Any) -> Any:
    """A weight as written in the routes file: an integer (thousandths of a percent) or a
    percentage string (``"10%"`` -> 10000, ``"0.5%"`` -> 500). Other values are left for
    pydantic to refuse with the key's path."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            scaled = Decimal(value.strip()[:-1]) * 1000
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a percentage like '10%'") from None
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{value!r}: 0.001% is the smallest step")
        return int(scaled)
    return value


class RampConfig(_Strict):
    """Progressive delivery: the guard raises the weight step by step by itself.

    The rollout starts at ``steps[0]``; the guard moves to the next step once, at the current
    step, there are ``min_samples`` candidate outcomes route-wide, ``min_dwell_s`` seconds have
    passed, and the always-valid upper bound of the candidate's failure rate minus the
    fallback's is below the guard's ``margin`` (:mod:`gateway.quality.ramp`).
    """

    steps: list[int] = Field(
        min_length=1,
        description="Weights in thousandths of a percent (or '10%'), strictly increasing, "
        "each in (0, 100000].",
    )
    min_samples: int = Field(200, ge=1, description="Candidate outcomes needed at each step.")
    min_dwell_s: float = Field(600.0, ge=0, description="Seconds each step lasts at least.")

    @field_validator("steps", mode="before")
    @classmethod
    def _percentages(cls, value: Any) -> Any:
        return [_weight_value(v) for v in value] if isinstance(value, list) else value

    @field_validator("steps")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        for step in value:
            if not 0 < step <= MAX_WEIGHT:
                raise ValueError(f"each step must be in (0, {MAX_WEIGHT}], got {step}")
        if any(b <= a for a, b in pairwise(value)):
            raise ValueError(f"steps must be strictly increasing, got {value}")
        return value


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
    ramp: RampConfig | None = None


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
    ramp: RampConfig | None = None


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
        ConfigError: with every problem found (:func:`check_config`), each naming the file and
            the key path.
    """
    config, problems = check_config(path)
    if problems or config is None:
        raise ConfigError(problems)
    return config


def check_config(path: Path) -> tuple[GatewayConfig | None, list[str]]:
    """The resolved routes file (``None`` when it has problems) and every problem found in one
    pass: schema errors (unknown keys, values out of range, missing keys) and cross-reference
    errors (unknown upstreams, prompt and few-shot files that cannot be read, candidate or
    fallback not among the variants, ...), each as ``FILE: key.path: what (how to fix it)``.

    Schema errors do not hide the cross-reference checks: the parts that failed validation are
    set aside (:func:`_prune`) and the rest is checked, so one run reports all of them.
    A file that cannot be read or parsed as YAML is the one problem reported.
    """
    try:
        raw = _read_yaml(path)
    except ConfigError as exc:
        return None, list(exc.problems)
    try:
        parsed = RoutesFile.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe(path, err) for err in exc.errors()]
        _resolve(path, _salvage(raw), problems, _declared_names(raw))
        return None, problems
    problems = []
    routes = _resolve(path, parsed, problems)
    if problems:
        return None, problems
    config = GatewayConfig(
        path=path, upstreams=parsed.upstreams, routes=routes, prices=parsed.prices
    )
    return config, []


_M = TypeVar("_M", bound=BaseModel)

_MAX_PRUNE_ROUNDS = 8
"""Rounds of setting invalid parts aside before the cross-reference checks give up."""


@dataclass(frozen=True, slots=True)
class _Declared:
    """Names the file declares, valid or not: an upstream or variant that failed validation
    still exists, so references to it are not reported as unknown."""

    upstreams: frozenset[str]
    variants: dict[str, frozenset[str]]


def _declared_names(raw: Any) -> _Declared:
    def keys(node: Any) -> frozenset[str]:
        return frozenset(str(k) for k in node) if isinstance(node, dict) else frozenset()

    routes = raw.get("routes") if isinstance(raw, dict) else None
    variants = {
        str(name): keys(route.get("variants"))
        for name, route in (routes.items() if isinstance(routes, dict) else ())
        if isinstance(route, dict)
    }
    return _Declared(keys(raw.get("upstreams")), variants)


def _salvage(raw: Any) -> RoutesFile:
    """The routes file without the parts that failed validation, for the cross-reference
    checks: each upstream, price and route validated on its own, a route with its invalid keys
    set aside (:func:`_pruned`). Only the first, whole-file validation's errors are reported."""

    def each(section: str, model: type[_M]) -> dict[str, _M]:
        node = raw.get(section)
        parts = node.items() if isinstance(node, dict) else ()
        valid = {str(name): _pruned(model, value) for name, value in parts}
        return {name: part for name, part in valid.items() if part is not None}

    passthrough = raw.get("passthrough")
    return RoutesFile.model_construct(
        upstreams=each("upstreams", UpstreamConfig),
        routes=each("routes", RouteConfig),
        prices=each("prices", Price),
        passthrough={
            str(upstream): [m for m in models if isinstance(m, str)]
            for upstream, models in (passthrough.items() if isinstance(passthrough, dict) else ())
            if isinstance(models, list)
        },
    )


def _pruned(model: type[_M], raw: Any) -> _M | None:
    """``raw`` validated as ``model``, after deleting what failed (a few rounds at most);
    ``None`` when nothing valid is left."""
    data = copy.deepcopy(raw)
    for _ in range(_MAX_PRUNE_ROUNDS):
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            if not _prune(data, exc.errors()):
                return None
    return None


def _prune(data: Any, errors: list[Any]) -> bool:
    """Delete what each error points at from ``data``: the offending key, or the object that
    lacks a required key. Whether anything was deleted."""
    deleted = False
    for err in errors:
        loc = tuple(err["loc"])
        target = loc[:-1] if err["type"] == "missing" else loc
        deleted |= _delete(data, target)
    return deleted


def _delete(data: Any, loc: tuple[Any, ...]) -> bool:
    """Delete the deepest mapping key along ``loc`` that exists in ``data``; list items take
    their whole list along."""
    node, found = data, []
    for part in loc:
        if isinstance(node, dict) and part in node:
            found.append((node, part))
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            break
    if not found:
        return False
    parent, key = found[-1]
    del parent[key]
    return True


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


def _resolve(
    path: Path, parsed: RoutesFile, problems: list[str], declared: _Declared | None = None
) -> dict[str, Route]:
    """The resolved routes; every cross-reference problem appended to ``problems``.

    ``declared``: the names the file declares when ``parsed`` lacks its invalid parts
    (:func:`_salvage`), so that references to those are not reported as unknown.
    """
    routes: dict[str, Route] = {}
    for name, rc in parsed.routes.items():
        where = f"{path}: routes.{name}"
        variant_names = declared.variants.get(name, frozenset()) if declared else frozenset()
        for role in ("candidate", "fallback"):
            target = getattr(rc, role)
            if target not in rc.variants and target not in variant_names:
                problems.append(
                    f"{where}.{role}: '{target}' is not a variant of this route "
                    f"(variants: {', '.join(rc.variants)})"
                )
        variants = {
            vname: _resolve_variant(path, parsed, name, vname, vc, problems, declared)
            for vname, vc in rc.variants.items()
        }
        if rc.ramp is not None:
            _check_ramp(where, rc, problems)
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
            ramp=rc.ramp,
        )
    for upstream, models in parsed.passthrough.items():
        if upstream not in parsed.upstreams and not (declared and upstream in declared.upstreams):
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


def _check_ramp(where: str, rc: RouteConfig, problems: list[str]) -> None:
    """A ramp needs a guard that acts (its evidence and margin decide each step, its rollback
    ends the ramp) and starts the flag at its first step."""
    assert rc.ramp is not None
    if rc.guard is None or rc.guard.mode != "enforce":
        problems.append(
            f"{where}.ramp: a ramp needs a guard in enforce mode (add guard: {{mode: enforce}}: "
            "its evidence decides each step and its rollback ends the ramp)"
        )
    if rc.shadow is not None:
        problems.append(f"{where}.ramp: a route in shadow mode cannot ramp (remove one of them)")
    first = rc.ramp.steps[0]
    if "weight" in rc.flag.model_fields_set and rc.flag.weight != first:
        problems.append(
            f"{where}.flag.weight: the ramp starts at its first step ({first}); "
            "remove flag.weight or set it to the first step"
        )


def _resolve_variant(
    path: Path,
    parsed: RoutesFile,
    route: str,
    name: str,
    vc: VariantConfig,
    problems: list[str],
    declared: _Declared | None = None,
) -> Variant:
    where = f"{path}: routes.{route}.variants.{name}"
    known = declared.upstreams if declared else frozenset()
    if vc.upstream not in parsed.upstreams and vc.upstream not in known:
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
