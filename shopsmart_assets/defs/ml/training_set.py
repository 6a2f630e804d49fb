"""ml/training_set: point-in-time correct labelled examples, one partition per label day."""

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shopsmart_assets.defs.features.assets import CUSTOMER_FEATURES_KEY
from shopsmart_assets.defs.lake.assets import PURCHASES_KEY
from shopsmart_assets.defs.links import docs_link
from shopsmart_assets.defs.raw.assets import SINGLE_RUN
from shopsmart_assets.defs.worker_pools import STANDARD_STEP
from shopsmart_assets.lake import lake_table, part_file_name
from shopsmart_assets.lake.frames import rows_of_partitions
from shopsmart_assets.partitions import Partitions
from shopsmart_assets.resources import LakeResource
from shopsmart_assets.transforms.features import FEATURE_COLUMNS
from shopsmart_assets.transforms.training import LABEL_DAYS, TRAINING_COLUMNS, label_examples

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


def examples_of_day(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    key: str,
    features: pd.DataFrame,
    purchases: pd.DataFrame,
) -> tuple[pd.DataFrame, str]:
    """A day's labelled examples from the features and purchases the step read, and which
    partitions they came from."""
    as_of = lake.upstream_keys(context, CUSTOMER_FEATURES_KEY, [key])
    label_keys = lake.upstream_keys(context, PURCHASES_KEY, [key])
    if not as_of:
        empty = pd.DataFrame(columns=list(TRAINING_COLUMNS))
        return empty, "no features 7 days earlier: the first labelled day is later"
    day_features = rows_of_partitions(features, as_of).assign(
        as_of_date=pd.Timestamp(as_of[0]).date()
    )
    examples = label_examples(
        day_features.loc[:, list(FEATURE_COLUMNS)], rows_of_partitions(purchases, label_keys)
    )
    return examples, f"features as of {as_of[0]}, labels from {label_keys[0]}..{label_keys[-1]}"


def training_set(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Labelled examples whose 7-day label window ends on this day: each customer's
    features as of 7 days earlier, and `label` = 1 if they made a purchase that stood in
    the 7 days after. Features never see the label window (no leakage). Empty for the
    first 7 days."""
    features = lake.read_pandas(context, CUSTOMER_FEATURES_KEY)
    purchases = lake.read_pandas(context, PURCHASES_KEY, columns=["customer_id", "status"])
    total = 0
    for key in context.partition_keys:
        examples, window = examples_of_day(context, lake, key, features, purchases)
        with lake.writing(context, TRAINING_SET_KEY, key) as staged:
            pq.write_table(examples_table(examples), staged / part_file_name())
        total += lake.record_partition(
            context,
            TRAINING_SET_KEY,
            key,
            {
                "positive_rate": float(examples["label"].mean()) if len(examples) else 0.0,
                "window": window,
            },
        )
    return dg.MaterializeResult(
        metadata=lake.summary(context, TRAINING_SET_KEY, total),
        data_version=lake.data_version(context, TRAINING_SET_KEY),
    )


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
        kinds={"pandas", "parquet"},
        **STANDARD_STEP,
    )(training_set)
