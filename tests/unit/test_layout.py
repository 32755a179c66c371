"""The layout is the architecture: the server never imports the tools that drive it.

``gateway/tools/`` (command line, evaluation, simulator, admin client) may import the server;
no module elsewhere under ``gateway/`` may import ``gateway.tools``, so the server's import graph
carries none of them. The one exception is ``gateway/__main__.py``: ``python -m gateway`` is the
command line.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "gateway"


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def server_modules() -> list[Path]:
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] not in {"tools", "__main__.py"}
    ]


def test_the_server_never_imports_the_tools() -> None:
    offenders = {
        str(path.relative_to(PACKAGE.parent)): name
        for path in server_modules()
        for name in _imports(path)
        if name == "gateway.tools" or name.startswith("gateway.tools.")
    }
    assert offenders == {}


def test_the_check_sees_the_server_and_a_planted_import(tmp_path: Path) -> None:
    """The scan is not vacuous: it finds the server's modules and an import of the tools."""
    assert len(server_modules()) > 30
    planted = tmp_path / "planted.py"
    planted.write_text("from gateway.tools.cli import main\nimport gateway.tools.simulator\n")
    assert _imports(planted) == [
        "gateway.tools.cli",
        "gateway.tools.cli.main",
        "gateway.tools.simulator",
    ]
