"""A team environment: an isolated slice of a shared platform, deployed as its own stack.

The :class:`Team` component creates, for one team and nothing else:

- a work and a serving namespace (Pod Security "restricted"), each with a ResourceQuota, a
  LimitRange, default-deny NetworkPolicies for ingress and egress plus one allow per path the
  team needs (DNS, its own namespaces, the platform services it uses, the Gateway, Prometheus);
- a namespaced Role ``team-member`` bound to the team's users and groups (no cluster-scoped RBAC);
- a bucket and an S3 identity limited to it (a grant Job in the platform's storage namespace);
- an MLflow workspace and an account that manages it and nothing else (a Job in the platform's
  tracking namespace, through MLflow's REST API);
- its own ARC controller and runner scale set in its runner namespace ``<work>-runners``
  (created by the platform stack, no member Role: the GitHub credential lives there), whose job
  pods run in the work namespace;
- its models, served behind the platform Gateway at ``<model>.<team>.<domain>``;
- a Grafana dashboard of its models (from the Gateway's per-route stats), added to the platform's
  dashboards ConfigMap by a server-side apply patch (``ConfigMapPatch``) that owns only the
  team's own key, and pod discovery rights for the platform Prometheus in its namespaces.

The platform's layout (names, domain, modes) comes from the platform's validated config; its
addresses and credentials come from the platform stack's outputs (:class:`PlatformOutputs`, read
through a StackReference). Offboarding swaps the setup Jobs for Jobs that revoke the team's
S3 identity and MLflow account (and delete its bucket and workspace unless data is kept); the
stack is then destroyed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from . import ci_runners, kube, monitoring, object_storage, routing, serving, team_access, tracking
from .config import CiRunnersConfig, PlatformConfig, Resources
from .registry import PULL_SECRET_NAME, PUSH_SECRET_NAME, registry_egress
from .team_config import QuotaConfig, TeamConfig

TYPE = "mlplane:team:Team"
#: Namespace label naming the team (set by the team stack only: members cannot edit namespaces).
TEAM_LABEL = kube.TEAM_LABEL
#: The namespaced Role bound to the team's users and groups, in both namespaces.
MEMBER_ROLE = "team-member"
#: ConfigMap in both namespaces with the addresses a team workload needs (use ``envFrom``).
ENVIRONMENT = "team-environment"
#: Secret in the work namespace: the team's S3 identity.
S3_SECRET = "s3-credentials"
#: Secret in both namespaces: the team's MLflow account (the name serving and CI expect).
MLFLOW_SECRET = serving.CREDENTIALS_SECRET
#: Service account the team's runners (and their container hooks) use, in the runner namespace.
RUNNER_ACCOUNT = "team-runner"
#: Pods labelled ``mlplane.dev/scrape: metrics`` with a container port named ``metrics`` are scraped.
SCRAPE_PORT = "metrics"
#: The platform Prometheus' service account (monitoring namespace), granted pod discovery here.
PROMETHEUS_ACCOUNT = "prometheus"
#: Role (in each team namespace) letting the platform Prometheus discover the team's pods.
PROMETHEUS_ROLE = "platform-prometheus"
GRAFANA_DASHBOARDS_CONFIGMAP = "grafana-dashboards"
#: The MLflow role that gives the team account MANAGE on its workspace.
MLFLOW_ROLE = "team"
#: What team members may do in their namespaces: run workloads, never change the guardrails
#: (quota, limits, network policies, RBAC) or the routes on the platform Gateway.
MEMBER_RULES: tuple[dict[str, Any], ...] = (
    {
        "apiGroups": [""],
        "resources": [
            "pods", "pods/log", "pods/exec", "pods/portforward", "services", "configmaps",
            "secrets", "persistentvolumeclaims", "serviceaccounts",
        ],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
    },
    {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "replicasets"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["events", "resourcequotas", "limitranges"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["httproutes"], "verbs": ["get", "list", "watch"]},
)
#: What the runner (ARC's Kubernetes container hooks) needs, in the work namespace, to run job
#: containers as pods there: the 'kubernetes-novolume' hooks' ``requiredPermissions``
#: (actions/runner-container-hooks packages/k8s/src/k8s/index.ts; no Jobs, unlike volume mode).
RUNNER_RULES: tuple[dict[str, Any], ...] = (
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "create", "delete"]},
    {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get", "create"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "create", "delete"]},
)

#: Creates (grant) or removes (revoke) the team's MLflow workspace, account and role through
#: MLflow's REST API. Idempotent; standard library only; never prints a secret.
MLFLOW_SCRIPT = """\
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

uri = os.environ["MLFLOW_TRACKING_URI"].rstrip("/")
admin = f"{os.environ['MLFLOW_ADMIN_USERNAME']}:{os.environ['MLFLOW_ADMIN_PASSWORD']}"
auth = "Basic " + base64.b64encode(admin.encode()).decode()
workspace, username, role_name = os.environ["TEAM_WORKSPACE"], os.environ["TEAM_USERNAME"], os.environ["TEAM_ROLE"]


