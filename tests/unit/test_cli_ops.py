"""What ops met with the CLI: whole table values when piped, every routes-file problem in one
run with a warning for unpriced models, and the demo's ports and routes file."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from typer.testing import CliRunner

from gateway.config import load_config
from gateway.tools.cli import app
from gateway.tools.cli.check_config import config_warnings
from gateway.tools.cli.common import print_table
from gateway.tools.cli.demo import demo_env, demo_routes
from gateway.tools.cli.flag_format import routes_table

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"
ROUTE = "support-triage"
LONG = "support-triage-for-the-enterprise-customers-of-europe"


def _routes() -> list[dict[str, Any]]:
    return [
        {
            "name": LONG,
            "flag": {"status": "active", "enabled": True, "weight": 25_000, "version": 3},
            "candidate": "finetuned",
            "fallback": "prompted",
            "variants": {"finetuned": {"requests": 4}, "prompted": {"requests": 9}},
            "replicas": [],
        },
        {"name": "b", "flag": {}, "candidate": "c", "fallback": "f", "variants": {}},
    ]


def test_a_table_without_a_terminal_prints_whole_values_one_row_a_line() -> None:
    out = io.StringIO()  # FORCE_COLOR asks for colour; it does not make a pipe a terminal
    print_table(routes_table(_routes()), Console(file=out, width=40, force_terminal=True))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].split("\t")[:4] == ["route", "status", "enabled", "weight"]
    assert lines[1].split("\t")[:4] == [LONG, "active", "yes", "25%"]
    assert lines[2].startswith("b\tunknown\t-")
    assert sum(LONG in line for line in lines) == 1  # `| grep -c NAME` counts it


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_table_on_a_terminal_stays_a_table() -> None:
    out = _Terminal()
    print_table(routes_table(_routes()), Console(file=out, width=200))
    assert "\t" not in out.getvalue()
    assert "┃" in out.getvalue() or "│" in out.getvalue()


def _demo_copy(tmp_path: Path) -> Path:
    shutil.copy(REPO_CONFIG / "gateway.yaml", tmp_path / "gateway.yaml")
    shutil.copytree(REPO_CONFIG / "prompts", tmp_path / "prompts")
    return tmp_path / "gateway.yaml"


def test_check_config_reports_all_four_planted_mistakes_with_file_and_key(
    tmp_path: Path,
) -> None:
    path = _demo_copy(tmp_path)
    data = yaml.safe_load(path.read_text())
    route = data["routes"][ROUTE]
    route["flag"]["wieght"] = 1
    route["flag"]["weight"] = 500_000
    route["variants"]["finetuned"]["upstream"] = "openai"
    route["variants"]["prompted"]["system_prompt_file"] = "prompts/missing.md"
    path.write_text(yaml.safe_dump(data))

    result = CliRunner().invoke(app, ["check-config", str(path)], env={"COLUMNS": "80"})
    assert result.exit_code == 1
    problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    keys = [
        "flag.wieght",
        "flag.weight",
        "variants.finetuned.upstream",
        "variants.prompted.system_prompt_file",
    ]
    for key in keys:
        (line,) = [p for p in problems if f"routes.{ROUTE}.{key}:" in p]
        assert str(path) in line
    assert len(problems) == 4

    as_json = CliRunner().invoke(app, ["check-config", str(path), "--json"])
    assert as_json.exit_code == 1
    assert len(json.loads(as_json.stderr)["error"]["problems"]) == 4


def test_check_config_warns_when_a_model_has_no_price(tmp_path: Path) -> None:
    path = _demo_copy(tmp_path)
    data = yaml.safe_load(path.read_text())
    del data["prices"]["sim-mini"]
    path.write_text(yaml.safe_dump(data))

    warnings = config_warnings(load_config(path), {})
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{path}: prices.sim-mini: no price")
    assert f"routes.{ROUTE}.variants.prompted" in warnings[0]

    result = CliRunner().invoke(app, ["check-config", str(path)])
    assert result.exit_code == 0, result.output
    assert "warning: " in result.stderr
    assert "prices.sim-mini" in result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert ["support-triage", "prompted", "fallback", "simulator", "sim-mini", "20", "no"] in rows


def test_the_shipped_routes_file_has_no_warnings() -> None:
    assert config_warnings(load_config(REPO_CONFIG / "gateway.yaml"), {}) == []


def test_demo_routes_point_local_upstreams_at_the_simulator_port(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO_CONFIG / "gateway.yaml").read_text())
    data["upstreams"]["openai"] = {"base_url": "https://api.openai.com/v1"}
    routes = demo_routes(data, REPO_CONFIG, 9123)
    assert routes["upstreams"]["simulator"]["base_url"] == "http://127.0.0.1:9123/v1"
    assert routes["upstreams"]["openai"]["base_url"] == "https://api.openai.com/v1"
    assert data["upstreams"]["simulator"]["base_url"] == "http://127.0.0.1:8001/v1"  # a copy
    prompted = routes["routes"][ROUTE]["variants"]["prompted"]
    assert Path(prompted["system_prompt_file"]).is_absolute()

    written = tmp_path / "elsewhere" / "gateway.yaml"
    written.parent.mkdir()
    written.write_text(yaml.safe_dump(routes))
    config = load_config(written)  # loads from another directory: prompt files resolved
    assert config.upstreams["simulator"].base_url == "http://127.0.0.1:9123/v1"
    assert len(config.routes[ROUTE].variants["prompted"].few_shot) == 20


def test_demo_env_serves_the_port_and_routes_given_and_keeps_the_callers_keys() -> None:
    env = demo_env({"GATEWAY_ADMIN_KEYS": '{"me": "sk-mine"}', "PATH": "/bin"}, 9000, Path("r"))
    assert env["GATEWAY_PORT"] == "9000"
    assert env["GATEWAY_CONFIG"] == "r"
    assert env["GATEWAY_ADMIN_KEYS"] == '{"me": "sk-mine"}'
    assert env["GATEWAY_CLIENT_KEYS"] == '{"demo": "sk-demo", "eval": "sk-eval"}'


def test_demo_takes_its_port_from_gateway_port(monkeypatch: Any) -> None:
    """``GATEWAY_PORT`` is the ``--port`` default; ``--simulator-port`` reaches the routes."""
    seen: dict[str, Any] = {}

    def fake_run(port: int, simulator_port: int, routes: Path, simulator_config: Path) -> None:
        seen.update(port=port, routes=yaml.safe_load(routes.read_text()))

    monkeypatch.setattr("gateway.tools.cli.demo._run", fake_run)
    config = str(REPO_CONFIG / "gateway.yaml")
    result = CliRunner().invoke(
        app,
        ["demo", "--config", config, "--simulator-port", "9555"],
        env={"GATEWAY_PORT": "9444"},
    )
    assert result.exit_code == 0, result.output
    assert seen["port"] == 9444
    assert seen["routes"]["upstreams"]["simulator"]["base_url"] == "http://127.0.0.1:9555/v1"


def test_a_routes_file_that_cannot_be_read_is_usage_and_an_invalid_one_is_a_data_error(
    tmp_path: Path,
) -> None:
    """One rule for every command reading a routes file: 2 when it cannot be opened, 1 when
    its content is invalid (every problem listed)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("upstreams: {}\nroutes: {}\n")
    absent = tmp_path / "absent.yaml"
    train = REPO_CONFIG.parent / "examples" / "data" / "support_train.jsonl"
    runner = CliRunner()
    for path, code in ((absent, 2), (bad, 1)):
        checked = runner.invoke(app, ["check-config", str(path)])
        assert checked.exit_code == code, checked.output
        validated = runner.invoke(
            app, ["dataset", "validate", str(train), "--route", ROUTE, "--config", str(path)]
        )
        assert validated.exit_code == code, validated.output
        assert str(path) in validated.stderr
    assert "upstreams" in runner.invoke(app, ["check-config", str(bad)]).stderr


