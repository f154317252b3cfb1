"""The guardrails: each rule on its validation function, the policy-pack adapters, the reference.

Rules are tested directly (constructing a PolicyPack starts a server and blocks); the pack itself
is started by one `servers` test and spoken to over gRPC the way the engine does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.policy import _NotApplicableError
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from mlplane.core import kube
from mlplane import policies
from mlplane.config import resources as resources_factory
from mlplane.policies import UNKNOWN, Resource, Stack

from conftest import opts

ROOT = Path(__file__).resolve().parents[3]
PACK = ROOT / "components" / "policypack"
STACK = Stack(name="prod")
THROWAWAY = Stack(name="laptop", throwaway=True)

GROUPS = {
    "Namespace": "core/v1",
    "Secret": "core/v1",
    "Service": "core/v1",
    "ServiceAccount": "core/v1",
    "ResourceQuota": "core/v1",
    "LimitRange": "core/v1",
    "PersistentVolumeClaim": "core/v1",
    "Pod": "core/v1",
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "Job": "batch/v1",
    "NetworkPolicy": "networking.k8s.io/v1",
    "ClusterRole": "rbac.authorization.k8s.io/v1",
    "ClusterRoleBinding": "rbac.authorization.k8s.io/v1",
    "RoleBinding": "rbac.authorization.k8s.io/v1",
    "PodDisruptionBudget": "policy/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
}


def k8s_object(kind: str, name: str, namespace: str | None = "team-a", *, annotations: dict | None = None,
               labels: dict | None = None, protect: bool = False, retain: bool | None = None,
               secret_paths: set[str] | None = None, **body: Any) -> Resource:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    if annotations:
        metadata["annotations"] = annotations
    if labels:
        metadata["labels"] = labels
    group = GROUPS[kind]
    type_ = f"kubernetes:{group}:{kind}"
    return Resource(
        type=type_,
        name=f"res-{name}",
        urn=f"urn:pulumi:prod::proj::{type_}::res-{name}",
        props={"apiVersion": group.removeprefix("core/"), "kind": kind, "metadata": metadata, **body},
        protect=protect,
        retain_on_delete=retain,
        secret_paths=frozenset(secret_paths) if secret_paths is not None else None,
    )


def good_container(name: str = "app", image: str = "ghcr.io/acme/app:1.2.3") -> dict[str, Any]:
    return kube.container(
        name,
        image,
        resources_factory("10m", "16Mi", "100m", "64Mi")(),
        ports=[("http", 8080)],
        liveness=kube.http_probe("/health", "http"),
        readiness=kube.http_probe("/ready", "http"),
    )


def good_pod(**overrides: Any) -> dict[str, Any]:
    template = kube.Workload(containers=[good_container()], uid=10001).template({"app": "x"})
    template["spec"].update(overrides)
    return template


def deployment(name: str = "app", *, replicas: int = 1, template: dict | None = None, **meta: Any) -> Resource:
    return k8s_object(
        "Deployment",
        name,
        spec={"replicas": replicas, "selector": {"matchLabels": {"app": "x"}}, "template": template or good_pod()},
        **meta,
    )


def messages(problems: list[policies.Problem]) -> list[str]:
    return [p.message for p in problems]


def run(name: str, resource: Resource, stack: Stack = STACK) -> list[str]:
    check = policies.policy(name).resource_check
    assert check is not None
    return messages(check(resource, stack))


def run_stack(name: str, resources: list[Resource], stack: Stack = STACK) -> list[policies.Problem]:
    check = policies.policy(name).stack_check
    assert check is not None
    return check(resources, stack)


# --------------------------------------------------------------------------------------------
# Definitions
# --------------------------------------------------------------------------------------------


def test_every_policy_has_a_unique_name_rationale_level_and_one_check():
    names = [p.name for p in policies.POLICIES]
    assert len(names) == len(set(names)) and "all" not in names
    for item in policies.POLICIES:
        assert item.description and item.rationale and item.remediation and item.applies_to
        assert item.enforcement in (policies.MANDATORY, policies.ADVISORY)
        assert (item.resource_check is None) != (item.stack_check is None)


def test_security_baseline_policies_are_mandatory():
    for name in ("pod-security-admission", "restricted-security-context", "service-account-token",
                 "secrets-by-reference", "no-default-namespace", "pinned-images", "requests-and-limits",
                 "stateful-protection", "team-namespace-isolation", "no-plain-secret-config"):
        assert policies.policy(name).enforcement == policies.MANDATORY, name
    for name in ("health-probes", "read-only-root-filesystem", "disruption-budgets"):
        assert policies.policy(name).enforcement == policies.ADVISORY, name


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("DB_PASSWORD", True),
        ("GF_SECURITY_ADMIN_PASSWORD", True),
        ("githubToken", True),
        ("aws:secretKey", True),
        ("MLFLOW_FLASK_SERVER_SECRET_KEY", True),
        ("privateKeyPem", True),
        ("AWS_ACCESS_KEY_ID", False),
        ("MLFLOW_AUTH_CONFIG_PATH", False),
        ("sshPublicKey", False),
        ("platform", False),
        ("region", False),
        ("TOKEN_FILE", False),
    ],
)
def test_secret_looking_names(name, secret):
    assert policies.looks_secret(name) is secret


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("ghcr.io/mlflow/mlflow:v3.17.0-full", True),
        ("docker.io/library/postgres@sha256:" + "a" * 64, True),
        ("localhost:5001/iris:1.2.0", True),
        ("localhost:5001/iris", False),
        ("nginx", False),
        ("nginx:latest", False),
    ],
)
def test_pinned_image_references(image, pinned):
    assert policies.pinned_image(image) is pinned


def test_parent_type_is_read_from_the_urn():
    resource = Resource(
        type="command:local:Command",
        name="mlplane-cluster-kind",
        urn="urn:pulumi:local::mlplane::mlplane:index:Platform$mlplane:cluster:Cluster$command:local:Command::mlplane-cluster-kind",
        props={},
    )
    assert resource.parent_type == "mlplane:cluster:Cluster"


# --------------------------------------------------------------------------------------------
# Security baseline
# --------------------------------------------------------------------------------------------

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "v1.34"}


def test_restricted_namespace_with_pinned_version_passes():
    assert run("pod-security-admission", k8s_object("Namespace", "ml", None, labels=RESTRICTED)) == []


def test_namespace_without_pod_security_label_fails():
    assert run("pod-security-admission", k8s_object("Namespace", "ml", None)) == [
        "no 'pod-security.kubernetes.io/enforce' label: Pod Security admission does not apply"
    ]


def test_baseline_namespace_needs_a_documented_reason():
    labels = {**RESTRICTED, "pod-security.kubernetes.io/enforce": "baseline"}
    assert run("pod-security-admission", k8s_object("Namespace", "ml", None, labels=labels)) == [
        "enforces Pod Security 'baseline' without saying why"
    ]
    reasoned = k8s_object("Namespace", "ml", None, labels=labels, annotations={policies.POD_SECURITY_REASON: "dind"})
    assert run("pod-security-admission", reasoned) == []


def test_team_namespace_must_be_restricted_whatever_the_reason():
    labels = {**RESTRICTED, "pod-security.kubernetes.io/enforce": "privileged", policies.TEAM_LABEL: "a"}
    ns = k8s_object("Namespace", "team-a", None, labels=labels, annotations={policies.POD_SECURITY_REASON: "please"})
    assert run("pod-security-admission", ns) == ["team namespace enforces Pod Security 'privileged'"]


def test_floating_pod_security_version_fails():
    labels = {**RESTRICTED, "pod-security.kubernetes.io/enforce-version": "latest"}
    assert len(run("pod-security-admission", k8s_object("Namespace", "ml", None, labels=labels))) == 1


def test_pods_built_with_the_kube_helpers_pass_every_resource_policy():
    resource = deployment()
    for item in policies.POLICIES:
        if item.resource_check is not None:
            assert item.resource_check(resource, STACK) == [], item.name


def test_bare_container_breaks_each_part_of_the_restricted_profile():
    template = {"spec": {"containers": [{"name": "app", "image": "a:1"}]}}
    assert run("restricted-security-context", deployment(template=template)) == [
        "container 'app': runAsNonRoot is not true",
        "container 'app': no fixed non-root runAsUser",
        "container 'app': allowPrivilegeEscalation is not false",
        "container 'app': does not drop ALL capabilities",
        "container 'app': no RuntimeDefault seccomp profile",
    ]


def test_pod_level_settings_apply_to_every_container_and_uids_may_be_floats():
    template = good_pod()
    template["spec"]["securityContext"]["runAsUser"] = 10001.0  # what the RPC layer delivers
    container = template["spec"]["containers"][0]
    container["securityContext"].pop("runAsNonRoot")
    assert run("restricted-security-context", deployment(template=template)) == []


def test_privileged_container_host_namespaces_and_host_paths_fail():
    template = good_pod(hostNetwork=True, volumes=[{"name": "sock", "hostPath": {"path": "/var/run"}}])
    container = template["spec"]["containers"][0]
    container["securityContext"].update(privileged=True, capabilities={"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "SYS_ADMIN"]})
    assert run("restricted-security-context", deployment(template=template)) == [
        "pod sets hostNetwork: it shares the node's namespace",
        "volume 'sock' mounts a hostPath",
        "container 'app': runs privileged",
        "container 'app': adds capabilities SYS_ADMIN",
    ]


def test_inline_checkov_exception_switches_off_only_its_part():
    template = good_pod()
    template["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    template["spec"]["containers"][0]["securityContext"]["privileged"] = True
    skipped = deployment(template=template, annotations=kube.checkov_skips(("CKV_K8S_20", "the sidecar needs it")))
    assert run("restricted-security-context", skipped) == ["container 'app': runs privileged"]


def test_init_containers_are_checked_too():
    template = good_pod(initContainers=[{"name": "init", "image": "a:1", "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}])
    assert run("restricted-security-context", deployment(template=template)) == []
    template["spec"]["initContainers"][0]["securityContext"] = {}
    assert "init container 'init': allowPrivilegeEscalation is not false" in run("restricted-security-context", deployment(template=template))


def test_default_service_account_token_must_not_be_mounted():
    mounted = good_pod()
    mounted["spec"].pop("automountServiceAccountToken")
    assert run("service-account-token", deployment(template=mounted)) == ["pod mounts the default service account's API token"]
    own_account = good_pod(serviceAccountName="controller")
    own_account["spec"].pop("automountServiceAccountToken")
    assert run("service-account-token", deployment(template=own_account)) == []


def test_secret_env_literal_fails_and_secret_reference_passes():
    template = good_pod()
    template["spec"]["containers"][0]["env"] = [
        {"name": "DB_PASSWORD", "value": "hunter2"},
        {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
        {"name": "AWS_ACCESS_KEY_ID", "value": "AKIA"},
        {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/var/run/creds/key.json"},
    ]
    assert run("secrets-by-reference", deployment(template=template)) == ["container 'app': env DB_PASSWORD holds a literal value"]


def test_pulumi_secret_inlined_into_a_pod_template_fails_when_secrets_are_known():
    leaked = deployment(secret_paths={"spec"})
    assert run("secrets-by-reference", leaked) == [
        "a Pulumi secret is written into the pod template (env value, args or command): it shows in plain text in the object"
    ]
    assert run("secrets-by-reference", deployment(secret_paths=None)) == []


def test_secret_values_must_be_pulumi_secrets():
    literal = k8s_object("Secret", "db", stringData={"username": "mlflow", "password": "hunter2"}, secret_paths=set())
    assert run("secrets-by-reference", literal) == ["stringData.password is a literal in the program, not a Pulumi secret"]
    generated = k8s_object("Secret", "db", stringData={"username": "mlflow", "password": "x"}, secret_paths={"stringData"})
    assert run("secrets-by-reference", generated) == []
    unknown = k8s_object("Secret", "db", stringData={"password": "x"}, secret_paths=None)
    assert run("secrets-by-reference", unknown) == []


def test_objects_in_the_default_namespace_fail():
    assert run("no-default-namespace", k8s_object("Service", "svc", None)) == ["Service is created in the 'default' namespace"]
    assert run("no-default-namespace", k8s_object("Service", "svc", "default")) == ["Service is created in the 'default' namespace"]
    assert run("no-default-namespace", k8s_object("ClusterRole", "reader", None)) == []
    assert run("no-default-namespace", k8s_object("Namespace", "ml", None)) == []


# --------------------------------------------------------------------------------------------
# Platform rules
# --------------------------------------------------------------------------------------------


def test_unpinned_container_images_fail():
    template = good_pod()
    template["spec"]["containers"].append(good_container("sidecar", "busybox"))
    assert run("pinned-images", deployment(template=template)) == [
        "container 'sidecar': image 'busybox' is not pinned to a tag or digest"
    ]


def chart(version: Any, values: dict | None = None, chart_ref: str = "oci://docker.io/envoyproxy/gateway-helm") -> Resource:
    return Resource(
        type="kubernetes:helm.sh/v4:Chart",
        name="gateway",
        urn="urn:pulumi:prod::proj::kubernetes:helm.sh/v4:Chart::gateway",
        props={"chart": chart_ref, "version": version, "values": values or {}},
    )


def test_helm_charts_are_pinned_to_an_exact_version():
    assert run("pinned-images", chart("v1.9.1")) == []
    assert run("pinned-images", chart("0.14.2")) == []
    for floating in ("^1.9.0", "1.x", None, ">=1.0.0"):
        assert len(run("pinned-images", chart(floating))) == 1, floating
    assert run("pinned-images", chart(None, chart_ref="./charts/local")) == []
    assert run("pinned-images", chart(None, chart_ref="charts/mlplane-0.1.0.tgz")) == []
    assert len(run("pinned-images", chart(None, chart_ref="bitnami/nginx"))) == 1


def test_images_in_chart_values_are_pinned():
    values = {
        "template": {"spec": {"containers": [{"name": "runner", "image": "ghcr.io/actions/actions-runner:latest"}]}},
        "deployment": {"envoyGateway": {"image": {"repository": "envoyproxy/gateway", "tag": ""}}},
        "ok": {"image": {"repository": "envoyproxy/gateway", "tag": "v1.9.1"}},
    }
    assert run("pinned-images", chart("v1.9.1", values)) == [
        "chart value values.template.spec.containers[0].image is image 'ghcr.io/actions/actions-runner:latest', not pinned to a tag or digest",
        "chart value values.deployment.envoyGateway.image.tag is image 'envoyproxy/gateway:', not pinned to a tag or digest",
    ]


def test_missing_requests_and_limits_are_listed_and_can_be_excepted_one_by_one():
    template = good_pod()
    template["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "10m"}}
    assert run("requests-and-limits", deployment(template=template)) == [
        "container 'app': no limits.cpu, requests.memory, limits.memory"
    ]
    skipped = deployment(template=template, annotations=kube.checkov_skips(("CKV_K8S_11", "bursty batch")))
    assert run("requests-and-limits", skipped) == ["container 'app': no requests.memory, limits.memory"]


def test_long_running_containers_need_probes_but_jobs_do_not():
    template = good_pod()
    template["spec"]["containers"][0].pop("readinessProbe")
    assert run("health-probes", deployment(template=template)) == ["container 'app': no readinessProbe"]
    job = k8s_object("Job", "migrate", spec={"template": template})
    assert run("health-probes", job) == []


def test_writable_root_filesystem_is_reported_unless_excepted():
    template = good_pod()
    template["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    assert run("read-only-root-filesystem", deployment(template=template)) == ["container 'app': root filesystem is writable"]
    skipped = deployment(template=template, annotations=kube.checkov_skips(("CKV_K8S_22", "writes its cache under /")))
    assert run("read-only-root-filesystem", skipped) == []


def claimed_statefulset(**meta: Any) -> Resource:
    return k8s_object(
        "StatefulSet",
        "postgres",
        spec={"template": good_pod(), "volumeClaimTemplates": [{"metadata": {"name": "data"}}],
              "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain"}},
        **meta,
    )


def test_stateful_resources_are_protected_and_retained_outside_throwaway_stacks():
    assert run("stateful-protection", claimed_statefulset(protect=True, retain=True)) == []
    assert run("stateful-protection", claimed_statefulset(protect=False, retain=False)) == [
        "stateful resource is not protected: `pulumi destroy` or a rename deletes its data",
        "stateful resource is not retained on delete",
    ]
    # The engine does not pass retain_on_delete to policy packs: only protect is checked there.
    assert run("stateful-protection", claimed_statefulset(protect=True, retain=None)) == []


def test_throwaway_stacks_may_delete_their_data():
    assert policies.policy("stateful-protection").inapplicable(THROWAWAY)
    assert run("stateful-protection", claimed_statefulset(), THROWAWAY) == []


def test_statefulset_must_not_delete_its_volumes_when_protected():
    resource = claimed_statefulset(protect=True, retain=True)
    spec = dict(resource.props["spec"], persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete"})
    resource = Resource(**{**resource.__dict__, "props": {**resource.props, "spec": spec}})
    assert len(run("stateful-protection", resource)) == 1


def test_what_counts_as_stateful():
    assert policies.is_stateful(k8s_object("PersistentVolumeClaim", "data"))
    assert policies.is_stateful(claimed_statefulset())
    assert not policies.is_stateful(k8s_object("StatefulSet", "web", spec={"template": good_pod()}))
    volume = Resource(type="docker:index/volume:Volume", name="v", urn="urn:pulumi:s::p::docker:index/volume:Volume::v", props={})
    assert policies.is_stateful(volume)
    kind = Resource(
        type="command:local:Command",
        name="c-kind",
        urn="urn:pulumi:s::p::mlplane:index:Platform$mlplane:cluster:Cluster$command:local:Command::c-kind",
        props={},
    )
    other = Resource(type="command:local:Command", name="x", urn="urn:pulumi:s::p::command:local:Command::x", props={})
    assert policies.is_stateful(kind) and not policies.is_stateful(other)


# --------------------------------------------------------------------------------------------
# Stack rules
# --------------------------------------------------------------------------------------------

TEAM_LABELS = {**RESTRICTED, policies.TEAM_LABEL: "a"}


def isolated_team() -> list[Resource]:
    return [
        k8s_object("Namespace", "team-a", None, labels=TEAM_LABELS),
        k8s_object("NetworkPolicy", "default-deny", spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        k8s_object("NetworkPolicy", "allow-dns", spec={"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": 53}]}]}),
        k8s_object("ResourceQuota", "quota", spec={"hard": {"requests.cpu": "4"}}),
        k8s_object("LimitRange", "limits", spec={"limits": [{"type": "Container"}]}),
        k8s_object("ServiceAccount", "runner"),
        k8s_object("RoleBinding", "members", subjects=[{"kind": "Group", "name": "team-a-devs"}],
                   roleRef={"kind": "ClusterRole", "name": "edit"}),
    ]


def test_team_label_is_the_one_the_team_component_sets():
    from mlplane.team import TEAM_LABEL

    assert policies.TEAM_LABEL == TEAM_LABEL


def test_isolated_team_namespace_passes():
    assert run_stack("team-namespace-isolation", isolated_team()) == []


def test_stacks_without_team_namespaces_pass():
    assert run_stack("team-namespace-isolation", [deployment()]) == []


@pytest.mark.parametrize(
    ("removed", "expected"),
    [
        ("default-deny", "team namespace has no default-deny NetworkPolicy for ingress and egress"),
        ("quota", "team namespace has no ResourceQuota"),
        ("limits", "team namespace has no LimitRange"),
    ],
)
def test_team_namespace_missing_a_guard_fails_on_the_namespace(removed, expected):
    resources = [r for r in isolated_team() if r.metadata["name"] != removed]
    problems = run_stack("team-namespace-isolation", resources)
    assert messages(problems) == [expected]
    assert problems[0].resource is resources[0]


def test_policy_denying_only_ingress_or_with_rules_is_not_default_deny():
    resources = isolated_team()
    resources[1] = k8s_object("NetworkPolicy", "default-deny", spec={"podSelector": {}, "policyTypes": ["Ingress"]})
    assert len(run_stack("team-namespace-isolation", resources)) == 1
    resources[1] = k8s_object("NetworkPolicy", "default-deny", spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [{}]})
    assert len(run_stack("team-namespace-isolation", resources)) == 1


def test_cluster_role_binding_for_a_team_subject_fails():
    for subject in ({"kind": "ServiceAccount", "name": "runner", "namespace": "team-a"}, {"kind": "Group", "name": "team-a-devs"}):
        binding = k8s_object("ClusterRoleBinding", "oops", None, subjects=[subject], roleRef={"kind": "ClusterRole", "name": "view"})
        problems = run_stack("team-namespace-isolation", [*isolated_team(), binding])
        assert len(problems) == 1 and problems[0].resource is binding
        assert "cluster-wide" in problems[0].message
    platform = k8s_object("ClusterRoleBinding", "metrics", None,
                          subjects=[{"kind": "ServiceAccount", "name": "metrics-server", "namespace": "kube-system"}])
    assert run_stack("team-namespace-isolation", [*isolated_team(), platform]) == []


def test_secret_looking_config_keys_must_be_secure():
    stack = Stack(name="prod", config_secure={
        "mlplane:platform": False, "aws:region": False, "aws:secretKey": False,
        "mlplane:githubToken": True, "mlplane:sshPublicKey": False,
    })
    assert messages(run_stack("no-plain-secret-config", [], stack)) == [
        "stack config key 'aws:secretKey' looks like a secret but is stored in plain text"
    ]


def test_config_policy_does_not_apply_without_a_stack_file():
    evaluation = policies.evaluate([], Stack(name="render"))
    assert "no-plain-secret-config" in evaluation.not_applicable


def hpa(target: str, minimum: float) -> Resource:
    return k8s_object("HorizontalPodAutoscaler", target, spec={"scaleTargetRef": {"name": target}, "minReplicas": minimum})


def pdb(**spec: Any) -> Resource:
    return k8s_object("PodDisruptionBudget", "app", spec={"selector": {"matchLabels": {"app": "x"}}, **spec})


def test_replicated_workloads_need_a_budget_that_allows_evictions():
    replicated = deployment(replicas=2)
    assert messages(run_stack("disruption-budgets", [replicated])) == [
        "2 replicas and no PodDisruptionBudget: a node drain may stop them all"
    ]
    assert run_stack("disruption-budgets", [replicated, pdb(minAvailable=1)]) == []
    assert run_stack("disruption-budgets", [replicated, pdb(maxUnavailable=1)]) == []
    assert run_stack("disruption-budgets", [replicated, pdb(minAvailable="50%")]) == []
    assert messages(run_stack("disruption-budgets", [replicated, pdb(minAvailable=2.0)])) == [
        "its PodDisruptionBudget allows no eviction at 2 replicas: node drains block"
    ]
    assert run_stack("disruption-budgets", [deployment(replicas=1)]) == []


def test_hpa_minimum_counts_as_the_replicas():
    assert len(run_stack("disruption-budgets", [deployment(replicas=1), hpa("app", 3.0)])) == 1


# --------------------------------------------------------------------------------------------
# Unknown values (previews)
# --------------------------------------------------------------------------------------------


def test_unknown_values_skip_the_parts_that_need_them():
    template = good_pod()
    template["spec"]["containers"][0]["image"] = UNKNOWN
    template["spec"]["containers"][0]["resources"] = UNKNOWN
    resource = deployment(template=template)
    assert run("pinned-images", resource) == []
    assert run("requests-and-limits", resource) == []
    ns = k8s_object("Namespace", "ml", None, labels=UNKNOWN)
    assert run("pod-security-admission", ns) == []


# --------------------------------------------------------------------------------------------
# Running over a stack (mlplane plan)
# --------------------------------------------------------------------------------------------


def test_evaluate_reports_violations_with_resource_fix_and_level():
    template = {"spec": {"containers": [{"name": "app", "image": "nginx"}]}}
    evaluation = policies.evaluate([deployment(template=template)], STACK)
    pinned = evaluation.by_policy("pinned-images")
    assert [(v.resource, v.enforcement) for v in pinned] == [("Deployment/team-a/app", "mandatory")]
    assert pinned[0].fix.startswith("use platform.image(key)")
    assert evaluation.mandatory and evaluation.advisory
    assert "stateful-protection" not in evaluation.not_applicable


def test_throwaway_flag_is_read_from_mlplane_config_objects():
    assert policies.throwaway_from_config({"mlplane:platform": json.dumps({"lifecycle": {"throwaway": True}})})
    assert policies.throwaway_from_config({"mlplane:platform": {"lifecycle": {"throwaway": True}}})
    assert not policies.throwaway_from_config({"mlplane:platform": json.dumps({"name": "x"})})
    assert not policies.throwaway_from_config({"mlplane:platform": "{not json"})
    assert not policies.throwaway_from_config({"other:platform": {"lifecycle": {"throwaway": True}}})


def test_secure_keys_of_a_stack_file():
    config = {"mlplane:platform": {"name": "x"}, "mlplane:githubToken": {"secure": "v1:abc"}, "aws:secretKey": "plain"}
    assert policies.config_secure_keys(config) == {"mlplane:platform": False, "mlplane:githubToken": True, "aws:secretKey": False}


# --------------------------------------------------------------------------------------------
# Policy-pack adapters
# --------------------------------------------------------------------------------------------


def write_project(root: Path, name: str = "acme-ml", stack: str = "prod", config: dict | None = None) -> Path:
    (root / "stacks").mkdir(parents=True)
    (root / "Pulumi.yaml").write_text(f"name: {name}\nruntime: python\nstackConfigDir: stacks\n")
    (root / "stacks" / f"Pulumi.{stack}.yaml").write_text(json.dumps({"config": config or {}}))
    return root


def test_stack_view_from_the_engine_environment(tmp_path):
    project = write_project(tmp_path / "proj", config={"aws:secretKey": "plain", "mlplane:token": {"secure": "v1:x"}})
    env = {
        "PULUMI_STACK": "acme/prod",
        "PULUMI_PROJECT": "acme-ml",
        "PULUMI_CONFIG": json.dumps({"mlplane:platform": json.dumps({"lifecycle": {"throwaway": True}})}),
        "PWD": str(project / "stacks"),
    }
    stack = policies.stack_from_environment(env)
    assert stack == Stack(name="prod", throwaway=True, config_secure={"aws:secretKey": False, "mlplane:token": True})


def test_stack_file_of_another_project_is_not_read(tmp_path):
    project = write_project(tmp_path / "proj", name="someone-else")
    env = {"PULUMI_STACK": "prod", "PULUMI_PROJECT": "acme-ml", "PWD": str(project)}
    assert policies.stack_from_environment(env).config_secure is None


def pack_policy(name: str, stack: Stack = STACK) -> Any:
    return next(p for p in policies.pack_policies(lambda: stack) if p.name == name)


def options(protect: bool = False) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def validation_args(resource: Resource, protect: bool = False) -> ResourceValidationArgs:
    props = unknown_checking_proxy(json.loads(json.dumps(resource.props, default=str)))
    return ResourceValidationArgs(resource.type, props, resource.urn, resource.name, options(protect), None)


def test_pack_builds_one_pulumi_policy_per_definition_with_its_level():
    built = policies.pack_policies(lambda: STACK)
    assert [p.name for p in built] == [p.name for p in policies.POLICIES]
    for pack, item in zip(built, policies.POLICIES):
        expected = EnforcementLevel.MANDATORY if item.enforcement == "mandatory" else EnforcementLevel.ADVISORY
        assert pack.enforcement_level == expected
        assert isinstance(pack, ResourceValidationPolicy if item.scope == "resource" else StackValidationPolicy)


def test_pack_resource_policy_reports_the_same_problems_with_the_fix():
    template = {"spec": {"containers": [{"name": "app", "image": "nginx:latest"}]}}
    reported: list[tuple[str, Any]] = []
    pack_policy("pinned-images").validate(validation_args(deployment(template=template)), lambda m, urn=None: reported.append((m, urn)))
    assert reported == [
        ("container 'app': image 'nginx:latest' is not pinned to a tag or digest. "
         "Fix: use platform.image(key) (pins in versions.py), or a tag other than 'latest'.", None)
    ]


def test_pack_reads_protect_from_the_resource_options():
    reported: list[str] = []
    resource = k8s_object("PersistentVolumeClaim", "data")
    pack_policy("stateful-protection").validate(validation_args(resource, protect=False), lambda m, urn=None: reported.append(m))
    assert len(reported) == 1
    reported.clear()
    pack_policy("stateful-protection").validate(validation_args(resource, protect=True), lambda m, urn=None: reported.append(m))
    assert reported == []


def test_pack_skips_values_unknown_during_preview():
    template = good_pod()
    template["spec"]["containers"][0]["image"] = UNKNOWN_STRING_VALUE
    reported: list[str] = []
    pack_policy("pinned-images").validate(validation_args(deployment(template=template)), lambda m, urn=None: reported.append(m))
    assert reported == []


def test_pack_stack_policy_reports_against_the_offending_resource():
    resources = [r for r in isolated_team() if r.metadata["name"] != "quota"]
    args = StackValidationArgs([
        PolicyResource(r.type, unknown_checking_proxy(json.loads(json.dumps(r.props))), r.urn, r.name, options(), None, None, [], {})
        for r in resources
    ])
    reported: list[tuple[str, Any]] = []
    pack_policy("team-namespace-isolation").validate(args, lambda m, urn=None: reported.append((m, urn)))
    assert reported == [(
        "team namespace has no ResourceQuota. Fix: add a ResourceQuota in the namespace: it caps the team's CPU, "
        "memory, storage and GPUs.",
        resources[0].urn,
    )]


def test_pack_config_policy_is_not_applicable_without_the_stack_file():
    with pytest.raises(_NotApplicableError):
        pack_policy("no-plain-secret-config").validate(StackValidationArgs([]), lambda m, urn=None: None)


# --------------------------------------------------------------------------------------------
# Components built with the helpers, rendered offline
# --------------------------------------------------------------------------------------------


def test_a_component_built_with_the_kube_helpers_renders_policy_clean(run_component):
    from mlplane.tooling.plan import resource_view

    def build(platform, config, root):
        ns = kube.namespace(platform, "demo-namespace", "mlplane-demo", parent=root, component="demo")
        workload = kube.Workload(containers=[good_container()], uid=10001)
        labels = platform.labels("demo")
        k8s.apps.v1.Deployment(
            "demo-deployment",
            metadata={"name": "demo", "namespace": ns.metadata.name, "labels": labels,
                      "annotations": kube.checkov_skips(kube.DIGEST_SKIP)},
            spec={"replicas": 1, "selector": {"matchLabels": labels}, "template": workload.template(labels)},
            opts=opts(root),
        )
        k8s.core.v1.Secret(
            "demo-secret",
            metadata={"name": "demo", "namespace": ns.metadata.name},
            string_data={"password": pulumi.Output.secret("generated")},
            opts=opts(root),
        )
        return {}

    result, _ = run_component(build)
    evaluation = policies.evaluate([resource_view(r) for r in result.resources], Stack(name="test", config_secure={}))
    assert evaluation.violations == []


# --------------------------------------------------------------------------------------------
# The reference
# --------------------------------------------------------------------------------------------


def test_reference_documents_every_policy_with_its_level_and_rationale():
    text = policies.reference_markdown()
    for item in policies.POLICIES:
        assert f"## {item.name}" in text
        assert f"| [`{item.name}`](#{item.name}) | {item.enforcement} |" in text
        assert item.rationale in text


def test_docs_policies_md_is_generated_from_the_pack():
    assert (ROOT / "docs" / "policies.md").read_text() == policies.reference_markdown()


def test_reference_is_served_to_mlplane_docs():
    from mlplane.cli import extra_reference_documents

    assert extra_reference_documents()["docs/policies.md"] == policies.reference_markdown()


# --------------------------------------------------------------------------------------------
# The pack itself, over gRPC (what `pulumi preview --policy-pack` talks to)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def pack_server(tmp_path):
    """The policy pack started like the engine starts it; yields a gRPC Analyzer stub."""
    import grpc
    from pulumi.runtime.proto import analyzer_pb2_grpc

    project = write_project(tmp_path / "proj", name="acme-ml", config={"aws:secretKey": "plain"})
    env = {
        **os.environ,
        "PULUMI_STACK": "prod",
        "PULUMI_PROJECT": "acme-ml",
        "PULUMI_CONFIG": json.dumps({"mlplane:platform": json.dumps({"name": "acme"})}),
        "PWD": str(project),
    }
    process = subprocess.Popen([sys.executable, "__main__.py"], cwd=PACK, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        port = int(process.stdout.readline() or b"0")
        if not port:
            pytest.fail(f"policy pack did not start: {process.stderr.read().decode()[-2000:]}")
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


def struct(value: dict) -> Any:
    from google.protobuf import struct_pb2

    message = struct_pb2.Struct()
    message.update(value)
    return message


@pytest.mark.servers
def test_pack_server_describes_every_policy_with_its_level(pack_server):
    from google.protobuf import empty_pb2
    from pulumi.runtime.proto import analyzer_pb2

    info = pack_server.GetAnalyzerInfo(empty_pb2.Empty())
    levels = {p.name: p.enforcementLevel for p in info.policies}
    assert info.name == "mlplane"
    assert levels == {
        p.name: analyzer_pb2.MANDATORY if p.enforcement == "mandatory" else analyzer_pb2.ADVISORY
        for p in policies.POLICIES
    }


@pytest.mark.servers
def test_pack_server_analyzes_a_resource_and_a_stack(pack_server):
    from pulumi.runtime.proto import analyzer_pb2

    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "ml"},
           "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx", "env": [{"name": "DB_PASSWORD", "value": "x"}]}]}}}}
    urn = "urn:pulumi:prod::acme-ml::kubernetes:apps/v1:Deployment::d"
    response = pack_server.Analyze(analyzer_pb2.AnalyzeRequest(type="kubernetes:apps/v1:Deployment", properties=struct(bad), urn=urn, name="d"))
    found = {d.policyName for d in response.diagnostics if d.enforcementLevel == analyzer_pb2.MANDATORY}
    assert {"restricted-security-context", "pinned-images", "requests-and-limits", "secrets-by-reference"} <= found

    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "labels": TEAM_LABELS}}
    ns_urn = "urn:pulumi:prod::acme-ml::kubernetes:core/v1:Namespace::team-a"
    request = analyzer_pb2.AnalyzeStackRequest(resources=[
        analyzer_pb2.AnalyzerResource(type="kubernetes:core/v1:Namespace", properties=struct(namespace), urn=ns_urn, name="team-a")
    ])
    stack = pack_server.AnalyzeStack(request)
    by_policy = {(d.policyName, d.urn) for d in stack.diagnostics}
    assert ("team-namespace-isolation", ns_urn) in by_policy
    assert ("no-plain-secret-config", "") in by_policy


@pytest.mark.servers
def test_pack_server_survives_values_unknown_during_preview(pack_server):
    from pulumi.runtime.proto import analyzer_pb2

    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": UNKNOWN_STRING_VALUE},
            "spec": {"template": good_pod()}}
    body["spec"]["template"]["spec"]["containers"][0]["image"] = UNKNOWN_STRING_VALUE
    response = pack_server.Analyze(analyzer_pb2.AnalyzeRequest(
        type="kubernetes:apps/v1:Deployment", properties=struct(body), urn="urn:pulumi:prod::acme-ml::kubernetes:apps/v1:Deployment::d", name="d"))
    assert [d.policyName for d in response.diagnostics] == []


# --------------------------------------------------------------------------------------------
# Under the real engine (pytest -m e2e; scripts/bootstrap-engine.sh provides the engine)
# --------------------------------------------------------------------------------------------

E2E_PROGRAM = """
import json

