"""`shopsmart-model reproduce VERSION`: a registered model version rebuilt from exactly the
lake partition versions its run recorded, wherever they now live (the current partition, or
its kept copy in the lake's version store), with the same code, hyper-parameters and sample rule
(transforms/sampling.py), and compared with what the run recorded: the metrics, and the
predictions on its evaluation set.

Exit 0 when everything is identical, 1 when something differs (named), 2 when the version
does not exist or a recorded partition version is no longer in the lake (named)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shopsmart_assets.defs.ml.purchase_model import MODEL_CODE_VERSION, with_sample_metrics
from shopsmart_assets.defs.ml.training_set import TRAINING_SET_KEY
from shopsmart_assets.lake import LakeResource
from shopsmart_assets.lake.versions import describe_content
from shopsmart_assets.partitions import Partitions
from shopsmart_assets.resources import ModelRegistry
from shopsmart_assets.resources.model_registry import CODE_VERSION_TAG
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
    lake: LakeResource, partitions: Partitions, recorded: dict[str, str]
) -> tuple[dict, list[str]]:
    """Where each recorded training-set version lies now, and the ones the lake lost."""
    found, missing = {}, []
    for partition, version in sorted(recorded.items()):
        path = lake.recorded_version_path(TRAINING_SET_KEY, partitions.daily, partition, version)
        if path is None:
            missing.append(f"ml/training_set {partition} version {version}")
        else:
            found[partition] = path
    return found, missing


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
    paths, missing = locate(lake, partitions, trained_on.partitions)
    if missing:
        print(f"{name}: not in the lake any more: " + "; ".join(missing))
        return MISSING
    comparison = Comparison()
    for partition, path in paths.items():
        recorded, found = trained_on.partitions[partition], describe_content(path)[0]
        if found != recorded:  # its files were changed in place since
            comparison.add(f"training set {partition}", recorded, found)
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
    print(f"{name}: reproduced exactly from the recorded partition versions")
    return IDENTICAL
