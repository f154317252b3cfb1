"""The team stack program: reads the team and platform config and builds the Team."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from mlplane.config import PlatformConfig
from mlplane.config.team import TeamConfig
from mlplane.team.link import PlatformOutputs, provider_args, stack_reference_name
from mlplane.team.component import Team, TeamArgs


def team_program(
    team: TeamConfig, platform: PlatformConfig
) -> Team:
    """The stack program of a team stack: read the platform stack, build the team, export its facts.

    The StackReference is named ``<team stack>-platform``; the provider ``<team stack>-kubernetes``
    and the component ``<team stack>`` (``team-<name>``).
    """
    stack_config = pulumi.Config("mlplane")
    reference = pulumi.StackReference(
        f"{team.stack}-platform", stack_name=stack_reference_name(team.platform_stack, pulumi.get_project())
    )
    outputs = PlatformOutputs.read(reference, platform, team)
    bucket: pulumi.Input[str] | None = None
    if platform.target == "aws" and team.uses("object_storage"):
        # S3 bucket names are global: the platform's store adds a suffix and publishes the name.
        bucket = reference.get_output("teamBuckets").apply(lambda found: _bucket(found, team))
    provider = k8s.Provider(f"{team.stack}-kubernetes", **provider_args(platform, team, outputs))
    component = Team(
        team.stack,
        TeamArgs(
            config=team, platform=platform, outputs=outputs, provider=provider,
            secret=stack_config.require_secret, bucket=bucket,
        ),
        pulumi.ResourceOptions(providers=[provider]),
    )
    pulumi.export(
        "team",
        {
            "name": team.name,
            "platformStack": team.platform_stack,
            "namespaces": component.namespaces,
            "bucket": component.bucket,
            "mlflowWorkspace": component.mlflow_workspace,
            "runnerLabel": component.runner_label,
            "modelUrls": component.model_urls,
        },
    )
    if component.s3_access_key_id is not None and component.s3_secret_access_key is not None:
        pulumi.export("s3AccessKeyId", pulumi.Output.secret(component.s3_access_key_id))
        pulumi.export("s3SecretAccessKey", component.s3_secret_access_key)
    if component.model_api_key is not None:
        pulumi.export("modelApiKey", component.model_api_key)
    if component.mlflow_username is not None and component.mlflow_password is not None:
        pulumi.export("mlflowUsername", component.mlflow_username)
        pulumi.export("mlflowPassword", component.mlflow_password)
    return component


def _bucket(buckets: object, team: TeamConfig) -> str:
    """The team's bucket from the platform's output ``teamBuckets``, or a clear error."""
    found = buckets.get(team.name) if isinstance(buckets, dict) else None
    if not found:
        local = team.platform_stack.rsplit("/", 1)[-1]
        raise ValueError(
            f"platform stack '{local}' publishes no bucket for team '{team.name}' (its output teamBuckets): "
            f"run `pulumi up --stack {local}` with this version of mlplane, then deploy the team again"
        )
    return str(found)
