"""MLflow as a Dagster resource: tracking of every training run and the model registry
(`shopsmart-purchase-propensity`, aliases `champion` and `previous-champion`).

By default a SQLite store and an artifact directory under `$SHOPSMART_DATA_DIR/mlflow`; set
SHOPSMART_MLFLOW_TRACKING_URI to an MLflow server's URL and the same code logs there.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import dagster as dg
import pandas as pd
from pydantic import PrivateAttr

from shopsmart_assets.resources.process import mlflow_telemetry_off, use_mlflow
from shopsmart_assets.transforms.model_files import signature_sample

if TYPE_CHECKING:
    from mlflow import MlflowClient

CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous-champion"
PARTITION_TAG = "shopsmart.partition"
DATA_VERSION_TAG = "shopsmart.data_version"
DAGSTER_RUN_TAG = "dagster.run_id"
# The exact lake partition versions a model learned from and was evaluated on (JSON: the
# table and {partition: version}), on the run and on its registered version.
TRAINED_ON_TAG = "shopsmart.trained_on"
# The run's artifact with the files of every partition it learned from (a version's files
# outlive the Delta log entries that list them, kept by vacuum for every pinned version).
TRAINED_ON_ARTIFACT = "trained_on.json"
CODE_VERSION_TAG = "shopsmart.model_code_version"
# Where a run keeps its model's files (`runs:/<run>/model`), registered from there.
MODEL_ARTIFACT = "model"


@dataclass(frozen=True)
class TrainingInput:
    """A frame a model run learned from or was evaluated on: the Delta table and version it
    was read from, and the lake's digest of the partitions it holds (MLflow's own digest
    hashes only a sample of the rows)."""

    frame: pd.DataFrame
    name: str
    digest: str
    context: str  # "training" or "evaluation"
    source: str  # the lake table's directory
    version: int | None  # the table's version
    targets: str | None = None

    @property
    def source_table(self) -> str:
        """The lake table (`<zone>/<table>`) of the source directory."""
        return "/".join(Path(self.source).parts[-2:])


@dataclass(frozen=True)
class TrainedOn:
    """What a registered model version's run recorded it learned from: one version of a lake
    table, and each partition's fingerprint (its files) in it."""

    table: str  # <zone>/<table>
    version: int | None  # the Delta table version (None: recorded before the lake was Delta)
    partitions: dict[str, str]  # partition → fingerprint of its files in that version

    def tag(self) -> str:
        recorded = {"table": self.table, "version": self.version, "partitions": self.partitions}
        return json.dumps(recorded, sort_keys=True)

    @classmethod
    def from_tag(cls, value: str) -> TrainedOn:
        recorded = json.loads(value)
        return cls(recorded["table"], recorded.get("version"), dict(recorded["partitions"]))


@dataclass(frozen=True)
class LoggedRun:
    """An MLflow run of a model partition, and the registered version of its model."""

    run_id: str
    version: int | None
    reused: bool = False


@dataclass(frozen=True)
class AliasMove:
    """What promoting a version did to the `champion` alias: whether it now points elsewhere,
    and the version it pointed at before (None on the first promotion)."""

    moved: bool
    previous: int | None


