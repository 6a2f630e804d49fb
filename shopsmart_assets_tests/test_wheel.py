"""The package as a wheel, installed into a fresh virtualenv (as the image installs it): the
definitions load from it, every console script it declares starts, and what the launchers need
(the instance configurations, the Spark Connect server's driver program) ships inside it;
nothing in the package reaches for the project checkout.

The fresh virtualenv sees this environment's dependencies (a path line in a .pth file: the
editable install of the checkout is not among them, since .pth files of an added path are not
read), so the wheel is the only `shopsmart_assets` it can import."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import tomllib

from shopsmart_assets_tests.wheel import PIP, ROOT, build_wheel

SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(root)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run(
        [*PIP, "--python", str(python), "install", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return venv


def run(venv: Path, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=venv, capture_output=True, text=True, timeout=300, check=False
    )


def printed(venv: Path, *lines: str) -> list[str]:
    """What the wheel's Python prints running `lines`, word by word."""
    done = run(venv, str(venv / "bin" / "python"), "-c", "\n".join(lines))
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()


def test_the_definitions_load_from_the_wheel_alone(venv: Path):
    where, assets = printed(
        venv,
        "import shopsmart_assets",
        "from shopsmart_assets.definitions import build_definitions",
        "print(shopsmart_assets.__file__)",
        "print(len(build_definitions().resolve_asset_graph().get_all_asset_keys()))",
    )
    assert Path(where).is_relative_to(venv) and not Path(where).is_relative_to(
        ROOT / "shopsmart_assets"
    )
    from shopsmart_assets.definitions import build_definitions

    assert int(assets) == len(build_definitions().resolve_asset_graph().get_all_asset_keys())


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_console_script_starts_from_the_wheel(venv: Path, script: str):
    done = run(venv, str(venv / "bin" / script), "--help")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "usage:" in done.stdout.lower(), done.stdout


def test_what_the_launchers_need_ships_in_the_wheel(venv: Path):
    instance, postgres, spark_submit, driver = map(
        Path,
        printed(
            venv,
            "from shopsmart_assets.cli.devserver import INSTANCE_CONFIG",
            "from shopsmart_assets.cli.spark_connect import server_command",
            "command = server_command('0.0.0.0', 15002)",
            "print(INSTANCE_CONFIG)",
            "print(INSTANCE_CONFIG.with_name('dagster.postgres.yaml'))",
            "print(command[0])",
            "print(command[-1])",
        ),
    )
    for shipped in (instance, postgres, driver):
        assert shipped.is_file() and shipped.is_relative_to(venv), shipped
    assert spark_submit.is_file()  # pyspark's own, from the dependencies


def test_the_package_reaches_for_nothing_outside_it():
    """Paths into the checkout (parents[2], ../scripts) are what made an installed wheel fail:
    launchers that need the checkout live beside scripts/ (scripts/shopsmart_cluster.py)."""
    offenders = [
        module.relative_to(ROOT).as_posix()
        for module in sorted((ROOT / "shopsmart_assets").rglob("*.py"))
        if "parents[2]" in module.read_text() or '"scripts"' in module.read_text()
    ]
    assert offenders == []