def call(method, path, body=None, query=None):
    url = uri + path + ("?" + urllib.parse.urlencode(query) if query else "")
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
    return json.loads(text) if text.strip() else {}


def exists(path, query=None):
    try:
        call("GET", path, query=query)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return False
        raise
    return True


for _ in range(60):
    try:
        with urllib.request.urlopen(uri + "/health", timeout=5):
            break
    except OSError:
        time.sleep(5)
else:
    sys.exit(f"MLflow is unreachable at {uri}")

user_exists = exists("/api/2.0/mlflow/users/get", {"username": username})
workspace_exists = exists(f"/api/3.0/mlflow/workspaces/{workspace}")
if os.environ["TEAM_ACTION"] == "revoke":
    delete_data = os.environ["TEAM_DELETE_DATA"] == "true"
    if user_exists:
        call("DELETE", "/api/2.0/mlflow/users/delete", {"username": username})
        print(f"deleted user {username}")
    if workspace_exists and delete_data:
        call("DELETE", f"/api/3.0/mlflow/workspaces/{workspace}", query={"mode": "CASCADE"})
        print(f"deleted workspace {workspace} and everything in it")
    if exists("/api/2.0/mlflow/users/get", {"username": username}):
        sys.exit(f"user {username} still exists")
    if delete_data and exists(f"/api/3.0/mlflow/workspaces/{workspace}"):
        sys.exit(f"workspace {workspace} still exists")
    sys.exit(0)

if not workspace_exists:
    call("POST", "/api/3.0/mlflow/workspaces", {"name": workspace, "description": os.environ["TEAM_DESCRIPTION"]})
    print(f"created workspace {workspace}")
password = os.environ["TEAM_PASSWORD"]
if user_exists:
    call("PATCH", "/api/2.0/mlflow/users/update-password", {"username": username, "password": password})
    print(f"reset the password of user {username}")
else:
    call("POST", "/api/2.0/mlflow/users/create", {"username": username, "password": password})
    print(f"created user {username}")
call("PATCH", "/api/2.0/mlflow/users/update-admin", {"username": username, "is_admin": False})
roles = call("GET", "/api/3.0/mlflow/roles/list", query={"workspace": workspace}).get("roles", [])
role = next((r for r in roles if r["name"] == role_name), None)
if role is None:
    role = call("POST", "/api/3.0/mlflow/roles/create", {"name": role_name, "workspace": workspace})["role"]
grant = {"resource_type": "workspace", "resource_pattern": "*", "permission": "MANAGE"}
if not any(all(p.get(k) == v for k, v in grant.items()) for p in role.get("permissions", [])):
    call("POST", "/api/3.0/mlflow/roles/permissions/add", {"role_id": role["id"], **grant})
assigned = call("GET", "/api/3.0/mlflow/users/roles/list", query={"username": username}).get("roles", [])
if not any(r["id"] == role["id"] for r in assigned):
    call("POST", "/api/3.0/mlflow/roles/assign", {"username": username, "role_id": role["id"]})
print(f"user {username} manages workspace {workspace} and nothing else")
"""

#: Removes the team's S3 identity and (unless data is kept) its bucket from the bundled SeaweedFS.
#: ``weed shell`` reports command errors on its output but exits 0: the result is read back.
S3_REVOKE_SCRIPT = """\
set -eu
weed_shell() { timeout 60 weed shell -master="$SEAWEEDFS_MASTER" -filer="$SEAWEEDFS_FILER" 2>&1; }
printf 's3.configure -user=%s -delete -apply\\n' "$S3_IDENTITY" | weed_shell > /dev/null || true
if printf 's3.configure\\n' | weed_shell | grep -qF "\\"$S3_IDENTITY\\""; then
  echo "identity $S3_IDENTITY is still configured" >&2; exit 1
fi
echo "identity $S3_IDENTITY removed"
if [ "$DELETE_BUCKETS" = "true" ]; then
  for bucket in $S3_BUCKETS; do
    printf 's3.bucket.delete -name %s\\n' "$bucket" | weed_shell
  done
  printf 's3.bucket.list\\n' | weed_shell > /tmp/buckets
  for bucket in $S3_BUCKETS; do
    if awk -v w="$bucket" '{ for (i = 1; i <= NF; i++) if ($i == w) found = 1 } END { exit !found }' /tmp/buckets; then
      echo "bucket $bucket still exists" >&2; exit 1
    fi
  done
  echo "buckets $S3_BUCKETS deleted"