def test_finetune_without_an_api_key_is_an_auth_error_like_every_missing_key() -> None:
    """No key is exit 5 (auth) in every command: ``eval`` and ``flags`` did so already."""
    from tests.cli_inprocess import run_cli

    train = REPO_CONFIG.parent / "examples" / "data" / "support_train.jsonl"
    run = run_cli(
        "finetune",
        "create",
        "--route",
        ROUTE,
        "--training-file",
        str(train),
        "--config",
        str(REPO_CONFIG / "gateway.yaml"),
        "--json",
        env={},
    )
    assert run.code == 5, run.err
    assert json.loads(run.err)["error"]["message"] == "no API key"


def test_serve_follows_the_rule_for_its_routes_file(tmp_path: Path) -> None:
    """``serve``: a routes file that cannot be opened is usage (2), an invalid one 1, with
    every problem listed; nothing is started either way."""
    from tests.cli_inprocess import run_cli

    bad = tmp_path / "bad.yaml"
    bad.write_text("upstreams: {}\nroutez: {}\n")
    missing = run_cli("serve", env={"GATEWAY_CONFIG": str(tmp_path / "absent.yaml")})
    assert missing.code == 2, missing.err
    assert "cannot read the routes file" in missing.err
    invalid = run_cli("serve", env={"GATEWAY_CONFIG": str(bad)})
    assert invalid.code == 1, invalid.err
    problems = [line for line in invalid.err.splitlines() if line.startswith("  - ")]
    assert len(problems) == 2, invalid.err
