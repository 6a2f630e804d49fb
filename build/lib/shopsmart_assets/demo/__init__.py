"""Demo source systems: a deterministic CRM and orders database with realistic dirty rows."""
