"""Offline runs of the stack programs, for `mlplane render`, `plan`, `footprint`, `images` and `docs`.

The real stack program runs under the recording harness (mlplane.tooling.render) with deterministic
stand-ins for secret config values. A team stack renders its platform stack offline first: the
platform's outputs (generated secrets as stand-ins) answer the team's StackReference.

The stack programs (and with them the Pulumi SDK) are imported when a run starts, not with this
module: `mlplane --help` stays fast (tests/unit/cli/test_fast_paths.py).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from mlplane.tooling import render as render_mod
from mlplane.config import PlatformConfig
from mlplane.config.keys import PLATFORM_CONFIG_KEY, TEAM_CONFIG_KEY
from mlplane.config.stack_files import InputError, Source, project_dir
from mlplane.config.team_stacks import CheckedTeam, checked_stack, secret_keys_of


def offline_run(source: Source, platform: PlatformConfig, teams: Sequence[Any] | None = None) -> render_mod.Capture:
    """Run the real stack program offline with stand-ins for secret config values.

    ``teams``: the team grants it admits (default: the project's team stacks naming it). A team
    file naming the platform that is not valid on it is reported (InputError) before the run, as
    the program would stop on it under `pulumi up`."""
    from mlplane.program import admitted_team_configs, platform_program

    if teams is None and source.stack:
        try:
            project = project_dir()
        except InputError:
            project = None
        if project is not None:
            admitted_team_configs(platform, source.stack, project)

    secrets = {f"mlplane:{key}": render_mod.stand_in_secret(f"config:{key}") for _, key in platform.secret_keys()}
    config = {PLATFORM_CONFIG_KEY: json.dumps(source.raw or {}), **secrets}
    return render_mod.capture(
        lambda: platform_program(platform, teams),
        stack=source.stack,
        config=config,
        secret_keys=list(secrets),
    )


def stand_in_outputs(outputs: dict[str, Any]) -> render_mod.StackOutputs:
    """A platform's offline outputs as StackReference outputs: secret ones get stand-ins."""
    values = {}
    secret_names = []
    for key, value in outputs.items():
        if value == render_mod.SECRET_MASK:
            secret_names.append(key)
            value = render_mod.stand_in_secret(f"output:{key}")
        values[key] = value
    return render_mod.StackOutputs(outputs=values, secret_names=tuple(sorted(secret_names)))


def platform_stand_in(checked: CheckedTeam) -> render_mod.StackOutputs:
    """The platform stack's outputs from its own offline render (see :func:`stand_in_outputs`).

    The platform is rendered admitting the team (mlplane.services.team_access). A platform in cluster mode
    'render' has no kubeconfig; in the other modes the team's kubeconfig is a secret output and
    gets a stand-in like every generated secret.
    """
    from mlplane.program import grant_of

    grant = grant_of(checked.team, checked.platform)
    outputs = dict(offline_run(checked.platform_source, checked.platform, teams=[grant]).outputs)
    return admitting(stand_in_outputs(outputs), checked)


def admitting(outputs: render_mod.StackOutputs, checked: CheckedTeam) -> render_mod.StackOutputs:
    """The platform's outputs with the team admitted: its scoped kubeconfig (none in cluster mode
    'render') and the credentials its grants generated (secret outputs) stand in like every
    generated secret."""
    team = checked.team
    values = dict(outputs.outputs)
    secret_names = set(outputs.secret_names)
    current = values.get("teamCredentials")
    credentials = dict(current) if isinstance(current, dict) else {}
    # A store that binds workloads (S3 on AWS) generates no S3 key for a team.
    s3_keys = team.uses("object_storage") and checked.platform.target != "aws"
    keys = [*(("s3AccessKeyId", "s3SecretAccessKey") if s3_keys else ()),
            *(("mlflowPassword",) if team.uses("tracking") else ())]
    credentials.setdefault(
        team.name, {key: render_mod.stand_in_secret(f"output:teamCredentials.{team.name}.{key}") for key in keys}
    )
    values["teamCredentials"] = credentials
    secret_names.add("teamCredentials")
    current = values.get("teamGrants")
    values["teamGrants"] = {team.name: team.grant_summary(), **(current if isinstance(current, dict) else {})}
    if checked.platform.cluster.mode != "render":
        current = values.get("teamKubeconfigs")
        kubeconfigs = dict(current) if isinstance(current, dict) else {}
        kubeconfigs.setdefault(team.name, render_mod.stand_in_secret(f"output:teamKubeconfigs.{team.name}"))
        values["teamKubeconfigs"] = kubeconfigs
        secret_names.add("teamKubeconfigs")
    return render_mod.StackOutputs(outputs=values, secret_names=tuple(sorted(secret_names)))


def offline_team_run(
    checked: CheckedTeam,
    source_stack: str,
    platform_outputs: render_mod.StackOutputs | None = None,
    project: str = "mlplane",
) -> render_mod.Capture:
    """Run the team stack program offline against the platform's (rendered) outputs."""
    from mlplane.team import stack_reference_name, team_program

    team = checked.team
    outputs = admitting(platform_outputs, checked) if platform_outputs else platform_stand_in(checked)
    secrets = {f"mlplane:{key}": render_mod.stand_in_secret(f"config:{key}") for key in secret_keys_of(team)}
    config = {TEAM_CONFIG_KEY: json.dumps(team.model_dump(mode="json", by_alias=True)), **secrets}
    reference = stack_reference_name(team.platform_stack, project)
    return render_mod.capture(
        lambda: team_program(team, checked.platform),
        project=project,
        stack=source_stack,
        config=config,
        secret_keys=list(secrets),
        stack_references={reference: outputs},
    )


def render_team_stack(stack: str) -> render_mod.Capture:
    """`mlplane render --stack team-NAME`: the platform rendered first, then the team against it."""
    checked, _ = checked_stack(stack)
    return offline_team_run(checked, stack)
