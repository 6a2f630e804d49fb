"""ml/purchase_model: one model per day, trained on the 27 days of examples before it and
evaluated out of time on the day; an MLflow run and a registered version each."""

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import dagster as dg
import pandas as pd

from shopsmart_assets.defs.asset_graph import LATEST_ONLY
from shopsmart_assets.defs.links import asset_url, docs_link, partition_links
from shopsmart_assets.defs.ml.champion_model import latest_champion
from shopsmart_assets.defs.ml.links import MODEL_SECTION, PURCHASE_MODEL_KEY, registered_version
from shopsmart_assets.defs.ml.records import ModelRecord
from shopsmart_assets.defs.ml.training_set import TRAINING_SET_KEY
from shopsmart_assets.defs.worker_pools import SINGLE_RUN, STANDARD_STEP
from shopsmart_assets.lake import lake_table
from shopsmart_assets.lake.delta import combined_fingerprint
from shopsmart_assets.partitions import Partitions
from shopsmart_assets.resources import LakeResource, ModelRegistry, PromotionPolicy
from shopsmart_assets.resources.model_registry import (
    CODE_VERSION_TAG,
    DAGSTER_RUN_TAG,
    TRAINED_ON_ARTIFACT,
    TRAINED_ON_TAG,
    LoggedRun,
    TrainedOn,
    TrainingInput,
)
from shopsmart_assets.transforms.sampling import (
    MAX_EVAL_ROWS,
    MAX_TRAIN_ROWS,
    WindowSample,
    window_sample,
)
from shopsmart_assets.transforms.training import (
    HYPERPARAMETERS,
    TRAINING_WINDOW_DAYS,
    TrainingOutcome,
    should_promote,
)
from shopsmart_assets.transforms.training_workers import fitted_in_order

MEETS_BAR = "meets_promotion_bar"
# Bumped when the model's code changes, so that MLflow logs a new run for the same data.
MODEL_CODE_VERSION = "3"  # 3: fitted on a bounded, weighted sample of the window
# Evaluation metrics every model partition reports, NaN when no model was trained, so that
# their plots over partitions have a value (a gap) on every day.
EVALUATION_METRICS = ("auc", "log_loss")
MEETS_BAR_CHECK = dg.AssetCheckSpec(
    MEETS_BAR,
    asset=PURCHASE_MODEL_KEY,
    blocking=True,
    description="The newest model of the run has AUC >= the policy's minimum and is no worse "
    "than the current champion by more than the allowed margin. A model below the bar fails "
    "it (ERROR), which blocks ml/champion_model; no model at all (too little history) only "
    "warns, and the champion stays as it is.",
)


def training_window() -> dg.TimeWindowPartitionMapping:
    """Model partition D: trained on the training sets of the 27 days before D, evaluated on
    D (none before the first day)."""
    return dg.TimeWindowPartitionMapping(
        start_offset=-(TRAINING_WINDOW_DAYS - 1), allow_nonexistent_upstream_partitions=True
    )


