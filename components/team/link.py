"""The link to the platform stack: its outputs read through a StackReference and the team's Kubernetes provider."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import pulumi

from mlplane.config import PlatformConfig
from mlplane.config.team import TeamConfig
from mlplane.services import team_access


def stack_reference_name(platform_stack: str, project: str) -> str:
    """The fully qualified name of the platform stack for a StackReference.

    DIY backends (file, S3) with the project-scoped layout name stacks
    ``organization/<project>/<stack>``; a name that already has an organization (a Pulumi Cloud
    org or ``organization``) is used as given.
    """
    if "/" in platform_stack:
        return platform_stack
    return f"organization/{project}/{platform_stack}"


@dataclass(frozen=True)
class PlatformOutputs:
    """What a team stack reads from its platform stack's outputs.

    Every value passes through :meth:`read`'s consistency check: a platform stack deployed from
    a config with another name or domain than the config file the team stack reads fails the
    team's deployment instead of creating objects in the wrong places.
    """

    tracking_uri: pulumi.Output[str]
    s3_endpoint: pulumi.Output[str]
    s3_region: pulumi.Output[str]
    registry_pull_prefix: pulumi.Output[str]
    registry_cluster_push_url: pulumi.Output[str]
    #: Secret: the team's own scoped kubeconfig (mlplane.services.team_access), never the platform's admin
    #: kubeconfig; None when the platform renders manifests instead of using a cluster.
    kubeconfig: pulumi.Output[str] | None
    #: Secret: the platform's output ``teamCredentials`` (team -> what its grants generated,
    #: mlplane.services.team_grants: ``s3AccessKeyId``, ``s3SecretAccessKey``, ``mlflowPassword``).
    #: Read through :meth:`credential` only, so a team that uses none of them needs no entry.
    team_credentials: pulumi.Output[Any]
    team: TeamConfig
    #: The platform's output ``teamGrants``: what it granted each team from its file.
    team_grants: pulumi.Output[Any] | None = None

    def credential(self, key: str) -> pulumi.Output[str]:
        """The team's ``key`` from the platform's grants, a secret; a clear error when missing, or
        when the platform granted from another version of the team's file."""
        team = self.team

        def found(values: list[Any]) -> str:
            _granted_as_configured(values[1], team)
            return _credential(_team_entry(values[0], team, "teamCredentials"), key)

        grants = self.team_grants if self.team_grants is not None else pulumi.Output.from_input(None)
        return pulumi.Output.secret(pulumi.Output.all(self.team_credentials, grants).apply(found))

    @classmethod
    def read(cls, reference: pulumi.StackReference, platform: PlatformConfig, team: TeamConfig) -> PlatformOutputs:
        summary = reference.require_output("platform").apply(lambda value: _checked(value, platform))

        def field(key: str) -> pulumi.Output[str]:
            return summary.apply(lambda value: str(value[key]))

        kubeconfig = None
        if platform.cluster.mode != "render":
            kubeconfig = pulumi.Output.secret(
                pulumi.Output.all(summary, reference.get_output("teamKubeconfigs")).apply(
                    lambda v: _team_kubeconfig(v[1], team)
                )
            )
        return cls(
            tracking_uri=field("trackingUri"),
            s3_endpoint=field("s3Endpoint"),
            s3_region=field("s3Region"),
            registry_pull_prefix=field("registryPullPrefix"),
            registry_cluster_push_url=field("registryClusterPushUrl"),
            kubeconfig=kubeconfig,
            team_credentials=pulumi.Output.secret(
                pulumi.Output.all(summary, reference.get_output("teamCredentials")).apply(lambda v: v[1])
            ),
            team=team,
            team_grants=reference.get_output("teamGrants"),
        )


def _team_kubeconfig(kubeconfigs: Any, team: TeamConfig) -> str:
    """The team's kubeconfig from the platform's ``teamKubeconfigs`` output, or a clear error."""
    return str(_team_entry(kubeconfigs, team, "teamKubeconfigs"))


def _team_entry(entries: Any, team: TeamConfig, output: str) -> Any:
    """The team's entry of a platform output keyed by team, or a clear error."""
    found = (entries or {}).get(team.name) if isinstance(entries, Mapping) else None
    if found is None or found == "":
        local = team.platform_stack.rsplit("/", 1)[-1]
        raise ValueError(
            f"platform stack '{local}' has not admitted team '{team.name}' (no entry in its output "
            f"{output}): with stacks/{'Pulumi.' + team.stack + '.yaml'} in the project, run "
            f"`pulumi up --stack {local}` (`mlplane team create` does), then deploy the team again"
        )
    return found


def _granted_as_configured(grants: Any, team: TeamConfig) -> None:
    """A clear error when the platform granted ``team`` from another version of its file."""
    granted = grants.get(team.name) if isinstance(grants, Mapping) else None
    wanted = team.grant_summary()
    if granted != wanted:
        local = team.platform_stack.rsplit("/", 1)[-1]
        raise ValueError(
            f"platform stack '{local}' granted team '{team.name}' {granted} but its file asks for {wanted} "
            f"(services, bucket): the platform makes a team's grants, so run `pulumi up --stack {local}` first "
            f"(`mlplane team create {team.name}` does), then deploy the team again"
        )


def _credential(credentials: Mapping[str, str], key: str) -> str:
    if key not in credentials:
        raise ValueError(
            f"the platform stack generated no {key} for this team (its output teamCredentials): "
            "update the platform stack with this version of mlplane, then deploy the team again"
        )
    return str(credentials[key])


def _checked(summary: Mapping[str, Any], platform: PlatformConfig) -> Mapping[str, Any]:
    expected = {"name": platform.name, "domain": platform.routing.domain}
    wrong = {key: summary.get(key) for key, value in expected.items() if summary.get(key) != value}
    if wrong:
        raise ValueError(
            f"the platform stack's outputs do not match its config file: {wrong} deployed, "
            f"{ {k: expected[k] for k in wrong} } configured; update the platform stack first"
        )
    return summary


def provider_args(platform: PlatformConfig, team: TeamConfig, outputs: PlatformOutputs) -> dict[str, Any]:
    """Arguments of the team stack's own Kubernetes provider: the platform's cluster, never ambient."""
    cluster = platform.cluster
    if cluster.mode == "render":
        assert cluster.render is not None  # guaranteed by ClusterConfig validation
        return {"render_yaml_to_directory": f"{cluster.render.directory.rstrip('/')}-{team.stack}"}
    # The team's own identity (mlplane.services.team_access), not the admin context of the platform.
    context = team_access.context_name(platform.name, team.name)
    args: dict[str, Any] = {"kubeconfig": outputs.kubeconfig, "context": context, "enable_server_side_apply": True}
    if cluster.mode == "kind" and platform.lifecycle.throwaway:
        # A throwaway kind cluster deleted by hand must not block `mlplane team destroy`.
        args["delete_unreachable"] = True
    return args
