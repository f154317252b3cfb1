"""The stack programs: read and validate the config once, then build the platform, or a team.

``stacks/__main__.py`` calls :func:`main`; ``mlplane render`` runs the same functions offline
(mlplane.tooling.offline). A stack holding ``mlplane:team`` is a team stack (:func:`run_team_stack`).
This module imports the composition (platform, team) and the stack files, never the command
line or the tooling (docs/architecture.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

import pulumi
import pulumi_random as random

from mlplane.config import NAMESPACE, NO_PLATFORM_HINT, ConfigError, PlatformConfig, parse_platform, unknown_stack_keys
from mlplane.config.keys import (
    OFFBOARDING_KEY,
    OFFBOARDING_SHORT_KEY,
    PLATFORM_CONFIG_KEY,
    PLATFORM_SHORT_KEY,
    TEAM_CONFIG_KEY,
    TEAM_SHORT_KEY,
)
from mlplane.backing import registry_auth
from mlplane.platform import Platform, PlatformArgs
from mlplane.config.stack_files import InputError, project_dir, read_stack_config
from mlplane.services.team_access import TeamGrant
from mlplane.services.team_grants import OFFBOARDING_MODES, Offboarding
from mlplane.config.team import TeamConfig, check_collisions, check_platform
from mlplane.config.team_stacks import other_teams, parse_team_stack, platform_of, stack_key_problems, team_stacks

#: Annotation on every Kubernetes object a stack creates: the stack instance that manages it.
OWNER_ANNOTATION = "mlplane.dev/owner"


def stack_config_keys() -> set[str]:
    """Every config key of the running stack (``namespace:key``).

    The engine passes the whole stack config to the program as JSON in ``PULUMI_CONFIG``;
    offline renders and mocks set it in the runtime's config map. Both are read.
    """
    from pulumi.runtime import config as runtime_config

    return set(runtime_config.get_config_env()) | set(runtime_config.CONFIG.get())


def load_platform_config() -> PlatformConfig:
    """The validated ``mlplane:platform`` object of the current stack; every other key of the
    ``mlplane`` namespace must be a secret key one of its ``*_key`` fields names."""
    root = PLATFORM_CONFIG_KEY
    keys = stack_config_keys()
    raw = pulumi.Config(NAMESPACE).get_object(PLATFORM_SHORT_KEY)
    if raw is None:
        # A misspelled object key is the likely cause: named first, with the closest known key.
        problems = unknown_stack_keys(keys, {root}, root, (root, TEAM_CONFIG_KEY))
        raise ConfigError([*problems, f"{root}: {NO_PLATFORM_HINT}"])
    config = parse_platform(raw, root=root)
    known = {root, OFFBOARDING_KEY, *(f"{NAMESPACE}:{key}" for _, key in config.secret_keys())}
    problems = unknown_stack_keys(keys, known, root, (TEAM_CONFIG_KEY,))
    if problems:
        raise ConfigError(problems)
    return config


def platform_program(config: PlatformConfig, teams: Sequence[TeamGrant] | None = None) -> Platform:
    """Build the platform and export what users and team stacks need.

    ``teams``: the team stacks it admits; by default every team stack config of the project that
    names this stack (:func:`admitted_teams`).
    """
    stack_config = pulumi.Config(NAMESPACE)
    scraped: list[str] = []
    if teams is None:
        try:
            project: Path | None = project_dir()
        except InputError:  # not in a project directory: no team stack files to admit
            project = None
        offboarding = offboarding_teams()
        try:
            configs = admitted_team_configs(config, pulumi.get_stack(), project, offboarding) if project else []
        except InputError as error:
            raise pulumi.RunError("invalid mlplane team config:\n  " + "\n  ".join(error.problems)) from None
        teams = [grant_of(team, config, offboarding.get(team.name)) for team in configs]
        scraped = scraped_team_namespaces(configs, config)
    platform = Platform(
        config.name,
        PlatformArgs(config=config, secret=stack_config.require_secret, teams=teams, team_metrics_namespaces=scraped),
    )
    pulumi.export("urls", platform.urls)
    if platform.kubeconfig is not None:
        pulumi.export("kubeconfig", pulumi.Output.secret(platform.kubeconfig))
    # Each admitted team stack's scoped kubeconfig (mlplane.services.team_access), never the admin one.
    pulumi.export("teamKubeconfigs", pulumi.Output.secret(platform.team_kubeconfigs))
    # What each admitted team's grants generated (its S3 keys, its MLflow password): the team
    # stack writes them into Secrets of its own namespaces (mlplane.services.team_grants).
    pulumi.export("teamCredentials", pulumi.Output.secret(platform.team_credentials))
    # What each admitted team was granted from its file (services, bucket): a team stack checks
    # its file against it, `mlplane team create` updates the platform when they differ.
    pulumi.export("teamGrants", {grant.name: grant.config.grant_summary() for grant in teams if grant.config is not None})
    if platform.team_buckets:
        # The physical names of the teams' buckets when the store names them (S3 on AWS: a suffix
        # makes them globally unique); the team stack's MLPLANE_BUCKET.
        pulumi.export("teamBuckets", platform.team_buckets)
    # The team stacks it admits (namespaces and identity exist): `mlplane team create` reads it.
    pulumi.export("admittedTeams", sorted(grant.name for grant in teams))
    pulumi.export("mlflowAdminUsername", platform.tracking.admin_username)
    pulumi.export("mlflowAdminPassword", platform.tracking.admin_password)
    pulumi.export("grafanaAdminPassword", platform.monitoring.grafana_admin_password)
    pulumi.export("s3AccessKeyId", platform.storage.admin_access_key_id)
    pulumi.export("s3SecretAccessKey", platform.storage.admin_secret_access_key)
    pulumi.export("registryPushUrl", platform.registry.push_url)
    if platform.registry.auth_secret is not None:
        # The bundled registry's platform identity (push and pull everything, never delete):
        # `docker login`, CI pushes from outside the cluster and `mlplane verify` use it.
        pulumi.export("registryUsername", registry_auth.PLATFORM_IDENTITY)
        pulumi.export(
            "registryPassword",
            pulumi.Output.secret(platform.registry.auth_secret.apply(lambda s: registry_auth.password(s, registry_auth.PLATFORM_IDENTITY))),
        )
    if platform.serving.api_key is not None:
        # Requests to the models carry it in the x-api-key header (serving.auth.mode 'api-key').
        pulumi.export("modelApiKey", platform.serving.api_key)
    aws_facts: dict[str, object] = {}
    if config.target == "aws" and config.aws is not None:
        # What `mlplane verify` needs on AWS (docs/verify.md#aws), where S3 and ECR are reached
        # with the operator's AWS identity, not keys: the target, the region, the artifact
        # bucket's physical name and the platform's ECR repositories (name -> repository URL).
        repositories = getattr(platform.registry, "repositories", {})
        aws_facts = {
            "target": "aws",
            "region": config.aws.region,
            "artifactsBucket": platform.storage.artifacts_bucket,
            "registryRepositories": {key: repo.repository_url for key, repo in repositories.items()},
        }
    pulumi.export(
        "platform",
        {
            "name": config.name,
            "domain": config.routing.domain,
            "gateway": {
                "name": platform.routing.gateway.name,
                "namespace": platform.routing.gateway.namespace,
                "httpPort": platform.routing.gateway.http_port,
            },
            "trackingUri": platform.tracking.internal_url,
            "s3Endpoint": platform.storage.endpoint,
            "s3Region": platform.storage.region,
            "registryPullPrefix": platform.registry.pull_prefix,
            "registryClusterPushUrl": platform.registry.cluster_push_url,
            **aws_facts,
        },
    )
    return platform


def admitted_teams(platform: PlatformConfig, platform_stack: str, project: Path) -> list[TeamGrant]:
    """The teams the platform stack ``platform_stack`` admits: every team stack config of the
    project naming it whose config is valid on ``platform`` (the others are reported by
    `mlplane validate --stack <them>`). Each gets its namespaces and a provisioning identity
    (mlplane.services.team_access); a team stack without one cannot deploy."""
    return [grant_of(team, platform) for team in admitted_team_configs(platform, platform_stack, project)]


def admitted_team_configs(
    platform: PlatformConfig, platform_stack: str, project: Path, offboarding: Mapping[str, str] | None = None
) -> list[TeamConfig]:
    """The configs of the teams :func:`admitted_teams` admits.

    A team file that names this platform stack (or names none readable) but is not valid on it, or
    whose names collide with another admitted team's, stops the platform's update (InputError
    naming each problem) instead of being left out or granted: left out, an admitted team's
    namespaces would be deleted by the update; granted, a colliding team would get the other's
    bucket. A team being offboarded (``offboarding``) only has to parse: its grants are revoked."""
    offboarding = offboarding or {}
    configs, problems = [], []
    for stack, path in team_stacks(project).items():
        try:
            raw = read_stack_config(stack)
        except InputError as error:
            problems += [f"{path.name}: {problem}" for problem in error.problems]
            continue
        named = raw.get(TEAM_CONFIG_KEY, {}).get("platform_stack") if isinstance(raw.get(TEAM_CONFIG_KEY), dict) else None
        if isinstance(named, str) and named.rsplit("/", 1)[-1] != platform_stack:
            continue  # another platform's team
        try:
            team = parse_team_stack(stack, raw)
        except InputError as error:
            problems += [f"{path.name}: {problem}" for problem in error.problems]
            continue
        found = [] if team.name in offboarding else check_platform(team, platform, TEAM_CONFIG_KEY)
        if found:
            problems += [f"{path.name}: {problem}" for problem in found]
            continue
        configs.append(team)
    admitted = {team.stack: team for team in configs}
    for team in configs:
        problems += [
            f"Pulumi.{team.stack}.yaml: {problem}"
            for problem in check_collisions(team, admitted, TEAM_CONFIG_KEY, platform.name)
        ]
    if problems:
        raise InputError(
            *problems,
            f"the update of platform stack '{platform_stack}' stops here, so that no admitted team's namespaces "
            "are deleted: fix the team file (`mlplane validate --stack <team stack>`), or offboard the team "
            "first (`mlplane team destroy <name>`)",
        )
    return configs


def grant_of(team: TeamConfig, platform: PlatformConfig, offboarding: str | None = None) -> TeamGrant:
    """What the platform grants ``team``; ``offboarding`` (a mode): revoke instead."""
    work, serving = team.namespaces(platform.name)
    return TeamGrant(
        name=team.name, work_namespace=work, serving_namespace=serving, config=team,
        offboarding=None if offboarding is None else Offboarding(delete_data=offboarding != "keep-data"),
    )


#: Set by `mlplane team destroy` for its revoke update only: without it, ``mlplane:offboardTeams``
#: in a stack's own config (a `pulumi config set`) is refused rather than revoking a team.
OFFBOARDING_ENV = "MLPLANE_OFFBOARDING_RUN"


def offboarding_teams() -> dict[str, str]:
    """``mlplane:offboardTeams`` of the running platform stack (team -> mode), checked."""
    raw = pulumi.Config(NAMESPACE).get_object(OFFBOARDING_SHORT_KEY)
    if raw is None:
        return {}
    if os.environ.get(OFFBOARDING_ENV) != "1":
        raise pulumi.RunError(
            f"invalid mlplane config:\n  {OFFBOARDING_KEY}: set outside `mlplane team destroy`; it revokes teams and "
            f"deletes their data, so only that command sets it (in a copy of the config): remove it with "
            f"`pulumi config rm {OFFBOARDING_KEY}`"
        )
    if not isinstance(raw, Mapping) or not all(
        isinstance(team, str) and mode in OFFBOARDING_MODES for team, mode in raw.items()
    ):
        raise pulumi.RunError(
            f"invalid mlplane config:\n  {OFFBOARDING_KEY}: must map team names to one of "
            f"{', '.join(OFFBOARDING_MODES)} (given: {raw!r}); `mlplane team destroy` sets it in a copy "
            "of the config, never in the stack file"
        )
    return dict(raw)


def scraped_team_namespaces(teams: Sequence[TeamConfig], platform: PlatformConfig) -> list[str]:
    """The namespaces of the teams that use 'monitoring' (they grant Prometheus pod discovery
    there): the platform Prometheus scrapes their labelled pods (job 'team-pods')."""
    return sorted(ns for team in teams if team.uses("monitoring") for ns in team.namespaces(platform.name))


def run_team_stack() -> None:
    """Validate the team stack's config and build it; any problem stops the run before a resource."""
    from mlplane.team import team_program

    stack_config = pulumi.Config(NAMESPACE)
    stack = pulumi.get_stack()
    try:
        team = parse_team_stack(stack, {TEAM_CONFIG_KEY: stack_config.get_object(TEAM_SHORT_KEY)})
        problems = stack_key_problems(team, stack_config_keys())
        _, platform = platform_of(team)
        problems += check_platform(team, platform, TEAM_CONFIG_KEY)
        problems += check_collisions(team, other_teams(team, project_dir()), TEAM_CONFIG_KEY, platform.name)
        if problems:
            raise InputError(*problems)
    except InputError as error:
        raise pulumi.RunError("invalid mlplane team config:\n  " + "\n  ".join(error.problems)) from None
    team_program(team, platform)


