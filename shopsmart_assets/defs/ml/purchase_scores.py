"""ml/purchase_scores: every customer of the day scored by that day's champion, in the lake
and in Feast's online store."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shopsmart_assets.defs.features.assets import CUSTOMER_FEATURES_KEY
from shopsmart_assets.defs.links import asset_url, docs_link
from shopsmart_assets.defs.ml.champion_model import CHAMPION_MODEL_KEY
from shopsmart_assets.defs.ml.links import registered_version
from shopsmart_assets.defs.ml.records import ChampionRecord
from shopsmart_assets.defs.raw.assets import CRM_CUSTOMERS_KEY
from shopsmart_assets.defs.worker_pools import SINGLE_RUN, online_store_step
from shopsmart_assets.feature_repo import SCORES_VIEW
from shopsmart_assets.lake import lake_table, part_file_name
from shopsmart_assets.lake.frames import batches
from shopsmart_assets.partitions import Partitions
from shopsmart_assets.resources import FeatureStoreResource, LakeResource, ModelRegistry
from shopsmart_assets.resources.feature_store import feast_source
from shopsmart_assets.transforms.scoring import (
    SCORES_SCHEMA,
    score_distribution,
    score_problems,
    scores_frame,
)
from shopsmart_assets.transforms.training import model_input

PURCHASE_SCORES_KEY = dg.AssetKey(["ml", "purchase_scores"])
ONE_SCORE_PER_CUSTOMER = "one_score_per_customer"
ONE_SCORE_CHECK = dg.AssetCheckSpec(
    ONE_SCORE_PER_CUSTOMER,
    asset=PURCHASE_SCORES_KEY,
    blocking=True,
    description="Every customer of the day's CRM snapshot (raw/crm_customers) has exactly one "
    "score, for every day that had a champion; none missing, none twice, none for a customer "
    "the snapshot does not hold.",
)


class Champions:
    """The registered versions the step scores with, each loaded once."""

    def __init__(self, model_registry: ModelRegistry) -> None:
        self.registry, self.models = model_registry, {}

    def predict(self, version: int | None, features: pd.DataFrame):
        if version is None:
            return None
        if version not in self.models:
            self.models[version] = self.registry.load_model(version)
        return self.models[version].predict(model_input(features))[:, 1]


def score_day(
    context: dg.AssetExecutionContext, lake: LakeResource, champions: Champions, key: str
) -> int | None:
    """A day's scores written to the lake, a batch of customers at a time; returns the model
    version that gave them (None: no champion that day, no scores)."""
    champion_files = lake.input_files(context, CHAMPION_MODEL_KEY, for_partitions=[key])[key]
    champion = ChampionRecord.read(champion_files).champion
    version = champion.model_version if champion else None
    features = lake.input_files(context, CUSTOMER_FEATURES_KEY, for_partitions=[key])[key]
    with (
        lake.writing(context, PURCHASE_SCORES_KEY, key) as staged,
        pq.ParquetWriter(staged / part_file_name(), SCORES_SCHEMA) as writer,
    ):
        if version is not None:
            for batch in batches(features):
                scores = scores_frame(batch, champions.predict(version, batch), version)
                writer.write_table(
                    pa.Table.from_pandas(scores, schema=SCORES_SCHEMA, preserve_index=False)
                )
    return version


def day_metadata(
    key: str, scores: list[Path], version: int | None, written: int, registry: ModelRegistry
) -> dict[str, Any]:
    return {
        "model_version": version or 0,
        "online_rows_written": written,
        **score_distribution(scores),
        "champion": dg.MetadataValue.url(asset_url(CHAMPION_MODEL_KEY, key)),
        "features": dg.MetadataValue.url(asset_url(CUSTOMER_FEATURES_KEY, key)),
        **registered_version(version, registry),
    }


def purchase_scores(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    model_registry: ModelRegistry,
    feature_store: FeatureStoreResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Every customer of the day's CRM snapshot scored by the model that was champion
    that day (loaded from the MLflow registry): the probability of a purchase in the next
    7 days. Written to the lake (`scores/purchase_propensity`) and to Feast's online store
    (feature view `purchase_propensity`), so one lookup gives a customer's features and
    current score. No scores for days without a champion. Scored, written and checked in
    bounded batches, whatever the customers."""
    champions = Champions(model_registry)
    partitions_def = context.assets_def.partitions_def
    problems: list[str] = []
    days: dict[str, tuple[list[Path], int | None]] = {}
    for key in context.partition_keys:
        # the day's CRM snapshot, which its check holds the scores against, read first: the
        # commit records every input of the day
        snapshot = lake.input_files(context, CRM_CUSTOMERS_KEY, for_partitions=[key])[key]
        version = score_day(context, lake, champions, key)
        [scores] = lake.partition_files(PURCHASE_SCORES_KEY, partitions_def, [key]).values()
        problems += score_problems(key, snapshot, scores, version)
        days[key] = (scores, version)
    # the run's days in one online write: each customer's newest score
    written = feature_store.write_newest_of_days(
        SCORES_VIEW, {key: scores for key, (scores, _) in days.items()}
    )
    scored = 0
    for key, (scores, version) in days.items():
        metadata = day_metadata(key, scores, version, written[key], model_registry)
        scored += lake.record_partition(context, PURCHASE_SCORES_KEY, key, metadata)
    yield lake.materialize_result(context, PURCHASE_SCORES_KEY, scored)
    yield dg.AssetCheckResult(
        check_name=ONE_SCORE_PER_CUSTOMER,
        passed=not problems,
        description="; ".join(problems[:5]) or "one score per customer of every day's CRM snapshot",
        metadata={"days": len(context.partition_keys), "problems": len(problems)},
    )


def purchase_scores_asset(partitions: Partitions) -> dg.AssetsDefinition:
    return dg.asset(
        key=PURCHASE_SCORES_KEY,
        metadata={
            **lake_table("scores", "purchase_propensity"),
            **feast_source(SCORES_VIEW),
            **docs_link("ml.md", "Daily scores"),
        },
        deps=[CUSTOMER_FEATURES_KEY, CHAMPION_MODEL_KEY, CRM_CUSTOMERS_KEY],
        partitions_def=partitions.daily,
        backfill_policy=SINGLE_RUN,
        group_name="ml",
        kinds={"mlflow", "feast", "deltalake"},
        check_specs=[ONE_SCORE_CHECK],
        **online_store_step(),
    )(purchase_scores)
