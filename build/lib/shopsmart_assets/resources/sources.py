"""The source systems, reached by SQLAlchemy URL."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa
from pydantic import PrivateAttr

# PostgreSQL URLs without a driver (`postgresql://`, `postgres://`) use psycopg 3, the driver
# the project installs; `postgresql+psycopg://` is the explicit form.
POSTGRES_DRIVER = "postgresql+psycopg"


def source_url(url: str) -> sa.URL:
    """Parse a SQLAlchemy URL, giving driver-less PostgreSQL URLs the psycopg 3 driver."""
    parsed = sa.make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername=POSTGRES_DRIVER)
    return parsed


def source_engine(url: str, **kwargs: object) -> sa.Engine:
    """An engine for a source URL (see `source_url`)."""
    return sa.create_engine(source_url(url), **kwargs)


class SourceDatabase(dg.ConfigurableResource):
    """A source database (the CRM or the orders system).

    The URL may carry a password, so in production it comes in through `dagster.EnvVar`
    and Dagster never shows it. The engine is created on first use, never at load time.
    """

    name: str
    url: str
    _engine: sa.Engine | None = PrivateAttr(default=None)

    def get_engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = source_engine(self.url, pool_pre_ping=True)
        return self._engine

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
