"""ML: point-in-time training set, the purchase model and the champion."""

import json
import shutil
from datetime import date, timedelta
from typing import Any

import dagster as dg
import joblib
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shopsmart_assets.assets.features import CUSTOMER_FEATURES_KEY, first_day
from shopsmart_assets.assets.lake import PURCHASES_KEY
from shopsmart_assets.assets.raw import SINGLE_RUN
from shopsmart_assets.observability import partition_metadata
from shopsmart_assets.partitions import daily_partitions, day_of
from shopsmart_assets.resources import LakeResource, PromotionPolicy
from shopsmart_assets.resources.lake import part_file_name
from shopsmart_assets.transforms.training import (
    LABEL_DAYS,
    TRAINING_COLUMNS,
    TRAINING_WINDOW_DAYS,
    TrainingOutcome,
    features_day,
    frame_fingerprint,
    label_days,
    label_examples,
    should_promote,
    train_and_evaluate,
)
from shopsmart_assets.workers import STANDARD_STEP

TRAINING_SET_KEY = dg.AssetKey(["ml", "training_set"])
PURCHASE_MODEL_KEY = dg.AssetKey(["ml", "purchase_model"])
CHAMPION_MODEL_KEY = dg.AssetKey(["ml", "champion_model"])
MEETS_BAR = "meets_promotion_bar"


def _read_training(lake: LakeResource, day: date) -> pd.DataFrame:
    return pq.read_table(lake.partition_dir("features", "training_set", day)).to_pandas()


