"""The features zone: customer features as of each day, and Feast's online store."""
