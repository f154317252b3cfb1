"""The typed config of a team environment: the value of the ``mlplane:team`` stack config key.

A team stack is a stack of the platform's own Pulumi project (``stacks/Pulumi.team-<name>.yaml``)
whose config holds ``mlplane:team`` instead of ``mlplane:platform``. It names the platform stack it
belongs to; everything else (quotas, services, members, models, CI runners) is the team's own.

Same conventions as :mod:`mlplane.config`: unknown keys are rejected, models are frozen, every
field has a description and a default (or is required), errors name the field path.
Three layers of checks, all before anything is created:

- :func:`parse_team` validates the object alone (names, quantities, services, members);
- :func:`check_platform` checks it against the platform config it will run on;
- :func:`check_collisions` checks it against the other team stacks of the same platform.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, Strict, ValidationError, model_validator

from mlplane.config.serving import MODEL_NAME_MAX, ModelConfig, ServingConfig
from mlplane.config.blocks import Amounts, Resources, _Model, resources
from mlplane.config.scalars import (
    BucketName,
    ConfigKey,
    Cpu,
    DnsLabel,
    Memory,
    Storage,
    cpu_millicores,
    memory_bytes,
)
from mlplane.config.errors import ConfigError, _given, format_errors
from mlplane.config.ci_runners import GitHubAppCredentials, RepositoryVisibility, runner_scope_problem
from mlplane.config.platform import PlatformConfig
from mlplane.config.keys import TEAM_CONFIG_KEY
from mlplane.config.upgrades import CONFIG_VERSION, check_version

#: Longest team name. Names derived from it must stay DNS labels: the serving namespace
#: ``<platform>-team-<name>-serving`` is checked against the real platform name by
#: :func:`check_platform`.
TEAM_NAME_MAX = 30
#: Longest DNS label (namespace names).
LABEL_MAX = 63
#: Suffix of a team's serving namespace (``<platform>-team-<name><suffix>``). A team name must not
#: end in it: team 'x-serving''s work namespace would be team 'x''s serving namespace. Every other
#: name derived from a team is ``<fixed prefix><name>`` or ``<fixed prefix><name><fixed suffix>``
#: with one suffix per kind, so distinct names give distinct objects (see TeamConfig.derived_names).
SERVING_SUFFIX = "-serving"
#: Suffix of a team's runner namespace (ARC controller, listener, runners and the GitHub
#: credential; created by the platform stack, no member access): ``<platform>-team-<name><suffix>``.
RUNNERS_SUFFIX = "-runners"
RESERVED_SUFFIXES = (SERVING_SUFFIX, RUNNERS_SUFFIX)
#: Prefix of team stack names: the stack of team ``a`` is ``team-a``.
STACK_PREFIX = "team-"

#: Platform services a team may use (each opens a NetworkPolicy path and creates the team's part).
Service = Literal["tracking", "object_storage", "registry", "monitoring"]
SERVICES: tuple[str, ...] = ("tracking", "object_storage", "registry", "monitoring")

_STACK = re.compile(r"^([A-Za-z0-9_.-]+/){0,2}[A-Za-z0-9_.-]+$")
_EXTENDED_RESOURCE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$")


def _stack_name(value: str) -> str:
    if not _STACK.match(value):
        raise ValueError(
            "must be a Pulumi stack name ('local') or a fully qualified one "
            "('organization/mlplane/local', '<org>/<project>/<stack>')"
        )
    return value


def _subject(value: str) -> str:
    if not value.strip() or len(value) > 253:
        raise ValueError("must be a non-empty user or group name of at most 253 characters")
    if value.startswith("system:"):
        raise ValueError(
            "names starting with 'system:' are Kubernetes' own users and groups "
            "(system:authenticated is everyone): name the team's members instead"
        )
    return value


def _extended_resource(value: str) -> str:
    if not _EXTENDED_RESOURCE.match(value):
        raise ValueError("must be an extended resource name such as 'nvidia.com/gpu' or 'amd.com/gpu'")
    return value


def _team_name(value: str) -> str:
    if len(value) > TEAM_NAME_MAX or not _TEAM_NAME.match(value):
        raise ValueError(
            f"must be a DNS-1123 label of at most {TEAM_NAME_MAX} characters: lowercase letters, "
            "digits and '-', starting and ending with a letter or digit"
        )
    for suffix in RESERVED_SUFFIXES:
        if value.endswith(suffix):
            raise ValueError(
                f"must not end in '{suffix}': the {suffix[1:]} namespace of team '{value[: -len(suffix)]}' "
                f"is '<platform>-team-{value}', which would be this team's work namespace; choose "
                "another name"
            )
    return value


_TEAM_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

StackName = Annotated[str, AfterValidator(_stack_name)]
TeamName = Annotated[str, AfterValidator(_team_name)]
Subject = Annotated[str, AfterValidator(_subject)]
ExtendedResource = Annotated[str, AfterValidator(_extended_resource)]


class QuotaConfig(_Model):
    """A ResourceQuota: what all pods of one namespace may request and use together."""

    requests_cpu: Cpu = Field(default="4", description="Sum of the CPU requests of all pods.")
    requests_memory: Memory = Field(default="8Gi", description="Sum of the memory requests of all pods.")
    limits_cpu: Cpu = Field(default="8", description="Sum of the CPU limits of all pods.")
    limits_memory: Memory = Field(default="16Gi", description="Sum of the memory limits of all pods.")
    gpus: int = Field(
        default=0, ge=0, le=1024, description="GPUs all pods may request together (0: none)."
    )
    pods: int = Field(default=40, ge=1, le=10000, description="Most pods at once (running or pending).")
    storage: Storage = Field(
        default="50Gi", description="Sum of the storage requests of all PersistentVolumeClaims."
    )
    persistent_volume_claims: int = Field(
        default=10, ge=0, le=1000, description="Most PersistentVolumeClaims."
    )

    @model_validator(mode="after")
    def _requests_within_limits(self) -> QuotaConfig:
        if cpu_millicores(self.requests_cpu) > cpu_millicores(self.limits_cpu):
            raise ValueError(
                f"requests_cpu ({self.requests_cpu}) is above limits_cpu ({self.limits_cpu})"
            )
        if memory_bytes(self.requests_memory) > memory_bytes(self.limits_memory):
            raise ValueError(
                f"requests_memory ({self.requests_memory}) is above limits_memory ({self.limits_memory})"
            )
        return self


class TeamQuotas(_Model):
    """One ResourceQuota per team namespace."""

    work: QuotaConfig = Field(
        default_factory=QuotaConfig,
        description="Quota of the work namespace (notebooks, jobs, CI runners and their job pods).",
    )
    serving: QuotaConfig = Field(
        default_factory=lambda: QuotaConfig(
            requests_cpu="2", requests_memory="4Gi", limits_cpu="4", limits_memory="8Gi",
            pods=20, storage="10Gi", persistent_volume_claims=5,
        ),
        description="Quota of the serving namespace (the team's model servers).",
    )
    gpu_resource: ExtendedResource = Field(
        default="nvidia.com/gpu",
        description="Extended resource name the GPU quota counts (the device plugin's name).",
    )


class LimitRangeConfig(_Model):
    """A LimitRange: defaults for containers that set no requests or limits, and the most one may ask."""

    default_request: Amounts = Field(
        default_factory=lambda: Amounts(cpu="100m", memory="128Mi"),
        description="Requests given to a container that sets none.",
    )
    default_limit: Amounts = Field(
        default_factory=lambda: Amounts(cpu="1", memory="1Gi"),
        description="Limits given to a container that sets none.",
    )
    max: Amounts = Field(
        default_factory=lambda: Amounts(cpu="4", memory="8Gi"),
        description="The most one container may set as its limits.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> LimitRangeConfig:
        steps = (("default_request", self.default_request), ("default_limit", self.default_limit), ("max", self.max))
        for (low_name, low), (high_name, high) in zip(steps, steps[1:]):
            if cpu_millicores(low.cpu) > cpu_millicores(high.cpu):
                raise ValueError(f"{low_name}.cpu ({low.cpu}) is above {high_name}.cpu ({high.cpu})")
            if memory_bytes(low.memory) > memory_bytes(high.memory):
                raise ValueError(f"{low_name}.memory ({low.memory}) is above {high_name}.memory ({high.memory})")
        return self


class MembersConfig(_Model):
    """Who may work in the team's namespaces (bound to the namespaced Role ``team-member``)."""

    users: list[Subject] = Field(
        default_factory=list,
        description="Kubernetes user names as the API server authenticates them (e.g. e-mail addresses).",
    )
    groups: list[Subject] = Field(
        default_factory=list,
        description="Kubernetes group names (e.g. an identity provider group).",
    )

    @model_validator(mode="after")
    def _distinct(self) -> MembersConfig:
        for field, names in (("users", self.users), ("groups", self.groups)):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{field} lists {', '.join(repeated)} more than once")
        return self