@dg.asset(
    key=TRAINING_SET_KEY,
    deps=[
        dg.AssetDep(
            CUSTOMER_FEATURES_KEY,
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-LABEL_DAYS,
                end_offset=-LABEL_DAYS,
                allow_nonexistent_upstream_partitions=True,
            ),
        ),
        dg.AssetDep(
            PURCHASES_KEY,
            partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-(LABEL_DAYS - 1)),
        ),
    ],
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    group_name="ml",
    kinds={"pandas", "parquet"},
    **STANDARD_STEP,
)
def training_set(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Labelled examples whose 7-day label window ends on this day: each customer's features
    as of 7 days earlier, and `label` = 1 if they made a purchase that stood in the 7 days
    after. Features never see the label window (no leakage). Empty for the first 7 days."""
    total = 0
    for key in context.partition_keys:
        day = day_of(key)
        as_of = features_day(day)
        needed_by = f"ml/training_set {key}"
        if as_of < first_day():
            examples = pd.DataFrame(columns=list(TRAINING_COLUMNS))
            note = f"no features before {first_day()}: the first labelled day is later"
        else:
            lake.require_partitions("features", "customer_features", [(as_of, None)], needed_by)
            lake.require_partitions(
                "curated", "purchases", [(d, None) for d in label_days(day)], needed_by
            )
            features = lake.read_daily("features", "customer_features", [as_of]).rename(
                columns={"date": "as_of_date"}
            )
            later = lake.read_daily(
                "curated", "purchases", label_days(day), columns=["customer_id", "status"]
            )
            examples = label_examples(features, later)
            note = f"features as of {as_of}, labels from purchases {label_days(day)[0]}..{day}"
        table = _examples_table(examples)
        with lake.writing_partition("features", "training_set", day) as staged:
            pq.write_table(table, staged / part_file_name())
        total += table.num_rows
        context.add_asset_metadata(
            partition_metadata(
                table.num_rows,
                lake.partition_dir("features", "training_set", day),
                {
                    "positive_rate": float(examples["label"].mean()) if len(examples) else 0.0,
                    "window": note,
                },
            ),
            partition_key=key,
        )
    return dg.MaterializeResult(metadata={"rows_total": total})


def _examples_table(examples: pd.DataFrame) -> pa.Table:
    schema = pa.schema(
        [
            ("as_of_date", pa.date32()),
            ("customer_id", pa.int64()),
            ("recency_days", pa.float64()),
            *[(c, pa.float64()) for c in TRAINING_COLUMNS[3:-4]],
            ("has_valid_email", pa.bool_()),
            ("segment", pa.string()),
            ("country", pa.string()),
            ("label", pa.int64()),
        ]
    )
    frame = examples.loc[:, list(TRAINING_COLUMNS)]
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def _train_for(
    lake: LakeResource, day: date, read: dict[date, pd.DataFrame]
) -> tuple[TrainingOutcome, dict[str, str]]:
    """Train on the training-set partitions before `day` (up to the window), evaluate on
    `day`: an out-of-time holdout. `read` caches partitions across the days of a run."""
    history = [
        day - timedelta(days=k)
        for k in range(TRAINING_WINDOW_DAYS - 1, 0, -1)
        if day - timedelta(days=k) >= first_day()
    ]
    lake.require_partitions(
        "features", "training_set", [(d, None) for d in [*history, day]], f"ml/purchase_model {day}"
    )
    for d in [*history, day]:
        if d not in read:
            read[d] = _read_training(lake, d)
    frames = {d: read[d] for d in [*history, day]}
    versions = {d.isoformat(): frame_fingerprint(f) for d, f in frames.items()}
    train = (
        pd.concat([frames[d] for d in history], ignore_index=True)
        if history
        else (pd.DataFrame(columns=list(TRAINING_COLUMNS)))
    )
    return train_and_evaluate(train, frames[day]), versions


def _latest_champion(lake: LakeResource, before: date) -> dict[str, Any] | None:
    """The champion record in force before `before` (the newest earlier partition)."""
    table = lake.table_dir("models", "champion_model")
    candidates = (
        sorted(p for p in table.glob("date=*") if date.fromisoformat(p.name[5:]) < before)
        if table.is_dir()
        else []
    )
    for directory in reversed(candidates):
        record = json.loads((directory / "champion.json").read_text())
        if record.get("model_partition"):
            return record
    return None


@dg.asset(
    key=PURCHASE_MODEL_KEY,
    deps=[
        dg.AssetDep(
            TRAINING_SET_KEY,
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-(TRAINING_WINDOW_DAYS - 1)
            ),
        )
    ],
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    group_name="ml",
    kinds={"scikitlearn"},
    **STANDARD_STEP,
    check_specs=[
        dg.AssetCheckSpec(
            MEETS_BAR,
            asset=PURCHASE_MODEL_KEY,
            blocking=True,
            description="The newest model of the run has AUC >= the policy's minimum and is "
            "no worse than the current champion by more than the allowed margin. A model below "
            "the bar fails it (ERROR), which blocks ml/champion_model; no model at all (too "
            "little history) only warns, and the champion stays as it is.",
        )
    ],
)
def purchase_model(
    context: dg.AssetExecutionContext, lake: LakeResource, promotion_policy: PromotionPolicy
):
    """A gradient-boosted classifier of 'purchases in the next 7 days', trained on the
    training-set partitions of the 28 days before this one and evaluated out of time on this
    day's examples. Metadata: AUC, log loss, and the exact partitions and data versions it
    was trained on. No model while there are too few labelled examples."""
    outcome: TrainingOutcome | None = None
    read: dict[date, pd.DataFrame] = {}
    for key in context.partition_keys:
        day = day_of(key)
        outcome, versions = _train_for(lake, day, read)
        record = {
            "partition": key,
            "trained": outcome.trained,
            "reason": outcome.reason,
            "metrics": outcome.metrics,
            "trained_on": versions,
        }
        with lake.writing_partition("models", "purchase_model", day) as staged:
            if outcome.model is not None:
                joblib.dump(outcome.model, staged / "model.joblib")
            (staged / "metrics.json").write_text(json.dumps(record, indent=2, sort_keys=True))
        context.add_asset_metadata(
            {
                "trained": outcome.trained,
                **({"not_trained_because": outcome.reason} if outcome.reason else {}),
                **{k: v for k, v in outcome.metrics.items()},
                "trained_on": dg.MetadataValue.json(versions),
                "lake_path": dg.MetadataValue.path(
                    str(lake.partition_dir("models", "purchase_model", day))
                ),
            },
            partition_key=key,
        )

    newest = day_of(context.partition_keys[-1])
    champion = _latest_champion(lake, before=newest)
    champion_auc = champion["auc"] if champion else None
    candidate_auc = outcome.metrics.get("auc") if outcome else None
    passed, why = should_promote(
        candidate_auc, champion_auc, promotion_policy.min_auc, promotion_policy.max_auc_regression
    )
    yield dg.MaterializeResult(metadata={"newest_partition": context.partition_keys[-1]})
    yield dg.AssetCheckResult(
        check_name=MEETS_BAR,
        passed=passed,
        # No candidate yet (too little labelled history) is a normal state, not an incident:
        # warn, and let the champion step keep the current champion. A trained candidate
        # below the bar is an error that blocks promotion, fails the run and alerts.
        severity=dg.AssetCheckSeverity.WARN
        if candidate_auc is None
        else dg.AssetCheckSeverity.ERROR,
        description=why
        if candidate_auc is not None
        else (f"{why}: {outcome.reason if outcome else 'nothing to train'}; the champion stays"),
        metadata={
            "candidate_auc": candidate_auc if candidate_auc is not None else float("nan"),
            "champion_auc": champion_auc if champion_auc is not None else float("nan"),
            "min_auc": promotion_policy.min_auc,
            "max_auc_regression": promotion_policy.max_auc_regression,
        },
    )


@dg.asset(
    key=CHAMPION_MODEL_KEY,
    deps=[PURCHASE_MODEL_KEY],
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    group_name="ml",
    kinds={"scikitlearn"},
    **STANDARD_STEP,
)
def champion_model(
    context: dg.AssetExecutionContext, lake: LakeResource, promotion_policy: PromotionPolicy
) -> dg.MaterializeResult:
    """The model in service as of each day. Runs only when ml/purchase_model's blocking
    check passed; day by day, a trained candidate replaces the champion when it meets the
    promotion policy, otherwise the previous champion stays."""
    days = [day_of(k) for k in context.partition_keys]
    champion = _latest_champion(lake, before=days[0])
    promoted_days = 0
    for key, day in zip(context.partition_keys, days, strict=True):
        candidate_dir = lake.partition_dir("models", "purchase_model", day)
        lake.require_partitions("models", "purchase_model", [(day, None)], f"ml/champion {key}")
        candidate = json.loads((candidate_dir / "metrics.json").read_text())
        promote, why = should_promote(
            candidate["metrics"].get("auc"),
            champion["auc"] if champion else None,
            promotion_policy.min_auc,
            promotion_policy.max_auc_regression,
        )
        if promote:
            champion = {"model_partition": key, "auc": candidate["metrics"]["auc"]}
            promoted_days += 1
        record = {
            **(champion or {"model_partition": None, "auc": None}),
            "promoted": promote,
            "decision": why,
        }
        with lake.writing_partition("models", "champion_model", day) as staged:
            if champion:
                source = lake.partition_dir(
                    "models", "purchase_model", day_of(champion["model_partition"])
                )
                shutil.copy2(source / "model.joblib", staged / "model.joblib")
            (staged / "champion.json").write_text(json.dumps(record, indent=2, sort_keys=True))
        context.add_asset_metadata(
            {
                "champion_partition": str(record["model_partition"]),
                "champion_auc": record["auc"] if record["auc"] is not None else float("nan"),
                "promoted": promote,
                "decision": why,
            },
            partition_key=key,
        )
    return dg.MaterializeResult(metadata={"promotions": promoted_days})
