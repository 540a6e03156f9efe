"""The console's templates and static files ship in the wheel and the sdist: pyproject's package-data names them."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_template_and_static_file_is_package_data() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    globs = patterns["outcrop.console"]
    package = ROOT / "outcrop" / "console"
    files = [p.relative_to(package).as_posix() for d in ("templates", "static") for p in (package / d).iterdir()]
    assert files
    missing = [f for f in files if not any(fnmatch.fnmatch(f, g) for g in globs)]
    assert not missing, f"add them to [tool.setuptools.package-data] outcrop.console: {missing}"
