"""One CLI error class: every failure a command raises becomes stderr output and its exit code
in one place (the root group), for people and (``--json``) for scripts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from gateway.tools.admin_client import AdminAPIError, AdminClient
from gateway.tools.cli import app
from gateway.tools.cli.common import AsJson
from gateway.tools.cli.failure import GatewayGroup
from gateway.tools.evaluation.heldout_errors import (
    EvalAbortError,
    EvalAuthError,
    GatewayUnreachableError,
)
from gateway.tools.evaluation.heldout_examples import DatasetError, UnreadableFileError
from gateway.tools.exit_codes import (
    EXIT_AUTH,
    EXIT_CONFLICT,
    EXIT_INTERRUPTED,
    EXIT_REJECTED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    AuthError,
    CliError,
    ConflictError,
    InterruptedRunError,
    RejectedError,
    UnreachableError,
    UsageError,
)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (RejectedError("x"), EXIT_REJECTED),
        (UsageError("x"), EXIT_USAGE),
        (UnreachableError("x"), EXIT_UNREACHABLE),
        (ConflictError("x"), EXIT_CONFLICT),
        (AuthError("x"), EXIT_AUTH),
        (InterruptedRunError("x"), EXIT_INTERRUPTED),
        (CliError("x", exit_code=EXIT_AUTH), EXIT_AUTH),
        (EvalAbortError("x", "h"), EXIT_REJECTED),
        (GatewayUnreachableError("x", "h"), EXIT_UNREACHABLE),
        (EvalAuthError("x", "h", 403), EXIT_AUTH),
        (DatasetError(Path("f"), ["f:1: bad"]), EXIT_REJECTED),
        (UnreadableFileError(Path("f"), ["f: gone"]), EXIT_USAGE),
    ],
)
def test_each_error_carries_its_exit_code(error: CliError, code: int) -> None:
    assert isinstance(error, CliError)
    assert error.exit_code == code
    assert error.to_json()["error"]["exit_code"] == code


def _admin_error(status: int, body: dict[str, Any]) -> AdminAPIError:
    def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    client = AdminClient("http://gw.test", "sk-admin", actor="t")
    client._http = httpx.Client(base_url="http://gw.test", transport=httpx.MockTransport(answer))
    with pytest.raises(AdminAPIError) as caught:
        client.routes()
    return caught.value


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, 1), (404, 1), (422, 1), (401, 5), (403, 5), (409, 4), (500, 3), (503, 3)],
)
def test_admin_answers_map_to_the_exit_code_rule(status: int, code: int) -> None:
    error = _admin_error(status, {"error": {"message": "nope", "code": "c"}})
    assert isinstance(error, CliError)
    assert (error.exit_code, error.status, error.code, error.message) == (code, status, "c", "nope")


def test_a_conflict_keeps_the_current_flag_for_json() -> None:
    error = _admin_error(409, {"error": {"message": "stale"}, "current": {"version": 7}})
    assert error.to_json()["current"] == {"version": 7}


def _app_raising(error: Exception) -> typer.Typer:
    """A two-level app like ``gateway``: the root group reports what the sub-command raised."""
    root = typer.Typer(cls=GatewayGroup, rich_markup_mode=None)
    sub = typer.Typer()

    @sub.command("go")
    def go(as_json: AsJson = False) -> None:
        raise error

    @sub.command("other")
    def other() -> None:
        raise error

    root.add_typer(sub, name="grp")
    return root


def test_the_root_group_prints_the_error_for_people_and_exits_with_its_code() -> None:
    error = ConflictError(
        "the flag changed", "run it again", status=409, problems=["one", "two"], details=["now:"]
    )
    result = CliRunner().invoke(_app_raising(error), ["grp", "go"])
    assert result.exit_code == EXIT_CONFLICT
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines == [
        "error (409): the flag changed",
        "  - one",
        "  - two",
        "now:",
        "what to do: run it again",
    ]


def test_with_json_the_error_is_one_json_line_on_stderr() -> None:
    error = RejectedError("bad data", "fix it", code="invalid_data", problems=["f:1: x"])
    result = CliRunner().invoke(_app_raising(error), ["grp", "go", "--json"])
    assert result.exit_code == EXIT_REJECTED
    assert result.stderr.count("\n") == 1
    assert json.loads(result.stderr) == {
        "error": {
            "message": "bad data",
            "hint": "fix it",
            "status": None,
            "code": "invalid_data",
            "exit_code": 1,
            "problems": ["f:1: x"],
        }
    }


def test_an_error_that_is_not_a_cli_error_is_not_swallowed() -> None:
    result = CliRunner().invoke(_app_raising(RuntimeError("bug")), ["grp", "other"])
    assert isinstance(result.exception, RuntimeError)


TYPE_NOISE = re.compile(r"<(bool|str|int|float|path|list|file|text)\b")


def _command_paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group below ``command``, as argument lists."""
    subs = getattr(command, "commands", {})
    return [path, *(p for name, sub in subs.items() for p in _command_paths(sub, (*path, name)))]


def test_help_has_no_type_noise_and_whole_defaults_at_80_columns() -> None:
    """Every command's --help: no ``<bool>``/``<str>``, and the long default URL is whole."""
    runner = CliRunner()
    commands = _command_paths(typer.main.get_command(app))
    assert ("flags", "set") in commands
    assert len(commands) > 12
    for command in commands:
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
        assert result.exit_code == 0, (command, result.output)
        assert not TYPE_NOISE.search(result.stdout), (command, result.stdout)
        assert "…" not in result.stdout, (command, result.stdout)
    for command in (("eval",), ("flags", "set"), ("finetune", "watch")):
        out = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"}).stdout
        assert "default: http://127.0.0.1:8000" in out, out
