"""What a model learns from and is evaluated on: a bounded, deterministic sample of its
window's training-set partitions, read in batches.

A model of day D learns from the examples of the 27 days before D and is evaluated on D's. At
ShopSmart's volume (about 6.5M customers a day at 1M orders a day) that is 175M examples: the
model learns from at most MAX_TRAIN_ROWS of them and is evaluated on at most MAX_EVAL_ROWS,
whatever the customers, and memory holds a READ_BATCH_ROWS batch beside the sample.

The rule (recorded on each MLflow run, so that `shopsmart-model reproduce` rebuilds the same
sample from the same partitions):
- a row's draw is a hash of (customer id, label day): the same example is drawn the same way
  by every run, on any machine, in any order;
- training: every positive while the positives fit in half of MAX_TRAIN_ROWS (else a hashed
  share of them), and a hashed share of the negatives filling the rest; each kept row weighs
  1 / its class's rate, so the model learns the window's real class balance;
- evaluation: a hashed share of the day's examples, the same rate for both classes (AUC and
  log loss estimated on an unbiased sample);
- a window that fits keeps every row, unweighted: at demo volume the model is exactly the
  model of every example.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from shopsmart_assets.lake.frames import batches
from shopsmart_assets.lake.metadata import PartitionData
from shopsmart_assets.transforms.training import TRAINING_COLUMNS

MAX_TRAIN_ROWS = 400_000
MAX_EVAL_ROWS = 200_000
_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


def draws(customer_ids: np.ndarray, label_day: str) -> np.ndarray:
    """Each example's draw in [0, 1): splitmix64 of (customer id, label day's ordinal)."""
    day = np.uint64(date.fromisoformat(label_day).toordinal())
    with np.errstate(over="ignore"):
        x = customer_ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + day
        x = (x ^ (x >> np.uint64(30))) * _MIX[0]
        x = (x ^ (x >> np.uint64(27))) * _MIX[1]
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclass(frozen=True)
class SampleRule:
    """Keep an example when its draw is below its class's rate."""

    positive_rate: float = 1.0
    negative_rate: float = 1.0

    @classmethod
    def bounded(cls, positives: int, negatives: int, max_rows: int) -> SampleRule:
        """Every positive while they fit in half the rows, negatives filling the rest."""
        positive_rate = min(1.0, (max_rows // 2) / positives) if positives else 1.0
        kept_positives = min(positives, max_rows // 2)
        negative_rate = min(1.0, (max_rows - kept_positives) / negatives) if negatives else 1.0
        return cls(positive_rate, negative_rate)

    @classmethod
    def uniform(cls, rows: int, max_rows: int) -> SampleRule:
        rate = min(1.0, max_rows / rows) if rows else 1.0
        return cls(rate, rate)

    @property
    def keeps_all(self) -> bool:
        return self.positive_rate >= 1.0 and self.negative_rate >= 1.0

    def keep(self, frame: pd.DataFrame, label_day: str) -> pd.DataFrame:
        if self.keeps_all:
            return frame
        rate = np.where(frame["label"].to_numpy() == 1, self.positive_rate, self.negative_rate)
        return frame[draws(frame["customer_id"].to_numpy(), label_day) < rate]

    def weights(self, labels: pd.Series) -> np.ndarray | None:
        """1 / the class's rate per kept row; None when every row was kept."""
        if self.keeps_all:
            return None
        return np.where(labels.to_numpy() == 1, 1 / self.positive_rate, 1 / self.negative_rate)

    def describe(self) -> str:
        if self.keeps_all:
            return "every example"
        return (
            f"positives at {self.positive_rate:.6g}, negatives at {self.negative_rate:.6g}, "
            "drawn by a hash of (customer_id, label day), weighted 1/rate"
        )


@dataclass(frozen=True)
class WindowSample:
    """A model's training rows (with their weights) and evaluation rows, and how they were
    drawn from the window's partitions."""

    train: pd.DataFrame
    evaluation: pd.DataFrame
    train_rule: SampleRule
    eval_rule: SampleRule
    window_examples: int  # the training partitions' rows before sampling
    window_positives: int
    day_examples: int  # the evaluated day's rows before sampling

    @property
    def weights(self) -> np.ndarray | None:
        return self.train_rule.weights(self.train["label"])

    def params(self) -> dict[str, Any]:
        """The rule and its figures, as the MLflow run records them."""
        return {
            "sample_rule": self.train_rule.describe(),
            "sample_max_train_rows": MAX_TRAIN_ROWS,
            "sample_max_eval_rows": MAX_EVAL_ROWS,
            "sample_positive_rate": self.train_rule.positive_rate,
            "sample_negative_rate": self.train_rule.negative_rate,
            "eval_sample_rate": self.eval_rule.positive_rate,
        }

    def metrics(self) -> dict[str, int | float]:
        return {
            "window_examples": self.window_examples,
            "window_positive_rate": (
                self.window_positives / self.window_examples if self.window_examples else 0.0
            ),
            "day_examples": self.day_examples,
        }


def label_counts(data: PartitionData) -> tuple[int, int]:
    """(positives, rows) of a training-set partition, from its label column alone."""
    positives = rows = 0
    for frame in batches(data, ["label"]):
        positives += int(frame["label"].sum())
        rows += len(frame)
    return positives, rows


def drawn(data: PartitionData, label_day: str, rule: SampleRule) -> pd.DataFrame:
    """The rows of a partition the rule keeps, read in batches."""
    kept = [rule.keep(frame, label_day) for frame in batches(data, list(TRAINING_COLUMNS))]
    kept = [frame for frame in kept if len(frame)]
    if not kept:
        return pd.DataFrame(columns=list(TRAINING_COLUMNS))
    return pd.concat(kept, ignore_index=True)


def window_sample(
    partitions: Mapping[str, PartitionData],
    key: str,
    counts: MutableMapping[str, tuple[int, int]] | None = None,
) -> WindowSample:
    """The sample of the window `partitions` (training-set partition → its files, `key`
    included, in order) that the model of `key` learns from and is evaluated on. `counts`
    caches each partition's (positives, rows), by partition, across the models of one run
    (which reads one version of each)."""
    counts = {} if counts is None else counts
    for day, data in partitions.items():
        if day not in counts:
            counts[day] = label_counts(data)
    history = {day: data for day, data in partitions.items() if day != key}
    positives = sum(counts[day][0] for day in history)
    rows = sum(counts[day][1] for day in history)
    train_rule = SampleRule.bounded(positives, rows - positives, MAX_TRAIN_ROWS)
    eval_rule = SampleRule.uniform(counts[key][1], MAX_EVAL_ROWS)
    train = [drawn(data, day, train_rule) for day, data in history.items()]
    train = [frame for frame in train if len(frame)]
    return WindowSample(
        train=(
            pd.concat(train, ignore_index=True)
            if train
            else pd.DataFrame(columns=list(TRAINING_COLUMNS))
        ),
        evaluation=drawn(partitions[key], key, eval_rule),
        train_rule=train_rule,
        eval_rule=eval_rule,
        window_examples=rows,
        window_positives=positives,
        day_examples=counts[key][1],
    )
