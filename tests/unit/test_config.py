"""Loading the routes file: the valid demo file, and errors that name the file and key path."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import check_config, load_config
from gateway.errors import ConfigError

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"
ROUTE = "support-triage"


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A copy of config/gateway.yaml and its prompts directory in tmp_path."""
    shutil.copy(REPO_CONFIG / "gateway.yaml", tmp_path / "gateway.yaml")
    shutil.copytree(REPO_CONFIG / "prompts", tmp_path / "prompts")
    return tmp_path


def demo(config_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((config_dir / "gateway.yaml").read_text())
    return data


def write(config_dir: Path, data: dict[str, Any]) -> Path:
    path = config_dir / "gateway.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def problems_after(config_dir: Path, change: Callable[[dict[str, Any]], object]) -> list[str]:
    """Apply ``change`` to the demo file, load it, and return the reported problems."""
    data = demo(config_dir)
    change(data)
    path = write(config_dir, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    for problem in info.value.problems:
        assert problem.startswith(f"{path}: "), problem
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def route(data: dict[str, Any]) -> dict[str, Any]:
    r: dict[str, Any] = data["routes"][ROUTE]
    return r


def test_demo_file_loads_with_few_shot_messages_prompt_and_prices(config_dir: Path) -> None:
    """The shipped routes file loads: prompt file read, few-shot messages, prices per token."""
    cfg = load_config(config_dir / "gateway.yaml")
    r = cfg.routes[ROUTE]
    assert set(r.variants) == {"finetuned", "prompted"}
    assert (r.candidate, r.fallback) == ("finetuned", "prompted")
    assert r.flag.weight == 50_000
    assert r.failover_on == {"connect", "timeout", "5xx", "429", "invalid_response"}
    assert not r.passthrough

    prompted = r.variants["prompted"]
    prompts = config_dir / "prompts" / "support-triage"
    assert prompted.system_prompt == (prompts / "system.md").read_text().strip()
    lines = (prompts / "examples.jsonl").read_text().splitlines()
    expected = tuple(json.loads(line) for line in lines if line.strip())
    assert prompted.few_shot == expected
    assert len(prompted.few_shot) == 20
    assert prompted.params == {"temperature": 0}

    # prices are USD per million tokens in the file: 0.15 / 0.60 for sim-mini
    assert prompted.priced
    assert prompted.input_usd_per_token == pytest.approx(0.15e-6)
    assert prompted.output_usd_per_token == pytest.approx(0.60e-6)
    assert prompted.cost_usd(1_000_000, 500_000) == pytest.approx(0.15 + 0.30)
    finetuned = r.variants["finetuned"]
    assert finetuned.system_prompt is not None
    assert finetuned.system_prompt.startswith("You are a support classifier.")
    assert finetuned.few_shot == ()
    assert finetuned.cost_usd(1_000, 1_000) == pytest.approx(1_000 * 0.30e-6 + 1_000 * 1.20e-6)


def test_unpriced_model_costs_zero_and_says_so(config_dir: Path) -> None:
    """A model missing from prices gets cost 0 with priced False (the log says it is unknown)."""
    data = demo(config_dir)
    del data["prices"]["sim-mini"]
    variant = load_config(write(config_dir, data)).routes[ROUTE].variants["prompted"]
    assert not variant.priced
    assert variant.cost_usd(1_000, 1_000) == 0.0


def test_few_shot_file_of_examples_drops_their_system_messages(config_dir: Path) -> None:
    """Few-shot lines may be {"messages": [...]} examples; system messages in them are dropped."""
    example = {
        "messages": [
            {"role": "system", "content": "old prompt"},
            {"role": "user", "content": "refund please"},
            {"role": "assistant", "content": "billing"},
        ]
    }
    (config_dir / "prompts" / "ex.jsonl").write_text(json.dumps(example) + "\n\n")
    data = demo(config_dir)
    route(data)["variants"]["prompted"]["few_shot_file"] = "prompts/ex.jsonl"
    variant = load_config(write(config_dir, data)).routes[ROUTE].variants["prompted"]
    assert variant.few_shot == (
        {"role": "user", "content": "refund please"},
        {"role": "assistant", "content": "billing"},
    )


def test_unknown_key_is_named_with_a_did_you_mean_hint(config_dir: Path) -> None:
    """A misspelt key (weigth) names its path and suggests the right key."""
    problems = problems_after(config_dir, lambda d: route(d)["flag"].update(weigth=5))
    assert len(problems) == 1
    assert f"routes.{ROUTE}.flag.weigth" in problems[0]
    assert "unknown key" in problems[0]
    assert "did you mean 'weight'" in problems[0]


def test_unknown_top_level_and_variant_keys_get_hints(config_dir: Path) -> None:
    """Hints work at the top level (routs) and inside a keyed mapping (variants.X.modle)."""

    def change(d: dict[str, Any]) -> None:
        d["routs"] = {}
        route(d)["variants"]["finetuned"]["modle"] = "x"

    problems = problems_after(config_dir, change)
    assert any("routs: unknown key (did you mean 'routes'?)" in p for p in problems)
    assert any(
        f"routes.{ROUTE}.variants.finetuned.modle" in p and "did you mean 'model'" in p
        for p in problems
    )


def test_missing_key_is_named(config_dir: Path) -> None:
    """A required key that is absent is reported at its path."""
    problems = problems_after(config_dir, lambda d: route(d).pop("fallback"))
    assert problems == [
        f"{config_dir / 'gateway.yaml'}: routes.{ROUTE}.fallback: required key is missing (add it)"
    ]


@pytest.mark.parametrize("role", ["candidate", "fallback"])
def test_candidate_or_fallback_must_name_a_variant(config_dir: Path, role: str) -> None:
    """candidate/fallback naming no variant is reported with the route's variant names."""
    problems = problems_after(config_dir, lambda d: route(d).update({role: "nope"}))
    assert len(problems) == 1
    assert f"routes.{ROUTE}.{role}: 'nope' is not a variant" in problems[0]
    assert "finetuned, prompted" in problems[0]


def test_unknown_upstream_is_reported_with_the_known_ones(config_dir: Path) -> None:
    """A variant's upstream that is not declared is reported at variants.X.upstream."""
    problems = problems_after(
        config_dir, lambda d: route(d)["variants"]["finetuned"].update(upstream="openai")
    )
    assert len(problems) == 1
    assert f"routes.{ROUTE}.variants.finetuned.upstream: unknown upstream 'openai'" in problems[0]
    assert "simulator" in problems[0]


def test_missing_prompt_file_is_reported_with_its_path(config_dir: Path) -> None:
    """A system_prompt_file that does not exist is named, resolved next to the routes file."""
    problems = problems_after(
        config_dir,
        lambda d: route(d)["variants"]["prompted"].update(system_prompt_file="prompts/gone.md"),
    )
    assert len(problems) == 1
    assert f"routes.{ROUTE}.variants.prompted.system_prompt_file" in problems[0]
    assert str(config_dir / "prompts" / "gone.md") in problems[0]


def test_missing_few_shot_file_is_reported(config_dir: Path) -> None:
    """A few_shot_file that does not exist is reported at its key path."""
    problems = problems_after(
        config_dir,
        lambda d: route(d)["variants"]["prompted"].update(few_shot_file="prompts/none.jsonl"),
    )
    assert len(problems) == 1
    assert f"routes.{ROUTE}.variants.prompted.few_shot_file" in problems[0]
    assert "none.jsonl" in problems[0]


def test_bad_few_shot_lines_are_named_by_file_and_line(config_dir: Path) -> None:
    """Invalid JSON and wrong-shaped messages in the JSONL name file:line, each reported."""
    bad = config_dir / "prompts" / "bad.jsonl"
    bad.write_text(
        '{"role": "user", "content": "ok"}\n'
        "{not json\n"
        '{"role": "robot", "content": "x"}\n'
        '{"role": "assistant", "content": 3}\n'
    )
    problems = problems_after(
        config_dir,
        lambda d: route(d)["variants"]["prompted"].update(few_shot_file="prompts/bad.jsonl"),
    )
    assert len(problems) == 3
    assert all(f"routes.{ROUTE}.variants.prompted.few_shot_file" in p for p in problems)
    assert f"{bad}:2: not valid JSON" in problems[0]
    assert f"{bad}:3:" in problems[1]
    assert f"{bad}:4:" in problems[2]


@pytest.mark.parametrize("weight", [-1, 100_001])
def test_weight_out_of_range_is_rejected(config_dir: Path, weight: int) -> None:
    """Weights live in 0..100000; outside is reported at flag.weight with the value."""
    problems = problems_after(config_dir, lambda d: route(d)["flag"].update(weight=weight))
    assert len(problems) == 1
    assert f"routes.{ROUTE}.flag.weight" in problems[0]
    assert str(weight) in problems[0]


@pytest.mark.parametrize("weight", [0, 100_000])
def test_weight_edges_are_accepted(config_dir: Path, weight: int) -> None:
    """0 and 100000 are valid weights."""
    data = demo(config_dir)
    route(data)["flag"]["weight"] = weight
    assert load_config(write(config_dir, data)).routes[ROUTE].flag.weight == weight


def test_invalid_yaml_reports_the_line(config_dir: Path) -> None:
    """A YAML syntax error names the file and the line where it is."""
    path = config_dir / "gateway.yaml"
    path.write_text("upstreams:\n  sim:\n    base_url: http://x/v1\nroutes: [a, b\n  c: d\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}: line ")
    line = int(problem.split("line ", 1)[1].split(",", 1)[0])
    assert line == 5  # the stray "c: d" inside the unclosed flow list


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", ""])
def test_top_level_must_be_a_mapping(config_dir: Path, text: str) -> None:
    """A list, a scalar or an empty file is rejected with the file named."""
    path = config_dir / "gateway.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}: ")
    assert "mapping" in problem


def test_unreadable_routes_file_names_it_and_the_setting(tmp_path: Path) -> None:
    """A missing routes file is reported with its path and GATEWAY_CONFIG."""
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "GATEWAY_CONFIG" in str(info.value)


def test_schema_problems_are_reported_at_once(config_dir: Path) -> None:
    """Several schema problems come back together, one line each."""

    def change(d: dict[str, Any]) -> None:
        route(d)["flag"]["weigth"] = 5
        route(d).pop("fallback")
        route(d)["flag"]["weight"] = 200_000

    problems = problems_after(config_dir, change)
    assert len(problems) == 3
    joined = "\n".join(problems)
    assert "flag.weigth" in joined
    assert f"routes.{ROUTE}.fallback: required key is missing" in joined
    assert "flag.weight" in joined


def test_cross_reference_problems_are_reported_at_once(config_dir: Path) -> None:
    """Bad candidate, unknown upstream and a missing prompt file are all listed together."""

    def change(d: dict[str, Any]) -> None:
        route(d)["candidate"] = "nope"
        route(d)["variants"]["finetuned"]["upstream"] = "gone"
        route(d)["variants"]["prompted"]["system_prompt_file"] = "missing.md"

    problems = problems_after(config_dir, change)
    assert len(problems) == 3
    assert any(".candidate:" in p for p in problems)
    assert any(".variants.finetuned.upstream:" in p for p in problems)
    assert any(".variants.prompted.system_prompt_file:" in p for p in problems)


def test_failover_on_accepts_429_written_as_a_yaml_integer(config_dir: Path) -> None:
    """`failover_on: [429]` reads as an int in YAML and is accepted as the '429' reason."""
    path = config_dir / "gateway.yaml"
    text = path.read_text().replace(
        "failover_on: [connect, timeout, 5xx, 429, invalid_response]", "failover_on: [429]"
    )
    assert "failover_on: [429]" in text
    path.write_text(text)
    assert load_config(path).routes[ROUTE].failover_on == {"429"}


def test_failover_on_rejects_unknown_reasons(config_dir: Path) -> None:
    """An unknown failover reason is reported at failover_on.<index>."""
    problems = problems_after(config_dir, lambda d: route(d).update(failover_on=[429, "bogus"]))
    assert len(problems) == 1
    assert f"routes.{ROUTE}.failover_on.1" in problems[0]
    assert "bogus" in problems[0]


def test_passthrough_models_become_single_variant_routes(config_dir: Path) -> None:
    """Each pass-through model is a route with one 'passthrough' variant, no prompt, priced."""

    def change(d: dict[str, Any]) -> None:
        d["passthrough"] = {"simulator": ["sim-mini", "sim-large"]}

    data = demo(config_dir)
    change(data)
    cfg = load_config(write(config_dir, data))
    assert set(cfg.routes) == {ROUTE, "sim-mini", "sim-large"}
    r = cfg.routes["sim-mini"]
    assert r.passthrough
    assert set(r.variants) == {"passthrough"}
    assert r.candidate == r.fallback == "passthrough"
    v = r.variants["passthrough"]
    assert (v.upstream, v.model, v.system_prompt, v.few_shot) == ("simulator", "sim-mini", None, ())
    assert v.priced
    assert v.input_usd_per_token == pytest.approx(0.15e-6)
    assert not cfg.routes["sim-large"].variants["passthrough"].priced


def test_passthrough_model_clashing_with_a_route_is_rejected(config_dir: Path) -> None:
    """A pass-through model named like a route is reported (the route would be shadowed)."""
    problems = problems_after(config_dir, lambda d: d.update(passthrough={"simulator": [ROUTE]}))
    assert len(problems) == 1
    assert f"passthrough.simulator: '{ROUTE}' is already a route name" in problems[0]


def test_passthrough_with_unknown_upstream_is_rejected(config_dir: Path) -> None:
    """Pass-through models must name a declared upstream."""
    problems = problems_after(config_dir, lambda d: d.update(passthrough={"nope": ["m"]}))
    assert len(problems) == 1
    assert "passthrough.nope: unknown upstream" in problems[0]


@pytest.mark.parametrize("reserved", ["model", "messages", "stream"])
def test_reserved_params_are_rejected(config_dir: Path, reserved: str) -> None:
    """params may not set model, messages or stream: the gateway sets them."""
    problems = problems_after(
        config_dir,
        lambda d: route(d)["variants"]["finetuned"]["params"].update({reserved: "x"}),
    )
    assert problems[-1].endswith(
        f"routes.{ROUTE}.variants.finetuned.params.{reserved}: set by the gateway, remove it"
    )
    assert len(problems) == 1


def test_system_prompt_and_system_prompt_file_together_are_rejected(config_dir: Path) -> None:
    """A variant sets its prompt inline or from a file, not both."""
    problems = problems_after(
        config_dir, lambda d: route(d)["variants"]["prompted"].update(system_prompt="inline")
    )
    assert problems == [
        f"{config_dir / 'gateway.yaml'}: routes.{ROUTE}.variants.prompted: "
        "set system_prompt or system_prompt_file, not both"
    ]


def test_new_route_and_variant_options_default_to_route_model_and_enforced_params(
    config_dir: Path,
) -> None:
    """response_model defaults to route (upstream for pass-through models), params_mode to
    enforce; both are read when given."""
    cfg = load_config(config_dir / "gateway.yaml")
    assert cfg.routes[ROUTE].response_model == "route"
    assert {v.params_mode for v in cfg.routes[ROUTE].variants.values()} == {"enforce"}
    assert {r.response_model for r in cfg.routes.values() if r.passthrough} <= {"upstream"}

    data = demo(config_dir)
    route(data)["response_model"] = "upstream"
    variant = next(iter(route(data)["variants"].values()))
    variant["params_mode"] = "default"
    loaded = load_config(write(config_dir, data)).routes[ROUTE]
    assert loaded.response_model == "upstream"
    assert next(v.params_mode for v in loaded.variants.values()) == "default"


def test_response_model_and_params_mode_reject_unknown_values(config_dir: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        route(data)["response_model"] = "variant"
        next(iter(route(data)["variants"].values()))["params_mode"] = "merge"

    problems = problems_after(config_dir, change)
    assert any(f"routes.{ROUTE}.response_model:" in p for p in problems), problems
    assert any(".params_mode:" in p for p in problems), problems


def test_tool_call_contract_loads_with_schemas_and_null(config_dir: Path) -> None:
    data = demo(config_dir)
    route(data)["contract"] = {
        "tool_calls": {"allowed": {"lookup": {"type": "object"}, "escalate": None}}
    }
    contract = load_config(write(config_dir, data)).routes[ROUTE].contract
    assert contract is not None
    assert contract.tool_calls is not None
    assert contract.tool_calls.allowed == {"lookup": {"type": "object"}, "escalate": None}


def test_invalid_json_schemas_in_a_contract_are_reported_by_key(config_dir: Path) -> None:
    """A schema that is not a valid JSON Schema fails at load, named by its key path."""

    def change(data: dict[str, Any]) -> None:
        route(data)["contract"] = {
            "json_schema": {"type": "objekt"},
            "tool_calls": {
                "allowed": {"lookup": {"properties": {"id": {"type": 5}}}, "escalate": None}
            },
        }

    problems = problems_after(config_dir, change)
    where = f"routes.{ROUTE}.contract"
    assert any(f"{where}.json_schema: not a valid JSON Schema" in p for p in problems), problems
    assert any(
        f"{where}.tool_calls.allowed.lookup: not a valid JSON Schema at properties.id.type" in p
        for p in problems
    ), problems
    assert len(problems) == 2


def test_schema_errors_do_not_hide_the_cross_reference_problems(config_dir: Path) -> None:
    """Four planted mistakes (a misspelt key, a weight above 100%, an unknown upstream, a
    missing prompt file) are all reported in one run, each with its file and key path."""

    def change(d: dict[str, Any]) -> None:
        route(d)["flag"]["weigth"] = 5
        route(d)["flag"]["weight"] = 250_000
        route(d)["variants"]["finetuned"]["upstream"] = "openai"
        route(d)["variants"]["prompted"]["system_prompt_file"] = "prompts/gone.md"

    problems = problems_after(config_dir, change)
    where = f"routes.{ROUTE}"
    expected = [
        f"{where}.flag.weigth: unknown key",
        f"{where}.flag.weight: Input should be less than or equal to 100000",
        f"{where}.variants.finetuned.upstream: unknown upstream 'openai'",
        f"{where}.variants.prompted.system_prompt_file: cannot read",
    ]
    for text in expected:
        assert sum(text in p for p in problems) == 1, (text, problems)
    assert len(problems) == 4


def test_an_invalid_part_is_set_aside_without_false_reports(config_dir: Path) -> None:
    """A variant missing its model and an upstream with a bad URL are reported once each; the
    references to them are not reported as unknown, and the rest is still checked."""

    def change(d: dict[str, Any]) -> None:
        del route(d)["variants"]["finetuned"]["model"]
        d["upstreams"]["simulator"]["base_url"] = "ftp://nowhere"
        route(d)["variants"]["prompted"]["few_shot_file"] = "prompts/none.jsonl"

    problems = problems_after(config_dir, change)
    assert len(problems) == 3, problems
    assert any(f"routes.{ROUTE}.variants.finetuned.model: required key" in p for p in problems)
    assert any("upstreams.simulator.base_url" in p for p in problems)
    assert any(f"routes.{ROUTE}.variants.prompted.few_shot_file" in p for p in problems)


def test_check_config_returns_the_config_and_no_problems_for_a_valid_file(
    config_dir: Path,
) -> None:
    config, problems = check_config(config_dir / "gateway.yaml")
    assert problems == []
    assert config is not None
    assert ROUTE in config.routes