def claim_objects() -> None:
    """Give every Kubernetes object of this stack an owner value that only this stack holds.

    The kubernetes provider creates objects with server-side apply, which upserts: a second stack
    declaring an object that already exists (a copy of the stack in another state backend, or
    one forced past the team CLI's collision checks) silently becomes a co-owner of it, and that
    stack's destroy then deletes it. With a value no other stack sets on a field every object
    has, the second stack's apply is a field conflict and fails before it owns anything
    (tests/cluster/test_cluster_up.py). The value is ``<stack>-<id>``, the id generated once
    and kept in this stack's state, so two backends' stacks of the same name differ too.
    """
    owner: list[pulumi.Output[str]] = []

    def owner_value() -> pulumi.Output[str]:
        # Created with the first Kubernetes object, so that a run that stops on invalid config
        # before registering any object creates nothing.
        if not owner:
            owner_id = random.RandomString("owner-id", length=12, special=False, upper=False)
            owner.append(pulumi.Output.concat(pulumi.get_stack(), "-", owner_id.result))
        return owner[0]

    pulumi.runtime.register_stack_transformation(partial(claim, owner_value))


def claim(
    owner: Callable[[], pulumi.Input[str]], args: pulumi.ResourceTransformationArgs
) -> pulumi.ResourceTransformationResult | None:
    """Stack transformation: the :data:`OWNER_ANNOTATION` on a Kubernetes object (not on patches
    of objects another stack owns, nor on components such as charts, which have no metadata)."""
    if not args.type_.startswith("kubernetes:") or args.type_.endswith("Patch"):
        return None
    meta = args.props.get("metadata")
    notes = meta.get("annotations") if isinstance(meta, Mapping) else None
    if not isinstance(meta, Mapping) or not isinstance(notes, (Mapping, type(None))):
        return None
    metadata = {**meta, "annotations": {**(notes or {}), OWNER_ANNOTATION: owner()}}
    return pulumi.ResourceTransformationResult(props={**args.props, "metadata": metadata}, opts=args.opts)


def main() -> None:
    """Run the platform program, or the team program when the stack holds ``mlplane:team``."""
    claim_objects()
    if pulumi.Config(NAMESPACE).get_object(TEAM_SHORT_KEY) is not None:
        run_team_stack()
        return
    try:
        config = load_platform_config()
    except ConfigError as error:
        # RunError is reported by the engine without a Python traceback; nothing is registered.
        raise pulumi.RunError("invalid mlplane config:\n  " + "\n  ".join(error.problems)) from None
    platform_program(config)
