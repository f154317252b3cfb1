"""What the platform grants each team stack: its namespaces and a scoped provisioning identity.

A team stack never holds the platform's cluster-admin kubeconfig. For every team stack of the
project that names this platform stack (``stacks/Pulumi.team-*.yaml``, see
:func:`mlplane.program.admitted_teams`), the platform stack creates, under one ``TeamAccess``
component per team:

- the team's work and serving namespaces (cluster-scoped: a team identity cannot create
  namespaces at all), labelled for Pod Security "restricted" like every platform namespace, and
  its runner namespace ``<work>-runners`` (the team's ARC controller, listener, runners and GitHub
  credential; no member Role there: mlplane.services.admission, docs/components/ci-runners.md);
- a ServiceAccount ``team-<name>`` in the ``<platform>-teams`` namespace and a long-lived token
  for it (a ``kubernetes.io/service-account-token`` Secret there; the kubernetes provider waits
  for the token controller to fill it in, pulumi/pulumi-kubernetes#2048);
- a Role ``team-provisioner`` in each of the team's namespaces with every verb on every namespaced
  resource (the team stack creates quotas, limits, network policies, RBAC, workloads there);
- in the platform namespaces, one Role: a patch of the Grafana dashboards ConfigMap (by name).
  The team's grants on the storage and tracking services (its S3 identity and bucket, its MLflow
  workspace and account, the Jobs that make them) are the platform stack's own objects
  (mlplane.services.team_grants), their credentials in the secret output ``teamCredentials``;
- a kubeconfig for that identity (the admin kubeconfig's server and CA, the token as user), in
  the platform's secret output ``teamKubeconfigs`` that the team stack's provider uses.

Once for all teams, :func:`mlplane.services.admission.team_policies`: the ValidatingAdmissionPolicies that
limit the service accounts of pods in team namespaces and refuse service-account-token Secrets.
No ClusterRole and no ClusterRoleBinding is created for a team. The proof is
``tests/unit/team/test_team_identity.py`` (access reviews against a real kube-apiserver).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s
import yaml

from mlplane.backing.workload_identity import GrantsTeams, PushesWithIdentity
from mlplane.services import admission, team_grants
from mlplane.core import kube
from mlplane.config.team import RUNNERS_SUFFIX, TeamConfig

TYPE = "mlplane:teams:TeamAccess"
#: The namespace of the team provisioning identities: ``<platform>-teams``.
NAMESPACE_SUFFIX = "teams"
#: The Role (and RoleBinding) of a team's identity, in every namespace it may write to.
ROLE = "team-provisioner"
#: Namespace label naming the team (members cannot edit namespaces).
TEAM_LABEL = kube.TEAM_LABEL
GRAFANA_DASHBOARDS_CONFIGMAP = "grafana-dashboards"
READ = ["get", "list", "watch"]
#: Every verb the kubernetes provider uses on an object it manages by name (server-side apply
#: creates with PATCH, which also needs ``create``).
BY_NAME = ["get", "patch", "update", "delete"]


@dataclass(frozen=True)
class TeamGrant:
    """One team the platform admits: its name and its two namespaces."""

    name: str
    work_namespace: str
    serving_namespace: str
    #: The team's validated config: its grants (bucket, MLflow workspace) are made from it. None:
    #: namespaces and identity only.
    config: TeamConfig | None = None
    #: Set while `mlplane team destroy` offboards the team: revoke Jobs replace the grant Jobs.
    offboarding: team_grants.Offboarding | None = None

    @property
    def identity(self) -> str:
        """The service account (and S3 identity, MLflow account) name: ``team-<name>``."""
        return f"team-{self.name}"

    @property
    def namespaces(self) -> tuple[str, str]:
        return self.work_namespace, self.serving_namespace

    @property
    def runners_namespace(self) -> str:
        """The team's runner namespace: ARC and the GitHub credential, out of the members' reach."""
        return runners_namespace(self.work_namespace)


def runners_namespace(work_namespace: str) -> str:
    return f"{work_namespace}{RUNNERS_SUFFIX}"


def identities_namespace(platform_name: str) -> str:
    return f"{platform_name}-{NAMESPACE_SUFFIX}"


def context_name(platform_name: str, team: str) -> str:
    """The kubeconfig context of a team's identity."""
    return f"{platform_name}-team-{team}"


def platform_rules(platform_name: str, identity: str) -> dict[str, list[dict[str, Any]]]:
    """Namespace -> rules: what a team stack may do in the platform's own namespaces. Only the
    patch of its Grafana dashboard: its grants on the storage and tracking services are made by
    the platform stack (mlplane.services.team_grants), so it has no right at all there."""
    return {
        f"{platform_name}-monitoring": [
            # The team's dashboard is one key of the platform's ConfigMap (a server-side apply patch).
            {
                "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "patch"],
                "resourceNames": [GRAFANA_DASHBOARDS_CONFIGMAP],
            },
        ],
    }


