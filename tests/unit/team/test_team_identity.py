"""A team stack's scoped provisioning identity (mlplane.services.team_access), instead of cluster-admin.

Render tests pin what the platform grants each admitted team; the e2e tests (``pytest -m e2e``,
binaries from scripts/bootstrap-apiserver.sh) prove the boundary through a real kube-apiserver
with RBAC: SubjectAccessReviews for the team's service account, and every object the team stack
renders applied (server-side, dry run) while impersonating that service account.
"""

from __future__ import annotations

import copy
import json
import os
import ssl
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from mlplane.config.stack_files import InputError
from mlplane import cli, program
from mlplane.cli import teams
from mlplane.config import parse_platform
from mlplane.tooling.render import Capture
from mlplane.services.team_access import TeamGrant, team_kubeconfig
from mlplane.config.team import parse_team

ROOT = Path(__file__).resolve().parents[3]
PLATFORM = {"tracking": {"workspaces": True}}
SA_NAMESPACE = "mlplane-teams"
PLATFORM_NAMESPACES = ("mlplane-tracking", "mlplane-storage", "mlplane-monitoring", "mlplane-database", SA_NAMESPACE)


def grant(name: str) -> TeamGrant:
    return TeamGrant(name=name, work_namespace=f"mlplane-team-{name}", serving_namespace=f"mlplane-team-{name}-serving")


@lru_cache(maxsize=2)
def platform_render(*names: str) -> Capture:
    source = cli.Source(PLATFORM, "mlplane:platform", "local", None, {})
    return cli.offline_run(source, parse_platform(PLATFORM), teams=[grant(n) for n in names])


def team_render(name: str) -> Capture:
    raw = {
        "name": name,
        "platform_stack": "local",
        "members": {"users": [f"{name}-lead@example.com"]},
        "serving": {"models": [{"name": "scorer", "registered_model": f"{name}-scorer", "alias": "champion"}]},
    }
    checked = teams.CheckedTeam(parse_team(raw), cli.Source(PLATFORM, "mlplane:platform", "local", None, {}),
                                parse_platform(PLATFORM), [])
    return teams.offline_team_run(checked, f"team-{name}")


def of(result: Capture, kind: str) -> list[dict]:
    return [m for m in result.manifests() if m["kind"] == kind]


# --------------------------------------------------------------------------------------------
# Render: what the platform grants
# --------------------------------------------------------------------------------------------


