"""Train the model on the DVC-tracked dataset and log the run to MLflow (nothing is registered).

The run gets the parameters, the metric on the holdout rows, the model, and the training inputs
as `reference/data.csv`: the reference dataset the platform's drift check compares served
requests with (docs/models.md in mlplane). Writes {"run_id": ...} to --out.

    python pipeline/train.py --out out/run.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import mlflow
from sklearn.ensemble import RandomForestClassifier

import settings as config
from data import SEED, load_split, score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the run id (JSON)")
    args = parser.parse_args()
    settings = config.load()
    x_train, x_test, y_train, y_test = load_split(settings)
    try:
        model = RandomForestClassifier(random_state=SEED, **settings.params)
    except TypeError as error:
        raise config.SettingsError(f"model.params: {error}") from None
    mlflow.set_experiment(settings.experiment)
    with mlflow.start_run() as run:
        mlflow.log_params({"model": "RandomForestClassifier", **settings.params, "rows": len(x_train) + len(x_test)})
        model.fit(x_train, y_train)
        value = score(settings, model, x_test, y_test)
        mlflow.log_metric(settings.metric, value)
        with tempfile.TemporaryDirectory() as directory:
            reference = Path(directory) / "data.csv"
            x_train.to_csv(reference, index=False)
            mlflow.log_artifact(str(reference), artifact_path="reference")
        # MLflow 3 saves sklearn models with skops, which loads only types it trusts: the forest's
        # tree nodes are trusted here because this run built them (mlflow.sklearn.log_model docs).
        mlflow.sklearn.log_model(model, name="model", input_example=x_test.head(3),
                                 skops_trusted_types=["sklearn.tree._tree.Tree"])
    config.write_json(args.out, {"run_id": run.info.run_id, settings.metric: value})
    print(f"run {run.info.run_id}: {settings.metric} {value:.4f} on {len(x_test)} holdout rows")


if __name__ == "__main__":
    config.run(main)
