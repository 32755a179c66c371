"""Process settings from GATEWAY_* variables and mounted key files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.settings import load_key_file, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No GATEWAY_* variable from the outer environment, and a cwd without a stray .env."""
    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_without_any_variable() -> None:
    """With no GATEWAY_* variable the documented defaults apply and no keys are configured."""
    s = load_settings()
    assert (s.host, s.port, s.workers) == ("127.0.0.1", 8000, 1)
    assert s.config == Path("config/gateway.yaml")
    assert s.all_client_keys() == {}
    assert s.all_admin_keys() == {}
    assert not s.allow_open_access


def test_client_keys_are_read_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """GATEWAY_CLIENT_KEYS is a JSON object name -> key; the keys are secrets."""
    monkeypatch.setenv("GATEWAY_CLIENT_KEYS", '{"web-app": "sk-web", "eval": "sk-eval"}')
    s = load_settings()
    assert s.all_client_keys() == {"web-app": "sk-web", "eval": "sk-eval"}
    assert "sk-web" not in repr(s)  # SecretStr hides them in reprs and logs


def test_nested_upstream_settings_use_double_underscore(monkeypatch: pytest.MonkeyPatch) -> None:
    """GATEWAY_UPSTREAM__MAX_CONNECTIONS sets upstream.max_connections, others keep defaults."""
    monkeypatch.setenv("GATEWAY_UPSTREAM__MAX_CONNECTIONS", "64")
    monkeypatch.setenv("GATEWAY_UPSTREAM__TRANSPORT", "httpx")
    s = load_settings()
    assert s.upstream.max_connections == 64
    assert s.upstream.transport == "httpx"
    assert s.upstream.pool_timeout_s == 5.0


def test_scalar_and_list_variables_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ints, bools, paths and JSON lists are converted from their text."""
    monkeypatch.setenv("GATEWAY_PORT", "9000")
    monkeypatch.setenv("GATEWAY_ALLOW_OPEN_ACCESS", "true")
    monkeypatch.setenv("GATEWAY_CONFIG", "/etc/gw/routes.yaml")
    monkeypatch.setenv("GATEWAY_OVERRIDE_KEYS", '["eval"]')
    s = load_settings()
    assert s.port == 9000
    assert s.allow_open_access is True
    assert s.config == Path("/etc/gw/routes.yaml")
    assert s.override_keys == ["eval"]


def test_dotenv_in_the_working_directory_is_read(clean_env: Path) -> None:
    """A .env file in the working directory supplies settings (why tests chdir to tmp_path)."""
    (clean_env / ".env").write_text("GATEWAY_PORT=8123\n")
    assert load_settings().port == 8123


def test_key_file_is_merged_with_inline_keys(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Keys from GATEWAY_CLIENT_KEYS_FILE are added to GATEWAY_CLIENT_KEYS; the file wins on a
    name in both."""
    key_file = tmp_path / "client-keys.json"
    key_file.write_text('{"batch": "sk-batch", "web-app": "sk-web-rotated"}')
    monkeypatch.setenv("GATEWAY_CLIENT_KEYS", '{"web-app": "sk-web", "eval": "sk-eval"}')
    monkeypatch.setenv("GATEWAY_CLIENT_KEYS_FILE", str(key_file))
    assert load_settings().all_client_keys() == {
        "web-app": "sk-web-rotated",
        "eval": "sk-eval",
        "batch": "sk-batch",
    }


def test_admin_key_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """GATEWAY_ADMIN_KEYS_FILE provides admin keys on its own."""
    key_file = tmp_path / "admin.json"
    key_file.write_text('{"ops": "sk-ops"}')
    monkeypatch.setenv("GATEWAY_ADMIN_KEYS_FILE", str(key_file))
    assert load_settings().all_admin_keys() == {"ops": "sk-ops"}


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "cannot read"),
        ('{"a": "k",\n  oops}', "line 2"),
        ('["sk-a", "sk-b"]', "JSON object"),
        ('{"a": 5}', "JSON object"),
        ('{"a": ""}', "non-empty"),
    ],
    ids=["missing", "not-json", "list", "non-string", "empty-key"],
)
def test_bad_key_file_errors_name_the_setting_and_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str | None, fragment: str
) -> None:
    """A missing, non-JSON or wrongly-shaped key file is a ConfigError naming the setting."""
    key_file = tmp_path / "keys.json"
    if content is not None:
        key_file.write_text(content)
    monkeypatch.setenv("GATEWAY_CLIENT_KEYS_FILE", str(key_file))
    settings = load_settings()
    with pytest.raises(ConfigError) as info:
        settings.all_client_keys()
    (problem,) = info.value.problems
    assert problem.startswith(f"GATEWAY_CLIENT_KEYS_FILE={key_file}: ")
    assert fragment in problem


def test_load_key_file_error_names_the_given_setting(tmp_path: Path) -> None:
    """load_key_file names whatever setting it is reading for (admin here)."""
    with pytest.raises(ConfigError) as info:
        load_key_file(tmp_path / "none.json", "GATEWAY_ADMIN_KEYS_FILE")
    assert str(info.value).startswith("GATEWAY_ADMIN_KEYS_FILE=")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GATEWAY_PORT", "eighty"),
        ("GATEWAY_PORT", "70000"),
        ("GATEWAY_WORKERS", "0"),
        ("GATEWAY_LOG_LEVEL", "verbose"),
        ("GATEWAY_UPSTREAM__MAX_CONNECTIONS", "many"),
        ("GATEWAY_CLIENT_KEYS", '["not", "a", "mapping"]'),
        ("GATEWAY_CLIENT_KEYS", "web-app=sk-web"),
        ("GATEWAY_OVERRIDE_KEYS", "eval"),
    ],
)
def test_wrong_type_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """A value of the wrong type or not valid JSON raises ConfigError naming the variable, and
    never echoes the value (it may be a key)."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    (problem,) = info.value.problems
    assert problem.startswith(f"environment: {variable}: "), problem
    assert "sk-web" not in problem


def test_all_wrong_variables_are_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two bad variables give two problems."""
    monkeypatch.setenv("GATEWAY_PORT", "x")
    monkeypatch.setenv("GATEWAY_UPSTREAM__CONNECT_TIMEOUT_S", "-1")
    with pytest.raises(ConfigError) as info:
        load_settings()
    names = sorted(p.split(": ", 2)[1] for p in info.value.problems)
    assert names == ["GATEWAY_PORT", "GATEWAY_UPSTREAM__CONNECT_TIMEOUT_S"]
