"""A real PostgreSQL server for the tests, started and stopped by `scripts/postgres.sh`.

`postgres_server()` is a context manager; `postgres_fixture()` makes the session-scoped pytest
fixture of it. Outside CI a server that cannot be started skips the tests that need it, with
the reason; with CI=true it fails them: a service test must not pass by not running.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from shopsmart_cluster import key_values

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "postgres.sh"
START_TIMEOUT = 600  # seconds; includes apt-get install on a fresh machine


class PostgresUnavailable(RuntimeError):
    """The script could not start PostgreSQL."""


@dataclass(frozen=True)
class PostgresServer:
    """A running server on 127.0.0.1: superuser credentials and per-database URLs."""

    host: str
    port: int
    user: str
    password: str

    def url(self, database: str, driver: str = "postgresql+psycopg") -> str:
        """A SQLAlchemy URL with the password (pass it through the environment only)."""
        return sa.URL.create(
            driver,
            username=self.user,
            password=self.password,
            host=self.host,
            port=self.port,
            database=database,
        ).render_as_string(hide_password=False)

    def create_database(self, name: str) -> str:
        """Create database `name` (dropping an existing one); returns its URL."""
        engine = sa.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                quoted = connection.dialect.identifier_preparer.quote(name)
                connection.execute(sa.text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
                connection.execute(sa.text(f"CREATE DATABASE {quoted}"))
        finally:
            engine.dispose()
        return self.url(name)

    def dagster_env(self, database: str) -> dict[str, str]:
        """The variables dagster.postgres.yaml reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": database,
        }


def _script(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def postgres_server(
    databases: tuple[str, ...] = ("crm", "orders", "dagster"),
) -> Iterator[PostgresServer]:
    """Start a throw-away server with `databases`, yield it, and always stop it."""
    with tempfile.TemporaryDirectory(prefix="shopsmart-pg-state-") as state:
        try:
            started = _script("start", state, *databases, timeout=START_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as error:
            _script("stop", state, timeout=120)
            raise PostgresUnavailable(f"{SCRIPT.name} start: {error}") from error
        if started.returncode != 0:
            _script("stop", state, timeout=120)
            raise PostgresUnavailable(
                f"{SCRIPT.name} start exited {started.returncode}: "
                f"{(started.stderr or started.stdout).strip()[-2000:]}"
            )
        try:
            env = key_values((Path(state) / "postgres.env").read_text())
            if env["PGPASSWORD"] in started.stdout + started.stderr:
                raise PostgresUnavailable(f"{SCRIPT.name} start printed the password")
            yield PostgresServer(
                host=env["PGHOST"],
                port=int(env["PGPORT"]),
                user=env["PGUSER"],
                password=env["PGPASSWORD"],
            )
        finally:
            stopped = _script("stop", state, timeout=120)
            if stopped.returncode != 0:
                raise RuntimeError(f"{SCRIPT.name} stop failed: {stopped.stderr.strip()}")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def postgres_fixture(
    databases: tuple[str, ...] = ("crm", "orders", "dagster"),
) -> Callable[[], Iterator[PostgresServer]]:
    """A session-scoped fixture yielding a running `PostgresServer`."""

    @pytest.fixture(scope="session")
    def fixture() -> Iterator[PostgresServer]:
        with ExitStack() as stack:
            try:
                server = stack.enter_context(postgres_server(databases))
            except PostgresUnavailable as error:
                if in_ci():
                    pytest.fail(f"CI=true and PostgreSQL could not be started: {error}")
                pytest.skip(
                    f"PostgreSQL could not be started (set CI=true to fail instead): {error}"
                )
            yield server

    return fixture