#: In the team's own namespaces: everything namespaced (the team stack owns them).
OWNER_RULES: tuple[dict[str, Any], ...] = ({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},)


def team_kubeconfig(admin_kubeconfig: str, admin_context: str, context: str, user: str, token: str) -> str:
    """A kubeconfig for ``user`` with ``token``, on the cluster of ``admin_context``: the admin
    kubeconfig's server and CA only (never its credentials)."""
    try:
        document = yaml.safe_load(admin_kubeconfig) or {}
    except yaml.YAMLError:
        document = None
    if not isinstance(document, dict) or not document:
        # Only an offline render's stand-in is empty or not a kubeconfig (kind and 'existing' give YAML).
        document = {"contexts": [{"name": admin_context, "context": {}}]}
    contexts = {entry.get("name"): entry.get("context") or {} for entry in document.get("contexts") or []}
    if admin_context not in contexts:
        raise ValueError(f"the platform's kubeconfig has no context '{admin_context}'")
    cluster_name = contexts[admin_context].get("cluster")
    clusters = {entry.get("name"): entry.get("cluster") or {} for entry in document.get("clusters") or []}
    cluster = {key: value for key, value in clusters.get(cluster_name, {}).items() if key in (
        "server", "certificate-authority-data", "certificate-authority", "tls-server-name", "proxy-url",
    )}
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": cluster}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": user}}],
            "current-context": context,
        },
        sort_keys=False,
    )


@dataclass(frozen=True)
class TeamAccessArgs:
    grant: TeamGrant
    platform: kube.Platform
    #: The ``<platform>-teams`` namespace (created once by the caller).
    identities_namespace: pulumi.Input[str]
    #: The platform's admin kubeconfig and its context; None when the cluster is only rendered.
    admin_kubeconfig: pulumi.Output[str] | None
    admin_context: str | None
    #: The platform namespaces that exist (a team is granted only in those).
    platform_namespaces: frozenset[str] = frozenset()
    #: The MLflow server's in-cluster URL (the team's MLflow grant Job calls it).
    tracking_uri: pulumi.Input[str] = ""
    #: A store that grants teams a bucket and roles (S3 on AWS) and a registry pods push to with
    #: them (ECR); None: the bundled store's keys (mlplane.services.team_grants).
    storage: GrantsTeams | None = None
    registry: PushesWithIdentity | None = None


class TeamAccess(pulumi.ComponentResource):
    """A team's namespaces and provisioning identity (see the module docstring).

    Children, named ``<name>-<role>``: ``work-namespace``, ``serving-namespace``, ``runners-namespace``, ``account``,
    ``token``, ``<namespace role>-role`` and ``<namespace role>-binding`` per namespace it may write,
    and the team's grants (mlplane.services.team_grants: ``s3-*``, ``mlflow-*``).
    Outputs: ``kubeconfig`` (secret; None when the cluster is only rendered), ``credentials``.
    """

    def __init__(self, name: str, args: TeamAccessArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        grant, plat = args.grant, args.platform
        child = pulumi.ResourceOptions(parent=self)
        team_context = kube.Platform(
            name=grant.work_namespace, provider=plat.provider, protect_stateful=False, secret=plat.secret,
            registry_mirror=plat.registry_mirror, images=plat.images,
        )
        extra = {TEAM_LABEL: grant.name}
        # Outside throwaway stacks a team's namespaces (its volumes, its Secrets) are retained on
        # delete unless the team is being offboarded: a team file removed or renamed by mistake
        # drops them from the state and leaves them, data included, in the cluster. The revoke
        # update of `mlplane team destroy` records them as not retained, so its last update deletes them.
        retain = plat.protect_stateful and grant.offboarding is None
        self.namespaces: dict[str, k8s.core.v1.Namespace] = {
            role: kube.namespace(
                team_context, f"{name}-{role}-namespace", namespace, parent=self, component="team",
                gateway_access=role == "serving", extra_labels=extra, retain_on_delete=retain,
            )
            for role, namespace in (("work", grant.work_namespace), ("serving", grant.serving_namespace))
        }
        # Not labelled with the team label: member-facing policies (network, admission) select
        # the work and serving namespaces by it; this one has its own (mlplane.services.admission).
        self.namespaces["runners"] = kube.namespace(
            team_context, f"{name}-runners-namespace", grant.runners_namespace, parent=self, component="team",
            extra_labels={admission.RUNNERS_LABEL: grant.name},
        )
        labels = {**plat.labels("teams", grant.identity), TEAM_LABEL: grant.name}
        account = k8s.core.v1.ServiceAccount(
            f"{name}-account",
            metadata={"name": grant.identity, "namespace": args.identities_namespace, "labels": labels},
            automount_service_account_token=False,
            opts=child,
        )
        token = k8s.core.v1.Secret(
            f"{name}-token",
            metadata={
                "name": f"{grant.identity}-token",
                "namespace": args.identities_namespace,
                "labels": labels,
                "annotations": {"kubernetes.io/service-account.name": grant.identity},
            },
            type="kubernetes.io/service-account-token",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[account], additional_secret_outputs=["data"]),
        )
        subject = {"kind": "ServiceAccount", "name": grant.identity, "namespace": args.identities_namespace}
        scopes: list[tuple[str, pulumi.Input[str], Sequence[Mapping[str, Any]], Sequence[pulumi.Resource]]] = [
            (role, resource.metadata.name, OWNER_RULES, [resource]) for role, resource in self.namespaces.items()
        ]
        scopes += [
            (namespace.removeprefix(f"{plat.name}-"), namespace, rules, [])
            for namespace, rules in platform_rules(plat.name, grant.identity).items()
            if namespace in args.platform_namespaces
        ]
        for role_name, namespace, rules, after in scopes:
            role = k8s.rbac.v1.Role(
                f"{name}-{role_name}-role",
                metadata={"name": f"{ROLE}-{grant.name}" if role_name not in ("work", "serving", "runners") else ROLE,
                          "namespace": namespace, "labels": labels},
                rules=[dict(rule) for rule in rules],
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(after)),
            )
            k8s.rbac.v1.RoleBinding(
                f"{name}-{role_name}-binding",
                metadata={"name": role.metadata.name, "namespace": namespace, "labels": labels},
                role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.metadata.name},
                subjects=[subject],
                opts=child,
            )
        self.credentials = team_grants.TeamCredentials()
        if grant.config is not None:
            self.credentials = team_grants.grant_team(
                name, grant.config, plat, self,
                object_storage_namespace=f"{plat.name}-storage" in args.platform_namespaces,
                tracking_namespace=f"{plat.name}-tracking" in args.platform_namespaces,
                tracking_uri=args.tracking_uri, offboarding=grant.offboarding,
                storage=args.storage, registry=args.registry,
            )
        self.kubeconfig: pulumi.Output[str] | None = None
        if args.admin_kubeconfig is not None and args.admin_context is not None:
            admin_context = args.admin_context
            context = context_name(plat.name, grant.name)
            self.kubeconfig = pulumi.Output.secret(
                pulumi.Output.all(args.admin_kubeconfig, token.data).apply(
                    lambda values: team_kubeconfig(
                        values[0], admin_context, context, grant.identity,
                        base64.b64decode((values[1] or {}).get("token", "")).decode(),
                    )
                )
            )
        self.register_outputs({"kubeconfig": self.kubeconfig})


