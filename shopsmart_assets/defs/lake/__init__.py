"""The curated zone: validated purchases (and the quarantine), reconciled with the source."""