def data_version(trained_on: TrainedOn) -> str:
    """What a model partition was made from: its training data (each partition's files),
    hyper-parameters, sample sizes and code."""
    payload = json.dumps(
        {
            "data": trained_on.partitions,
            "params": HYPERPARAMETERS,
            "sample": [MAX_TRAIN_ROWS, MAX_EVAL_ROWS],
            "code": MODEL_CODE_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def model_metadata(
    outcome: TrainingOutcome,
    trained_on: TrainedOn,
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
        # each partition's fingerprint in the training-set table's version it read
        "trained_on": dg.MetadataValue.json(trained_on.partitions),
        "training_set_version": trained_on.version if trained_on.version is not None else -1,
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


def log_model_run(
    context: dg.AssetExecutionContext,
    model_registry: ModelRegistry,
    key: str,
    trained_on: TrainedOn,
    files: dict[str, list[str]],
    sample: WindowSample,
    outcome: TrainingOutcome,
    model_files: Path | None,
    inputs: list[TrainingInput],
) -> LoggedRun:
    """The partition's MLflow run (reused when the same data trained it before), with the
    exact table version and partitions it learned from and was evaluated on, and their
    files."""
    window = list(trained_on.partitions)
    trained_on_history = len(window) > 1
    return model_registry.log_run(
        partition=key,
        data_version=data_version(trained_on),
        params={
            **HYPERPARAMETERS,
            "partition": key,
            "train_partitions": f"{window[0]}..{window[-2]}" if trained_on_history else "none",
            "eval_partition": key,
            "training_set_version": trained_on.version,
            "dagster_run_id": context.run.run_id,
            **sample.params(),
        },
        metrics=outcome.metrics,
        tags={
            DAGSTER_RUN_TAG: context.run.run_id,
            TRAINED_ON_TAG: trained_on.tag(),
            CODE_VERSION_TAG: MODEL_CODE_VERSION,
            "trained": str(outcome.trained).lower(),
            **({"not_trained_because": outcome.reason} if outcome.reason else {}),
        },
        model_files=model_files,
        artifacts={
            TRAINED_ON_ARTIFACT: {
                "table": trained_on.table,
                "version": trained_on.version,
                "partitions": {
                    k: {"fingerprint": trained_on.partitions[k], "files": files[k]} for k in window
                },
            }
        },
        inputs=inputs,
    )


def training_inputs(
    lake: LakeResource,
    key: str,
    read: TrainedOn,
    train: pd.DataFrame,
    evaluation: pd.DataFrame,
) -> list[TrainingInput]:
    """The run's datasets for MLflow: the training-set table, its version, and the lake's
    digests of the partitions they hold."""
    source = str(lake.table_dir(TRAINING_SET_KEY))
    learned = {k: v for k, v in read.partitions.items() if k != key}
    window = f"{min(learned)}..{max(learned)}" if learned else "none"
    return [
        TrainingInput(
            train,
            f"ml/training_set {window}",
            combined_fingerprint(learned) if learned else "empty",
            "training",
            source,
            read.version,
            "label",
        ),
        TrainingInput(
            evaluation,
            f"ml/training_set {key}",
            read.partitions[key],
            "evaluation",
            source,
            read.version,
            "label",
        ),
    ]


def record_partition(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    model_registry: ModelRegistry,
    key: str,
    window: dict[str, list[Path]],
    sample: WindowSample,
    outcome: TrainingOutcome,
    model_files: Path | None,
) -> None:
    """One model partition, trained on (a sample of) the days before `key` and evaluated on
    `key`: log the MLflow run (with the model's saved files), write the model record and
    attach the partition's metadata."""
    # the exact training-set version read, and its partitions' files: what a reproduction
    # reads again (by time travel, or by the files should the log be cleaned up)
    read = lake.read_of(context, TRAINING_SET_KEY)
    versions = {k: read["partitions"][k] for k in window}
    trained_on = TrainedOn(lake.location(TRAINING_SET_KEY), read["version"], versions)
    files = {k: [str(f) for f in listed] for k, listed in window.items()}
    outcome = with_sample_metrics(outcome, sample)
    inputs = training_inputs(lake, key, trained_on, sample.train, sample.evaluation)
    logged = log_model_run(
        context, model_registry, key, trained_on, files, sample, outcome, model_files, inputs
    )
    record = ModelRecord(
        partition=key,
        trained=outcome.trained,
        reason=outcome.reason,
        metrics=outcome.metrics,
        trained_on=versions,
        mlflow_run_id=logged.run_id,
        model_version=logged.version,
    )
    with lake.writing(context, PURCHASE_MODEL_KEY, key) as staged:
        record.write(staged)
    partitions_def = context.assets_def.partitions_def
    version, _ = lake.committed(context, PURCHASE_MODEL_KEY, key)
    context.add_asset_metadata(
        {
            **model_metadata(outcome, trained_on, logged, model_registry),
            "training_partitions": partition_links(
                TRAINING_SET_KEY, [k for k in window if k != key]
            ),
            "evaluation_partition": dg.MetadataValue.url(asset_url(TRAINING_SET_KEY, key)),
            "lake_path": dg.MetadataValue.path(
                str(lake.partition_path(PURCHASE_MODEL_KEY, partitions_def, key))
            ),
            "lake_version": version,
        },
        partition_key=key,
    )


def with_sample_metrics(outcome: TrainingOutcome, sample: WindowSample) -> TrainingOutcome:
    """The outcome's metrics and the sample's figures (the window's examples before
    sampling), as the run, the record and the UI show them."""
    return dataclasses.replace(outcome, metrics={**outcome.metrics, **sample.metrics()})


def promotion_check(
    outcome: TrainingOutcome | None, champion_auc: float | None, policy: PromotionPolicy
) -> dg.AssetCheckResult:
    """Whether the run's newest model meets the bar. No candidate yet (too little labelled
    history) is a normal state, not an incident: it warns, and the champion step keeps the
    current champion. A trained candidate below the bar is an error that blocks promotion,
    fails the run and alerts."""
    candidate_auc = outcome.metrics.get("auc") if outcome else None
    passed, why = should_promote(
        candidate_auc, champion_auc, policy.min_auc, policy.max_auc_regression
    )
    untrained = f"{why}: {outcome.reason if outcome else 'nothing to train'}; the champion stays"
    return dg.AssetCheckResult(
        check_name=MEETS_BAR,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN
        if candidate_auc is None
        else dg.AssetCheckSeverity.ERROR,
        description=why if candidate_auc is not None else untrained,
        metadata={
            "candidate_auc": candidate_auc if candidate_auc is not None else float("nan"),
            "champion_auc": champion_auc if champion_auc is not None else float("nan"),
            "min_auc": policy.min_auc,
            "max_auc_regression": policy.max_auc_regression,
        },
    )


def purchase_model(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    promotion_policy: PromotionPolicy,
    model_registry: ModelRegistry,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """A gradient-boosted classifier of 'purchases in the next 7 days', trained on the
    training-set partitions of the 27 days before this one and evaluated out of time on
    this day's examples, on a bounded sample of them at volume (every example while they
    fit; the rule and its rates are on the run). Each partition is one MLflow run
    (parameters, metrics, the exact partitions and data versions it was trained on) whose
    model is registered as a version of `shopsmart-purchase-propensity`. No model while
    there are too few labelled examples."""
    # every partition the step's models read, from one version of the training-set table
    files = lake.input_files(context, TRAINING_SET_KEY)
    windows = {
        key: {day: files[day] for day in lake.upstream_keys(context, TRAINING_SET_KEY, [key])}
        for key in context.partition_keys
    }
    counts: dict[str, tuple[int, int]] = {}  # each partition's labels, counted once
    samples = ((key, window_sample(window, key, counts)) for key, window in windows.items())
    outcome = None
    # the days' samples drawn here, their models fitted and saved beside this process, their
    # runs logged here in order (the saved files copied into each run, then removed)
    with (
        TemporaryDirectory(prefix="shopsmart-models-") as saved,
        fitted_in_order(
            samples, len(windows), meanwhile=model_registry.prepare_logging, save_to=Path(saved)
        ) as fitted,
    ):
        for key, sample, outcome, model_files in fitted:
            record_partition(
                context, lake, model_registry, key, windows[key], sample, outcome, model_files
            )
            if model_files is not None:
                shutil.rmtree(model_files)
    newest = context.partition_keys[-1]
    champion = latest_champion(lake, context.assets_def.partitions_def, before=newest)
    yield lake.materialize_result(context, PURCHASE_MODEL_KEY, newest_partition=newest)
    yield promotion_check(outcome, champion.auc if champion else None, promotion_policy)


def purchase_model_asset(partitions: Partitions) -> dg.AssetsDefinition:
    return dg.asset(
        key=PURCHASE_MODEL_KEY,
        metadata={
            **lake_table("models", "purchase_model"),
            **LATEST_ONLY,
            **docs_link(*MODEL_SECTION),
        },
        deps=[dg.AssetDep(TRAINING_SET_KEY, partition_mapping=training_window())],
        partitions_def=partitions.daily,
        backfill_policy=SINGLE_RUN,
        group_name="ml",
        kinds={"scikitlearn", "mlflow"},
        check_specs=[MEETS_BAR_CHECK],
        **STANDARD_STEP,
    )(purchase_model)