fi
"""


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
    #: Secret: the team's own scoped kubeconfig (mlplane.team_access), never the platform's admin
    #: kubeconfig; None when the platform renders manifests instead of using a cluster.
    kubeconfig: pulumi.Output[str] | None

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
        )


def _team_kubeconfig(kubeconfigs: Any, team: TeamConfig) -> str:
    """The team's kubeconfig from the platform's ``teamKubeconfigs`` output, or a clear error."""
    found = (kubeconfigs or {}).get(team.name) if isinstance(kubeconfigs, Mapping) else None
    if not found:
        local = team.platform_stack.rsplit("/", 1)[-1]
        raise ValueError(
            f"platform stack '{local}' has not admitted team '{team.name}' (no entry in its output "
            f"teamKubeconfigs): with stacks/{'Pulumi.' + team.stack + '.yaml'} in the project, run "
            f"`pulumi up --stack {local}` (`mlplane team create` does), then deploy the team again"
        )
    return str(found)


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
    # The team's own identity (mlplane.team_access), not the admin context of the platform.
    context = team_access.context_name(platform.name, team.name)
    args: dict[str, Any] = {"kubeconfig": outputs.kubeconfig, "context": context, "enable_server_side_apply": True}
    if cluster.mode == "kind" and platform.lifecycle.throwaway:
        # A throwaway kind cluster deleted by hand must not block `mlplane team destroy`.
        args["delete_unreachable"] = True
    return args


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
    #: Swap the setup Jobs for revoke Jobs (``mlplane team destroy`` runs this before destroying).
    offboarding: bool = False
    #: When offboarding: also delete the team's bucket and MLflow workspace with their contents.
    delete_data: bool = True


@dataclass(frozen=True)
class _Namespace:
    """One of the team's namespaces: created by the platform stack (mlplane.team_access)."""

    role: str
    name: str


