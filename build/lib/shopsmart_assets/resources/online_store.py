"""The online feature store: the latest features of each customer, served by key.

A SQL table (SQLite by default, any SQLAlchemy database) keyed by customer id. A partition's
features replace a customer's row only if they are as of the same day or later, so
backfilling old days never overwrites fresher values.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import sqlalchemy as sa
from pydantic import PrivateAttr

from shopsmart_assets import settings
from shopsmart_assets.resources.sources import source_engine
from shopsmart_assets.transforms.features import FEATURE_COLUMNS

_metadata = sa.MetaData()
_TYPES: dict[str, sa.types.TypeEngine] = {
    "as_of_date": sa.Date(),
    "customer_id": sa.BigInteger(),
    "recency_days": sa.Integer(),
    "tenure_days": sa.Integer(),
    "has_valid_email": sa.Boolean(),
    "segment": sa.String(20),
    "country": sa.String(2),
}
online_features = sa.Table(
    "customer_features",
    _metadata,
    *(
        sa.Column(name, _TYPES.get(name, sa.Float()), primary_key=name == "customer_id")
        for name in FEATURE_COLUMNS
    ),
)


def _upsert_statement(dialect: str, rows: list[dict[str, Any]]) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(online_features).values(rows)
    newer = statement.excluded.as_of_date >= online_features.c.as_of_date
    return statement.on_conflict_do_update(
        index_elements=[online_features.c.customer_id],
        set_={c: statement.excluded[c] for c in FEATURE_COLUMNS if c != "customer_id"},
        where=newer,
    )


class OnlineStoreResource(dg.ConfigurableResource):
    """Where the latest customer features are served from (SQLAlchemy URL)."""

    url: str
    _engine: sa.Engine | None = PrivateAttr(default=None)

    def get_engine(self) -> sa.Engine:
        if self._engine is None:
            if self.url.startswith("sqlite:///"):
                Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self._engine = source_engine(self.url)
            _metadata.create_all(self._engine)
        return self._engine

    def upsert(self, features: pd.DataFrame, batch_rows: int = 2_000) -> int:
        """Load one day's features; returns the number of customers whose row changed."""
        engine = self.get_engine()
        frame = features.loc[:, list(FEATURE_COLUMNS)].astype(object)
        frame = frame.where(pd.notna(frame), None)
        records = frame.to_dict("records")
        changed = 0
        with engine.begin() as connection:
            for i in range(0, len(records), batch_rows):
                statement = _upsert_statement(engine.dialect.name, records[i : i + batch_rows])
                changed += connection.execute(statement).rowcount or 0
        return changed

    def get(self, customer_id: int) -> dict[str, Any] | None:
        with self.get_engine().connect() as connection:
            row = (
                connection.execute(
                    sa.select(online_features).where(online_features.c.customer_id == customer_id)
                )
                .mappings()
                .first()
            )
        return dict(row) if row else None

    def count(self) -> int:
        with self.get_engine().connect() as connection:
            return connection.execute(
                sa.select(sa.func.count()).select_from(online_features)
            ).scalar_one()


def main(argv: list[str] | None = None) -> int:
    """`shopsmart-features CUSTOMER_ID …`: print the online features of customers as JSON."""
    parser = argparse.ArgumentParser(prog="shopsmart-features", description=main.__doc__)
    parser.add_argument("customer_ids", type=int, nargs="+")
    parser.add_argument(
        "--url",
        default=None,
        help="online store URL (default: "
        "$SHOPSMART_ONLINE_STORE_URL or $SHOPSMART_DATA_DIR/online_store.db)",
    )
    args = parser.parse_args(argv)
    import os

    url = (
        args.url
        or os.environ.get(settings.ONLINE_STORE_URL_VAR)
        or (settings.default_online_store_url())
    )
    store = OnlineStoreResource(url=url)
    missing = 0
    for customer_id in args.customer_ids:
        row = store.get(customer_id)
        if row is None:
            missing += 1
            print(json.dumps({"customer_id": customer_id, "found": False}))
        else:
            print(json.dumps(row, default=lambda v: v.isoformat() if isinstance(v, date) else v))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
