"""Command-line access to what the pipeline serves.

`shopsmart-features CUSTOMER_ID…` reads customers' online features and score through Feast's
SDK; `shopsmart-features serve` runs Feast's HTTP feature server. `shopsmart-model` shows the
registry's champion, rolls it back, serves it with MLflow's scoring server, or opens MLflow's
UI. All of them use the resources exactly as the code location configures them.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import sys
from contextlib import ExitStack
from functools import cache
from pathlib import Path
from typing import Any

from shopsmart_assets import settings

FEATURE_SERVER_PORT = 6566
MODEL_SERVER_PORT = 5001
MLFLOW_UI_PORT = 5000


@cache
def _resources() -> dict[str, Any]:
    """The code location's resources, built once per command from the environment."""
    from shopsmart_assets.definitions import load_code_location

    return load_code_location().resources()


# Resources initialized by a command, torn down (engines disposed) when it exits.
_OPEN = ExitStack()
atexit.register(_OPEN.close)


@cache
def initialized_resource(name: str) -> Any:
    """A resource of the code location, as the environment configures it (EnvVars resolved),
    initialized and ready to use outside a run."""
    return _OPEN.enter_context(_resources()[name].process_config_and_initialize_cm())


def _json_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value.item() if hasattr(value, "item") else value


def features_main(argv: list[str] | None = None) -> int:
    """`shopsmart-features CUSTOMER_ID…`: a customer's online features and score as JSON, one
    line each (exit 1 if any is unknown); `shopsmart-features serve [--port P]`: Feast's HTTP
    feature server on 127.0.0.1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        parser = argparse.ArgumentParser(prog="shopsmart-features serve")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=FEATURE_SERVER_PORT)
        args = parser.parse_args(argv[1:])
        initialized_resource("feature_store").serve(args.host, args.port)
        return 0
    parser = argparse.ArgumentParser(prog="shopsmart-features", description=features_main.__doc__)
    parser.add_argument("customer_ids", type=int, nargs="+")
    args = parser.parse_args(argv)
    rows = initialized_resource("feature_store").online(args.customer_ids).to_dict("records")
    missing = 0
    for row in rows:
        found = any(_json_value(v) is not None for k, v in row.items() if k != "customer_id")
        missing += not found
        clean = {k: _json_value(v) for k, v in sorted(row.items())}
        print(json.dumps({"customer_id": clean.pop("customer_id"), "found": found, **clean}))
    return 1 if missing else 0


def _mlflow_env() -> dict[str, str]:
    """The environment MLflow's own commands need: the tracking URI, no telemetry, and this
    environment's bin first on PATH (MLflow starts `uvicorn` from there)."""
    bin_dir = str(Path(sys.executable).parent)
    return settings.child_environment(
        MLFLOW_TRACKING_URI=settings.mlflow_tracking_uri(),
        MLFLOW_DISABLE_TELEMETRY="true",
        PATH=f"{bin_dir}{os.pathsep}{settings.search_path()}",
    )


def model_lineage(version: int, registry) -> int:
    """The lineage of each training-set partition a registered version learned from, as the
    table's recorded version held it."""
    from shopsmart_assets.cli.lake import lineage_walker, print_lineage
    from shopsmart_assets.definitions import load_code_location

    name = f"{registry.model_name} version {version}"
    if not registry.has_version(version):
        print(f"{name} does not exist (the registry's versions: {registry.version_span()})")
        return 2
    trained_on = registry.trained_on(version)
    if trained_on is None or trained_on.version is None:
        print(f"{name}: its run recorded no Delta table version: no lineage")
        return 2
    print(f"{name} learned from {trained_on.table} version {trained_on.version}:")
    walker = lineage_walker(initialized_resource("lake"), load_code_location())
    worst = 0
    for partition in sorted(trained_on.partitions):
        worst = max(
            worst, print_lineage(walker.of(trained_on.table, partition, trained_on.version))
        )
    return worst


def model_main(argv: list[str] | None = None) -> int:
    """`shopsmart-model show | rollback | reproduce VERSION | lineage VERSION | serve [--port P]
    | ui [--port P]`."""
    parser = argparse.ArgumentParser(prog="shopsmart-model", description=model_main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("show", help="the champion and previous champion versions")
    commands.add_parser("rollback", help="swap champion and previous-champion (again to undo)")
    rebuild = commands.add_parser(
        "reproduce",
        help="rebuild a registered version from the exact partition versions it learned from "
        "and compare (exit 0 identical, 1 different, 2 data missing)",
    )
    rebuild.add_argument("version", type=int)
    traced = commands.add_parser(
        "lineage",
        help="what a registered version learned from: its training-set partitions, down to "
        "the raw hours and their sources' rows",
    )
    traced.add_argument("version", type=int)
    serve = commands.add_parser("serve", help="MLflow's scoring server for the champion")
    serve.add_argument("--port", type=int, default=MODEL_SERVER_PORT)
    ui = commands.add_parser("ui", help="MLflow's UI over the tracking store")
    ui.add_argument("--port", type=int, default=MLFLOW_UI_PORT)
    args = parser.parse_args(argv)

    registry = initialized_resource("model_registry")
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    if args.command == "serve":
        uri = registry.model_uri()
        command = [mlflow, "models", "serve", "-m", uri, "-h", "127.0.0.1", "-p", str(args.port)]
        os.execve(mlflow, [*command, "--env-manager", "local"], _mlflow_env())
    if args.command == "ui":
        store = settings.mlflow_tracking_uri()
        command = [mlflow, "server", "--backend-store-uri", store, "-h", "127.0.0.1"]
        artifacts = settings.mlflow_artifact_location()
        if artifacts:
            command += ["--default-artifact-root", artifacts]
        os.execve(mlflow, [*command, "-p", str(args.port)], _mlflow_env())
    if args.command == "reproduce":
        from shopsmart_assets.cli.model_reproduction import reproduce
        from shopsmart_assets.definitions import load_code_location

        partitions = load_code_location().partitions
        return reproduce(args.version, registry, initialized_resource("lake"), partitions)
    if args.command == "lineage":
        return model_lineage(args.version, registry)
    if args.command == "rollback":
        champion, previous = registry.rollback()
        print(
            f"{registry.model_name}: champion is now version {champion}, "
            f"previous-champion version {previous}"
        )
        return 0
    for alias in ("champion", "previous-champion"):
        version = registry.alias_version(alias)
        print(f"{registry.model_name}@{alias}: " + (f"version {version}" if version else "none"))
    return 0