class Team(pulumi.ComponentResource):
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
        self._environment()
        self.bucket: str | None = None
        self.s3_access_key_id: pulumi.Output[str] | None = None
        self.s3_secret_access_key: pulumi.Output[str] | None = None
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

    # ------------------------------------------------------------------------ the guardrails

    def _guardrails(self, space: _Namespace, quota: QuotaConfig) -> None:
        """Quota, limit range, network policies and member RBAC of one namespace."""
        cfg = self._args.config
        namespace = space.name
        hard = {
            "requests.cpu": quota.requests_cpu,
            "requests.memory": quota.requests_memory,
            "limits.cpu": quota.limits_cpu,
            "limits.memory": quota.limits_memory,
            f"requests.{cfg.quota.gpu_resource}": str(quota.gpus),
            "pods": str(quota.pods),
            "requests.storage": quota.storage,
            "persistentvolumeclaims": str(quota.persistent_volume_claims),
            # Nothing in a team namespace is exposed outside the cluster except through the Gateway.
            "services.nodeports": "0",
            "services.loadbalancers": "0",
        }
        k8s.core.v1.ResourceQuota(
            f"{self._name}-{space.role}-quota",
            metadata={"name": "team-quota", "namespace": namespace, "labels": self._labels("team-quota")},
            spec={"hard": hard},
            opts=self._child(),
        )
        limits = cfg.limit_range
        k8s.core.v1.LimitRange(
            f"{self._name}-{space.role}-limits",
            metadata={"name": "team-limits", "namespace": namespace, "labels": self._labels("team-limits")},
            spec={
                "limits": [
                    {
                        "type": "Container",
                        "defaultRequest": {"cpu": limits.default_request.cpu, "memory": limits.default_request.memory},
                        "default": {"cpu": limits.default_limit.cpu, "memory": limits.default_limit.memory},
                        "max": {"cpu": limits.max.cpu, "memory": limits.max.memory},
                    }
                ]
            },
            opts=self._child(),
        )
        self._network_policies(space)
        self._member_rbac(space)

    def _network_policies(self, space: _Namespace) -> None:
        cfg = self._args.config
        # The same default deny and DNS allow as every platform namespace (kube.isolate_namespace).
        self._policy(space, "deny-all", "default-deny", kube.default_deny_spec())
        self._policy(space, "allow-dns", "allow-dns", kube.allow_dns_spec())
        team = [self._team_peers()]
        self._policy(
            space,
            "allow-team",
            "allow-team",
            {
                "podSelector": {},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": team}],
                "egress": [{"to": team}],
            },
        )
        egress = self._service_egress(space)
        if egress:
            self._policy(
                space,
                "allow-platform",
                "allow-platform-services",
                {"podSelector": {}, "policyTypes": ["Egress"], "egress": egress},
            )
        if cfg.uses("monitoring"):
            self._policy(
                space,
                "allow-prometheus",
                "allow-prometheus",
                {
                    "podSelector": {"matchLabels": {kube.SCRAPE: SCRAPE_PORT}},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {
                            "from": [self._platform_peer("monitoring", "prometheus")],
                            "ports": [{"port": SCRAPE_PORT, "protocol": "TCP"}],
                        }
                    ],
                },
            )
        if space.role == "serving":
            self._policy(
                space,
                "allow-gateway",
                "allow-gateway",
                {
                    "podSelector": {"matchExpressions": [{"key": serving.MODEL_LABEL, "operator": "Exists"}]},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {
                            "from": [kube.namespace_peer(self._args.platform.routing.proxy_namespace or f"{self._platform.name}-gateway")],
                            "ports": [{"port": "http", "protocol": "TCP"}],
                        }
                    ],
                },
            )
        if space.role == "work" and cfg.network.allow_internet_https:
            # Any address but the cloud metadata endpoints (kube.anywhere).
            anywhere = kube.anywhere()
            self._policy(
                space,
                "allow-internet",
                "allow-internet-https",
                {
                    "podSelector": {},
                    "policyTypes": ["Egress"],
                    "egress": [
                        {"to": anywhere, "ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]}
                    ],
                },
            )

    def _service_egress(self, space: _Namespace) -> list[dict[str, Any]]:
        """Egress rules to the platform services the team uses (serving needs MLflow only)."""
        cfg, plat = self._args.config, self._args.platform
        rules: list[dict[str, Any]] = []
        if cfg.uses("tracking"):
            rules.append(
                {
                    "to": [self._platform_peer("tracking", tracking.SERVICE)],
                    "ports": [{"port": tracking.PORT, "protocol": "TCP"}],
                }
            )
        if space.role == "serving":
            return rules
        if cfg.uses("object_storage"):
            rules.append(
                {
                    "to": [self._platform_peer("storage", object_storage.SERVICE)],
                    "ports": [{"port": object_storage.S3_PORT, "protocol": "TCP"}],
                }
            )
        if cfg.uses("registry"):
            rules.append(registry_egress(plat))
        return rules

    def _member_rbac(self, space: _Namespace) -> None:
        members = self._args.config.members
        namespace = space.name
        labels = self._labels(MEMBER_ROLE)
        role = k8s.rbac.v1.Role(
            f"{self._name}-{space.role}-member-role",
            metadata={"name": MEMBER_ROLE, "namespace": namespace, "labels": labels},
            rules=[dict(rule) for rule in MEMBER_RULES],
            opts=self._child(),
        )
        subjects = [
            *({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user} for user in members.users),
            *({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group} for group in members.groups),
        ]
        if subjects:
            k8s.rbac.v1.RoleBinding(
                f"{self._name}-{space.role}-member-binding",
                metadata={"name": MEMBER_ROLE, "namespace": namespace, "labels": labels},
                role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.metadata.name},
                subjects=subjects,
                opts=self._child(),
            )

    def _environment(self) -> None:
        """A ConfigMap per namespace with the addresses of the services the team uses."""
        cfg, out = self._args.config, self._args.outputs
        data: dict[str, pulumi.Input[str]] = {"MLPLANE_TEAM": cfg.name}
        if cfg.uses("tracking"):
            data |= {"MLFLOW_TRACKING_URI": out.tracking_uri, "MLFLOW_WORKSPACE": cfg.identity}
        if cfg.uses("object_storage"):
            data |= {"AWS_ENDPOINT_URL_S3": out.s3_endpoint, "AWS_DEFAULT_REGION": out.s3_region, "MLPLANE_BUCKET": cfg.bucket}
        if cfg.uses("registry"):
            data |= {"MLPLANE_REGISTRY": out.registry_cluster_push_url, "MLPLANE_REGISTRY_PULL_PREFIX": out.registry_pull_prefix}
        for space in (self.work, self.serving):
            k8s.core.v1.ConfigMap(
                f"{self._name}-{space.role}-environment",
                metadata={"name": ENVIRONMENT, "namespace": space.name, "labels": self._labels(ENVIRONMENT)},
                data=data,
                opts=self._child(),
            )

    # ----------------------------------------------------------------------- object storage

    def _object_storage(self) -> None:
        cfg, out = self._args.config, self._args.outputs
        key_id = random.RandomString(
            f"{self._name}-s3-access-key-id", length=20, special=False, lower=False, opts=self._child()
        ).result
        secret_key = pulumi.Output.secret(
            random.RandomPassword(f"{self._name}-s3-secret-access-key", length=40, special=False, opts=self._child()).result
        )
        target = object_storage.seaweedfs_target(self._platform, cfg.object_storage.setup_job_resources)
        target = object_storage.GrantTarget(
            namespace=target.namespace, image=target.image, master=target.master, filer=target.filer,
            resources=target.resources, labels={**target.labels, TEAM_LABEL: cfg.name},
        )
        grant = object_storage.BucketGrant(
            identity=cfg.identity, buckets=(cfg.bucket,), access_key_id=key_id, secret_access_key=secret_key
        )
        if self._args.offboarding:
            self._s3_revoke(grant, target)
        else:
            object_storage.bucket_grant_job(f"{self._name}-s3-grant", grant, target, self._child())
        k8s.core.v1.Secret(
            f"{self._name}-s3-credentials",
            metadata={"name": S3_SECRET, "namespace": self.work.name, "labels": self._labels(S3_SECRET)},
            type="Opaque",
            string_data={
                "AWS_ACCESS_KEY_ID": key_id,
                "AWS_SECRET_ACCESS_KEY": secret_key,
                "AWS_ENDPOINT_URL_S3": out.s3_endpoint,
                "AWS_DEFAULT_REGION": out.s3_region,
                "MLPLANE_BUCKET": cfg.bucket,
            },
            opts=self._child(),
        )
        self.bucket = cfg.bucket
        self.s3_access_key_id = key_id
        self.s3_secret_access_key = secret_key

    def _s3_revoke(self, grant: object_storage.BucketGrant, target: object_storage.GrantTarget) -> None:
        """A Job removing the identity (and the bucket, unless data is kept)."""
        plain = {
            "SEAWEEDFS_MASTER": target.master,
            "SEAWEEDFS_FILER": target.filer,
            "S3_IDENTITY": grant.identity,
            "S3_BUCKETS": " ".join(grant.buckets),
            "DELETE_BUCKETS": "true" if self._args.delete_data else "false",
            "HOME": "/tmp",
        }
        container = _job_container(
            "revoke", target.image, target.resources, ["/bin/sh", "-c", S3_REVOKE_SCRIPT],
            [{"name": key, "value": value} for key, value in plain.items()],
        )
        labels = {**target.labels, object_storage.ADMIN_CLIENT_LABEL: "true"}
        digest = object_storage.content_digest(target.image, S3_REVOKE_SCRIPT, *plain.values())
        self._job(
            f"{self._name}-s3-revoke-job",
            pulumi.Output.concat("s3-revoke-", grant.identity, "-", digest),
            target.namespace,
            dict(target.labels),
            _job_template(container, object_storage.SEAWEEDFS_UID, labels),
        )

    # ----------------------------------------------------------------------------- tracking

    def _tracking(self) -> None:
        cfg, plat, out = self._args.config, self._args.platform, self._args.outputs
        tracking_ns = f"{plat.name}-tracking"
        password = pulumi.Output.secret(
            random.RandomPassword(f"{self._name}-mlflow-password", length=32, special=False, opts=self._child()).result
        )
        labels = {**self._platform.labels("tracking", f"{cfg.identity}-setup"), TEAM_LABEL: cfg.name}
        selector = self._platform.selector("tracking", f"{cfg.identity}-setup")
        setup_secret = k8s.core.v1.Secret(
            f"{self._name}-mlflow-setup-secret",
            metadata={"name": f"{cfg.identity}-mlflow-setup", "namespace": tracking_ns, "labels": labels},
            type="Opaque",
            # Only the team's own password: the Job reads the admin credential from the
            # platform's own Secret, so no copy of it is left behind (and none in team state).
            string_data={"team-password": password},
            opts=self._child(),
        )
        # The Job serves nothing: no ingress at all.
        k8s.networking.v1.NetworkPolicy(
            f"{self._name}-mlflow-setup-network-policy",
            metadata={"name": f"{cfg.identity}-mlflow-setup", "namespace": tracking_ns, "labels": labels},
            spec={"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"], "ingress": []},
            opts=self._child(),
        )
        action = "revoke" if self._args.offboarding else "grant"
        plain = {
            "MLFLOW_TRACKING_URI": out.tracking_uri,
            "TEAM_ACTION": action,
            "TEAM_WORKSPACE": cfg.identity,
            "TEAM_USERNAME": cfg.identity,
            "TEAM_ROLE": MLFLOW_ROLE,
            "TEAM_DESCRIPTION": f"Team {cfg.name} (stack {cfg.stack})",
            "TEAM_DELETE_DATA": "true" if self._args.delete_data else "false",
            "HOME": "/tmp",
        }
        secret_name = setup_secret.metadata.name
        image = self._platform.image("mlflow")
        container = _job_container(
            f"mlflow-{action}", image, cfg.tracking.setup_job_resources, ["python", "-c", MLFLOW_SCRIPT],
            [
                *({"name": key, "value": value} for key, value in plain.items()),
                kube.secret_env("MLFLOW_ADMIN_USERNAME", tracking.ADMIN_SECRET, "username"),
                kube.secret_env("MLFLOW_ADMIN_PASSWORD", tracking.ADMIN_SECRET, "password"),
                kube.secret_env("TEAM_PASSWORD", secret_name, "team-password"),
                *tracking.MLFLOW_TELEMETRY_ENV,
            ],
        )
        container["workingDir"] = "/tmp"
        digest = object_storage.content_digest(image, MLFLOW_SCRIPT, *plain.values(), password)
        self._job(
            f"{self._name}-mlflow-{action}-job",
            pulumi.Output.concat(cfg.identity, f"-mlflow-{action}-", digest),
            tracking_ns,
            labels,
            _job_template(container, tracking.MLFLOW_UID, labels),
            depends_on=[setup_secret],
        )
        self._mlflow_secrets = {
            space.role: k8s.core.v1.Secret(
                f"{self._name}-{space.role}-mlflow-credentials",
                metadata={"name": MLFLOW_SECRET, "namespace": space.name, "labels": self._labels(MLFLOW_SECRET)},
                type="Opaque",
                string_data={"username": cfg.identity, "password": password},
                opts=self._child(),
            )
            for space in (self.work, self.serving)
        }
        self.mlflow_workspace = cfg.identity
        self.mlflow_username = pulumi.Output.from_input(cfg.identity)
        self.mlflow_password = password

    def _job(
        self,
        resource_name: str,
        name: pulumi.Input[str],
        namespace: str,
        labels: Mapping[str, str],
        template: dict[str, Any],
        depends_on: Sequence[pulumi.Resource] = (),
    ) -> None:
        k8s.batch.v1.Job(
            resource_name,
            metadata={
                "name": name,
                "namespace": namespace,
                "labels": dict(labels),
                "annotations": kube.checkov_skips(kube.DIGEST_SKIP),
            },
            spec={"backoffLimit": 3, "activeDeadlineSeconds": 900, "template": template},
            opts=self._child(depends_on=list(depends_on)),
        )

    # ------------------------------------------------------------------------------ serving

    def _serve(self) -> None:
        cfg, plat, out = self._args.config, self._args.platform, self._args.outputs
        assert self.mlflow_password is not None  # serving.models require 'tracking' (TeamConfig)
        http_port = plat.cluster.kind.http_port if plat.cluster.mode == "kind" else 80
        gateway = kube.GatewayRef(
            name=plat.name,
            namespace=f"{plat.name}-gateway",
            domain=cfg.domain(plat.routing.domain),
            http_port=http_port,
            proxy_namespace=plat.routing.proxy_namespace,
            listeners=routing.route_listeners(plat.routing),
        )
        args = serving.ServingArgs(
            config=cfg.serving.as_serving_config(),
            platform=self._team,
            gateway=gateway,
            tracking_uri=out.tracking_uri,
            tracking_username=cfg.identity,
            tracking_password=self.mlflow_password,
            extra_env=({"name": "MLFLOW_WORKSPACE", "value": cfg.identity},),
            # The platform stack puts the team's pull credentials (pull.<team>: its own
            # repositories only) in the serving namespace (Registry.team_credentials).
            image_pull_secrets=(
                ({"name": PULL_SECRET_NAME},) if cfg.uses("registry") and plat.registry.mode == "bundled" else ()
            ),
        )
        if args.config.auth.mode == "api-key":
            self.model_api_key = serving.api_key_secret(
                f"{self._name}-serving-api-keys", self.serving.name, self._labels(serving.API_KEYS_SECRET), self
            )
        for model in cfg.serving.models:
            served = serving.ModelServer(
                self, f"{self._name}-serving", model, args, self.serving.name, None,
                self._mlflow_secrets["serving"],
            ).build()
            self.models.append(served)
            self.model_urls[model.name] = served.url

    # ------------------------------------------------------------------------------ runners

    def _runners(self) -> None:
        """The team's ARC controller, listener and runners in its runner namespace (created by the
        platform stack; no member Role there), job pods in the work namespace.

        ARC reads the GitHub credential in the namespace of the scale set's runners
        (actions-runner-controller secretresolver: the object's own namespace), so the runners
        stay next to it, out of the members' reach; the container hooks create each job pod in
        the work namespace (``ACTIONS_RUNNER_KUBERNETES_NAMESPACE``), where the team's MLflow and
        registry credentials are. See docs/components/ci-runners.md, "Team runners"."""
        cfg, plat, out = self._args.config, self._args.platform, self._args.outputs
        runners = cfg.ci_runners
        label = cfg.runner_label
        namespace = team_access.runners_namespace(self.work.name)
        ci_config = CiRunnersConfig(
            github_config_url=runners.github_config_url,
            github_app=runners.github_app,
            github_token_key=runners.github_token_key,
            runner_group=runners.runner_group,
            repository_visibility=runners.repository_visibility,
            allow_public_repository=runners.allow_public_repository,
            runner_labels=[label],
            min_runners=runners.min_runners,
            max_runners=runners.max_runners,
            container_mode=runners.container_mode,
            runner_resources=runners.runner_resources,
            controller_resources=runners.controller_resources,
            job_resources=runners.job_resources,
            work_volume_size=runners.work_volume_size,
        )
        bundled = cfg.uses("registry") and plat.registry.mode == "bundled"
        ci_args = ci_runners.CiRunnersArgs(
            config=ci_config,
            platform=self._team,
            registry_pull_prefix=out.registry_pull_prefix,
            registry_push_url=out.registry_cluster_push_url,
            # Team runners cannot use 'dind' (team_config), the only mode that reads this.
            registry_insecure=plat.registry.mode == "bundled",
            # The platform stack puts the team's push credential (push.<team>: its own
            # repositories) in the work namespace (Registry.team_credentials).
            registry_push_secret=PUSH_SECRET_NAME if bundled else None,
            job_namespace=self.work.name,
            # The team's own S3 identity (its bucket only; _object_storage), already in the work
            # namespace, which the work namespace's egress policy lets reach the S3 port.
            s3_secret=S3_SECRET if cfg.uses("object_storage") else None,
            tracking_uri=out.tracking_uri,
            tracking_username=cfg.identity,
            tracking_password=self.mlflow_password or pulumi.Output.secret(""),
        )
        labels = self._labels("runners")
        inputs = self._runner_inputs(ci_args, namespace, labels)
        controller_chart = self._platform.chart("arc-controller")
        controller = k8s.helm.v4.Chart(
            f"{self._name}-runner-controller",
            chart=controller_chart.chart,
            version=controller_chart.version,
            name="arc",
            namespace=namespace,
            # Watches the runner namespace only (namespaced Roles, no ClusterRole); the CRDs are
            # the platform's, installed with its own runner controller.
            values=ci_runners.controller_values(ci_config, self._platform, namespace),
            skip_crds=True,
            opts=self._child(depends_on=inputs),
        )
        values = ci_runners.scale_set_values(ci_args, namespace)
        values["template"]["spec"]["serviceAccountName"] = RUNNER_ACCOUNT
        scale_set_chart = self._platform.chart("arc-scale-set")
        k8s.helm.v4.Chart(
            f"{self._name}-runner-scale-set",
            chart=scale_set_chart.chart,
            version=scale_set_chart.version,
            name=label,
            namespace=namespace,
            values=values,
            opts=self._child(depends_on=[controller, *inputs]),
        )
        self.runner_label = label
        self.runners_namespace = namespace

    def _runner_inputs(
        self, args: ci_runners.CiRunnersArgs, namespace: str, labels: dict[str, str]
    ) -> list[pulumi.Resource]:
        """In the runner namespace: its network policies, the GitHub credential, the job pod
        template and the runners' service account; in the work namespace: that account's Role
        (what the container hooks do with job pods) and its binding."""
        runners = self._args.config.ci_runners
        # Nothing connects in; the controller, listener and runners call GitHub and the API server.
        k8s.networking.v1.NetworkPolicy(
            f"{self._name}-runner-deny-ingress",
            metadata={"name": "deny-ingress", "namespace": namespace, "labels": labels},
            spec={"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []},
            opts=self._child(),
        )
        kube.isolate_namespace(f"{self._name}-runner", namespace=namespace, labels=labels, parent=self)
        kube.egress_only_to(
            f"{self._name}-runner-egress", name="runner-egress", namespace=namespace, labels=labels,
            pods=None, rules=ci_runners.egress_rules(args, "controller"), parent=self,
        )
        if runners.github_app is not None:
            credentials: dict[str, pulumi.Input[str]] = {
                "github_app_id": str(runners.github_app.app_id),
                "github_app_installation_id": str(runners.github_app.installation_id),
                "github_app_private_key": pulumi.Output.secret(self._args.secret(runners.github_app.private_key_key)),
            }
        else:
            assert runners.github_token_key is not None  # enabled implies an app or a token
            credentials = {"github_token": pulumi.Output.secret(self._args.secret(runners.github_token_key))}
        github = k8s.core.v1.Secret(
            f"{self._name}-runner-github",
            metadata={"name": ci_runners.GITHUB_SECRET, "namespace": namespace, "labels": labels},
            type="Opaque",
            string_data=credentials,
            opts=self._child(),
        )
        template = pulumi.Output.from_input(ci_runners.job_pod_template(args))
        job_template = k8s.core.v1.ConfigMap(
            f"{self._name}-runner-job-template",
            metadata={"name": ci_runners.JOB_TEMPLATE, "namespace": namespace, "labels": labels},
            data={ci_runners.JOB_TEMPLATE_FILE: template.apply(lambda t: yaml.safe_dump(t, sort_keys=False))},
            opts=self._child(),
        )
        account = k8s.core.v1.ServiceAccount(
            f"{self._name}-runner-account",
            metadata={"name": RUNNER_ACCOUNT, "namespace": namespace, "labels": labels},
            automount_service_account_token=False,
            opts=self._child(),
        )
        role = k8s.rbac.v1.Role(
            f"{self._name}-runner-role",
            metadata={"name": RUNNER_ACCOUNT, "namespace": self.work.name, "labels": labels},
            rules=[dict(rule) for rule in RUNNER_RULES],
            opts=self._child(),
        )
        binding = k8s.rbac.v1.RoleBinding(
            f"{self._name}-runner-role-binding",
            metadata={"name": RUNNER_ACCOUNT, "namespace": self.work.name, "labels": labels},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.metadata.name},
            subjects=[{"kind": "ServiceAccount", "name": account.metadata.name, "namespace": namespace}],
            opts=self._child(),
        )
        return [github, job_template, account, role, binding]

    # --------------------------------------------------------------------------- monitoring

    def _monitoring(self) -> None:
        """Pod discovery for the platform Prometheus in the team's namespaces, and the team dashboard."""
        cfg, plat = self._args.config, self._args.platform
        monitoring_ns = f"{plat.name}-monitoring"
        for space in (self.work, self.serving):
            labels = self._labels("prometheus")
            role = k8s.rbac.v1.Role(
                f"{self._name}-{space.role}-prometheus-role",
                metadata={"name": PROMETHEUS_ROLE, "namespace": space.name, "labels": labels},
                rules=[{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
                opts=self._child(),
            )
            k8s.rbac.v1.RoleBinding(
                f"{self._name}-{space.role}-prometheus-binding",
                metadata={"name": PROMETHEUS_ROLE, "namespace": space.name, "labels": labels},
                role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.metadata.name},
                subjects=[{"kind": "ServiceAccount", "name": PROMETHEUS_ACCOUNT, "namespace": monitoring_ns}],
                opts=self._child(),
            )
        window = monitoring.rate_window(plat.monitoring.prometheus.scrape_interval)
        # Server-side apply of one key: the platform stack keeps owning every other key, and
        # Grafana's file provider picks the new file up without a restart.
        k8s.core.v1.ConfigMapPatch(
            f"{self._name}-grafana-dashboard",
            metadata={"name": GRAFANA_DASHBOARDS_CONFIGMAP, "namespace": monitoring_ns},
            data={dashboard_file(cfg): json.dumps(team_dashboard(cfg, self.serving.name, window), indent=1)},
            opts=self._child(),
        )


def dashboard_file(team: TeamConfig) -> str:
    """Key of the team's dashboard in the platform's Grafana dashboards ConfigMap."""
    return f"{team.identity}.json"


def _job_container(
    name: str, image: str, spec: Resources, command: list[str], env: list[dict[str, Any]]
) -> dict[str, Any]:
    container = kube.container(
        name, image, spec, command=command, env=env, liveness={}, readiness={},
        mounts=[{"name": "tmp", "mountPath": "/tmp"}],
    )
    # A Job runs to completion: probes do not apply (checkov does not ask them of Jobs either).
    del container["livenessProbe"], container["readinessProbe"]
    return container


def _job_template(container: dict[str, Any], uid: int, labels: Mapping[str, str]) -> dict[str, Any]:
    template = kube.Workload(
        containers=[container], uid=uid, volumes=[{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}]
    ).template(labels)
    template["spec"]["restartPolicy"] = "Never"
    return template


def _panel(panel_id: int, title: str, expr: str, unit: str, y: int, description: str) -> dict[str, Any]:
    source = {"type": "prometheus", "uid": monitoring.DATASOURCE_UID}
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": source,
        "gridPos": {"h": 8, "w": 12, "x": 12 * ((panel_id - 1) % 2), "y": y},
        "targets": [{"datasource": source, "refId": "A", "expr": expr, "legendFormat": "{{model}}", "range": True}],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
    }


