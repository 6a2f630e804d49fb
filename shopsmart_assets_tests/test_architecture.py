"""The layout is the architecture (docs/architecture.md), and stays so: the package root holds
only the entry point, the settings and the partitions; the libraries never import what Dagster
loads (`defs/`) or the commands (`cli/`); transforms never import Dagster; the environment is
read in settings.py alone; private Dagster API in one module."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "shopsmart_assets"
LIBRARIES = ("lake", "sources", "transforms", "resources", "demo", "feature_repo")


def imports(module: Path) -> set[str]:
    """Every module `module` imports (absolute names)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def modules(*folders: str) -> list[Path]:
    return [m for folder in folders for m in sorted((PACKAGE / folder).rglob("*.py"))]


def offenders(folders: tuple[str, ...], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    bad = {}
    for module in modules(*folders):
        names = sorted(
            n for n in imports(module) if any(n == f or n.startswith(f + ".") for f in forbidden)
        )
        if names:
            bad[module.relative_to(PACKAGE).as_posix()] = names
    return bad


def test_the_package_root_holds_the_entry_point_settings_and_partitions_only():
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert root == ["__init__.py", "definitions.py", "partitions.py", "settings.py"]


def test_the_libraries_never_import_what_dagster_loads_or_the_commands():
    forbidden = ("shopsmart_assets.defs", "shopsmart_assets.cli", "shopsmart_assets.definitions")
    assert offenders(LIBRARIES, forbidden) == {}


def test_the_lake_layer_imports_no_layer_above_it():
    """The lake stores and reads tables; what their columns mean (computed by transforms/,
    read from sources/) is described above it, in defs/column_catalog.py."""
    above = tuple(f"shopsmart_assets.{layer}" for layer in ("transforms", "sources", "resources"))
    assert offenders(("lake",), above) == {}


def test_transforms_are_free_of_dagster():
    assert offenders(("transforms",), ("dagster", "dagster_pyspark")) == {}


def test_the_environment_is_read_in_settings_alone_and_private_dagster_api_in_one_module():
    readers, private = [], []
    for module in sorted(PACKAGE.rglob("*.py")):
        text = module.read_text()
        name = module.relative_to(PACKAGE).as_posix()
        if name != "settings.py" and ("os.environ" in text or "getenv(" in text):
            readers.append(name)
        if any(n.startswith("dagster._") for n in imports(module)):
            private.append(name)
    # resources/process.py changes the process's environment (MLflow's telemetry), reads none
    assert readers == ["resources/process.py"]
    assert "os.environ.update(" in (PACKAGE / "resources" / "process.py").read_text()
    assert private == ["defs/automation/backfill_requests.py"]


def test_the_checks_can_fail():
    assert offenders(("cli",), ("shopsmart_assets.defs",))  # the commands do use defs/
    assert offenders(("defs",), ("dagster",))


def test_the_scripts_import_what_the_package_has():
    """scripts/*.py live outside the package: a module that moved must not break them."""
    import importlib
    import importlib.util

    missing = []
    for script in sorted((PACKAGE.parent / "scripts").glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("shopsmart"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    if not hasattr(module, alias.name) and not importlib.util.find_spec(submodule):
                        missing.append(f"{script.name}: {submodule}")
    assert missing == []
