"""ML: point-in-time training set, the purchase model (MLflow), the champion (registry alias)
and the daily scores (lake + Feast)."""

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shopsmart_assets.assets.features import CUSTOMER_FEATURES_KEY
from shopsmart_assets.assets.lake import PURCHASES_KEY
from shopsmart_assets.assets.raw import CRM_CUSTOMERS_KEY, SINGLE_RUN
from shopsmart_assets.catalog import asset_url, docs_link, partition_links
from shopsmart_assets.feature_repo import SCORES_VIEW
from shopsmart_assets.lineage import LATEST_ONLY
from shopsmart_assets.partitions import Partitions
from shopsmart_assets.resources import (
    FeatureStoreResource,
    LakeResource,
    ModelRegistry,
    PromotionPolicy,
)
from shopsmart_assets.resources.feature_store import feast_source
from shopsmart_assets.resources.lake import lake_table, part_file_name
from shopsmart_assets.resources.model_registry import DAGSTER_RUN_TAG, LoggedRun
from shopsmart_assets.transforms.features import FEATURE_COLUMNS
from shopsmart_assets.transforms.scoring import score_distribution, score_problems, scores_frame
from shopsmart_assets.transforms.training import (
    HYPERPARAMETERS,
    LABEL_DAYS,
    SKOPS_TRUSTED_TYPES,
    TRAINING_COLUMNS,
    TRAINING_WINDOW_DAYS,
    TrainingOutcome,
    frame_fingerprint,
    label_examples,
    model_input,
    should_promote,
    train_and_evaluate,
)
from shopsmart_assets.workers import STANDARD_STEP

TRAINING_SET_KEY = dg.AssetKey(["ml", "training_set"])
PURCHASE_MODEL_KEY = dg.AssetKey(["ml", "purchase_model"])
CHAMPION_MODEL_KEY = dg.AssetKey(["ml", "champion_model"])
PURCHASE_SCORES_KEY = dg.AssetKey(["ml", "purchase_scores"])
MEETS_BAR = "meets_promotion_bar"
ONE_SCORE_PER_CUSTOMER = "one_score_per_customer"
# Bumped when the model's code changes, so that MLflow logs a new run for the same data.
MODEL_CODE_VERSION = "2"
# Evaluation metrics every model partition reports, NaN when no model was trained, so that
# their plots over partitions have a value (a gap) on every day.
EVALUATION_METRICS = ("auc", "log_loss")
MODEL_SECTION = ("ml.md", "The model: runs, versions, champion")

# Training-set partition D: features as of D-7, labels from the purchases of D-6 … D.
FEATURES_OF_LABEL_START = dg.TimeWindowPartitionMapping(
    start_offset=-LABEL_DAYS, end_offset=-LABEL_DAYS, allow_nonexistent_upstream_partitions=True
)
LABEL_WINDOW = dg.TimeWindowPartitionMapping(
    start_offset=-(LABEL_DAYS - 1), allow_nonexistent_upstream_partitions=True
)
# Model partition D: trained on the training sets of the 27 days before D, evaluated on D.
TRAINING_WINDOW = dg.TimeWindowPartitionMapping(
    start_offset=-(TRAINING_WINDOW_DAYS - 1), allow_nonexistent_upstream_partitions=True
)