def test_the_platform_creates_each_teams_namespaces_labelled_restricted():
    result = platform_render("vision", "nlp")
    namespaces = {m["metadata"]["name"]: m["metadata"]["labels"] for m in of(result, "Namespace")}
    for team in ("vision", "nlp"):
        for name in (f"mlplane-team-{team}", f"mlplane-team-{team}-serving"):
            assert namespaces[name]["pod-security.kubernetes.io/enforce"] == "restricted"
            assert namespaces[name]["mlplane.dev/team"] == team
        assert namespaces[f"mlplane-team-{team}-serving"]["mlplane.dev/gateway-access"] == "true"
        assert "mlplane.dev/gateway-access" not in namespaces[f"mlplane-team-{team}"]
    assert namespaces[SA_NAMESPACE]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_each_team_identity_is_namespaced_rbac_only():
    result = platform_render("vision", "nlp")
    team_objects = [m for m in result.manifests() if m["metadata"].get("labels", {}).get("mlplane.dev/team")]
    assert not [m for m in team_objects if m["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    bindings = [m for m in of(result, "RoleBinding") if m["metadata"]["name"].startswith("team-provisioner")]
    assert {(b["metadata"]["namespace"], b["subjects"][0]["name"]) for b in bindings} == {
        (ns, f"team-{team}")
        for team in ("vision", "nlp")
        for ns in (f"mlplane-team-{team}", f"mlplane-team-{team}-serving", f"mlplane-team-{team}-runners",
                   "mlplane-monitoring")
    }
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": binding["subjects"][0]["name"], "namespace": SA_NAMESPACE}]
    accounts = {m["metadata"]["name"]: m for m in of(result, "ServiceAccount") if m["metadata"]["namespace"] == SA_NAMESPACE}
    assert set(accounts) == {"team-vision", "team-nlp"}
    assert all(a["automountServiceAccountToken"] is False for a in accounts.values())
    tokens = [m for m in of(result, "Secret") if m.get("type") == "kubernetes.io/service-account-token"]
    assert {(t["metadata"]["name"], t["metadata"]["annotations"]["kubernetes.io/service-account.name"]) for t in tokens} == {
        ("team-vision-token", "team-vision"), ("team-nlp-token", "team-nlp")
    }


def test_in_platform_namespaces_secrets_are_reachable_only_by_the_teams_own_names():
    result = platform_render("vision")
    for role in of(result, "Role"):
        if role["metadata"]["namespace"] not in PLATFORM_NAMESPACES:
            continue
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"]
            if "secrets" in rule["resources"] or "configmaps" in rule["resources"] or "networkpolicies" in rule["resources"]:
                # create cannot be limited by name in RBAC; every other verb is.
                assert rule["verbs"] == ["create"] or rule.get("resourceNames"), rule
                assert "list" not in rule["verbs"] and "watch" not in rule["verbs"]
            for name in rule.get("resourceNames", []):
                assert "vision" in name or name == "grafana-dashboards"


def test_no_team_file_no_team_objects_and_an_empty_secret_output():
    result = platform_render()
    assert not [m for m in result.manifests() if m["metadata"].get("namespace") == SA_NAMESPACE]
    assert result.outputs["teamKubeconfigs"] == "[secret]" or result.outputs["teamKubeconfigs"] in ({}, None)


def test_the_team_kubeconfig_keeps_the_server_and_ca_and_drops_the_admin_credentials():
    admin = yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kind-mlplane",
        "clusters": [{"name": "kind-mlplane", "cluster": {"server": "https://127.0.0.1:6443", "certificate-authority-data": "Q0E="}}],
        "users": [{"name": "kind-mlplane", "user": {"client-certificate-data": "ADMIN", "client-key-data": "KEY"}}],
        "contexts": [{"name": "kind-mlplane", "context": {"cluster": "kind-mlplane", "user": "kind-mlplane"}}],
    })
    config = yaml.safe_load(team_kubeconfig(admin, "kind-mlplane", "mlplane-team-vision", "team-vision", "TOKEN"))
    assert config["current-context"] == "mlplane-team-vision"
    assert config["clusters"] == [{"name": "mlplane-team-vision", "cluster": {"server": "https://127.0.0.1:6443", "certificate-authority-data": "Q0E="}}]
    assert config["users"] == [{"name": "team-vision", "user": {"token": "TOKEN"}}]
    assert "ADMIN" not in json.dumps(config) and "KEY" not in json.dumps(config)
    with pytest.raises(ValueError, match="no context 'other'"):
        team_kubeconfig(admin, "other", "c", "u", "t")


def test_the_team_stack_uses_its_own_identity_and_holds_no_admin_credential():
    result = team_render("vision")
    provider = result.named("team-vision-kubernetes")
    assert provider.inputs["context"] == "mlplane-team-vision"
    text = json.dumps(result.manifests())
    # Its grants (and the Jobs that use the MLflow admin credential) are the platform's: the team
    # stack has nothing in the storage and tracking namespaces (mlplane.services.team_grants).
    assert not [m for m in result.manifests() if m["metadata"].get("namespace") in ("mlplane-tracking", "mlplane-storage")]
    assert not of(result, "Namespace") and "cluster-admin" not in text and "mlflow-admin" not in text


