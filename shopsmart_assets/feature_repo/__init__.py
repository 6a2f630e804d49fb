"""The Feast feature repository: the `customer` entity, the feature views over the lake's
`features/customer_features` and `scores/purchase_propensity` tables, and the
`customer_propensity` feature service that serves both in one lookup.

This module holds the names (cheap to import); `repo.py` builds the Feast objects. Importing
Feast takes seconds, so only the steps and commands that use the store import it.
"""

from collections.abc import Mapping

from shopsmart_assets.transforms.features import EVENT_TIMESTAMP

PROJECT = "shopsmart"
ENTITY_KEY = "customer_id"
# Every file a view reads carries EVENT_TIMESTAMP, the instant its row became true (the end
# of its day in the company time zone, stored in UTC): Feast's point-in-time joins and the
# online store's "never overwrite fresher" rule run on it.
CUSTOMER_FEATURES_VIEW = "customer_features"
SCORES_VIEW = "purchase_propensity"
FEATURE_SERVICE = "customer_propensity"

# Feature view → its columns and their types, as the lake tables hold them.
VIEW_COLUMNS: Mapping[str, Mapping[str, str]] = {
    CUSTOMER_FEATURES_VIEW: {
        "recency_days": "int64",
        "frequency_7d": "int64",
        "frequency_30d": "int64",
        "frequency_90d": "int64",
        "monetary_7d": "float64",
        "monetary_30d": "float64",
        "monetary_90d": "float64",
        "interactions_30d": "int64",
        "support_tickets_30d": "int64",
        "tenure_days": "int64",
        "has_valid_email": "bool",
        "segment": "string",
        "country": "string",
    },
    SCORES_VIEW: {"score": "float64", "model_version": "int64"},
}

__all__ = [
    "CUSTOMER_FEATURES_VIEW",
    "ENTITY_KEY",
    "EVENT_TIMESTAMP",
    "FEATURE_SERVICE",
    "PROJECT",
    "SCORES_VIEW",
    "VIEW_COLUMNS",
]

# Feast's offline store: its DuckDB store, reading the lake's Delta tables with delta-rs
# (delta_offline_store.py, imported by Feast when it is used).
DELTA_OFFLINE_STORE = "shopsmart_assets.feature_repo.delta_offline_store.DeltaDuckDBOfflineStore"