class TeamObjectStorageConfig(_Model):
    """The team's bucket in the platform's bundled SeaweedFS (service 'object_storage')."""

    bucket: BucketName | None = Field(
        default=None,
        description="Name of the team's bucket. Default: 'team-<name>'.",
    )
    setup_job_resources: Resources = Field(
        default_factory=resources("10m", "32Mi", "200m", "128Mi"),
        description=(
            "Requests and limits of the Job that creates the bucket and the team's S3 identity "
            "(it runs in the platform's storage namespace)."
        ),
    )


class TeamTrackingConfig(_Model):
    """The team's MLflow workspace and account (service 'tracking')."""

    setup_job_resources: Resources = Field(
        default_factory=resources("10m", "32Mi", "200m", "96Mi"),
        description=(
            "Requests and limits of the Job that creates the team's MLflow workspace and account "
            "through MLflow's REST API (it runs in the platform's tracking namespace)."
        ),
    )


class TeamServingConfig(_Model):
    """Models the team serves from its MLflow workspace, in its serving namespace."""

    models: list[ModelConfig] = Field(
        default_factory=list,
        description=(
            "Models to serve, each from a version or alias of a model registered in the team's "
            "workspace; each answers at http://<model>.<team>.<domain>."
        ),
    )

    def as_serving_config(self) -> ServingConfig:
        """The platform serving config for these models (metrics-server is the platform's; the
        Flagger controller of mode 'progressive' is the team's own, run by the platform stack)."""
        progressive = any(m.canary is not None and m.canary.mode == "progressive" for m in self.models)
        return ServingConfig(models=self.models, metrics_server={"enabled": False}, progressive={"enabled": progressive})

    @property
    def logging(self) -> bool:
        """A model logs requests (to the team's bucket)."""
        return any(m.logging is not None for m in self.models)

    @property
    def drift(self) -> bool:
        return any(m.drift is not None for m in self.models)

    @property
    def progressive(self) -> bool:
        return any(m.canary is not None and m.canary.mode == "progressive" for m in self.models)

    @model_validator(mode="after")
    def _no_gpus(self) -> TeamServingConfig:
        # A team's pods are not placed on node groups: on AWS the GPU group is tainted and a team
        # model requesting GPUs would never be scheduled (docs/aws.md, "Where pods run").
        for index, model in enumerate(self.models):
            if model.gpus:
                raise ValueError(
                    f"models[{index}].gpus: team models cannot request GPUs yet (given {model.gpus} for "
                    f"'{model.name}'); serve GPU models from the platform stack (serving.models), or set gpus 0"
                )
        return self

    @model_validator(mode="after")
    def _unique(self) -> TeamServingConfig:
        self.as_serving_config()
        return self


