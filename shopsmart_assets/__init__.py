"""ShopSmart's ML data pipelines as one Dagster code location."""
