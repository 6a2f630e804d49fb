"""ml/training_set: point-in-time correct labelled examples, one partition per label day."""

from collections.abc import Iterable
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shopsmart_assets.defs.features.assets import CUSTOMER_FEATURES_KEY
from shopsmart_assets.defs.lake.assets import PURCHASES_KEY
from shopsmart_assets.defs.links import docs_link
from shopsmart_assets.defs.worker_pools import SINGLE_RUN, STANDARD_STEP
from shopsmart_assets.lake import lake_table, part_file_name
from shopsmart_assets.lake.frames import batches
from shopsmart_assets.lake.metadata import PartitionData
from shopsmart_assets.partitions import Partitions
from shopsmart_assets.resources import LakeResource
from shopsmart_assets.transforms.features import FEATURE_COLUMNS
from shopsmart_assets.transforms.training import (
    LABEL_DAYS,
    TRAINING_COLUMNS,
    labelled,
    stood_buyers,
)

TRAINING_SET_KEY = dg.AssetKey(["ml", "training_set"])


def features_of_label_start() -> dg.TimeWindowPartitionMapping:
    """Training-set partition D reads the features as of D-7 (none before the first day)."""
    return dg.TimeWindowPartitionMapping(
        start_offset=-LABEL_DAYS, end_offset=-LABEL_DAYS, allow_nonexistent_upstream_partitions=True
    )


def label_window() -> dg.TimeWindowPartitionMapping:
    """… and its labels from the purchases of D-6 … D."""
    return dg.TimeWindowPartitionMapping(
        start_offset=-(LABEL_DAYS - 1), allow_nonexistent_upstream_partitions=True
    )


# The examples' columns as the lake holds them: every count, amount and recency a float (NaN
# for "never"), the rest as typed here.
EXAMPLE_TYPES = {
    "as_of_date": pa.date32(),
    "customer_id": pa.int64(),
    "has_valid_email": pa.bool_(),
    "segment": pa.string(),
    "country": pa.string(),
    "label": pa.int64(),
}
EXAMPLES_SCHEMA = pa.schema([(c, EXAMPLE_TYPES.get(c, pa.float64())) for c in TRAINING_COLUMNS])


def examples_table(examples: pd.DataFrame) -> pa.Table:
    frame = examples.loc[:, list(TRAINING_COLUMNS)]
    return pa.Table.from_pandas(frame, schema=EXAMPLES_SCHEMA, preserve_index=False)


def buyers_of(purchase_partitions: Iterable[PartitionData]) -> np.ndarray:
    """The customers with a purchase that stood in these purchase partitions, read in
    batches: memory holds the distinct buyers of the label window, not its lines."""
    found = [np.empty(0, dtype="int64")]
    for files in purchase_partitions:
        found += [stood_buyers(frame) for frame in batches(files, ["customer_id", "status"])]
    return np.unique(np.concatenate(found))


def write_examples_of_day(
    context: dg.AssetExecutionContext, lake: LakeResource, key: str, staged: Path
) -> tuple[int, int, str]:
    """A day's labelled examples written into `staged`, a batch of features at a time:
    (examples, positives, which partitions they came from)."""
    as_of = lake.upstream_keys(context, CUSTOMER_FEATURES_KEY, [key])
    # the label window is read (and recorded in the commit) whether or not there are features
    labels = lake.input_files(context, PURCHASES_KEY, [key])
    with pq.ParquetWriter(staged / part_file_name(), EXAMPLES_SCHEMA) as writer:
        if not as_of:  # the file holds the schema and no rows
            return 0, 0, "no features 7 days earlier: the first labelled day is later"
        features = lake.input_files(context, CUSTOMER_FEATURES_KEY, [key])[as_of[0]]
        buyers = buyers_of(labels.values())
        rows = positives = 0
        as_of_date = pd.Timestamp(as_of[0]).date()
        columns = [c for c in FEATURE_COLUMNS if c != "as_of_date"]
        for batch in batches(features, columns):
            examples = labelled(batch.assign(as_of_date=as_of_date), buyers)
            writer.write_table(examples_table(examples))
            rows, positives = rows + len(examples), positives + int(examples["label"].sum())
    window = f"{min(labels)}..{max(labels)}"
    return rows, positives, f"features as of {as_of[0]}, labels from {window}"


def training_set(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Labelled examples whose 7-day label window ends on this day: each customer's
    features as of 7 days earlier, and `label` = 1 if they made a purchase that stood in
    the 7 days after. Features never see the label window (no leakage). Empty for the
    first 7 days. Built a day and a batch of customers at a time."""
    total = 0
    for key in context.partition_keys:
        with lake.writing(context, TRAINING_SET_KEY, key) as staged:
            rows, positives, window = write_examples_of_day(context, lake, key, staged)
        total += lake.record_partition(
            context,
            TRAINING_SET_KEY,
            key,
            {"positive_rate": positives / rows if rows else 0.0, "window": window},
        )
    return lake.materialize_result(context, TRAINING_SET_KEY, total)


def training_set_asset(partitions: Partitions) -> dg.AssetsDefinition:
    return dg.asset(
        key=TRAINING_SET_KEY,
        metadata={
            **lake_table("features", "training_set"),
            **docs_link("lake.md", "Features and the training set"),
        },
        deps=[
            dg.AssetDep(CUSTOMER_FEATURES_KEY, partition_mapping=features_of_label_start()),
            dg.AssetDep(PURCHASES_KEY, partition_mapping=label_window()),
        ],
        partitions_def=partitions.daily,
        backfill_policy=SINGLE_RUN,
        group_name="ml",
        kinds={"pandas", "deltalake"},
        **STANDARD_STEP,
    )(training_set)
