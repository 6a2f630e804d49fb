"""The project's wheel, built as `pip wheel` builds it for an image, from a copy of the project
(no build directory is left in the source tree)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]


def build_wheel(root: Path) -> Path:
    """The wheel of the project, built under `root`."""
    project = root / "project"
    project.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(
        ROOT / "shopsmart_assets",
        project / "shopsmart_assets",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    built = subprocess.run(
        [*PIP, "wheel", "--no-deps", "-w", str(root / "dist"), str(project)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = (root / "dist").glob("shopsmart_assets-*.whl")
    return wheel
