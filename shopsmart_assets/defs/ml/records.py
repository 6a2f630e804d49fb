"""The records the models zone holds, read and written here only, one row per partition
(Delta tables like the rest of the lake): each model partition's record (`purchase_model`:
what it was trained on, its metrics, MLflow run and registered version) and each day's
champion record (`champion_model`: the model in service that day, and why). Nested values
(metrics, the training partitions) are JSON text."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from shopsmart_assets.lake import part_file_name
from shopsmart_assets.lake.metadata import PartitionData, dataset

MODEL_RECORD_SCHEMA = pa.schema(
    [
        ("partition", pa.string()),
        ("trained", pa.bool_()),
        ("reason", pa.string()),
        ("metrics", pa.string()),  # JSON
        ("trained_on", pa.string()),  # JSON: partition → fingerprint of its files
        ("mlflow_run_id", pa.string()),
        ("model_version", pa.int64()),
    ]
)
CHAMPION_RECORD_SCHEMA = pa.schema(
    [
        ("model_partition", pa.string()),
        ("auc", pa.float64()),
        ("model_version", pa.int64()),
        ("mlflow_run_id", pa.string()),
        ("promoted", pa.bool_()),
        ("decision", pa.string()),
    ]
)
JSON_COLUMNS = ("metrics", "trained_on")


def _write(directory: Path, row: dict[str, Any], schema: pa.Schema) -> None:
    flat = {k: json.dumps(v, sort_keys=True) if k in JSON_COLUMNS else v for k, v in row.items()}
    pq.write_table(pa.Table.from_pylist([flat], schema=schema), directory / part_file_name())


def _read(data: PartitionData) -> dict[str, Any] | None:
    rows = dataset(data).to_table().to_pylist()
    if not rows:
        return None
    return {k: json.loads(v) if k in JSON_COLUMNS else v for k, v in rows[-1].items()}


@dataclass(frozen=True)
class ModelRecord:
    """A model partition: trained or not (and why not), its metrics, the training-set
    partitions and data versions it learned from, its MLflow run and registered version."""

    partition: str
    trained: bool
    reason: str | None
    metrics: dict[str, float]
    trained_on: dict[str, str]
    mlflow_run_id: str
    model_version: int | None

    @property
    def auc(self) -> float | None:
        return self.metrics.get("auc")

    def write(self, directory: Path) -> None:
        _write(directory, asdict(self), MODEL_RECORD_SCHEMA)

    @classmethod
    def read(cls, data: PartitionData) -> ModelRecord:
        row = _read(data)
        if row is None:
            raise ValueError(f"no model record in {data}")
        return cls(**row)


@dataclass(frozen=True)
class Champion:
    """The model in service: the partition that trained it, its AUC, version and run."""

    model_partition: str
    auc: float
    model_version: int | None
    mlflow_run_id: str | None = None

    @classmethod
    def of(cls, model: ModelRecord) -> Champion:
        return cls(model.partition, model.auc, model.model_version, model.mlflow_run_id)


@dataclass(frozen=True)
class ChampionRecord:
    """A day of ml/champion_model: the champion in force that day (none yet, for lack of a
    model that met the bar), whether that day's candidate was promoted, and why."""

    champion: Champion | None
    promoted: bool
    decision: str

    def write(self, directory: Path) -> None:
        flat = {
            **(
                asdict(self.champion)
                if self.champion
                else {"model_partition": None, "auc": None, "model_version": None}
            ),
            "promoted": self.promoted,
            "decision": self.decision,
        }
        _write(directory, flat, CHAMPION_RECORD_SCHEMA)

    @classmethod
    def read(cls, data: PartitionData) -> ChampionRecord:
        flat = _read(data)
        if flat is None:
            raise ValueError(f"no champion record in {data}")
        champion = (
            Champion(
                flat["model_partition"],
                flat["auc"],
                flat["model_version"],
                flat.get("mlflow_run_id"),
            )
            if flat.get("model_partition")
            else None
        )
        return cls(champion, flat["promoted"], flat["decision"])