class TeamRunnersConfig(_Model):
    """The team's own GitHub Actions runner scale set: runners in its runner namespace, job pods in its work namespace."""

    github_config_url: str | None = Field(
        default=None,
        pattern=r"^https://[^\s/]+/[^\s/]+(/[^\s/]+)?/?$",
        description=(
            "Repository URL the team's runners register with, e.g. 'https://github.com/acme/fraud-models', "
            "or an organization URL together with runner_group. Unset: the team has no runners."
        ),
    )
    github_app: GitHubAppCredentials | None = Field(
        default=None, description="Authenticate as a GitHub App (preferred over a token)."
    )
    github_token_key: ConfigKey | None = Field(
        default=None,
        description="Secret config key of the team stack holding a fine-grained personal access token.",
    )
    runner_group: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description=(
            "Runner group the team's scale set joins (ARC `runnerGroup`); required with an organization "
            "URL. Limit the group's repository access to the team's repositories in GitHub "
            "(organization settings > Actions > Runner groups): mlplane cannot set or check it."
        ),
    )
    repository_visibility: RepositoryVisibility = Field(
        default="private",
        description=(
            "Visibility of the team's repository (or of the most visible repository the runner group "
            "admits), as declared here: mlplane cannot look it up. 'public' needs allow_public_repository."
        ),
    )
    allow_public_repository: bool = Field(
        default=False,
        description="Explicit opt-in to runners serving a public repository (fork pull requests can reach them).",
    )
    runner_label: DnsLabel | None = Field(
        default=None,
        description="Name of the scale set; workflows select it with `runs-on: <label>`. Default: 'team-<name>'.",
    )
    min_runners: int = Field(default=0, ge=0, description="Idle runners kept warm (0 scales to zero).")
    max_runners: int = Field(default=2, ge=1, le=50, description="Most runners at once.")
    container_mode: Literal["kubernetes-novolume", "kubernetes"] = Field(
        default="kubernetes-novolume",
        description=(
            "How job containers run: as pods in the team's work namespace, without privilege. Only "
            "'kubernetes-novolume': 'kubernetes' would run them in the runners' namespace, next to "
            "the GitHub credential, and 'dind' needs a privileged namespace."
        ),
    )
    runner_resources: Resources = Field(
        default_factory=resources("250m", "512Mi", "2", "4Gi"),
        description="Requests and limits of each runner pod.",
    )
    controller_resources: Resources = Field(
        default_factory=resources("20m", "64Mi", "250m", "256Mi"),
        description="Requests and limits of the team's ARC controller and its scale set listener.",
    )
    job_resources: Resources = Field(
        default_factory=resources("100m", "256Mi", "2", "4Gi"),
        description="Requests and limits of the job pod next to each busy runner.",
    )
    work_volume_size: Storage = Field(
        default="5Gi",
        description="Size of each runner's work volume in container_mode 'kubernetes'.",
    )

    @property
    def enabled(self) -> bool:
        return self.github_config_url is not None and (
            self.github_app is not None or self.github_token_key is not None
        )

    @model_validator(mode="after")
    def _rules(self) -> TeamRunnersConfig:
        if self.github_app is not None and self.github_token_key is not None:
            raise ValueError("set either 'github_app' or 'github_token_key', not both")
        if (self.github_app or self.github_token_key) and self.github_config_url is None:
            raise ValueError("credentials are set but 'github_config_url' is not: set the org or repo URL")
        if self.github_config_url is not None and not (self.github_app or self.github_token_key):
            raise ValueError("'github_config_url' is set but no credentials: set 'github_app' or 'github_token_key'")
        scope = runner_scope_problem(
            self.github_config_url, self.runner_group, self.repository_visibility, self.allow_public_repository
        )
        if scope:
            raise ValueError(scope)
        if self.container_mode == "kubernetes":
            raise ValueError(
                "container_mode 'kubernetes' is not offered to teams: its container hooks run job pods "
                "in the runner's own namespace (they share its work volume), which holds the GitHub "
                "credential. Allowed: 'kubernetes-novolume' (job pods in the team's work namespace)"
            )
        if self.min_runners > self.max_runners:
            raise ValueError(f"min_runners ({self.min_runners}) is above max_runners ({self.max_runners})")
        return self


