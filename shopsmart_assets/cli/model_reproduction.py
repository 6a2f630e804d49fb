"""`shopsmart-model reproduce VERSION`: a registered model version rebuilt from exactly the
version of the training-set table its run recorded (read by Delta time travel; should the
table's log no longer reach back that far, by the files the run recorded, which vacuum keeps
for every pinned version), with the same code, hyper-parameters and sample rule
(transforms/sampling.py), and compared with what the run recorded: the metrics, and the
predictions on its evaluation set.

Exit 0 when everything is identical, 1 when something differs (named), 2 when the version
does not exist or a recorded partition is no longer in the lake (named)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shopsmart_assets.defs.ml.purchase_model import MODEL_CODE_VERSION, with_sample_metrics
from shopsmart_assets.lake import LakeResource, partition_subpath
from shopsmart_assets.lake.delta import DeltaLakeTable, fingerprint
from shopsmart_assets.partitions import Partitions
from shopsmart_assets.resources import ModelRegistry
from shopsmart_assets.resources.model_registry import CODE_VERSION_TAG, TrainedOn
from shopsmart_assets.transforms.sampling import window_sample
from shopsmart_assets.transforms.training import HYPERPARAMETERS, model_input
from shopsmart_assets.transforms.training_workers import fit

IDENTICAL, DIFFERENT, MISSING = 0, 1, 2


@dataclass
class Comparison:
    """What the run recorded beside what the rebuild gives."""

    rows: list[tuple[str, str, str, bool]] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)

    def add(self, what: str, recorded: object, rebuilt: object, same: bool | None = None):
        """A row: what, as recorded and as rebuilt (the same, unless `same` says otherwise)."""
        same = recorded == rebuilt if same is None else same
        self.rows.append((what, str(recorded), str(rebuilt), same))
        if not same:
            self.differences.append(f"{what}: recorded {recorded}, rebuilt {rebuilt}")

    def print(self) -> None:
        width = max(len(what) for what, *_ in self.rows)
        print(f"  {'':{width}}  {'recorded':>24}  {'rebuilt':>24}")
        for what, recorded, rebuilt, same in self.rows:
            mark = "" if same else "   <- differs"
            print(f"  {what:{width}}  {recorded:>24}  {rebuilt:>24}{mark}")


def locate(
    lake: LakeResource, partitions: Partitions, trained_on: TrainedOn, files: dict[str, list[str]]
) -> tuple[dict[str, list[Path]], list[str], dict[str, str]]:
    """The files of each partition of the recorded table version (by time travel, else the
    run's own list), the partitions the lake lost, and each partition's fingerprint found."""
    table = DeltaLakeTable(lake.root_path / trained_on.table, name=trained_on.table)
    try:
        held = table.state(trained_on.version).files if trained_on.version is not None else {}
    except Exception:  # the log no longer reaches that version: the run's own list
        held = {}
    found, missing, fingerprints = {}, [], {}
    for partition in sorted(trained_on.partitions):
        subpath = partition_subpath(partitions.daily, partition)
        listed = held.get(subpath) or files.get(partition, [])
        paths = [table.path / f if not Path(f).is_absolute() else Path(f) for f in listed]
        if not paths or not all(p.is_file() for p in paths):
            missing.append(f"{trained_on.table} {partition} (version {trained_on.version})")
            continue
        found[partition] = paths
        fingerprints[partition] = fingerprint([str(p.relative_to(table.path)) for p in paths])
    return found, missing, fingerprints


def reproduce(
    version: int, registry: ModelRegistry, lake: LakeResource, partitions: Partitions
) -> int:
    """Rebuild registered version `version` and compare; prints both side by side."""
    name = f"{registry.model_name} version {version}"
    if not registry.has_version(version):
        print(f"{name} does not exist (the registry's versions: {registry.version_span()})")
        return MISSING
    trained_on = registry.trained_on(version)
    if trained_on is None:
        print(
            f"{name}: its run recorded no lake partition versions (registered before data "
            "versioning): it cannot be rebuilt exactly"
        )
        return MISSING
    client = registry.get_client()
    run = client.get_run(client.get_model_version(registry.model_name, str(version)).run_id)
    evaluated_on = run.data.params["eval_partition"]
    paths, missing, found = locate(
        lake, partitions, trained_on, registry.trained_on_files(run.info.run_id)
    )
    if missing:
        print(f"{name}: not in the lake any more: " + "; ".join(missing))
        return MISSING
    comparison = Comparison()
    for partition, recorded in trained_on.partitions.items():
        if found[partition] != recorded:  # not the files the run read
            comparison.add(f"training set {partition}", recorded, found[partition])
    for parameter, value in HYPERPARAMETERS.items():
        comparison.add(f"param {parameter}", run.data.params.get(parameter), str(value))
    comparison.add("model code", run.data.tags.get(CODE_VERSION_TAG), MODEL_CODE_VERSION)

    sample = window_sample(paths, evaluated_on)
    comparison.add(
        "sample rule", run.data.params.get("sample_rule"), sample.params()["sample_rule"]
    )
    outcome = with_sample_metrics(fit(sample), sample)
    evaluation = sample.evaluation
    for metric in sorted(set(run.data.metrics) | set(outcome.metrics)):
        recorded, rebuilt = run.data.metrics.get(metric), outcome.metrics.get(metric)
        comparison.add(
            metric,
            recorded,
            None if rebuilt is None else float(rebuilt),
        )
    if outcome.model is not None:
        inputs = model_input(evaluation)
        served = registry.load_model(version).predict(inputs)[:, 1]
        rebuilt = outcome.model.predict_proba(inputs)[:, 1]
        differing = int(np.sum(served != rebuilt))
        comparison.add(
            f"predictions on {evaluated_on} ({len(inputs):,} customers)",
            "registered model's",
            "identical" if differing == 0 else f"{differing:,} differ",
            same=differing == 0,
        )
    print(
        f"{name} (MLflow run {run.info.run_id}), trained on {len(paths) - 1} training-set "
        f"partitions before {evaluated_on}, evaluated on {evaluated_on}:"
    )
    comparison.print()
    if comparison.differences:
        print(f"{name}: NOT reproduced: " + "; ".join(comparison.differences))
        return DIFFERENT
    print(
        f"{name}: reproduced exactly from {trained_on.table} version {trained_on.version}, "
        "as its run recorded it"
    )
    return IDENTICAL
