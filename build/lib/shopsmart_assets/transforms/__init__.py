"""Plain transformation functions (Spark, pandas, scikit-learn) that the assets call."""