class NetworkConfig(_Model):
    """Egress beyond the platform services (everything else is denied)."""

    allow_internet_https: bool = Field(
        default=False,
        description=(
            "Allow HTTPS (TCP 443) to any address from the work namespace, and the Kubernetes API "
            "(TCP 6443): needed by CI runners (GitHub) and package installs. Default: denied."
        ),
    )


class TeamConfig(_Model):
    """A team environment: the value of the `mlplane:team` stack config key."""

    version: Annotated[int, Strict(), AfterValidator(check_version)] = Field(
        default=CONFIG_VERSION,
        description=(
            "Version of the config schema. Omitted: 1, so configs written before the field existed "
            "stay valid. A release that changes the schema incompatibly raises it (docs/upgrading.md)."
        ),
    )
    name: TeamName = Field(
        description=(
            f"Team name: a DNS-1123 label of at most {TEAM_NAME_MAX} characters, not ending in "
            f"'{SERVING_SUFFIX}'. The stack is 'team-<name>'; namespaces are '<platform>-team-<name>' "
            "and '<platform>-team-<name>-serving'."
        ),
    )
    platform_stack: StackName = Field(
        description=(
            "The platform stack this team runs on: a stack of the same project ('local'), or "
            "fully qualified ('<org>/<project>/<stack>'). Its outputs are read through a "
            "StackReference; its config file (stacks/Pulumi.<stack>.yaml) gives the layout."
        ),
    )
    services: list[Service] = Field(
        default_factory=lambda: list(SERVICES),
        description=(
            "Platform services the team uses: 'tracking' (an MLflow workspace and account), "
            "'object_storage' (a bucket and an S3 identity limited to it), 'registry' (push "
            "from pods), 'monitoring' (a Grafana dashboard of the team's models; the platform "
            "Prometheus may discover and reach pods labelled mlplane.dev/scrape: metrics). Each "
            "opens its own NetworkPolicy path; nothing else is reachable."
        ),
    )
    quota: TeamQuotas = Field(default_factory=TeamQuotas, description="Resource quotas per namespace.")
    limit_range: LimitRangeConfig = Field(
        default_factory=LimitRangeConfig, description="Container defaults and maximum, in both namespaces."
    )
    members: MembersConfig = Field(default_factory=MembersConfig, description="Users and groups of the team.")
    network: NetworkConfig = Field(default_factory=NetworkConfig, description="Extra egress.")
    object_storage: TeamObjectStorageConfig = Field(
        default_factory=TeamObjectStorageConfig, description="The team's bucket (service 'object_storage')."
    )
    tracking: TeamTrackingConfig = Field(
        default_factory=TeamTrackingConfig, description="The team's MLflow workspace (service 'tracking')."
    )
    serving: TeamServingConfig = Field(default_factory=TeamServingConfig, description="The team's models.")
    ci_runners: TeamRunnersConfig = Field(
        default_factory=TeamRunnersConfig, description="The team's GitHub Actions runners (off by default)."
    )

    @model_validator(mode="after")
    def _rules(self) -> TeamConfig:
        repeated = sorted({s for s in self.services if self.services.count(s) > 1})
        if repeated:
            raise ValueError(f"services lists {', '.join(repeated)} more than once")
        if self.serving.models and "tracking" not in self.services:
            raise ValueError(
                "serving.models download their model from MLflow: add 'tracking' to services"
            )
        for index, model in enumerate(self.serving.models):
            if model.logging is not None and not self.uses("object_storage"):
                raise ValueError(
                    f"serving.models[{index}] '{model.name}': logging writes to the team's bucket: add "
                    "'object_storage' to services (a team never writes the platform's buckets)"
                )
            if model.drift is not None and not self.uses("monitoring"):
                raise ValueError(
                    f"serving.models[{index}] '{model.name}': drift scores reach alerts and dashboards "
                    "through the platform Prometheus: add 'monitoring' to services"
                )
        if self.ci_runners.enabled and not self.network.allow_internet_https:
            raise ValueError(
                "ci_runners reach GitHub over HTTPS: set network.allow_internet_https: true "
                "(an explicit opening of the work namespace's egress)"
            )
        for where, quota in (("work", self.quota.work), ("serving", self.quota.serving)):
            for kind, most, allowed in (
                ("cpu", cpu_millicores(self.limit_range.max.cpu), cpu_millicores(quota.limits_cpu)),
                ("memory", memory_bytes(self.limit_range.max.memory), memory_bytes(quota.limits_memory)),
            ):
                if most > allowed:
                    raise ValueError(
                        f"limit_range.max.{kind} ({getattr(self.limit_range.max, kind)}) is above "
                        f"quota.{where}.limits_{kind} ({getattr(quota, 'limits_' + kind)}): "
                        "no container that large could ever start"
                    )
        self._models_fit()
        return self

    def _models_fit(self) -> None:
        """Each served model fits the LimitRange, and its smallest scale fits the serving quota."""
        most, quota = self.limit_range.max, self.quota.serving
        for index, model in enumerate(self.serving.models):
            where = f"serving.models[{index}]"
            limits, requests = model.resources.limits, model.resources.requests
            if cpu_millicores(limits.cpu) > cpu_millicores(most.cpu) or memory_bytes(limits.memory) > memory_bytes(most.memory):
                raise ValueError(
                    f"{where}.resources.limits ({limits.cpu} CPU, {limits.memory}) exceed limit_range.max "
                    f"({most.cpu} CPU, {most.memory}): its pods would be rejected"
                )
            # A progressive rollout runs the new version at the primary's scale next to it.
            progressive = model.canary is not None and model.canary.mode == "progressive"
            pods = model.min_replicas * 2 if progressive else model.min_replicas + (1 if model.canary else 0)
            cpu, memory = cpu_millicores(requests.cpu), memory_bytes(requests.memory)
            if model.logging is not None:  # the logging sidecar in every replica
                sidecar = model.logging.resources
                if cpu_millicores(sidecar.limits.cpu) > cpu_millicores(most.cpu) or memory_bytes(sidecar.limits.memory) > memory_bytes(most.memory):
                    raise ValueError(
                        f"{where}.logging.resources.limits ({sidecar.limits.cpu} CPU, {sidecar.limits.memory}) exceed "
                        f"limit_range.max ({most.cpu} CPU, {most.memory}): its pods would be rejected"
                    )
                cpu += cpu_millicores(sidecar.requests.cpu)
                memory += memory_bytes(sidecar.requests.memory)
            needed_cpu, needed_memory = pods * cpu, pods * memory
            if model.drift is not None:  # the drift job, while it runs
                job = model.drift.resources
                if cpu_millicores(job.limits.cpu) > cpu_millicores(most.cpu) or memory_bytes(job.limits.memory) > memory_bytes(most.memory):
                    raise ValueError(
                        f"{where}.drift.resources.limits ({job.limits.cpu} CPU, {job.limits.memory}) exceed "
                        f"limit_range.max ({most.cpu} CPU, {most.memory}): the drift job would be rejected"
                    )
                pods += 1
                needed_cpu += cpu_millicores(job.requests.cpu)
                needed_memory += memory_bytes(job.requests.memory)
            if needed_cpu > cpu_millicores(quota.requests_cpu) or needed_memory > memory_bytes(quota.requests_memory) or pods > quota.pods:
                raise ValueError(
                    f"{where}: {pods} pods at its minimum scale request {needed_cpu}m CPU and "
                    f"{needed_memory // 2**20}Mi, above quota.serving (requests_cpu {quota.requests_cpu}, "
                    f"requests_memory {quota.requests_memory}, pods {quota.pods}; a progressive canary counts twice, "
                    "logging sidecars and the drift job included): raise the quota or lower min_replicas"
                )

    # Derived names: one place, so the component, the CLI and the collision checks agree.

    @property
    def stack(self) -> str:
        return f"{STACK_PREFIX}{self.name}"

    @property
    def bucket(self) -> str:
        return self.object_storage.bucket or f"team-{self.name}"

    @property
    def identity(self) -> str:
        """The team's S3 identity and MLflow account and workspace name."""
        return f"team-{self.name}"

    @property
    def runner_label(self) -> str:
        return self.ci_runners.runner_label or f"team-{self.name}"

    def derived_names(self, platform_name: str) -> dict[str, set[str]]:
        """Every name derived from the team that must be unique among the teams of a platform,
        by kind of object (two teams may share a name only across kinds)."""
        work, serving = self.namespaces(platform_name)
        names: dict[str, set[str]] = {
            "stack": {self.stack},
            "namespace": {work, serving},
            "model host domain": {self.domain("<domain>")},
            "S3 identity": {self.identity},
            "MLflow workspace and account": {self.identity},
            "Grafana dashboard": {self.identity},
        }
        if self.uses("object_storage"):
            names["bucket"] = {self.bucket}
        if self.ci_runners.enabled:
            names["runner label"] = {self.runner_label}
        return names

    def uses(self, service: str) -> bool:
        return service in self.services

    def grant_summary(self) -> dict[str, Any]:
        """What the platform stack grants from this config (its output ``teamGrants``): a team
        stack whose file asks for something else must wait for the platform's next update."""
        summary: dict[str, Any] = {"services": sorted(self.services)}
        if self.uses("object_storage"):  # no None values: a stack output drops them
            summary["bucket"] = self.bucket
        return summary

    def namespaces(self, platform_name: str) -> tuple[str, str]:
        """The work and serving namespaces on a platform."""
        work = f"{platform_name}-team-{self.name}"
        return work, f"{work}-serving"

    def domain(self, platform_domain: str) -> str:
        """Parent domain of the team's model hosts: ``<model>.<team>.<platform domain>``."""
        return f"{self.name}.{platform_domain}"

    def hosts(self, platform_domain: str) -> list[str]:
        return [f"{model.name}.{self.domain(platform_domain)}" for model in self.serving.models]


