"""ShopSmart's ML data pipelines as one Dagster code location."""

import warnings

# The platform relies on two features Dagster 1.13 still labels beta: BackfillPolicy.single_run()
# (a partition range runs as one Spark job) and partition mappings that may point before the
# first partition (the training set's first week). Deliberate; don't repeat it at every load.
for _parameter in ("backfill_policy", "allow_nonexistent_upstream_partitions"):
    warnings.filterwarnings("ignore", message=rf"Parameter `{_parameter}`", category=Warning)
