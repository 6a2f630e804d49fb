"""Every console script: shopsmart-demo, -backfill, -summary, -features, -model, -ui and
-lake-docs (pyproject.toml), with the local `dagster dev` and GraphQL client they share."""