EXAMPLES_SCHEMA = pa.schema(
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


def _examples_table(examples: pd.DataFrame) -> pa.Table:
    frame = examples.loc[:, list(TRAINING_COLUMNS)]
    return pa.Table.from_pandas(frame, schema=EXAMPLES_SCHEMA, preserve_index=False)


def _of(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The rows of these upstream partitions, without the `partition` tag."""
    return frame[frame["partition"].isin(keys)].drop(columns="partition")


def _champion_days(
    lake: LakeResource, partitions_def: dg.PartitionsDefinition, before: str | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(partition, champion record) of the days ml/champion_model has in the lake, newest
    first (only those before `before` when given)."""
    keys = partitions_def.get_partition_keys()
    for key in reversed([k for k in keys if before is None or k < before]):
        path = lake.partition_path(CHAMPION_MODEL_KEY, partitions_def, key) / "champion.json"
        if path.is_file():
            yield key, json.loads(path.read_text())


def _latest_champion(
    lake: LakeResource, partitions_def: dg.PartitionsDefinition, before: str
) -> dict[str, Any] | None:
    """The champion record in force before partition `before` (the newest earlier one)."""
    return next(
        (r for _, r in _champion_days(lake, partitions_def, before) if r.get("model_partition")),
        None,
    )


def model_metadata(
    outcome: TrainingOutcome,
    versions: dict[str, str],
    logged: LoggedRun,
    model_registry: ModelRegistry,
) -> dict[str, Any]:
    """A model partition's metadata: its metrics (the evaluation metrics NaN when no model
    was trained), what it was trained on, its MLflow run and registered version."""
    return {
        "trained": outcome.trained,
        **({"not_trained_because": outcome.reason} if outcome.reason else {}),
        **dict.fromkeys(EVALUATION_METRICS, float("nan")),
        **outcome.metrics,
        "trained_on": dg.MetadataValue.json(versions),
        "mlflow_run": dg.MetadataValue.url(model_registry.run_url(logged.run_id)),
        # the same data was trained before: its run and version are reused
        "mlflow_run_reused": logged.reused,
        **(
            {"model_version": logged.version, "model_uri": model_registry.model_uri(logged.version)}
            if logged.version is not None
            else {}
        ),
        **registered_version(logged.version, model_registry),
    }


def registered_version(version: int | None, model_registry: ModelRegistry) -> dict[str, Any]:
    """A link to a registered model version's page in MLflow's UI (nothing for none)."""
    if version is None:
        return {}
    return {"registered_version": dg.MetadataValue.url(model_registry.version_url(int(version)))}


def champion_links(record: dict[str, Any], model_registry: ModelRegistry) -> dict[str, Any]:
    """Where a day's champion came from: the model partition that trained it (Dagster UI)
    and its registered version (MLflow UI); nothing while there is no champion."""
    if not record.get("model_partition"):
        return {}
    return {
        "champion_trained_in": dg.MetadataValue.url(
            asset_url(PURCHASE_MODEL_KEY, record["model_partition"])
        ),
        **registered_version(record["model_version"], model_registry),
    }


def data_version(trained_on: dict[str, str]) -> str:
    """What a model partition was made from: its training data, hyper-parameters and code."""
    payload = json.dumps(
        {"data": trained_on, "params": HYPERPARAMETERS, "code": MODEL_CODE_VERSION},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def build_ml_assets(partitions: Partitions) -> list[dg.AssetsDefinition]:
    """The training set, the model and the champion."""

    @dg.asset(
        key=TRAINING_SET_KEY,
        metadata={
            **lake_table("features", "training_set"),
            **docs_link("lake.md", "Features and the training set"),
        },
        deps=[
            dg.AssetDep(CUSTOMER_FEATURES_KEY, partition_mapping=FEATURES_OF_LABEL_START),
            dg.AssetDep(PURCHASES_KEY, partition_mapping=LABEL_WINDOW),
        ],
        partitions_def=partitions.daily,
        backfill_policy=SINGLE_RUN,
        group_name="ml",
        kinds={"pandas", "parquet"},
        **STANDARD_STEP,
    )
    def training_set(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        """Labelled examples whose 7-day label window ends on this day: each customer's
        features as of 7 days earlier, and `label` = 1 if they made a purchase that stood in
        the 7 days after. Features never see the label window (no leakage). Empty for the
        first 7 days."""
        features = lake.read_pandas(context, CUSTOMER_FEATURES_KEY)
        later = lake.read_pandas(context, PURCHASES_KEY, columns=["customer_id", "status"])
        total = 0
        for key in context.partition_keys:
            as_of = lake.upstream_keys(context, CUSTOMER_FEATURES_KEY, [key])
            label_keys = lake.upstream_keys(context, PURCHASES_KEY, [key])
            if not as_of:
                examples = pd.DataFrame(columns=list(TRAINING_COLUMNS))
                window = "no features 7 days earlier: the first labelled day is later"
            else:
                day_features = _of(features, as_of).assign(as_of_date=pd.Timestamp(as_of[0]).date())
                examples = label_examples(
                    day_features.loc[:, list(FEATURE_COLUMNS)], _of(later, label_keys)
                )
                window = f"features as of {as_of[0]}, labels from {label_keys[0]}..{label_keys[-1]}"
            table = _examples_table(examples)
            with lake.writing(context, TRAINING_SET_KEY, key) as staged:
                pq.write_table(table, staged / part_file_name())
            total += lake.record_partition(
                context,
                TRAINING_SET_KEY,
                key,
                {
                    "positive_rate": float(examples["label"].mean()) if len(examples) else 0.0,
                    "window": window,
                },
            )
        return dg.MaterializeResult(metadata=lake.summary(context, TRAINING_SET_KEY, total))

    @dg.asset(
        key=PURCHASE_MODEL_KEY,
        metadata={
            **lake_table("models", "purchase_model"),
            **LATEST_ONLY,
            **docs_link(*MODEL_SECTION),
        },
        deps=[dg.AssetDep(TRAINING_SET_KEY, partition_mapping=TRAINING_WINDOW)],
        partitions_def=partitions.daily,
        backfill_policy=SINGLE_RUN,
        group_name="ml",
        kinds={"scikitlearn", "mlflow"},
        check_specs=[
            dg.AssetCheckSpec(
                MEETS_BAR,
                asset=PURCHASE_MODEL_KEY,
                blocking=True,
                description="The newest model of the run has AUC >= the policy's minimum and is "
                "no worse than the current champion by more than the allowed margin. A model "
                "below the bar fails it (ERROR), which blocks ml/champion_model; no model at all "
                "(too little history) only warns, and the champion stays as it is.",
            )
        ],
        **STANDARD_STEP,
    )
    def purchase_model(
        context: dg.AssetExecutionContext,
        lake: LakeResource,
        promotion_policy: PromotionPolicy,
        model_registry: ModelRegistry,
    ):
        """A gradient-boosted classifier of 'purchases in the next 7 days', trained on the
        training-set partitions of the 27 days before this one and evaluated out of time on
        this day's examples. Each partition is one MLflow run (parameters, metrics, the exact
        partitions and data versions it was trained on) whose model is registered as a version
        of `shopsmart-purchase-propensity`. No model while there are too few labelled
        examples."""
        examples = lake.read_pandas(context, TRAINING_SET_KEY)
        outcome: TrainingOutcome | None = None
        for key in context.partition_keys:
            window = lake.upstream_keys(context, TRAINING_SET_KEY, [key])
            frames = {k: _of(examples, [k]) for k in window}
            versions = {k: frame_fingerprint(f) for k, f in frames.items()}
            history = [frames[k] for k in window if k != key]
            train = (
                pd.concat(history, ignore_index=True)
                if history
                else pd.DataFrame(columns=list(TRAINING_COLUMNS))
            )
            outcome = train_and_evaluate(train, frames[key])
            logged = model_registry.log_run(
                partition=key,
                data_version=data_version(versions),
                params={
                    **HYPERPARAMETERS,
                    "partition": key,
                    "train_partitions": f"{window[0]}..{window[-2]}" if history else "none",
                    "eval_partition": key,
                    "dagster_run_id": context.run.run_id,
                },
                metrics=outcome.metrics,
                tags={
                    DAGSTER_RUN_TAG: context.run.run_id,
                    "trained": str(outcome.trained).lower(),
                    **({"not_trained_because": outcome.reason} if outcome.reason else {}),
                },
                model=outcome.model,
                input_example=model_input(train) if outcome.model is not None else None,
                skops_trusted_types=SKOPS_TRUSTED_TYPES,
                artifacts={"trained_on.json": versions},
            )
            record = {
                "partition": key,
                "trained": outcome.trained,
                "reason": outcome.reason,
                "metrics": outcome.metrics,
                "trained_on": versions,
                "mlflow_run_id": logged.run_id,
                "model_version": logged.version,
            }
            with lake.writing(context, PURCHASE_MODEL_KEY, key) as staged:
                (staged / "metrics.json").write_text(json.dumps(record, indent=2, sort_keys=True))
            context.add_asset_metadata(
                {
                    **model_metadata(outcome, versions, logged, model_registry),
                    "training_partitions": partition_links(
                        TRAINING_SET_KEY, [k for k in window if k != key]
                    ),
                    "evaluation_partition": dg.MetadataValue.url(asset_url(TRAINING_SET_KEY, key)),
                    "lake_path": dg.MetadataValue.path(
                        str(
                            lake.partition_path(
                                PURCHASE_MODEL_KEY, context.assets_def.partitions_def, key
                            )
                        )
                    ),
                },
                partition_key=key,
            )

        newest = context.partition_keys[-1]
        champion = _latest_champion(lake, context.assets_def.partitions_def, before=newest)
        champion_auc = champion["auc"] if champion else None
        candidate_auc = outcome.metrics.get("auc") if outcome else None
        passed, why = should_promote(
            candidate_auc,
            champion_auc,
            promotion_policy.min_auc,
            promotion_policy.max_auc_regression,
        )
        yield dg.MaterializeResult(metadata={"newest_partition": newest})
        yield dg.AssetCheckResult(
            check_name=MEETS_BAR,
            passed=passed,
            # No candidate yet (too little labelled history) is a normal state, not an
            # incident: warn, and let the champion step keep the current champion. A trained
            # candidate below the bar is an error that blocks promotion, fails the run and
            # alerts.
            severity=dg.AssetCheckSeverity.WARN
            if candidate_auc is None
            else dg.AssetCheckSeverity.ERROR,
            description=why
            if candidate_auc is not None
            else f"{why}: {outcome.reason if outcome else 'nothing to train'}; the champion stays",
            metadata={
                "candidate_auc": candidate_auc if candidate_auc is not None else float("nan"),
                "champion_auc": champion_auc if champion_auc is not None else float("nan"),
                "min_auc": promotion_policy.min_auc,
                "max_auc_regression": promotion_policy.max_auc_regression,
            },
        )

    @dg.asset(
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
    )
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
        candidates = lake.input_paths(context, PURCHASE_MODEL_KEY)
        champion = _latest_champion(lake, partitions_def, before=context.partition_keys[0])
        promoted_days = 0
        for key in context.partition_keys:
            candidate = json.loads((candidates[key] / "metrics.json").read_text())
            promote, why = should_promote(
                candidate["metrics"].get("auc"),
                champion["auc"] if champion else None,
                promotion_policy.min_auc,
                promotion_policy.max_auc_regression,
            )
            if promote:
                champion = {
                    "model_partition": key,
                    "auc": candidate["metrics"]["auc"],
                    "model_version": candidate["model_version"],
                    "mlflow_run_id": candidate["mlflow_run_id"],
                }
                promoted_days += 1
            record = {
                **(champion or {"model_partition": None, "auc": None, "model_version": None}),
                "promoted": promote,
                "decision": why,
            }
            with lake.writing(context, CHAMPION_MODEL_KEY, key) as staged:
                (staged / "champion.json").write_text(json.dumps(record, indent=2, sort_keys=True))
            context.add_asset_metadata(
                {
                    "champion_partition": str(record["model_partition"]),
                    "champion_auc": record["auc"] if record["auc"] is not None else float("nan"),
                    "champion_version": record["model_version"] or 0,
                    "promoted": promote,
                    "decision": why,
                    "candidate": dg.MetadataValue.url(asset_url(PURCHASE_MODEL_KEY, key)),
                    **champion_links(record, model_registry),
                },
                partition_key=key,
            )

        metadata: dict[str, Any] = {"promotions": promoted_days}
        newest = context.partition_keys[-1]
        # Only the newest day in the lake speaks for today: a backfill of older days leaves
        # the registry's champion where it is.
        if (
            champion
            and champion.get("model_version")
            and newest == next(_champion_days(lake, partitions_def), (None,))[0]
        ):
            version = int(champion["model_version"])
            replaced = model_registry.promote(version)
            metadata |= {
                "champion_version": version,
                **registered_version(version, model_registry),
                "alias_moved": replaced is not None,
                **({"previous_champion_version": replaced} if replaced is not None else {}),
            }
        return dg.MaterializeResult(metadata=metadata)

    @dg.asset(
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
        kinds={"mlflow", "feast", "parquet"},
        check_specs=[
            dg.AssetCheckSpec(
                ONE_SCORE_PER_CUSTOMER,
                asset=PURCHASE_SCORES_KEY,
                blocking=True,
                description="Every customer of the day's CRM snapshot (raw/crm_customers) has "
                "exactly one score, for every day that had a champion; none missing, none "
                "twice, none for a customer the snapshot does not hold.",
            )
        ],
        **STANDARD_STEP,
    )
    def purchase_scores(
        context: dg.AssetExecutionContext,
        lake: LakeResource,
        model_registry: ModelRegistry,
        feature_store: FeatureStoreResource,
    ):
        """Every customer of the day's CRM snapshot scored by the model that was champion
        that day (loaded from the MLflow registry): the probability of a purchase in the next
        7 days. Written to the lake (`scores/purchase_propensity`) and to Feast's online store
        (feature view `purchase_propensity`), so one lookup gives a customer's features and
        current score. No scores for days without a champion."""
        champions = lake.input_paths(context, CHAMPION_MODEL_KEY)
        models: dict[int, Any] = {}
        problems: list[str] = []
        days: dict[str, tuple[pd.DataFrame, int | None]] = {}
        for key in context.partition_keys:
            champion = json.loads((champions[key] / "champion.json").read_text())
            version = champion.get("model_version")
            features = lake.read_pandas(context, CUSTOMER_FEATURES_KEY, for_partitions=[key])
            probabilities = None
            if version is not None:
                if version not in models:
                    models[version] = model_registry.load_model(version)
                probabilities = models[version].predict(model_input(features))[:, 1]
            scores = scores_frame(features, probabilities, version)
            with lake.writing(context, PURCHASE_SCORES_KEY, key) as staged:
                scores.to_parquet(staged / part_file_name(), index=False)
            snapshot = lake.read_pandas(
                context, CRM_CUSTOMERS_KEY, for_partitions=[key], columns=["customer_id"]
            )
            problems += score_problems(key, snapshot["customer_id"], scores, version)
            days[key] = (scores, version)
        # the run's days in one online write: each customer's newest score
        written = feature_store.write_newest_of_days(
            SCORES_VIEW, {key: scores for key, (scores, _) in days.items()}
        )
        for key, (scores, version) in days.items():
            lake.record_partition(
                context,
                PURCHASE_SCORES_KEY,
                key,
                {
                    "model_version": version or 0,
                    "online_rows_written": written[key],
                    **score_distribution(scores),
                    "champion": dg.MetadataValue.url(asset_url(CHAMPION_MODEL_KEY, key)),
                    "features": dg.MetadataValue.url(asset_url(CUSTOMER_FEATURES_KEY, key)),
                    **registered_version(version, model_registry),
                },
            )
        scored = sum(len(scores) for scores, _ in days.values())
        yield dg.MaterializeResult(metadata=lake.summary(context, PURCHASE_SCORES_KEY, scored))
        yield dg.AssetCheckResult(
            check_name=ONE_SCORE_PER_CUSTOMER,
            passed=not problems,
            description="; ".join(problems[:5])
            or "one score per customer of every day's CRM snapshot",
            metadata={"days": len(context.partition_keys), "problems": len(problems)},
        )

    return [training_set, purchase_model, champion_model, purchase_scores]
