"""ml/purchase_scores: every customer of the day scored by that day's champion, in the lake
and in Feast's online store."""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg

from shopsmart_assets.defs.features.assets import CUSTOMER_FEATURES_KEY
from shopsmart_assets.defs.links import asset_url, docs_link
from shopsmart_assets.defs.ml.champion_model import CHAMPION_MODEL_KEY
from shopsmart_assets.defs.ml.links import registered_version
from shopsmart_assets.defs.ml.records import ChampionRecord
from shopsmart_assets.defs.raw.assets import CRM_CUSTOMERS_KEY
from shopsmart_assets.defs.worker_pools import SINGLE_RUN, online_store_step
from shopsmart_assets.feature_repo import SCORES_VIEW
from shopsmart_assets.lake import lake_table, part_file_name
from shopsmart_assets.partitions import Partitions
from shopsmart_assets.resources import FeatureStoreResource, LakeResource, ModelRegistry
from shopsmart_assets.resources.feature_store import feast_source
from shopsmart_assets.transforms.scoring import DayToScore, scored_in_order

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


def days_to_score(
    context: dg.AssetExecutionContext, lake: LakeResource, staging: Path
) -> list[DayToScore]:
    """Each day of the step with the model that was champion that day (where its copy goes
    in `staging`: `fetch_model` makes it), its features, its CRM snapshot, and its file in
    `staging`."""
    champions = lake.input_files(context, CHAMPION_MODEL_KEY)
    features = lake.input_files(context, CUSTOMER_FEATURES_KEY)
    snapshots = lake.input_files(context, CRM_CUSTOMERS_KEY)
    days = []
    for key in context.partition_keys:
        champion = ChampionRecord.read(champions[key]).champion
        version = champion.model_version if champion else None
        (staging / key).mkdir()
        days.append(
            DayToScore(
                key,
                str(staging / "models" / str(version)) if version is not None else None,
                version,
                tuple(str(f) for f in features[key]),
                str(staging / key / part_file_name()),
                tuple(str(f) for f in snapshots[key]),
            )
        )
    return days


def fetch_model(model_registry: ModelRegistry) -> Callable[[DayToScore], object]:
    """A copy of a day's champion version from the registry, where the day expects it (once
    a version)."""

    def fetch(day: DayToScore) -> None:
        if day.model is None or day.version is None or Path(day.model).exists():
            return
        copy = model_registry.download_model(day.version, Path(day.model))
        if copy != Path(day.model):
            raise RuntimeError(f"model version {day.version} was copied to {copy}, not {day.model}")

    return fetch


def day_metadata(
    key: str,
    distribution: dict[str, float],
    version: int | None,
    written: int,
    registry: ModelRegistry,
) -> dict[str, Any]:
    return {
        "model_version": version or 0,
        "online_rows_written": written,
        **distribution,
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
    bounded batches, whatever the customers; a range's days side by side, one per core."""
    partitions_def = context.assets_def.partitions_def
    with lake.staging(context, PURCHASE_SCORES_KEY) as staging:
        # every input read (features, champions, the CRM snapshots the check holds the scores
        # against) before the commit, which records them
        days = days_to_score(context, lake, staging)
        # Feast's store opened (its import, the repository applied) while the days score
        with scored_in_order(
            days, fetch=fetch_model(model_registry), meanwhile=feature_store.get_store
        ) as scored_days:
            scored = list(scored_days)
        lake.commit(context, PURCHASE_SCORES_KEY, {day.day: staging / day.day for day in days})
    scores = lake.partition_files(PURCHASE_SCORES_KEY, partitions_def, context.partition_keys)
    problems = [problem for day in scored for problem in day.problems]
    # the run's days in one online write: each customer's newest score
    written = feature_store.write_newest_of_days(SCORES_VIEW, scores)
    rows = 0
    for day, scored_day in zip(days, scored, strict=True):
        metadata = day_metadata(
            day.day, scored_day.distribution, day.version, written[day.day], model_registry
        )
        rows += lake.record_partition(context, PURCHASE_SCORES_KEY, day.day, metadata)
    yield lake.materialize_result(context, PURCHASE_SCORES_KEY, rows)
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