def parse_team(raw: Any, root: str = TEAM_CONFIG_KEY) -> TeamConfig:
    """Validate a raw team object. Raises ConfigError naming each offending field."""
    if not isinstance(raw, dict):
        raise ConfigError([f"{root}: must be a mapping of team settings (given: {_given(raw)})"])
    try:
        return TeamConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(format_errors(error, root, TeamConfig)) from None


def check_platform(team: TeamConfig, platform: PlatformConfig, root: str = TEAM_CONFIG_KEY) -> list[str]:
    """Problems running ``team`` on ``platform``: one line per problem, naming the team field."""
    problems = []
    serving_ns = team.namespaces(platform.name)[1]
    if len(serving_ns) > LABEL_MAX:
        most = TEAM_NAME_MAX - (len(serving_ns) - LABEL_MAX) if len(team.name) <= TEAM_NAME_MAX else 0
        problems.append(
            f"{root}.name: namespace '{serving_ns}' would be {len(serving_ns)} characters (at most "
            f"{LABEL_MAX}); on platform '{platform.name}' team names may have at most {max(most, 1)}"
        )
    if team.uses("tracking"):
        if not platform.tracking.auth:
            problems.append(
                f"{root}.services: 'tracking' needs tracking.auth on the platform (without auth "
                "MLflow isolates nothing); remove 'tracking' or turn platform auth on"
            )
        if not platform.tracking.workspaces:
            problems.append(
                f"{root}.services: 'tracking' gives the team an MLflow workspace: set "
                "tracking.workspaces: true in the platform config and update the platform first"
            )
    if team.uses("object_storage"):
        if platform.object_storage.mode != "bundled":
            problems.append(
                f"{root}.services: 'object_storage' creates a bucket and a scoped identity in the "
                "bundled SeaweedFS; the platform uses an external S3 endpoint: remove "
                "'object_storage' and grant the team access in that provider"
            )
        taken = platform.object_storage.buckets
        if team.bucket in (taken.artifacts, taken.datasets, taken.models):
            problems.append(
                f"{root}.object_storage.bucket: '{team.bucket}' is a platform bucket; choose another name"
            )
    if team.ci_runners.enabled and not platform.ci_runners.enabled:
        problems.append(
            f"{root}.ci_runners: team runners use the ARC CRDs the platform's runner controller "
            "installs; turn on the platform's ci_runners first"
        )
    progressive = [m.name for m in team.serving.models if m.canary is not None and m.canary.mode == "progressive"]
    if progressive and not platform.serving.progressive.enabled:
        problems.append(
            f"{root}.serving.models: {', '.join(progressive)} use canary mode 'progressive', which needs the "
            "platform's Flagger (its CRDs and a controller per team): set serving.progressive.enabled: true "
            "in the platform config and update the platform first, or use mode 'fixed'"
        )
    long_models = [m.name for m in team.serving.models if len(m.name) > MODEL_NAME_MAX]
    if long_models:
        problems.append(f"{root}.serving.models: names too long: {', '.join(long_models)}")
    return problems


