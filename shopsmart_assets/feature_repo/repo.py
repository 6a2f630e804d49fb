"""Feast objects over the lake: the entity, one feature view per lake table, the service."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.data_format import DeltaFormat
from feast.types import Bool, Float64, Int64, String

from shopsmart_assets.feature_repo import (
    CUSTOMER_FEATURES_VIEW,
    ENTITY_KEY,
    EVENT_TIMESTAMP,
    FEATURE_SERVICE,
    SCORES_VIEW,
    VIEW_COLUMNS,
)

FEAST_TYPES = {"int64": Int64, "float64": Float64, "bool": Bool, "string": String}
# A day's rows stay valid for historical retrieval for a week (a late pipeline serves the
# last known values rather than nothing).
TTL = timedelta(days=7)
DESCRIPTIONS = {
    CUSTOMER_FEATURES_VIEW: "Customer features as of the end of each day (lake table "
    "features/customer_features, Dagster asset features/customer_features).",
    SCORES_VIEW: "Each customer's probability of a purchase in the next 7 days, by the "
    "champion model of the day (lake table scores/purchase_propensity, asset "
    "ml/purchase_scores).",
}


def feature_repo_objects(table_dirs: Mapping[str, Path]) -> list:
    """The repository's objects for a lake whose view tables lie in `table_dirs` (view name →
    its Delta table's directory)."""
    customer = Entity(
        name="customer",
        join_keys=[ENTITY_KEY],
        value_type=ValueType.INT64,
        description="A ShopSmart customer (CRM customer_id).",
    )
    views = [
        FeatureView(
            name=name,
            entities=[customer],
            ttl=TTL,
            schema=[Field(name=ENTITY_KEY, dtype=Int64)]
            + [Field(name=column, dtype=FEAST_TYPES[kind]) for column, kind in columns.items()],
            source=FileSource(
                name=f"{name}_source",
                # the lake's Delta table (its current version: delta_offline_store.py)
                path=str(Path(table_dirs[name])),
                file_format=DeltaFormat(),
                timestamp_field=EVENT_TIMESTAMP,
            ),
            online=True,
            description=DESCRIPTIONS[name],
        )
        for name, columns in VIEW_COLUMNS.items()
    ]
    service = FeatureService(
        name=FEATURE_SERVICE,
        features=views,
        description="A customer's features and current purchase-propensity score.",
    )
    return [customer, *views, service]
