"""Register the new model version with the `challenger` alias, only if it won the evaluation.

A losing run registers nothing and moves no alias. The `champion` alias is never moved here: a
person moves it once the canary has proven the version (README.md, "After the merge").
Writes {"promoted", "version"} to --out and, in GitHub Actions, the step outputs.

    python pipeline/promote.py --decision out/decision.json --out out/promotion.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

import settings as config

CHALLENGER = "challenger"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decision", type=Path, required=True, help="evaluate.py's output")
    parser.add_argument("--out", type=Path, required=True, help="where to write the result (JSON)")
    args = parser.parse_args()
    settings = config.load()
    decision = config.read_json(args.decision, "--decision")
    if not decision["wins"]:
        config.write_json(args.out, {"promoted": False, "version": None})
        config.github_output(promoted=False, version="")
        print("the challenger did not win: nothing registered, no alias moved")
        return
    registered = mlflow.register_model(f"runs:/{decision['run_id']}/model", settings.registered_model)
    client = MlflowClient()
    client.set_registered_model_alias(settings.registered_model, CHALLENGER, registered.version)
    for key in ("challenger", "champion", "champion_version"):
        if decision[key] is not None:
            client.set_model_version_tag(settings.registered_model, registered.version,
                                         f"evaluation.{key}", str(decision[key]))
    config.write_json(args.out, {"promoted": True, "version": int(registered.version)})
    config.github_output(promoted=True, version=registered.version)
    print(f"registered {settings.registered_model} v{registered.version} as @{CHALLENGER}")


if __name__ == "__main__":
    config.run(main)