def test_admitted_teams_are_the_valid_team_files_naming_the_platform_stack(tmp_path):
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (tmp_path / "Pulumi.yaml").write_text("name: mlplane\nruntime: python\nmain: stacks/\nstackConfigDir: stacks\n")

    def team_file(stack: str, body: dict) -> None:
        (stacks / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": {"mlplane:team": body}}))

    team_file("team-vision", {"name": "vision", "platform_stack": "local"})
    team_file("team-nlp", {"name": "nlp", "platform_stack": "organization/mlplane/local"})
    team_file("team-other", {"name": "other", "platform_stack": "staging"})
    team_file("team-staging-broken", {"name": "staging-broken", "platform_stack": "staging", "quota": {"work": {"pods": -1}}})
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        found = program.admitted_teams(parse_platform(PLATFORM), "local", tmp_path)
        assert sorted(g.name for g in found) == ["nlp", "vision"]
        # A broken file naming this platform stops its update instead of being left out: left out,
        # an admitted team's namespaces (and everything in them) would be deleted by the update.
        team_file("team-broken", {"name": "broken", "platform_stack": "local", "quota": {"work": {"pods": -1}}})
        (stacks / "Pulumi.team-garbled.yaml").write_text("config: [not, a, mapping\n")
        with pytest.raises(InputError) as caught:
            program.admitted_teams(parse_platform(PLATFORM), "local", tmp_path)
    finally:
        os.chdir(cwd)
    problems = "\n".join(caught.value.problems)
    assert "Pulumi.team-broken.yaml: mlplane:team.quota.work.pods" in problems
    assert "Pulumi.team-garbled.yaml:" in problems
    assert "stops here, so that no admitted team's namespaces are deleted" in problems


def test_a_team_the_platform_has_not_admitted_fails_with_what_to_run():
    from mlplane.team.link import _team_kubeconfig

    team = parse_team({"name": "vision", "platform_stack": "local"})
    with pytest.raises(ValueError, match=r"platform stack 'local' has not admitted team 'vision'.*pulumi up --stack local"):
        _team_kubeconfig({"nlp": "x"}, team)


# --------------------------------------------------------------------------------------------
# e2e: the boundary, through a real API server
# --------------------------------------------------------------------------------------------

try:  # the API server fixture of the e2e suite (tests/ is on sys.path under pytest)
    from test_e2e_apiserver import CRD_GROUPS, TOKEN, ApiServer, apiserver  # noqa: F401
except ImportError:  # pragma: no cover
    apiserver = None

SETUP_KINDS = ("Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap")


def identity(team: str) -> tuple[str, list[str]]:
    return (f"system:serviceaccount:{SA_NAMESPACE}:team-{team}",
            ["system:serviceaccounts", f"system:serviceaccounts:{SA_NAMESPACE}", "system:authenticated"])


def as_team(server: "ApiServer", team: str, method: str, path: str, body: dict | None = None,
            content_type: str = "application/json") -> tuple[int, dict]:
    user, groups = identity(team)
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server.url + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    req.add_header("Impersonate-User", user)
    for group in groups:
        req.add_header("Impersonate-Group", group)
    if data is not None:
        req.add_header("Content-Type", content_type)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(req, context=context, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def can(server: "ApiServer", team: str, verb: str, resource: str, namespace: str | None = None,
        group: str = "", name: str | None = None) -> bool:
    user, groups = identity(team)
    attributes = {"verb": verb, "resource": resource, "group": group}
    if namespace:
        attributes["namespace"] = namespace
    if name:
        attributes["name"] = name
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": user, "groups": groups, "resourceAttributes": attributes}}
    status, payload, _ = server.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    assert status == 201, payload
    return bool(payload["status"].get("allowed"))


@pytest.fixture(scope="module")
def granted(apiserver) -> "ApiServer":
    """The platform's RBAC for teams vision and nlp, and the namespaces and ConfigMap they use."""
    objects = [m for m in platform_render("vision", "nlp").manifests() if m["kind"] in SETUP_KINDS]
    objects = [m for m in objects if m["kind"] != "ConfigMap" or m["metadata"]["name"] == "grafana-dashboards"]
    for obj in sorted(objects, key=lambda m: SETUP_KINDS.index(m["kind"])):
        query = "?fieldManager=mlplane&force=true"
        status, payload, _ = apiserver.request("PATCH", apiserver.path(obj) + query, obj, "application/apply-patch+yaml")
        assert status in (200, 201), f"{obj['kind']} {obj['metadata']['name']}: HTTP {status} {payload}"
    return apiserver


@pytest.mark.e2e
@pytest.mark.parametrize("namespace", PLATFORM_NAMESPACES)
def test_e2e_a_team_cannot_read_secrets_in_the_platform_namespaces(granted, namespace):
    for verb in ("get", "list", "watch"):
        assert not can(granted, "vision", verb, "secrets", namespace), (verb, namespace)
    assert not can(granted, "vision", "get", "secrets", namespace, name="mlflow-admin")
    assert not can(granted, "vision", "create", "pods", namespace)
    assert not can(granted, "vision", "create", "rolebindings", namespace, group="rbac.authorization.k8s.io")
    # No Job next to the platform's admin credentials either (issue 15's residual, issue 12).
    for verb in ("create", "list", "delete"):
        assert not can(granted, "vision", verb, "jobs", namespace, group="batch"), (verb, namespace)


@pytest.mark.e2e
def test_e2e_a_team_cannot_touch_another_teams_namespaces(granted):
    for namespace in ("mlplane-team-nlp", "mlplane-team-nlp-serving"):
        for verb, resource, group in (("create", "pods", ""), ("get", "secrets", ""), ("list", "pods", ""),
                                      ("delete", "networkpolicies", "networking.k8s.io"),
                                      ("create", "rolebindings", "rbac.authorization.k8s.io")):
            assert not can(granted, "vision", verb, resource, namespace, group), (verb, resource, namespace)
    # And the other team's own secret in a platform namespace.
    assert not can(granted, "vision", "get", "secrets", "mlplane-tracking", name="team-nlp-mlflow-setup")


@pytest.mark.e2e
def test_e2e_a_team_has_no_cluster_scoped_write(granted):
    rbac = "rbac.authorization.k8s.io"
    assert not can(granted, "vision", "create", "clusterrolebindings", group=rbac)
    assert not can(granted, "vision", "create", "clusterroles", group=rbac)
    assert not can(granted, "vision", "create", "namespaces")
    for verb in ("update", "patch", "delete"):
        assert not can(granted, "vision", verb, "namespaces", name="mlplane-team-vision")
    status, _ = as_team(granted, "vision", "POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "escalate"},
        "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "team-vision", "namespace": SA_NAMESPACE}],
    })
    assert status == 403


@pytest.mark.e2e
def test_e2e_a_team_can_apply_everything_its_stack_creates(granted):
    """Every built-in object of the team's render, server-side applied (dry run) as the team."""
    result = team_render("vision")
    applied = []
    for obj in result.manifests():
        if obj["apiVersion"].split("/")[0] in CRD_GROUPS:
            continue
        obj = copy.deepcopy(obj)
        resources = granted.resources(obj["apiVersion"])
        if not resources or obj["kind"] not in resources:
            continue  # a custom resource whose CRD this API server does not have
        query = "?fieldManager=mlplane&dryRun=All"
        status, payload = as_team(granted, "vision", "PATCH", granted.path(obj) + query, obj, "application/apply-patch+yaml")
        assert status in (200, 201), f"{obj['kind']} {obj['metadata'].get('namespace')}/{obj['metadata']['name']}: HTTP {status} {payload.get('message')}"
        applied.append(obj["kind"])
    assert {"Role", "RoleBinding", "NetworkPolicy", "ResourceQuota", "LimitRange", "Deployment", "Secret"} <= set(applied)