class ModelRegistry(dg.ConfigurableResource):
    """MLflow tracking + model registry for the purchase-propensity model."""

    tracking_uri: str
    # Where a local store keeps artifacts (a file:// URI); None lets an MLflow server decide.
    artifact_location: str | None = None
    experiment: str = "shopsmart-purchase-propensity"
    model_name: str = "shopsmart-purchase-propensity"
    # The MLflow UI that links in the Dagster UI point at.
    ui_url: str = "http://127.0.0.1:5000"
    _client: MlflowClient | None = PrivateAttr(default=None)
    _experiment_id: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """A step that uses the registry has MLflow's telemetry off from its start, and so
        do the worker processes it starts (a backfill's fitting and scoring workers)."""
        mlflow_telemetry_off()

    def get_client(self) -> MlflowClient:
        if self._client is None:
            if self.tracking_uri.startswith("sqlite:///"):
                Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
                    parents=True, exist_ok=True
                )
            mlflow = use_mlflow(self.tracking_uri)
            self._client = mlflow.MlflowClient(self.tracking_uri, self.tracking_uri)
        return self._client

    def _activate(self) -> None:
        """Point MLflow's fluent API (process-wide) at this store before using it."""
        self.get_client()
        use_mlflow(self.tracking_uri)

    def experiment_id(self) -> str:
        if self._experiment_id is None:
            client = self.get_client()
            found = client.get_experiment_by_name(self.experiment)
            self._experiment_id = (
                found.experiment_id
                if found
                else client.create_experiment(
                    self.experiment, artifact_location=self.artifact_location
                )
            )
        return self._experiment_id

    def prepare_logging(self) -> None:
        """Connect to the store and load what logging a run uses (MLflow's client, its
        datasets and signatures): seconds of imports that a step does while its first models
        are fitted rather than after."""
        import mlflow.data  # noqa: F401
        import mlflow.models  # noqa: F401

        self.experiment_id()

    # Runs and versions ---------------------------------------------------------------------

    def find_run(self, partition: str, data_version: str) -> LoggedRun | None:
        """The finished run that already trained this partition on exactly this data."""
        client = self.get_client()
        runs = client.search_runs(
            [self.experiment_id()],
            filter_string=f"tags.`{PARTITION_TAG}` = '{partition}' AND "
            f"tags.`{DATA_VERSION_TAG}` = '{data_version}' AND attributes.status = 'FINISHED'",
            max_results=1,
        )
        if not runs:
            return None
        run_id = runs[0].info.run_id
        versions = client.search_model_versions(
            f"name = '{self.model_name}' AND run_id = '{run_id}'"
        )
        version = int(versions[0].version) if versions else None
        return LoggedRun(run_id=run_id, version=version, reused=True)

    def log_run(
        self,
        *,
        partition: str,
        data_version: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        model_files: Path | None = None,
        artifacts: Mapping[str, Any] | None = None,
        inputs: Sequence[TrainingInput] = (),
    ) -> LoggedRun:
        """One MLflow run of a model partition: its parameters, metrics and tags, and, when a
        model was trained, the model (`model_files`: saved by `save_model_files`, with its
        signature and input example) as the run's `model` and a new registered version. A
        partition already trained on the same data is not logged twice."""
        existing = self.find_run(partition, data_version)
        if existing is not None:
            return existing
        import mlflow

        self._activate()
        all_tags = {**tags, PARTITION_TAG: partition, DATA_VERSION_TAG: data_version}
        with mlflow.start_run(
            experiment_id=self.experiment_id(),
            run_name=f"purchase_model {partition}",
            tags=all_tags,
        ) as run:
            mlflow.log_params({k: str(v) for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
            for name, value in (artifacts or {}).items():
                mlflow.log_dict(value, name)
            for item in inputs:
                mlflow.log_input(dataset(item), context=item.context)
            if model_files is None:
                return LoggedRun(run_id=run.info.run_id, version=None)
            mlflow.log_artifacts(str(model_files), MODEL_ARTIFACT)
            # registered with the run's tags in one call (not one call per tag)
            registered = mlflow.register_model(
                f"runs:/{run.info.run_id}/{MODEL_ARTIFACT}", self.model_name, tags=all_tags
            )
        return LoggedRun(run_id=run.info.run_id, version=int(registered.version))

    # What the registered versions learned from ------------------------------------------------

    def has_version(self, version: int) -> bool:
        """Whether the registry holds this version of the model."""
        from mlflow.exceptions import MlflowException

        try:
            self.get_client().get_model_version(self.model_name, str(version))
        except MlflowException:
            return False
        return True

    def version_span(self) -> str:
        """The registered versions, as `1..N` (or `none`), for messages."""
        numbers = sorted(
            int(v.version)
            for v in self.get_client().search_model_versions(f"name = '{self.model_name}'")
        )
        return f"{numbers[0]}..{numbers[-1]}" if numbers else "none"

    def trained_on(self, version: int) -> TrainedOn | None:
        """The lake partition versions a registered version learned from and was evaluated
        on, as its run recorded them (None for a version registered before they were)."""
        model_version = self.get_client().get_model_version(self.model_name, str(version))
        tag = model_version.tags.get(TRAINED_ON_TAG)
        return TrainedOn.from_tag(tag) if tag else None

    def trained_on_files(self, run_id: str) -> dict[str, list[str]]:
        """Each partition's files as the run recorded them ({} for a run without them)."""
        import mlflow.artifacts

        self._activate()
        try:
            recorded = mlflow.artifacts.load_dict(f"runs:/{run_id}/{TRAINED_ON_ARTIFACT}")
        except Exception:  # a run logged before the files were recorded
            return {}
        return {
            partition: list(entry.get("files", []))
            for partition, entry in recorded.get("partitions", {}).items()
            if isinstance(entry, dict)
        }

    def pinned_versions(self) -> dict[str, dict[int, list[int]]]:
        """Table → its versions that registered model versions learned from → those model
        versions: what vacuum must keep."""
        pinned: dict[str, dict[int, list[int]]] = {}
        versions = self.get_client().search_model_versions(f"name = '{self.model_name}'")
        for model_version in versions:
            tag = model_version.tags.get(TRAINED_ON_TAG)
            if not tag:
                continue
            trained_on = TrainedOn.from_tag(tag)
            if trained_on.version is not None:
                by_version = pinned.setdefault(trained_on.table, {})
                by_version.setdefault(trained_on.version, []).append(int(model_version.version))
        return {
            table: {v: sorted(models) for v, models in sorted(by_version.items())}
            for table, by_version in pinned.items()
        }

    # Aliases -------------------------------------------------------------------------------

    def alias_version(self, alias: str = CHAMPION) -> int | None:
        from mlflow.exceptions import MlflowException

        try:
            return int(self.get_client().get_model_version_by_alias(self.model_name, alias).version)
        except MlflowException:
            return None

    def promote(self, version: int) -> AliasMove:
        """Point `champion` at `version`; the champion it replaces keeps `previous-champion`."""
        client = self.get_client()
        current = self.alias_version(CHAMPION)
        if current == version:
            return AliasMove(moved=False, previous=current)
        if current is not None:
            client.set_registered_model_alias(self.model_name, PREVIOUS_CHAMPION, str(current))
        client.set_registered_model_alias(self.model_name, CHAMPION, str(version))
        return AliasMove(moved=True, previous=current)

    def rollback(self) -> tuple[int, int]:
        """Swap `champion` and `previous-champion` (run it again to undo). Returns the
        (new champion, new previous champion) versions."""
        champion, previous = self.alias_version(CHAMPION), self.alias_version(PREVIOUS_CHAMPION)
        if champion is None or previous is None:
            raise RuntimeError(
                f"{self.model_name} needs both a {CHAMPION} and a {PREVIOUS_CHAMPION} alias "
                "to roll back"
            )
        client = self.get_client()
        client.set_registered_model_alias(self.model_name, CHAMPION, str(previous))
        client.set_registered_model_alias(self.model_name, PREVIOUS_CHAMPION, str(champion))
        return previous, champion

    # Models and links ----------------------------------------------------------------------

    def model_uri(self, version: int | None = None, alias: str = CHAMPION) -> str:
        if version is not None:
            return f"models:/{self.model_name}/{version}"
        return f"models:/{self.model_name}@{alias}"

    def load_model(self, version: int) -> Any:
        """A registered version as MLflow's pyfunc (what the scoring server runs)."""
        import mlflow.pyfunc

        self._activate()
        return mlflow.pyfunc.load_model(self.model_uri(version))

    def download_model(self, version: int, directory: Path) -> Path:
        """A local copy of a registered version in `directory` (a model directory that
        `mlflow.pyfunc.load_model` loads without the registry, in any process)."""
        self._activate()
        import mlflow.artifacts

        directory.mkdir(parents=True, exist_ok=True)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=self.model_uri(version), dst_path=str(directory)
        )
        return Path(local)

    def run_url(self, run_id: str) -> str:
        return f"{self.ui_url}/#/experiments/{self.experiment_id()}/runs/{run_id}"

    def version_url(self, version: int) -> str:
        return f"{self.ui_url}/#/models/{quote(self.model_name)}/versions/{version}"


def dataset(item: TrainingInput) -> Any:
    """The frame as an MLflow dataset with the lake's digest and source, and its schema."""
    import mlflow.data
    from mlflow.data.delta_dataset_source import DeltaDatasetSource
    from mlflow.models import infer_signature

    with warnings.catch_warnings():
        # a local path reads as more than one kind of source; MLflow picks the local one
        warnings.filterwarnings("ignore", message="The specified dataset source")
        found = mlflow.data.from_pandas(
            item.frame,
            source=DeltaDatasetSource(path=item.source, delta_table_version=item.version),
            name=item.name,
            digest=item.digest,
            targets=item.targets,
        )
    # MLflow infers a dataset's schema lazily (a cached property) by checking every value of
    # every column in Python: more than a second for a month of examples, every model. The
    # sample of `signature_sample` gives the same schema (types and optional columns).
    found.__dict__["schema"] = infer_signature(signature_sample(item.frame)).inputs
    return found
