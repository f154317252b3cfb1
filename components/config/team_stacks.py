"""Team stack files: reading and checking a team's config before anything is written or created.

A team is a stack ``team-<name>`` of the platform's own project, configured by
``stacks/Pulumi.team-<name>.yaml`` holding ``mlplane:team``. A team config is checked alone, against
its platform stack's config and against the other team stacks of the same platform. The command
line (mlplane.cli.teams), the tooling (plan, offline renders) and the team stack program
(mlplane.program) share these checks; this module imports only the config models and the stack
files (no typer, rich or Pulumi: docs/architecture.md). Bad input raises
:class:`mlplane.config.stack_files.InputError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlplane.config.errors import ConfigError
from mlplane.config.platform import PlatformConfig
from mlplane.config.keys import OBJECT_KEYS, TEAM_CONFIG_KEY, unknown_stack_keys
from mlplane.config.stack_files import InputError, load_platform, project_dir, read_stack_config, secret_problems, secure_keys
from mlplane.config.team import STACK_PREFIX, TeamConfig, check_collisions, check_platform, parse_team


def stack_name(team: str) -> str:
    return f"{STACK_PREFIX}{team}"


def team_stacks(project: Path) -> dict[str, Path]:
    """Every team stack config file of the project: stack name -> path."""
    return {
        path.name[len("Pulumi.") : -len(".yaml")]: path
        for path in sorted((project / "stacks").glob(f"Pulumi.{STACK_PREFIX}*.yaml"))
    }


def is_team_stack(stack_config: dict[str, Any]) -> bool:
    return TEAM_CONFIG_KEY in stack_config


def parse_team_stack(stack: str, stack_config: dict[str, Any]) -> TeamConfig:
    """The validated team of a stack config; its name must match the stack name."""
    try:
        team = parse_team(stack_config.get(TEAM_CONFIG_KEY), root=TEAM_CONFIG_KEY)
    except ConfigError as error:
        raise InputError(*error.problems) from None
    if team.stack != stack:
        raise InputError(
            f"{TEAM_CONFIG_KEY}.name: stack '{stack}' holds team '{team.name}'; a team's stack is "
            f"'{team.stack}' (rename the file or the team)"
        )
    return team


def platform_of(team: TeamConfig) -> tuple[Any, PlatformConfig]:
    """The platform stack's config (stacks/Pulumi.<stack>.yaml of this project), validated."""
    local = team.platform_stack.rsplit("/", 1)[-1]
    try:
        return load_platform(local, None)
    except InputError as error:
        raise InputError(
            *(f"{TEAM_CONFIG_KEY}.platform_stack: platform stack '{local}': {line}" for line in error.problems)
        ) from None


def other_teams(team: TeamConfig, project: Path) -> dict[str, TeamConfig]:
    """The other team stacks on the same platform stack (files that do not validate are skipped:
    `mlplane validate --stack <them>` reports them)."""
    found = {}
    for stack in team_stacks(project):
        if stack == team.stack:
            continue
        try:
            other = parse_team_stack(stack, read_stack_config(stack))
        except InputError:
            continue
        if other.platform_stack == team.platform_stack:
            found[stack] = other
    return found


@dataclass(frozen=True)
class CheckedTeam:
    """A team config that passed every check, with the platform it runs on."""

    team: TeamConfig
    platform_source: Any
    platform: PlatformConfig
    #: Secret config keys the team names that its stack does not hold yet.
    missing_secrets: list[str]


def known_keys(team: TeamConfig) -> set[str]:
    """The ``mlplane`` keys a team stack may hold: the team object, the offboarding switch and the
    secret keys its ``*_key`` fields name."""
    return {TEAM_CONFIG_KEY, *(f"mlplane:{key}" for _, key in secret_fields(team))}


def stack_key_problems(team: TeamConfig, keys: Any) -> list[str]:
    """Keys of the ``mlplane`` namespace a team stack holds that mlplane does not read."""
    return unknown_stack_keys(keys, known_keys(team), TEAM_CONFIG_KEY, OBJECT_KEYS, team.stack)


def check_team(
    team: TeamConfig, project: Path, secure_keys: frozenset[str] = frozenset(), stack_config: dict[str, Any] | None = None
) -> CheckedTeam:
    """Every check before anything is written or created: the stack's keys, the platform, the
    other teams. ``stack_config`` is the team stack's config file when it exists."""
    problems = stack_key_problems(team, stack_config or {})
    platform_source, platform = platform_of(team)
    problems += check_platform(team, platform, TEAM_CONFIG_KEY)
    problems += check_collisions(team, other_teams(team, project), TEAM_CONFIG_KEY, platform.name)
    if stack_config is not None:
        # A secret key set in plain text is an error; one not set yet is a note (see validate_stack).
        problems += [
            line
            for line in secret_problems(secret_fields(team), stack_config, team.stack)
            if "in plain text" in line
        ]
    if problems:
        raise InputError(*problems)
    missing = [key for _, key in secret_fields(team) if key not in secure_keys]
    return CheckedTeam(team, platform_source, platform, missing)


def secret_fields(team: TeamConfig) -> list[tuple[str, str]]:
    """Every secret config key the team names, as (field path, key)."""
    found = []
    if team.ci_runners.github_token_key:
        found.append((f"{TEAM_CONFIG_KEY}.ci_runners.github_token_key", team.ci_runners.github_token_key))
    if team.ci_runners.github_app is not None:
        found.append((f"{TEAM_CONFIG_KEY}.ci_runners.github_app.private_key_key", team.ci_runners.github_app.private_key_key))
    return found


def secret_keys_of(team: TeamConfig) -> list[str]:
    return [key for _, key in secret_fields(team)]


def checked_stack(stack: str) -> tuple[CheckedTeam, dict[str, Any]]:
    """The checked team of a team stack config file, and the file's config."""
    values = read_stack_config(stack)
    checked = check_team(parse_team_stack(stack, values), project_dir(), secure_keys(values), values)
    return checked, values