def check_collisions(
    team: TeamConfig,
    others: dict[str, TeamConfig],
    root: str = TEAM_CONFIG_KEY,
    platform_name: str = "mlplane",
) -> list[str]:
    """Problems sharing the platform ``platform_name`` with ``others`` (stack name -> team on the
    same platform, deployed or only configured): every derived name of one kind is compared."""
    problems = []
    mine = team.derived_names(platform_name)
    for stack, other in sorted(others.items()):
        if stack == team.stack:
            continue
        if other.name == team.name:
            problems.append(f"{root}.name: team '{team.name}' already exists (stack '{stack}')")
            continue
        theirs = other.derived_names(platform_name)
        if team.uses("object_storage") and team.bucket == f"team-{other.name}" and "bucket" not in theirs:
            # Another team's default bucket stays reserved for it, even before it uses storage.
            theirs["bucket"] = {team.bucket}
        for kind, names in mine.items():
            for shared in sorted(names & theirs.get(kind, set())):
                if kind == "bucket":
                    problems.append(f"{root}.object_storage.bucket: bucket '{shared}' belongs to team '{other.name}' (stack '{stack}')")
                elif kind == "runner label":
                    problems.append(
                        f"{root}.ci_runners.runner_label: '{shared}' is the runner label of team '{other.name}' (stack '{stack}')"
                    )
                else:
                    problems.append(
                        f"{root}.name: {kind} '{shared}' is also a {kind} of team '{other.name}' (stack "
                        f"'{stack}'): two teams would own the same object; choose another team name"
                    )
    return problems
