"""The source systems as the lake sees them: their tables (the raw contract), extraction into
the raw zone, and reconciliation of the raw zone with the source."""
