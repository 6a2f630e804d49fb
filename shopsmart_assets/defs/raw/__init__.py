"""The raw zone: source tables extracted as Parquet, exactly as the sources hold them."""