import pulumi
import pulumi_kubernetes as k8s

provider = k8s.Provider("render", render_yaml_to_directory=pulumi.Config().require("manifests"))
k8s.apps.v1.Deployment(
    "web",
    metadata={"name": "web", "namespace": "shop"},
    spec={"selector": {"matchLabels": {"app": "x"}}, "template": json.loads(TEMPLATE)},
    opts=pulumi.ResourceOptions(provider=provider),
)
"""


def engine_env(tmp_path: Path) -> dict[str, str]:
    missing = [tool for tool in ("pulumi", "pulumi-language-python") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not on PATH: run scripts/bootstrap-engine.sh and put its --print-bin-dir on PATH")
    (tmp_path / "state").mkdir()
    return {
        **os.environ,
        "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": "e2e",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
    }


def preview_with_pack(tmp_path: Path, template: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """`pulumi preview --policy-pack components/policypack` of a one-Deployment program."""
    env = engine_env(tmp_path)
    project = tmp_path / "shop"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(
        f"name: shop\nruntime:\n  name: python\n  options:\n    toolchain: pip\n    virtualenv: {ROOT / '.venv'}\n"
    )
    (project / "__main__.py").write_text(E2E_PROGRAM.replace("TEMPLATE", repr(json.dumps(template))))

    def pulumi_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["pulumi", *args], cwd=project, env={**env, "PWD": str(project)}, capture_output=True,
                              text=True, timeout=900)

    for args in (("stack", "init", "dev"), ("config", "set", "manifests", str(tmp_path / "manifests"))):
        step = pulumi_cli(*args)
        assert step.returncode == 0, step.stdout + step.stderr
    result = pulumi_cli("preview", "--non-interactive", "--color", "never", "--policy-pack", str(PACK))
    if "failed to start: could not read plugin" in result.stdout + result.stderr and pack_starts_standalone():
        pytest.skip(
            "this engine's Python language host cannot launch policy packs (it hands the pack an empty "
            "program directory); the pack itself starts and answers the analyzer protocol (test_pack_server_*)"
        )
    return result


def pack_starts_standalone() -> bool:
    """Whether the pack process starts and announces its port, as the engine expects."""
    process = subprocess.Popen([sys.executable, "__main__.py"], cwd=PACK, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        return process.stdout is not None and process.stdout.readline().strip().isdigit()
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.e2e
def test_pulumi_preview_with_the_pack_blocks_mandatory_violations(tmp_path):
    result = preview_with_pack(tmp_path, {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for name in ("pinned-images", "restricted-security-context", "requests-and-limits", "service-account-token"):
        assert name in output, output
    assert "mandatory" in output


@pytest.mark.e2e
def test_pulumi_preview_with_the_pack_passes_a_compliant_workload(tmp_path):
    result = preview_with_pack(tmp_path, good_pod())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "mandatory" not in output
