"""The project's retraining settings (retrain.yaml), checked once for every script.

A bad setting stops the script with exit 2 and one line naming the key, the value and what is
allowed.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

METRICS = ("accuracy", "f1_macro", "log_loss")


class SettingsError(Exception):
    """An unusable setting or input: reported as one line, exit 2."""


@dataclass(frozen=True)
class Settings:
    registered_model: str
    experiment: str
    params: dict[str, Any]
    data_path: Path
    target: str
    metric: str
    greater_is_better: bool
    min_improvement: float
    serving_name: str
    stack: str
    mode: str
    weight: int

    def better(self, challenger: float, champion: float) -> bool:
        """True when the challenger beats the champion by more than min_improvement."""
        gain = challenger - champion if self.greater_is_better else champion - challenger
        return gain > self.min_improvement


def _get(document: dict[str, Any], path: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    value: Any = document
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if value is None:
        if default is not None:
            return default
        raise SettingsError(f"retrain.yaml: {path} is required")
    if not isinstance(value, kind) or isinstance(value, bool):  # YAML's true is not a number
        raise SettingsError(f"retrain.yaml: {path} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def load(path: Path | None = None) -> Settings:
    path = path or Path(os.environ.get("RETRAIN_SETTINGS", "retrain.yaml"))
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except OSError as error:
        raise SettingsError(f"retrain.yaml: cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise SettingsError(f"retrain.yaml: {path} is not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise SettingsError(f"retrain.yaml: {path} must hold a mapping")
    metric = _get(document, "evaluation.metric", str)
    if metric not in METRICS:
        raise SettingsError(f"retrain.yaml: evaluation.metric is {metric!r}; allowed: {', '.join(METRICS)}")
    direction = _get(document, "evaluation.direction", str)
    if direction not in ("maximize", "minimize"):
        raise SettingsError(f"retrain.yaml: evaluation.direction is {direction!r}; allowed: maximize, minimize")
    mode = _get(document, "promotion.mode", str, "fixed")
    if mode not in ("fixed", "progressive"):
        raise SettingsError(f"retrain.yaml: promotion.mode is {mode!r}; allowed: fixed, progressive")
    weight = _get(document, "promotion.weight", int, 10)
    if not 1 <= weight <= 99:
        raise SettingsError(f"retrain.yaml: promotion.weight is {weight}; allowed: 1 to 99 (percent)")
    min_improvement = _get(document, "evaluation.min_improvement", (int, float), 0.0)
    if min_improvement < 0:
        raise SettingsError(f"retrain.yaml: evaluation.min_improvement is {min_improvement}; it must be 0 or more")
    return Settings(
        registered_model=_get(document, "model.registered_model", str),
        experiment=_get(document, "model.experiment", str),
        params=_get(document, "model.params", dict, {}),
        data_path=Path(_get(document, "data.path", str)),
        target=_get(document, "data.target", str),
        metric=metric,
        greater_is_better=direction == "maximize",
        min_improvement=float(min_improvement),
        serving_name=_get(document, "promotion.serving_name", str),
        stack=_get(document, "promotion.stack", str),
        mode=mode,
        weight=weight,
    )


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SettingsError(f"{what}: cannot read {path}: {error}") from None


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def github_output(**values: Any) -> None:
    """Step outputs for the workflow (nothing outside GitHub Actions)."""
    target = os.environ.get("GITHUB_OUTPUT")
    if target:
        with open(target, "a") as out:
            for key, value in values.items():
                out.write(f"{key}={str(value).lower() if isinstance(value, bool) else value}\n")


def run(main) -> None:
    """Run a script's main(), turning SettingsError into one line on stderr and exit 2."""
    try:
        main()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