@dataclass(frozen=True)
class TeamsArgs:
    teams: tuple[TeamGrant, ...]
    platform: kube.Platform
    admin_kubeconfig: pulumi.Output[str] | None
    admin_context: str | None
    platform_namespaces: frozenset[str] = frozenset()
    tracking_uri: pulumi.Input[str] = ""
    storage: GrantsTeams | None = None
    registry: PushesWithIdentity | None = None


class Teams(pulumi.ComponentResource):
    """Every admitted team's access: the ``<platform>-teams`` namespace (child ``namespace``), the
    admission policies of team namespaces (children ``admission-*``, mlplane.services.admission) and one
    :class:`TeamAccess` per team (child ``<team>``). Outputs: ``kubeconfigs`` (team -> secret),
    ``credentials`` (team -> the credentials its grants generated, secret) and ``buckets`` (team ->
    its bucket's physical name, when the store names buckets: S3 on AWS)."""

    def __init__(self, name: str, args: TeamsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplane:teams:Teams", name, None, opts)
        plat = args.platform
        namespace = kube.namespace(
            plat, f"{name}-namespace", identities_namespace(plat.name), parent=self, component="teams"
        )
        # With roles bound to the teams' service accounts, their pods run as those too.
        accounts = admission.TEAM_POD_ACCOUNTS + (team_grants.WORKLOAD_ACCOUNTS if args.storage is not None else ())
        admission.team_policies(f"{name}-admission", plat, self, accounts)
        self.kubeconfigs: dict[str, pulumi.Output[str]] = {}
        self.credentials: dict[str, dict[str, pulumi.Output[str]]] = {}
        self.buckets: dict[str, pulumi.Output[str]] = {}
        for grant in sorted(args.teams, key=lambda g: g.name):
            access = TeamAccess(
                f"{name}-{grant.name}",
                TeamAccessArgs(
                    grant=grant, platform=plat, identities_namespace=namespace.metadata.name,
                    admin_kubeconfig=args.admin_kubeconfig, admin_context=args.admin_context,
                    platform_namespaces=args.platform_namespaces, tracking_uri=args.tracking_uri,
                    storage=args.storage, registry=args.registry,
                ),
                pulumi.ResourceOptions(parent=self),
            )
            self.credentials[grant.name] = access.credentials.output()
            if access.credentials.bucket is not None:
                self.buckets[grant.name] = access.credentials.bucket
            if access.kubeconfig is not None:
                self.kubeconfigs[grant.name] = access.kubeconfig
        self.register_outputs({"kubeconfigs": self.kubeconfigs})
