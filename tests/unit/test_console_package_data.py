"""The console's templates and assets ship in the wheel (setuptools package-data)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

from gateway.console import STATIC_DIR, TEMPLATE_DIR

ROOT = Path(__file__).resolve().parents[2]


def test_every_console_file_is_package_data() -> None:
    """Each file under gateway/console/templates and static matches a package-data pattern
    of ``gateway.console``: a file added without one would be missing from the image."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["gateway.console"]
    package = TEMPLATE_DIR.parent
    files = [p for d in (TEMPLATE_DIR, STATIC_DIR) for p in d.rglob("*") if p.is_file()]
    assert len(files) >= 5
    for path in files:
        relative = path.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative
