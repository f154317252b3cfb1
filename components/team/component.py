"""The orchestrating Team component: it builds the namespaces and calls each part in turn."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pulumi
import pulumi_kubernetes as k8s

from mlplane.config import PlatformConfig
from mlplane.config.team import TeamConfig
from mlplane.core import kube
from mlplane.services import serving
from mlplane.team.names import _Namespace, TEAM_LABEL, TYPE
from mlplane.team.link import PlatformOutputs
from mlplane.team.guardrails import Guardrails
from mlplane.team.grants import Grants
from mlplane.team.workloads import Workloads
from mlplane.team.model_extras import ModelExtras
from mlplane.team.dashboard import Dashboard


@dataclass(frozen=True)
class TeamArgs:
    """Everything a team environment is built from."""

    config: TeamConfig
    #: The platform's validated config: its layout (names, domain, modes, pinned images).
    platform: PlatformConfig
    outputs: PlatformOutputs
    #: The team stack's Kubernetes provider (also passed in the component's ``providers``).
    provider: k8s.Provider
    #: Resolves a secret config key of the team stack (``ci_runners.github_token_key``...).
    secret: Callable[[str], pulumi.Output[str]]
    #: The physical name of the team's bucket when the platform's store names it (S3 on AWS, the
    #: platform's output ``teamBuckets``); None: the configured ``object_storage.bucket``.
    bucket: pulumi.Input[str] | None = None

    @property
    def binds_workloads(self) -> bool:
        """The platform's store binds the team's service accounts to roles (target 'aws'): the
        team's pods hold no S3 or registry key and run as the bound service accounts."""
        return self.platform.target == "aws"




class Team(Guardrails, Grants, Workloads, ModelExtras, Dashboard, pulumi.ComponentResource):
    """One team's environment on a shared platform (see the module docstring for what it holds).

    Outputs: ``namespaces`` (work and serving), ``bucket``, ``mlflow_workspace``, ``runner_label``
    (None without runners), ``model_urls`` (model name -> URL through the Gateway),
    ``s3_access_key_id`` and ``s3_secret_access_key`` (secret; None without object storage),
    ``mlflow_username`` and ``mlflow_password`` (secret; None without tracking).
    """

    def __init__(self, name: str, args: TeamArgs, opts: pulumi.ResourceOptions | None = None):
        # Objects whose images are all locked by digest drop the CKV_K8S_43 exception.
        super().__init__(TYPE, name, None, pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(transformations=[kube.drop_digest_exception])))
        cfg, plat = args.config, args.platform
        self._name, self._args = name, args
        work_name, serving_name = cfg.namespaces(plat.name)
        #: The team's own labelling context: everything it creates is part of its work namespace.
        self._team = kube.Platform(
            name=work_name, provider=args.provider, protect_stateful=False, secret=args.secret,
            registry_mirror=plat.images.registry_mirror, images=plat.images,
        )
        #: The platform's context: its images, pod selectors and namespaces.
        self._platform = kube.Platform(
            name=plat.name, provider=args.provider, protect_stateful=False, secret=args.secret,
            registry_mirror=plat.images.registry_mirror, images=plat.images,
        )
        self.work = self._namespace("work", work_name)
        self.serving = self._namespace("serving", serving_name)
        self.namespaces = {"work": work_name, "serving": serving_name}
        for space, quota in ((self.work, cfg.quota.work), (self.serving, cfg.quota.serving)):
            self._guardrails(space, quota)
        self._bucket_name: pulumi.Input[str] = args.bucket if args.bucket is not None else cfg.bucket
        self._environment()
        self.bucket: pulumi.Input[str] | None = None
        self.s3_access_key_id: pulumi.Output[str] | None = None
        self.s3_secret_access_key: pulumi.Output[str] | None = None
        if args.binds_workloads:
            self._workload_accounts()
        if cfg.uses("object_storage"):
            self._object_storage()
        self.mlflow_workspace: str | None = None
        self.mlflow_username: pulumi.Output[str] | None = None
        self.mlflow_password: pulumi.Output[str] | None = None
        if cfg.uses("tracking"):
            self._tracking()
        self.models: list[serving.ServedModel] = []
        self.model_urls: dict[str, str] = {}
        #: The key the team's model routes accept (secret); None without models or API-key auth.
        self.model_api_key: pulumi.Output[str] | None = None
        if cfg.serving.models:
            self._serve()
        self.runner_label: str | None = None
        #: The team's runner namespace (ARC, runners, the GitHub credential); None without runners.
        self.runners_namespace: str | None = None
        if cfg.ci_runners.enabled:
            self._runners()
        if cfg.uses("monitoring"):
            self._monitoring()
        self.register_outputs(
            {
                "namespaces": self.namespaces,
                "bucket": self.bucket,
                "mlflowWorkspace": self.mlflow_workspace,
                "runnerLabel": self.runner_label,
                "modelUrls": self.model_urls,
            }
        )

    # ------------------------------------------------------------------------------- helpers

    def _child(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    def _labels(self, name: str) -> dict[str, str]:
        return {**self._team.labels("team", name), TEAM_LABEL: self._args.config.name}

    def _namespace(self, role: str, name: str) -> _Namespace:
        """The platform stack creates the namespace (a team identity cannot create namespaces)."""
        return _Namespace(role=role, name=name)

    def _team_peers(self) -> dict[str, Any]:
        """A NetworkPolicy peer: every pod in the team's two namespaces (by their immutable name label)."""
        return {
            "namespaceSelector": {
                "matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": sorted(self.namespaces.values())}
                ]
            }
        }

    def _platform_peer(self, component: str, name: str) -> dict[str, Any]:
        """A NetworkPolicy peer: one platform workload's pods in its namespace."""
        return {
            **kube.namespace_peer(f"{self._platform.name}-{component}"),
            "podSelector": {"matchLabels": self._platform.selector(component, name)},
        }

    def _policy(self, space: _Namespace, role: str, name: str, spec: dict[str, Any]) -> None:
        k8s.networking.v1.NetworkPolicy(
            f"{self._name}-{space.role}-{role}",
            metadata={"name": name, "namespace": space.name, "labels": self._labels(name)},
            spec=spec,
            opts=self._child(),
        )
