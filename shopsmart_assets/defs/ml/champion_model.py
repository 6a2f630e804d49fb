"""ml/champion_model: the model in service as of each day, and the registry's `champion`
alias on the newest one."""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from shopsmart_assets.defs.asset_graph import LATEST_ONLY
from shopsmart_assets.defs.links import asset_url, docs_link
from shopsmart_assets.defs.ml.links import (
    MODEL_SECTION,
    PURCHASE_MODEL_KEY,
    champion_links,
    registered_version,
)
from shopsmart_assets.defs.ml.records import Champion, ChampionRecord, ModelRecord
from shopsmart_assets.defs.worker_pools import SINGLE_RUN, STANDARD_STEP
from shopsmart_assets.lake import lake_table
from shopsmart_assets.partitions import Partitions
from shopsmart_assets.resources import LakeResource, ModelRegistry, PromotionPolicy
from shopsmart_assets.transforms.training import should_promote

CHAMPION_MODEL_KEY = dg.AssetKey(["ml", "champion_model"])


def champion_history(
    lake: LakeResource, partitions_def: dg.PartitionsDefinition, before: str | None = None
) -> Iterator[tuple[str, ChampionRecord]]:
    """(partition, record) of the days ml/champion_model has in the lake, newest first (only
    those before `before` when given), from the table's current version."""
    keys = [k for k in partitions_def.get_partition_keys() if before is None or k < before]
    held = lake.partition_files(CHAMPION_MODEL_KEY, partitions_def, keys)
    for key in sorted(held, reverse=True):
        yield key, ChampionRecord.read(held[key])


def latest_champion(
    lake: LakeResource, partitions_def: dg.PartitionsDefinition, before: str
) -> Champion | None:
    """The champion in force before partition `before` (the newest earlier one)."""
    return next(
        (r.champion for _, r in champion_history(lake, partitions_def, before) if r.champion),
        None,
    )


def decide(
    candidate: ModelRecord, champion: Champion | None, policy: PromotionPolicy
) -> ChampionRecord:
    """A day's champion: the candidate when it meets the policy, else the one in force."""
    promote, why = should_promote(
        candidate.auc,
        champion.auc if champion else None,
        policy.min_auc,
        policy.max_auc_regression,
    )
    return ChampionRecord(Champion.of(candidate) if promote else champion, promote, why)


def day_metadata(key: str, record: ChampionRecord, model_registry: ModelRegistry) -> dict[str, Any]:
    champion = record.champion
    return {
        "champion_partition": str(champion.model_partition if champion else None),
        "champion_auc": champion.auc if champion else float("nan"),
        "champion_version": (champion.model_version if champion else None) or 0,
        "promoted": record.promoted,
        "decision": record.decision,
        "candidate": dg.MetadataValue.url(asset_url(PURCHASE_MODEL_KEY, key)),
        **champion_links(champion, model_registry),
    }


def move_alias(champion: Champion | None, model_registry: ModelRegistry) -> dict[str, Any]:
    """Point the registry's `champion` alias at the newest day's champion version."""
    if champion is None or not champion.model_version:
        return {}
    version = int(champion.model_version)
    move = model_registry.promote(version)
    replaced = move.previous if move.moved else None
    return {
        "champion_version": version,
        **registered_version(version, model_registry),
        "alias_moved": move.moved,
        **({"previous_champion_version": replaced} if replaced is not None else {}),
    }


def champion_model(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    promotion_policy: PromotionPolicy,
    model_registry: ModelRegistry,
) -> dg.MaterializeResult:
    """The model in service as of each day. Runs only when ml/purchase_model's blocking
    check passed; day by day, a trained candidate replaces the champion when it meets the
    promotion policy, otherwise the previous champion stays. The newest day moves the
    MLflow registry alias `champion` to its model version (the one it replaces keeps
    `previous-champion`: `shopsmart-model rollback` swaps them back)."""
    partitions_def = context.assets_def.partitions_def
    candidates = lake.input_files(context, PURCHASE_MODEL_KEY)
    champion = latest_champion(lake, partitions_def, before=context.partition_keys[0])
    records: dict[str, ChampionRecord] = {}
    with lake.writing_partitions(context, CHAMPION_MODEL_KEY) as staged:
        for key, directory in staged.items():
            record = decide(ModelRecord.read(candidates[key]), champion, promotion_policy)
            champion, records[key] = record.champion, record
            record.write(directory)
    for key, record in records.items():
        version, _ = lake.committed(context, CHAMPION_MODEL_KEY, key)
        context.add_asset_metadata(
            {**day_metadata(key, record, model_registry), "lake_version": version},
            partition_key=key,
        )
    metadata: dict[str, Any] = {"promotions": sum(r.promoted for r in records.values())}
    # Only the newest day in the lake speaks for today: a backfill of older days leaves the
    # registry's champion where it is.
    newest_day = next(champion_history(lake, partitions_def), (None,))[0]
    if context.partition_keys[-1] == newest_day:
        metadata |= move_alias(champion, model_registry)
    return lake.materialize_result(context, CHAMPION_MODEL_KEY, **metadata)


def champion_model_asset(partitions: Partitions) -> dg.AssetsDefinition:
    return dg.asset(
        key=CHAMPION_MODEL_KEY,
        metadata={
            **lake_table("models", "champion_model"),
            **LATEST_ONLY,
            **docs_link(*MODEL_SECTION),
        },
        deps=[PURCHASE_MODEL_KEY],
        partitions_def=partitions.daily,
        backfill_policy=SINGLE_RUN,
        group_name="ml",
        kinds={"mlflow"},
        **STANDARD_STEP,
    )(champion_model)
