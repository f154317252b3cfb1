"""Validation errors as messages naming the field, what was given and what is allowed; `parse_platform`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from mlplane.config.platform import PlatformConfig
from mlplane.config.keys import NO_PLATFORM_HINT


class ConfigError(Exception):
    """Invalid config: one line per problem, each naming the field path."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _path(loc: tuple[Any, ...], root: str) -> str:
    out = root
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith(("function-", "literal[")):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _given(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def format_errors(error: ValidationError, root: str, model: type[BaseModel]) -> list[str]:
    """Turn a pydantic ValidationError into one line per problem: path, message, given value."""
    lines = []
    for item in error.errors(include_url=False):
        path = _path(item["loc"], root)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            parent = item["loc"][:-1]
            found = _model_at(parent, model)
            allowed = (
                ", ".join(sorted(f.alias or n for n, f in found.model_fields.items())) if found else "see `mlplane schema`"
            )
            lines.append(f"{path}: unknown key; allowed keys here: {allowed}")
            continue
        if item["type"] == "missing":
            lines.append(f"{path}: required field is missing")
            continue
        lines.append(f"{path}: {message} (given: {_given(item.get('input'))})")
    return lines


def _model_at(loc: tuple[Any, ...], model: type[BaseModel]) -> type[BaseModel] | None:
    import typing

    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part) or next(
            (f for f in current.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return None
        annotation = field.annotation
        candidates = [annotation, *typing.get_args(annotation)]
        nested = [
            inner
            for candidate in candidates
            for inner in (candidate, *typing.get_args(candidate))
            if isinstance(inner, type) and issubclass(inner, BaseModel)
        ]
        current = nested[0] if nested else None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None



def parse_platform(raw: Any, root: str = "mlplane:platform") -> PlatformConfig:
    """Validate a raw platform object. Raises ConfigError naming each offending field.

    A missing object (``None``) is an error, never the defaults: ``{}`` asks for every default.
    """
    if raw is None:
        raise ConfigError([f"{root}: {NO_PLATFORM_HINT}"])
    if not isinstance(raw, dict):
        raise ConfigError([f"{root}: must be a mapping of platform settings (given: {_given(raw)})"])
    try:
        return PlatformConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(format_errors(error, root, PlatformConfig)) from None
