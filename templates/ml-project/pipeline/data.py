"""The dataset and its fixed split: training and evaluation always see the same holdout rows."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from settings import Settings, SettingsError

SEED = 42
HOLDOUT = 0.25


def load_split(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """(X_train, X_test, y_train, y_test) of the dataset, split with a fixed seed."""
    path = settings.data_path
    if not path.is_file():
        raise SettingsError(f"data.path: {path} does not exist; run `dvc pull` (or `dvc add {path}` the first time)")
    frame = pd.read_csv(path)
    if settings.target not in frame.columns:
        raise SettingsError(f"data.target: column {settings.target!r} is not in {path}; columns: {', '.join(frame.columns)}")
    features = frame.drop(columns=[settings.target])
    labels = frame[settings.target]
    return train_test_split(features, labels, test_size=HOLDOUT, random_state=SEED, stratify=labels)


def score(settings: Settings, model, features: pd.DataFrame, labels: pd.Series) -> float:
    """The configured metric of a fitted model (sklearn or MLflow pyfunc) on the given rows."""
    from sklearn.metrics import accuracy_score, f1_score, log_loss

    if settings.metric == "log_loss":
        if not hasattr(model, "predict_proba"):
            raise SettingsError("evaluation.metric: log_loss needs a model with predict_proba")
        return float(log_loss(labels, model.predict_proba(features), labels=model.classes_))
    predicted = model.predict(features)
    if settings.metric == "accuracy":
        return float(accuracy_score(labels, predicted))
    return float(f1_score(labels, predicted, average="macro"))