def team_dashboard(team: TeamConfig, serving_namespace: str, window: str) -> dict[str, Any]:
    """The team's Grafana dashboard: its models' traffic, from the Envoy per-route stats Prometheus
    already scrapes for the platform (no recording rules needed)."""
    cluster = f'envoy_cluster_name=~"httproute/{serving_namespace}/.*"'

    def by_model(expr: str) -> str:
        return (
            f'label_replace({expr}, "model", "$1", "envoy_cluster_name", '
            f'"httproute/{serving_namespace}/([^/]+)/.*")'
        )

    requests = f"sum by (envoy_cluster_name) (rate(envoy_cluster_upstream_rq_total{{{cluster}}}[{window}]))"
    errors = (
        f'sum by (envoy_cluster_name) (rate(envoy_cluster_upstream_rq_xx{{{cluster},envoy_response_code_class="5"}}[{window}]))'
    )
    latency = (
        f"histogram_quantile(0.99, sum by (envoy_cluster_name, le) "
        f"(rate(envoy_cluster_upstream_rq_time_bucket{{{cluster}}}[{window}]))) / 1000"
    )
    return {
        "uid": team.identity,
        "title": f"Team {team.name}",
        "description": f"Models of team {team.name} (stack {team.stack}), from the Gateway's per-route stats.",
        "tags": ["mlplane", "team", team.identity],
        "editable": False,
        "schemaVersion": 41,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "browser",
        "panels": [
            _panel(1, "Requests per second", by_model(requests), "reqps", 0,
                   "Requests to each of the team's models through the Gateway."),
            _panel(2, "Error ratio (5xx)", by_model(f"({errors}) / ({requests})"), "percentunit", 0,
                   "Share of requests answered with a 5xx."),
            _panel(3, "p99 latency", by_model(latency), "s", 8,
                   "99th percentile of the upstream request time, per model."),
        ],
    }


def team_program(
    team: TeamConfig, platform: PlatformConfig, *, offboarding: bool = False, delete_data: bool = True
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
    provider = k8s.Provider(f"{team.stack}-kubernetes", **provider_args(platform, team, outputs))
    component = Team(
        team.stack,
        TeamArgs(
            config=team, platform=platform, outputs=outputs, provider=provider,
            secret=stack_config.require_secret, offboarding=offboarding, delete_data=delete_data,
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
