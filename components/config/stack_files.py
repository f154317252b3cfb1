"""Reading a project's stack files: the platform object of a stack or a file, a stack's config,
and the problems a stack's secret keys have. Bad input raises :class:`InputError`, reported by the
command line as one line per problem with exit 2.

Shared by the command line, the tooling (plan, images, offline renders) and the stack program (a
team stack reads its platform stack's file): it imports the config models and nothing above them
(no typer, no rich, no Pulumi; docs/architecture.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlplane.config.errors import ConfigError, parse_platform
from mlplane.config.platform import PlatformConfig
from mlplane.config.keys import NAMESPACE, NO_PLATFORM_HOW, OBJECT_KEYS, PLATFORM_CONFIG_KEY, TEAM_CONFIG_KEY, unknown_stack_keys


class InputError(Exception):
    """Unusable input: reported as one line per problem, exit 2."""

    def __init__(self, *problems: str):
        self.problems = list(problems)
        super().__init__("\n".join(problems))



def project_dir(start: Path | None = None, flag: str | None = None) -> Path:
    """The directory holding Pulumi.yaml, searched from the working directory upwards.

    ``flag`` is the option that needs a project (``--stack``): its commands also take ``--config``.
    Without it the message names no flag, as the command takes none.
    """
    here = (start or Path.cwd()).resolve()
    for candidate in [here, *here.parents]:
        if (candidate / "Pulumi.yaml").is_file():
            return candidate
    if flag is not None:
        raise InputError(
            f"{flag}: no Pulumi.yaml found in {here} or above; run inside an mlplane project, "
            "or give the platform config as a file with --config FILE"
        )
    raise InputError(
        f"no Pulumi.yaml found in {here} or above: run this command inside an mlplane project "
        "(the directory holding Pulumi.yaml, or one below it)"
    )


def read_yaml(path: Path, what: str) -> Any:
    try:
        text = path.read_text()
    except OSError as error:
        raise InputError(f"{what}: cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise InputError(f"{what}: {path} is not UTF-8 text") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise InputError(f"{what}: {path}{where} is not valid YAML: {getattr(error, 'problem', error)}") from None


@dataclass(frozen=True)
class Source:
    """Where a platform object came from."""

    raw: Any
    root: str
    stack: str
    #: Config keys the stack holds as secrets (None when reading a plain file).
    secure_keys: frozenset[str] | None
    #: Every key of the stack config (for StackReference stand-ins and team stacks).
    stack_config: dict[str, Any]


def stack_file(stack: str, base: Path | None = None) -> Path:
    directory = project_dir(base, "--stack") / "stacks"
    return directory / f"Pulumi.{stack}.yaml"


def read_stack_config(stack: str) -> dict[str, Any]:
    path = stack_file(stack)
    if not path.is_file():
        available = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in path.parent.glob("Pulumi.*.yaml"))
        raise InputError(f"--stack: no stack '{stack}' ({path} does not exist); available: {', '.join(available) or 'none'}")
    document = read_yaml(path, "--stack")
    if document is None:
        return {}
    if not isinstance(document, dict) or not isinstance(document.get("config", {}), dict):
        raise InputError(f"--stack: {path} must be a mapping with a 'config' mapping")
    values = dict(document.get("config") or {})
    for key in OBJECT_KEYS:
        # `pulumi new` and `pulumi config set` store an object as a JSON string; the engine
        # accepts both forms, so mlplane does too.
        if isinstance(values.get(key), str):
            try:
                values[key] = json.loads(values[key])
            except json.JSONDecodeError as error:
                raise InputError(f"{key}: {path} holds a string that is not a JSON object ({error.msg})") from None
    return values


def load_source(stack: str | None, config: Path | None) -> Source:
    if (stack is None) == (config is None):
        raise InputError("give exactly one of --stack NAME or --config FILE")
    if config is not None:
        raw = read_yaml(config, "--config")
        if raw is None:
            raise InputError(
                f"--config: {config} is empty: write `{{}}` in it to ask for every default "
                "(every key: docs/config-reference.md)"
            )
        if not isinstance(raw, dict):
            raise InputError(f"--config: {config} must hold a mapping of platform settings (given: {type(raw).__name__})")
        return Source(raw, "platform", "render", None, {})
    assert stack is not None
    values = read_stack_config(stack)
    return Source(values.get(PLATFORM_CONFIG_KEY), PLATFORM_CONFIG_KEY, stack, secure_keys(values), values)


def secure_keys(values: dict[str, Any]) -> frozenset[str]:
    """Keys of the ``mlplane`` namespace the stack holds encrypted (``secure:``), without the namespace."""
    return frozenset(
        key.split(":", 1)[1]
        for key, value in values.items()
        if key.startswith(f"{NAMESPACE}:") and isinstance(value, dict) and "secure" in value
    )


def secret_problems(named: list[tuple[str, str]], values: dict[str, Any], stack: str) -> list[str]:
    """One line per secret config key a ``*_key`` field names (``(field path, key)``) that the
    stack does not hold encrypted: not set at all, or set in plain text."""
    held = secure_keys(values)
    problems = []
    for path, key in named:
        if key in held:
            continue
        command = f"`pulumi config set --secret {NAMESPACE}:{key} <value> --stack {stack}`"
        if f"{NAMESPACE}:{key}" in values:
            problems.append(
                f"{path}: secret config key '{key}' is set in plain text in "
                f"stacks/Pulumi.{stack}.yaml, not as a secret: set it encrypted with {command} "
                "(it replaces the plain value; rotate the value if the file was ever committed)"
            )
        else:
            problems.append(f"{path}: secret config key '{key}' is not set; run {command}")
    return problems



def load_platform(stack: str | None, config: Path | None) -> tuple[Source, PlatformConfig]:
    source = load_source(stack, config)
    if TEAM_CONFIG_KEY in source.stack_config:
        raise InputError(
            f"--stack: '{source.stack}' is a team stack ({TEAM_CONFIG_KEY}); `mlplane validate`, `mlplane render` "
            "and `mlplane team ...` take team stacks, this command takes platform stacks"
        )
    values = source.stack_config
    if source.secure_keys is not None and source.raw is None:
        # No platform object: a misspelled key is the likely cause, so it is named first.
        problems = unknown_stack_keys(values, {PLATFORM_CONFIG_KEY}, PLATFORM_CONFIG_KEY, OBJECT_KEYS, source.stack)
        empty = PLATFORM_CONFIG_KEY in values
        raise InputError(
            *problems,
            f"{PLATFORM_CONFIG_KEY}: stacks/Pulumi.{source.stack}.yaml "
            + ("holds an empty platform object (null); " if empty else "has no platform object; ")
            + NO_PLATFORM_HOW,
        )
    try:
        platform = parse_platform(source.raw, root=source.root)
    except ConfigError as error:
        raise InputError(*error.problems) from None
    if source.secure_keys is not None:
        named = platform.secret_keys()
        known = {PLATFORM_CONFIG_KEY, *(f"{NAMESPACE}:{key}" for _, key in named)}
        problems = unknown_stack_keys(values, known, PLATFORM_CONFIG_KEY, OBJECT_KEYS, source.stack)
        problems += secret_problems([(f"{source.root}.{path}", key) for path, key in named], values, source.stack)
        if problems:
            raise InputError(*problems)
    return source, platform
