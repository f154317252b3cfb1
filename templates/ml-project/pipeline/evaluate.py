"""Compare the new run's model with the registered model's `champion` on the same holdout rows.

Both models are scored here, on the current dataset, so the comparison is fair even when the
champion was trained on older data. Writes the decision to --out:
{"run_id", "metric", "challenger", "champion", "champion_version", "wins"}. Without a champion
(the first model, or the alias unset) the new model wins.

    python pipeline/evaluate.py --run out/run.json --out out/decision.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import settings as config
from data import load_split, score

CHAMPION = "champion"


def champion_version(client: MlflowClient, name: str) -> str | None:
    """The version the `champion` alias points to, or None (no such model or alias)."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION).version
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="train.py's output")
    parser.add_argument("--out", type=Path, required=True, help="where to write the decision (JSON)")
    args = parser.parse_args()
    settings = config.load()
    run_id = config.read_json(args.run, "--run")["run_id"]
    _, x_test, _, y_test = load_split(settings)
    challenger = score(settings, mlflow.sklearn.load_model(f"runs:/{run_id}/model"), x_test, y_test)
    client = MlflowClient()
    version = champion_version(client, settings.registered_model)
    champion = None
    if version is not None:
        champion = score(settings, mlflow.sklearn.load_model(f"models:/{settings.registered_model}@{CHAMPION}"), x_test, y_test)
    wins = champion is None or settings.better(challenger, champion)
    decision = {"run_id": run_id, "metric": settings.metric, "challenger": challenger, "champion": champion,
                "champion_version": version, "wins": wins}
    config.write_json(args.out, decision)
    config.github_output(decision=json.dumps(decision), wins=wins)
    against = "no champion" if champion is None else f"champion v{version}: {champion:.4f}"
    print(f"challenger {settings.metric} {challenger:.4f}, {against}: {'wins' if wins else 'does not win'}")


if __name__ == "__main__":
    config.run(main)
