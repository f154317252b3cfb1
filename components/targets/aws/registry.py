"""ECR on the AWS target: the platform's and each team's repositories (docs/components/aws-registry.md).

Every repository: tags IMMUTABLE (a tag, once pushed, always names the same image), scan on push,
encrypted with the platform's KMS key, a lifecycle policy (untagged images expire after
``aws.registry.untagged_days``, at most ``aws.registry.keep_images`` images kept), ``force_delete``
only in throwaway stacks; outside them the platform's repositories are protected and retained on
delete, a team's retained only (removing the team drops them from the state and keeps them, with
their images, in the account; as its bucket, mlplane.targets.aws.object_storage).

Names mirror the bundled registry's scopes (mlplane.backing.registry_auth): everything under
``<platform>/``, a team's repositories under ``<platform>/<team>/``. ECR needs a repository before
the first push, so the repositories are created here: :data:`REPOSITORIES` per owner.
Nobody holds a password: nodes pull with the node role (``AmazonEC2ContainerRegistryReadOnly``,
the foundation's), CI job pods push with their workload identity (:meth:`AwsRegistry.push_statements`,
added to their role), a team's runners with :meth:`AwsRegistry.team_push_statements`.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from mlplane.core import kube
from mlplane.targets.aws.context import AwsContext

TYPE = "mlplane:aws:Registry"
#: The repositories each owner (the platform, each team) gets: CI pushes ``$MLPLANE_REGISTRY/models:<tag>``.
REPOSITORIES: tuple[str, ...] = ("models",)
#: Pulling needs these on the repository (ECR User Guide, "Private repository policy examples" /
#: the AmazonEC2ContainerRegistryReadOnly managed policy); pushing adds the layer upload and PutImage.
PULL_ACTIONS = ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
PUSH_ACTIONS = (
    *PULL_ACTIONS,
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
)
#: `docker login` to ECR: the one action that only takes the `*` resource (ECR User Guide,
#: "Private registry authentication"; IAM Service Authorization Reference, Amazon ECR).
AUTH_ACTION = "ecr:GetAuthorizationToken"


def lifecycle_policy(keep_images: int, untagged_days: int) -> str:
    """Untagged images expire after ``untagged_days``; beyond ``keep_images`` the oldest go.

    ECR evaluates rules by ``rulePriority``; a ``tagStatus: any`` rule must have the highest number
    (ECR User Guide, "Lifecycle policy properties")."""
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": f"Expire untagged images after {untagged_days} days",
                    "selection": {
                        "tagStatus": "untagged",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": untagged_days,
                    },
                    "action": {"type": "expire"},
                },
                {
                    "rulePriority": 2,
                    "description": f"Keep the {keep_images} most recent images",
                    "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep_images},
                    "action": {"type": "expire"},
                },
            ]
        },
        sort_keys=True,
    )


class AwsRegistry(pulumi.ComponentResource):
    """ECR repositories and who may push to them.

    The attributes services use from the local Registry: ``push_url``, ``pull_prefix`` and
    ``cluster_push_url`` (all ``<account>.dkr.ecr.<region>.amazonaws.com/<platform>``), ``api_url``,
    ``auth_secret`` None (no password anywhere), :meth:`image_pull_secrets` ``[]`` and
    :meth:`push_secret` None (nodes pull with their role, pods push with their identity),
    :meth:`team_credentials` (the team's repositories).
    """

    push_url: pulumi.Output[str]
    pull_prefix: pulumi.Output[str]
    cluster_push_url: pulumi.Output[str]
    api_url: pulumi.Output[str]

    def __init__(self, name: str, ctx: AwsContext, throwaway: bool, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        self._name, self._ctx, self._throwaway = name, ctx, throwaway
        self.scrape_targets: list[kube.ScrapeTarget] = []
        self.uis: list[kube.Ui] = []
        self.auth_secret: pulumi.Output[str] | None = None
        self.auth_realm: str | None = None
        self.repositories = {repo: self.repository(f"{name}-{repo}", f"{ctx.name}/{repo}") for repo in REPOSITORIES}
        first = next(iter(self.repositories.values()))
        #: The platform's own repositories: what its CI job pods may push to (not the teams' under it).
        self._platform_arns = [repo.arn for repo in self.repositories.values()]
        host = first.repository_url.apply(lambda url: url.split("/", 1)[0])
        #: ``arn:...:repository/`` of this registry (account and region of the repositories).
        self._arn_base = first.arn.apply(lambda arn: arn.split(":repository/", 1)[0] + ":repository/")
        self.push_url = pulumi.Output.concat(host, "/", ctx.name)
        self.pull_prefix = self.push_url
        self.cluster_push_url = self.push_url
        self.api_url = pulumi.Output.concat("https://", host, "/v2/")
        self.register_outputs(
            {
                "pushUrl": self.push_url,
                "pullPrefix": self.pull_prefix,
                "clusterPushUrl": self.cluster_push_url,
                "apiUrl": self.api_url,
            }
        )

    def repository(self, name: str, repository: str, team: str | None = None) -> aws.ecr.Repository:
        """One repository with its lifecycle policy (children ``<name>``, ``<name>-lifecycle``).

        Outside throwaway stacks the platform's are protected and retained; a team's (``team``) and
        its lifecycle policy retained only: removing the team must not stall the platform's update
        on a protected resource, and must not delete its images either."""
        ctx = self._ctx
        keep = ctx.opts(self, retain_on_delete=ctx.protect) if team else ctx.stateful(self)
        repo = aws.ecr.Repository(
            name,
            name=repository,
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "KMS", "kms_key": ctx.kms_key_arn}],
            force_delete=self._throwaway,
            tags={**ctx.tags, **({"mlplane.dev/team": team} if team else {})},
            opts=keep,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=repo.name,
            policy=lifecycle_policy(ctx.config.registry.keep_images, ctx.config.registry.untagged_days),
            opts=ctx.opts(self, retain_on_delete=bool(team) and ctx.protect),
        )
        return repo

    # ------------------------------------------------------------------------ identities

    def _statements(
        self, sid: str, push_resources: list[pulumi.Input[str]], pull_prefixes: tuple[str, ...] = ()
    ) -> list[dict[str, Any]]:
        statements: list[dict[str, Any]] = [
            {"Sid": f"{sid}Login", "Effect": "Allow", "Action": [AUTH_ACTION], "Resource": ["*"]},
            {"Sid": f"{sid}Push", "Effect": "Allow", "Action": list(PUSH_ACTIONS), "Resource": push_resources},
        ]
        if pull_prefixes:
            statements.append(
                {
                    "Sid": f"{sid}Pull",
                    "Effect": "Allow",
                    "Action": list(PULL_ACTIONS),
                    "Resource": [pulumi.Output.concat(self._arn_base, p, "/*") for p in pull_prefixes],
                }
            )
        return statements

    def push_statements(self) -> list[dict[str, Any]]:
        """IAM statements for the platform's CI job pods: push and pull the platform's repositories
        (``<platform>/<repo>`` of :data:`REPOSITORIES`) only, by ARN: not ``<platform>/*``, which
        would cover every team's ``<platform>/<team>/...``."""
        return self._statements("Registry", list(self._platform_arns))

    def team_push_statements(self, team: str) -> list[dict[str, Any]]:
        """IAM statements for a team's runners: push and pull ``<platform>/<team>/*`` only."""
        return self._statements("TeamRegistry", [pulumi.Output.concat(self._arn_base, f"{self._ctx.name}/{team}/*")])

    def team_pull_statements(self, team: str) -> list[dict[str, Any]]:
        """Pull ``<platform>/<team>/*`` (a team's model servers, when their node role is not enough)."""
        return [
            {
                "Sid": "TeamRegistryPull",
                "Effect": "Allow",
                "Action": list(PULL_ACTIONS),
                "Resource": [pulumi.Output.concat(self._arn_base, f"{self._ctx.name}/{team}/*")],
            }
        ]

    # ---------------------------------------------------------- the local Registry's calls

    def image_pull_secrets(
        self, resource_name: str, namespace: pulumi.Input[str], *, parent: pulumi.Resource
    ) -> list[dict[str, Any]]:
        """None needed: EKS nodes pull from ECR with the node role."""
        return []

    def push_secret(
        self, resource_name: str, namespace: pulumi.Input[str], *, parent: pulumi.Resource
    ) -> str | None:
        """None: job pods push with their workload identity (:meth:`push_statements`)."""
        return None

    def team_credentials(
        self, resource_prefix: str, team: str, work_namespace: pulumi.Input[str],
        serving_namespace: pulumi.Input[str], *, labels: dict[str, str], parent: pulumi.Resource,
        depends_on: list[pulumi.Resource] | None = None,
    ) -> None:
        """The team's repositories (``<platform>/<team>/<repo>``, children ``<registry>-<team>-<repo>``
        of this registry). No Secret: the team's runners push with their role, to which the
        composition adds :meth:`team_push_statements` (through the object store's team grant)."""
        for repo in REPOSITORIES:
            self.repository(f"{self._name}-{team}-{repo}", f"{self._ctx.name}/{team}/{repo}", team=team)
