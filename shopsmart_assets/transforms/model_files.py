"""A fitted model as MLflow's scikit-learn flavor saves it: the files a registered version
holds (the model in skops' safe format, its signature, an input example, its pinned
requirements), written where the model was fitted.

Saving is most of what logging a model costs (skops' dump, then its load-back that audits
the types, the signature's prediction: about 0.2 CPU s a model, then MLflow's check that the
input example serves, which loads the model once more). A backfill's fitting workers save
their models beside the fits (transforms/training_workers.py); the step's one process then
only copies the files into the run and registers them (`ModelRegistry.log_run`), so that a
month's models are not saved one after the other by one process. The serving check is not
run per model: every champion is loaded and scored through MLflow's pyfunc by
ml/purchase_scores, and `shopsmart-model reproduce` predicts with any version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from shopsmart_assets.transforms.training import SKOPS_TRUSTED_TYPES, model_input

# The packages a saved model needs, pinned to the versions that saved it (MLflow would
# otherwise infer them in a subprocess, for every model).
MODEL_PACKAGES = ("scikit-learn", "skops", "pandas", "numpy")


def signature_sample(frame: pd.DataFrame, rows: int = 5) -> pd.DataFrame:
    """The rows MLflow infers a model's signature from: the first few, plus the first row
    missing each column that has missing values, so that those columns come out optional
    exactly as from the whole frame (MLflow's inference checks every value in Python, which
    is slow for a month of training examples)."""
    missing = frame.isna()
    first_missing = {missing[c].idxmax() for c in frame.columns if missing[c].any()}
    keep = list(frame.index[:rows]) + sorted(first_missing - set(frame.index[:rows]))
    return frame.loc[keep]


def requirements() -> list[str]:
    """The model's own requirements, pinned to this environment."""
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in MODEL_PACKAGES]


def save_model_files(model: Any, examples: pd.DataFrame, directory: Path) -> Path:
    """`model` saved as an MLflow model in `directory` (which must not exist yet), its
    signature and input example taken from `examples` (feature rows it learned from);
    predicting a handful of rows on one thread (more only spin against the fits beside)."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from threadpoolctl import threadpool_limits

    inputs = model_input(examples)
    sample = signature_sample(inputs)
    with threadpool_limits(1):
        mlflow.sklearn.save_model(
            model,
            str(directory),
            signature=infer_signature(sample, model.predict_proba(sample)),
            input_example=inputs.head(5),
            pyfunc_predict_fn="predict_proba",
            pip_requirements=requirements(),
            skops_trusted_types=list(SKOPS_TRUSTED_TYPES),
        )
    return directory
