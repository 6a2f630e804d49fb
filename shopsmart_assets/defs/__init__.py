"""What Dagster loads: the assets of each layer (raw, lake, features, ml) with their checks,
the Spark step that computes two of them, and the automation (jobs, schedules, sensors,
freshness, alerts); with the asset-graph queries, owners, links and worker pools they share.
definitions.py builds all of it from the settings when the code location loads."""
