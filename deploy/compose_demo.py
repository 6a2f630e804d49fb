"""`make compose-demo` / `make compose-up`: the platform's compose deployment (deploy/compose.yaml)
driven from this checkout, as a user drives a deployment: through the UI's API.

demo: start the deployment on free ports of 127.0.0.1, generate the demo's sources into its
data directory, backfill the demo's days through the webserver's GraphQL API (the partition
backfill launcher's mutation, `shopsmart-backfill --url`), print where each step ran (queue,
worker container, pid: from the instance's event log in PostgreSQL), reconcile the lake with
the sources (`shopsmart-summary` on this machine, reading the lake and Feast directly), then
stop and remove every container, network and volume of it (the data directory stays, for
reading: .compose/data). A failed run is told in one line: the step and its error.

up: the same deployment, kept running with the UI on 127.0.0.1:$SHOPSMART_UI_PORT (3000) until
Ctrl-C, which takes it down.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from shopsmart_assets.cli.devserver import free_port

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "deploy" / "compose.yaml"
# the compose project: its containers, network and volumes are named after it
PROJECT = os.environ.get("SHOPSMART_COMPOSE_PROJECT", "shopsmart")
IMAGE_UID = 1000  # the image's user (deploy/Containerfile)
HEALTHY_SECONDS = 420


def engine() -> str:
    return os.environ.get("SHOPSMART_CONTAINER_ENGINE", "podman")


def compose_command() -> list[str]:
    base = ["podman-compose"] if engine() == "podman" else ["docker", "compose"]
    return [*base, "-p", PROJECT, "-f", str(COMPOSE_FILE)]


def say(message: str) -> None:
    print(f"compose: {message}", flush=True)


def containers(all_states: bool = False) -> list[str]:
    """The names of the project's containers (running ones unless `all_states`)."""
    command = [engine(), "ps", "--format", "{{.Names}}"]
    if all_states:
        command.append("--all")
    command += ["--filter", f"label=com.docker.compose.project={PROJECT}"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    return sorted(line for line in done.stdout.split() if line)


def container_of(service: str) -> str:
    """The container of `service` (podman-compose: shopsmart_SERVICE_1; Docker: -1)."""
    for name in containers(all_states=True):
        if name in (f"{PROJECT}_{service}_1", f"{PROJECT}-{service}-1"):
            return name
    raise RuntimeError(f"no container for service {service}: {containers(all_states=True)}")


def healthy(service: str) -> bool:
    name = container_of(service)
    if engine() == "podman":
        done = subprocess.run(
            ["podman", "healthcheck", "run", name], capture_output=True, check=False
        )
        return done.returncode == 0
    done = subprocess.run(
        [engine(), "inspect", "--format", "{{.State.Health.Status}}", name],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() == "healthy"


def running(service: str) -> bool:
    done = subprocess.run(
        [engine(), "inspect", "--format", "{{.State.Running}}", container_of(service)],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() == "true"


def compose_services() -> dict[str, dict]:
    """The deployment's services as compose.yaml declares them, in its order."""
    import yaml

    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def wait_until_healthy(logs: Path) -> None:
    """Until every service with a health check passes it, in compose.yaml's order."""
    started = time.monotonic()
    checked = [name for name, service in compose_services().items() if "healthcheck" in service]
    for service in checked:
        while not healthy(service):
            if not running(service) or time.monotonic() - started > HEALTHY_SECONDS:
                log = logs / f"{service}.log"
                save_logs(logs)
                tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise RuntimeError(
                    f"service {service} is not healthy after {time.monotonic() - started:.0f}s: "
                    f"{tail[0][:300]} (log: {log})"
                )
            time.sleep(2)
        say(f"{service} is up ({time.monotonic() - started:.0f}s)")


def save_logs(logs: Path) -> None:
    """Every container's output, one file per service."""
    logs.mkdir(parents=True, exist_ok=True)
    for service in compose_services():
        try:
            name = container_of(service)
        except RuntimeError:
            continue
        with open(logs / f"{service}.log", "wb") as out:
            subprocess.run(
                [engine(), "logs", name], stdout=out, stderr=subprocess.STDOUT, check=False
            )


def deployment_secrets(folder: Path) -> str:
    """The deployment's secrets as files (kept across runs: PostgreSQL's volume remembers its
    password): PostgreSQL's password (made once), Slack's token (SLACK_BOT_TOKEN of this
    environment, or none: no alerts). Returns the password, for this machine's own reads."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    password_file = folder / "pg_password"
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(18))
    token_file = folder / "slack_bot_token"
    token_file.write_text(os.environ.get("SLACK_BOT_TOKEN", ""))
    for secret in (password_file, token_file):
        secret.chmod(0o644)  # read inside by the containers' users; the folder keeps others out
    return password_file.read_text().strip()


@contextmanager
def deployment(state: Path, ui_port: int, keep_volumes: bool) -> Iterator[dict[str, str]]:
    """The compose deployment, up for the block and then taken down (with its volumes unless
    `keep_volumes`: Dagster's history in PostgreSQL); yields the environment of the commands
    that talk to it from this machine."""
    data = state / "data"
    data.mkdir(parents=True, exist_ok=True)
    if os.getuid() == 0:  # the containers' user owns the data directory
        for path in (data, *data.rglob("*")):
            os.chown(path, IMAGE_UID, IMAGE_UID, follow_symlinks=False)
    pg_port, redis_port = free_port(), free_port()
    password = deployment_secrets(state / "secrets")
    env = {
        **os.environ,
        "SHOPSMART_DEPLOY_SECRETS": str(state / "secrets"),
        "SHOPSMART_DEPLOY_DATA": str(data),
        "SHOPSMART_UI_PORT": str(ui_port),
        "SHOPSMART_PG_PORT": str(pg_port),
        "SHOPSMART_REDIS_PORT": str(redis_port),
    }
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    compose = compose_command()
    down = [*compose, "down"] if keep_volumes else [*compose, "down", "-v"]
    with open(logs / "compose.log", "ab") as out:
        subprocess.run(down, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
        say(f"starting the deployment ({COMPOSE_FILE.relative_to(ROOT)}, project {PROJECT})")
        up = subprocess.run(
            [*compose, "up", "-d"], env=env, stdout=out, stderr=subprocess.STDOUT, check=False
        )
    try:
        if up.returncode != 0:
            raise RuntimeError(f"compose up failed (log: {logs / 'compose.log'})")
        wait_until_healthy(logs)
        yield {
            "SHOPSMART_DATA_DIR": str(data),
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(pg_port),
            "DAGSTER_PG_USER": "shopsmart",
            "DAGSTER_PG_PASSWORD": password,
            "DAGSTER_PG_DB": "dagster",
            "SHOPSMART_ONLINE_STORE_URL": f"redis://127.0.0.1:{redis_port}/1",
        }
    finally:
        save_logs(logs)
        say("stopping the deployment")
        with open(logs / "compose.log", "ab") as out:
            subprocess.run(down, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
        left = containers(all_states=True)
        if left:
            raise RuntimeError(f"containers left after compose down: {', '.join(left)}")
        say(f"stopped: no container left; logs in {logs}")


def run_days(ui: str, first: date, last: date, host_env: dict[str, str], timeout: float) -> int:
    """The demo's days as one backfill through the UI's API; where each step ran; the
    reconciliation."""
    import dagster as dg

    from shopsmart_assets.cli.backfill import launch, succeeded, wait
    from shopsmart_assets.cli.run_report import failure_line, print_placements, step_placements
    from shopsmart_assets.settings import changed_environment

    backfill_id = launch(ui, first, last)
    say(f"backfill {backfill_id} of {first}..{last} launched through {ui}/graphql")
    state = wait(ui, backfill_id, timeout)
    ok = succeeded(state)
    with changed_environment(host_env), instance_on_postgres() as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        failures = []
        for run in reversed(runs):
            print(f"\n  run {run.run_id} ({run.status.value}):")
            print_placements(step_placements(instance, run.run_id))
            why = failure_line(instance, run.run_id)
            if why:
                failures.append(why)
    if not ok:
        for why in failures or [f"backfill {backfill_id} ended {state['status']}"]:
            print(f"compose: {why}", file=sys.stderr)
        return 1
    summary = subprocess.run(
        [str(Path(sys.executable).with_name("shopsmart-summary")),
         "--start", str(first), "--end", str(last)],
        env={**os.environ, **host_env}, check=False,
    )  # fmt: skip
    return summary.returncode


@contextmanager
def instance_on_postgres() -> Iterator[object]:
    """Dagster's instance of the deployment, read from this machine (PostgreSQL on loopback)."""
    import tempfile

    import dagster as dg

    from shopsmart_assets.cli.devserver import INSTANCE_CONFIG

    with tempfile.TemporaryDirectory() as home:
        shutil.copy(INSTANCE_CONFIG.with_name("dagster.postgres.yaml"), Path(home, "dagster.yaml"))
        with dg.DagsterInstance.from_config(home) as instance:
            yield instance


def secret_values(folder: Path) -> list[bytes]:
    return [v for f in sorted(folder.iterdir()) if (v := f.read_bytes().strip())]


def files_containing(folders: Sequence[Path], values: Sequence[bytes]) -> list[str]:
    """The files under `folders` that hold any of `values` (a secret written down)."""
    found = []
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            content = path.read_bytes()
            if any(value in content for value in values):
                found.append(str(path))
    return found


def generate_sources(first: date, last: date, orders_per_day: int, data: Path) -> None:
    demo = str(Path(sys.executable).with_name("shopsmart-demo"))
    env = {**os.environ, "SHOPSMART_DATA_DIR": str(data)}
    subprocess.run(
        [demo, "--reset", "--start-date", str(first), "--end-date", str(last),
         "--orders-per-day", str(orders_per_day)],
        env=env, check=True,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    from shopsmart_assets import settings
    from shopsmart_assets.cli.demo import plan_days
    from shopsmart_assets.cli.devserver import stop_on_signals

    parser = argparse.ArgumentParser(prog="compose_demo.py", description=__doc__)
    parser.add_argument("command", choices=("demo", "up"))
    parser.add_argument("--state", type=Path, default=ROOT / ".compose")
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--orders-per-day", type=int, default=500)
    parser.add_argument("--end-date", default="yesterday")
    parser.add_argument("--port", type=int, default=None, help="the UI's port (demo: a free one)")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args(argv)
    if engine() == "podman":  # runc and ulimits this host grants (deploy/containers.conf)
        os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "deploy" / "containers.conf"))
    stop_on_signals()
    state = args.state.resolve()
    data = state / "data"
    ui_port = args.port or (3000 if args.command == "up" else free_port())
    try:
        if args.command == "demo":
            # a fresh data directory: the demo's sources, nothing of an earlier run
            shutil.rmtree(data, ignore_errors=True)
            data.mkdir(parents=True)
            with settings.changed_environment({"SHOPSMART_DATA_DIR": str(data)}):
                end = args.end_date
                last_day = end if end == "yesterday" else date.fromisoformat(end)
                first, last = plan_days(settings.timezone(), args.days, last_day, None)
                generate_sources(first, last, args.orders_per_day, data)
        started = time.monotonic()
        with deployment(state, ui_port, keep_volumes=args.command == "up") as host_env:
            ui = f"http://127.0.0.1:{ui_port}"
            say(f"Dagster UI on {ui} ({time.monotonic() - started:.0f}s after compose up)")
            if args.command == "up":
                say("Ctrl-C stops the deployment")
                while True:
                    time.sleep(1)
            with settings.changed_environment(host_env):
                code = run_days(ui, first, last, host_env, args.timeout)
        leaked = files_containing((state / "logs", data), secret_values(state / "secrets"))
        if leaked:
            raise RuntimeError(f"a secret of the deployment is written in {', '.join(leaked)}")
        say("no secret of the deployment in its logs or its data directory")
        return code
    except KeyboardInterrupt:
        return 0 if args.command == "up" else 130
    except RuntimeError as error:
        print(f"compose: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
