"""The source systems, reached by SQLAlchemy URL."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa
from pydantic import PrivateAttr


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
            self._engine = sa.create_engine(self.url, pool_pre_ping=True)
        return self._engine

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
