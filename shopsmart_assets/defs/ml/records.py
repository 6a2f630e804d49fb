"""The JSON records the models zone holds, read and written here only: each model
partition's record (`metrics.json`: what it was trained on, its metrics, MLflow run and
registered version) and each day's champion record (`champion.json`: the model in service that
day, and why)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MODEL_RECORD = "metrics.json"
CHAMPION_RECORD = "champion.json"


def _write(path: Path, record: Any) -> None:
    path.write_text(json.dumps(asdict(record), indent=2, sort_keys=True))


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
        _write(directory / MODEL_RECORD, self)

    @classmethod
    def read(cls, directory: Path) -> ModelRecord:
        return cls(**json.loads((directory / MODEL_RECORD).read_text()))

    @classmethod
    def read_if_any(cls, directory: Path) -> ModelRecord | None:
        return cls.read(directory) if (directory / MODEL_RECORD).is_file() else None


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
        (directory / CHAMPION_RECORD).write_text(json.dumps(flat, indent=2, sort_keys=True))

    @classmethod
    def read(cls, directory: Path) -> ChampionRecord:
        flat = json.loads((directory / CHAMPION_RECORD).read_text())
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

    @classmethod
    def read_if_any(cls, directory: Path) -> ChampionRecord | None:
        return cls.read(directory) if (directory / CHAMPION_RECORD).is_file() else None
