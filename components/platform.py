"""The Platform component: composes every other component from one validated config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import pulumi

from mlplane.backing import workload_identity
from mlplane.services import drift
from mlplane.core import kube
from mlplane.services.ci_runners import JOB_ACCOUNT, KUBERNETES_MODES, S3_SECRET, CiRunners, CiRunnersArgs
from mlplane.config import PlatformConfig
from mlplane.services.monitoring import Monitoring, MonitoringArgs, prometheus_internal_url
from mlplane.targets.foundation import Foundation
from mlplane.targets.local.foundation import LocalFoundation
from mlplane.targets.local.registry import PUSH_SECRET_NAME
from mlplane.services.routing import Routing, RoutingArgs
from mlplane.services.serving import Serving, ServingArgs
from mlplane.services.team_access import TeamGrant, Teams, TeamsArgs
from mlplane.services.tracking import TrackingArgs, TrackingServer

TYPE = "mlplane:index:Platform"


@dataclass(frozen=True)
class PlatformArgs:
    config: PlatformConfig
    #: Resolves a secret config key (a ``*_key`` field) to its secret value.
    secret: Callable[[str], pulumi.Output[str]]
    #: The team stacks this platform admits (see mlplane.services.team_access): each gets its namespaces
    #: and a scoped provisioning identity instead of the admin kubeconfig.
    teams: Sequence[TeamGrant] = ()
    #: The work and serving namespaces of the admitted teams that use 'monitoring' (from their
    #: configs: mlplane.program.scraped_team_namespaces): the platform Prometheus scrapes their
    #: labelled pods (a team's model exporter) and records their models' metrics.
    team_metrics_namespaces: Sequence[str] = ()


def _foundation(name: str, config: PlatformConfig, protect: bool, parent: pulumi.Resource) -> Foundation:
    """The target's foundation (mlplane.targets.foundation). The AWS one is imported only for
    ``target: aws``: the local target never loads the AWS SDK."""
    if config.target == "aws":
        try:
            from mlplane.targets.aws.foundation import AwsFoundation
        except ModuleNotFoundError as error:
            if error.name != "pulumi_aws":
                raise
            raise pulumi.RunError(
                "target 'aws' needs the AWS SDK for Pulumi: install mlplane with its aws extra "
                "(pip install 'mlplane[aws]')"
            ) from None
        return AwsFoundation(name, config, protect, parent)
    return LocalFoundation(name, config, protect, parent)


class Platform(pulumi.ComponentResource):
    """A complete MLOps platform.

    Children (each named ``<platform name>-<role>``): cluster, kubernetes (the one provider),
    routing, storage, database, tracking, registry, runners, serving, monitoring.
    """

    def __init__(self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None):
        # Objects whose images are all locked by digest drop the CKV_K8S_43 exception.
        super().__init__(TYPE, name, None, pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(transformations=[kube.drop_digest_exception])))
        config = self.config = args.config
        protect = not config.lifecycle.throwaway
        foundation = self.foundation = _foundation(name, config, protect, self)
        provider = foundation.provider
        platform = kube.Platform(
            name=config.name,
            provider=provider,
            protect_stateful=protect,
            secret=args.secret,
            registry_mirror=config.images.registry_mirror,
            images=config.images,
            placement=foundation.placement,
        )
        within = pulumi.ResourceOptions(parent=self, providers=[provider])
        foundation.install(name, platform, within)

        self.routing = Routing(
            f"{name}-routing",
            RoutingArgs(
                config=config.routing,
                platform=platform,
                http_port=foundation.http_port,
                exposure=foundation.exposure,
            ),
            within,
        )
        gateway = self.routing.gateway
        after_gateway = pulumi.ResourceOptions(parent=self, providers=[provider], depends_on=self.routing.ready)

        self.storage = foundation.object_storage(f"{name}-storage", platform, gateway, after_gateway)
        self.database = foundation.database(f"{name}-database", platform, within)
        self.tracking = TrackingServer(
            f"{name}-tracking",
            TrackingArgs(
                config=config.tracking,
                platform=platform,
                database=self.database,
                storage=self.storage,
                gateway=gateway,
            ),
            after_gateway,
        )
        self.registry = foundation.registry(f"{name}-registry", platform, within)
        client = self.tracking.client_credentials()
        job_identity, s3_location = self._runner_identity(platform)
        s3_credentials = self._runner_datasets(name, platform) if job_identity is None else None
        self.runners = CiRunners(
            f"{name}-runners",
            CiRunnersArgs(
                config=config.ci_runners,
                platform=platform,
                registry_pull_prefix=self.registry.pull_prefix,
                registry_push_url=self.registry.cluster_push_url,
                registry_insecure=foundation.registry_insecure,
                # The bundled registry: job pods get the platform's push credential (created
                # below) and reach the registry's network on its two ports, nothing else.
                registry_push_secret=PUSH_SECRET_NAME if self.registry.auth_secret is not None else None,
                registry_egress=foundation.registry_egress(),
                tracking_uri=self.tracking.internal_url,
                tracking_username=client.username,
                tracking_password=client.password,
                # The datasets identity (ci_runners.datasets_access) for job pods, and the
                # runner namespace's egress to SeaweedFS's S3 port only.
                s3_credentials=s3_credentials,
                s3_secret=S3_SECRET if s3_credentials is not None else None,
                s3_egress=foundation.s3_egress(platform) if s3_credentials is not None else None,
                # A store that binds workloads (AWS): job pods run as a service account bound to
                # the datasets bucket and the registry push, with no key (_runner_identity).
                job_identity=job_identity,
                s3_location=s3_location,
            ),
            within,
        )
        if self.runners.runner_namespace is not None:
            # The platform identity's push credentials for the platform's own CI jobs.
            self.registry.push_secret(
                f"{name}-runners-registry-push", self.runners.runner_namespace, parent=self.runners
            )
        self.serving = Serving(
            f"{name}-serving",
            ServingArgs(
                config=config.serving,
                platform=platform,
                gateway=gateway,
                tracking_uri=self.tracking.internal_url,
                tracking_username=client.username,
                tracking_password=client.password,
                registry_pull_secrets=lambda resource, namespace, parent: self.registry.image_pull_secrets(
                    resource, namespace, parent=parent
                ),
                inference_store=drift.platform_store(
                    f"{name}-serving", self.storage, platform, config.object_storage.buckets.datasets,
                    drift_models=any(m.drift for m in config.serving.models),
                ),
                # Flagger's checks (serving.progressive): the Prometheus Monitoring creates below.
                prometheus_url=prometheus_internal_url(platform.name),
                prometheus_pods=(f"{platform.name}-monitoring", platform.selector("monitoring", "prometheus")),
                # Each admitted team's own controller for its progressive canaries.
                teams=[(g.name, g.serving_namespace) for g in args.teams] if config.serving.progressive.enabled else (),
            ),
            after_gateway,
        )
        parts = [self.routing, self.storage, self.database, self.tracking, self.registry, self.runners, self.serving]
        self.monitoring = Monitoring(
            f"{name}-monitoring",
            MonitoringArgs(
                config=config.monitoring,
                platform=platform,
                gateway=gateway,
                scrape_targets=[t for part in parts for t in part.scrape_targets],
                models=self.serving.models,
                prometheus_route=config.prometheus_route,
                drift_alerts=any(m.drift for m in config.serving.models),
                prometheus_clients=self.serving.prometheus_clients,
                team_namespaces=tuple(args.team_metrics_namespaces),
            ),
            after_gateway,
        )
        self.uis: list[kube.Ui] = [ui for part in [*parts, self.monitoring] for ui in part.uis]
        self.urls = {ui.key: pulumi.Output.from_input(ui.url) for ui in self.uis}
        self.kubeconfig = foundation.kubeconfig
        self.team_kubeconfigs = self._team_access(name, args.teams, platform)
        self.register_outputs({"urls": self.urls, "kubeconfig": self.kubeconfig})

    def _runner_datasets(self, name: str, platform: kube.Platform) -> dict[str, pulumi.Input[str]] | None:
        """The S3_ENV values of the runners' datasets identity, or None: runners off, a mode
        without job pods ('dind'), an external store, or ``datasets_access: none``."""
        runners = self.config.ci_runners
        if not runners.enabled or runners.container_mode not in KUBERNETES_MODES:
            return None
        keys = self.storage.runners_identity(f"{name}-storage", runners.datasets_access)
        if keys is None:
            return None
        return {
            "AWS_ACCESS_KEY_ID": keys[0],
            "AWS_SECRET_ACCESS_KEY": keys[1],
            "AWS_ENDPOINT_URL_S3": self.storage.endpoint,
            "AWS_DEFAULT_REGION": self.storage.region,
            "MLPLANE_BUCKET": self.storage.datasets_bucket,
        }

    def _runner_identity(
        self, platform: kube.Platform
    ) -> tuple[workload_identity.PodIdentity | None, dict[str, pulumi.Input[str]] | None]:
        """With a store that binds workloads (S3 on AWS): the job pods' identity, a role bound to
        JOB_ACCOUNT in the runner namespace with ``datasets_access`` on the datasets bucket and,
        with a registry pods push to with their identity (ECR), the push to the platform's
        repositories; and the bucket's location (plain env, no key; None with access 'none').
        (None, None): runners off, mode 'dind' (no job pods), or a store that hands out keys."""
        runners = self.config.ci_runners
        if not runners.enabled or runners.container_mode not in KUBERNETES_MODES:
            return None, None
        if not isinstance(self.storage, workload_identity.BindsWorkloads):
            return None, None
        buckets: dict[str, workload_identity.BucketAccess] = (
            {} if runners.datasets_access == "none" else {"datasets": runners.datasets_access}
        )
        push = self.registry.push_statements() if isinstance(self.registry, workload_identity.PushesWithIdentity) else []
        if not buckets and not push:
            return None, None
        identity = workload_identity.bind(
            self.storage, JOB_ACCOUNT, f"{platform.name}-ci-runners", JOB_ACCOUNT, buckets, statements=push
        )
        location: dict[str, pulumi.Input[str]] | None = None
        if buckets:
            location = {
                "AWS_ENDPOINT_URL_S3": self.storage.endpoint,
                "AWS_DEFAULT_REGION": self.storage.region,
                "MLPLANE_BUCKET": self.storage.datasets_bucket,
            }
        return identity, location

    def _team_access(
        self, name: str, teams: Sequence[TeamGrant], platform: kube.Platform
    ) -> dict[str, pulumi.Output[str]]:
        """Each admitted team's namespaces and identity; team name -> kubeconfig (secret)."""
        #: Team name -> the credentials its grants generated (mlplane.services.team_grants).
        self.team_credentials: dict[str, dict[str, pulumi.Output[str]]] = {}
        #: Team name -> the physical name of its bucket, when the store names buckets itself (S3).
        self.team_buckets: dict[str, pulumi.Output[str]] = {}
        if not teams:
            return {}
        platform_namespaces = {f"{platform.name}-tracking", f"{platform.name}-monitoring"}
        if self.foundation.storage_in_cluster:
            platform_namespaces.add(f"{platform.name}-storage")
        access = Teams(
            f"{name}-teams",
            TeamsArgs(
                teams=tuple(teams), platform=platform, admin_kubeconfig=self.foundation.kubeconfig,
                admin_context=self.foundation.context, platform_namespaces=frozenset(platform_namespaces),
                tracking_uri=self.tracking.internal_url,
                # A store that grants teams roles (S3 on AWS) and a registry pods push to with
                # them (ECR): the team's bucket and workload roles (mlplane.services.team_grants).
                storage=self.storage if isinstance(self.storage, workload_identity.GrantsTeams) else None,
                registry=self.registry if isinstance(self.registry, workload_identity.PushesWithIdentity) else None,
            ),
            # The platform namespaces the team Roles live in exist first.
            pulumi.ResourceOptions(
                parent=self, providers=[platform.provider],
                depends_on=[self.storage, self.tracking, self.monitoring],
            ),
        )
        # Each team's registry credentials (push for its runners, pull for its model servers),
        # in its namespaces: the team stack never holds the registry's auth secret.
        for grant in teams:
            self.registry.team_credentials(
                f"{name}-teams-{grant.name}", grant.name, grant.work_namespace, grant.serving_namespace,
                labels={**platform.labels("registry", "team-credentials"), kube.TEAM_LABEL: grant.name},
                parent=self, depends_on=[access],
            )
        self.team_credentials = access.credentials
        self.team_buckets = access.buckets
        return access.kubeconfigs
