"""Team runners and RBAC (issue 15, items 3-5): what a team member can do with the runners.

Render tests pin the layout (controller, listener, runners and the GitHub credential in the
team's runner namespace; job pods in the work namespace), the admission policies, the registry
credential of job pods and the runner scope rules. The e2e tests (``pytest -m e2e``, binaries from
scripts/bootstrap-apiserver.sh) prove the boundary through a real kube-apiserver: access reviews
for a member and for every service account a member could use, and dry-run creates the
ValidatingAdmissionPolicies deny (or, for what mlplane itself creates, admit).
"""

from __future__ import annotations

import copy
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from mlplane.services import admission
from mlplane import cli
from mlplane.cli import teams
from mlplane.config import ConfigError, parse_platform
from mlplane.tooling.render import Capture
from mlplane.services.team_access import TeamGrant
from mlplane.config.team import parse_team

ROOT = Path(__file__).resolve().parents[3]
PLATFORM = {"tracking": {"workspaces": True}}
RUNNERS = {"github_config_url": "https://github.com/acme/vision", "github_token_key": "ghToken"}
WORK, SERVING, RUNNER_NS = "mlplane-team-vision", "mlplane-team-vision-serving", "mlplane-team-vision-runners"
MEMBER = "vision-lead@example.com"


def grant(name: str) -> TeamGrant:
    return TeamGrant(name=name, work_namespace=f"mlplane-team-{name}", serving_namespace=f"mlplane-team-{name}-serving")


@lru_cache(maxsize=1)
def platform_render() -> Capture:
    source = cli.Source(PLATFORM, "mlplane:platform", "local", None, {})
    return cli.offline_run(source, parse_platform(PLATFORM), teams=[grant("vision")])


@lru_cache(maxsize=1)
def team_render() -> Capture:
    raw = {
        "name": "vision",
        "platform_stack": "local",
        "members": {"users": [MEMBER]},
        "network": {"allow_internet_https": True},
        "ci_runners": RUNNERS,
        "serving": {"models": [{"name": "scorer", "registered_model": "vision-scorer", "alias": "champion"}]},
    }
    checked = teams.CheckedTeam(parse_team(raw), cli.Source(PLATFORM, "mlplane:platform", "local", None, {}),
                                parse_platform(PLATFORM), [])
    return teams.offline_team_run(checked, "team-vision")


def of(result: Capture, kind: str, namespace: str | None = None) -> list[dict]:
    return [m for m in result.manifests()
            if m["kind"] == kind and (namespace is None or m["metadata"].get("namespace") == namespace)]


def named(objects: list[dict], name: str) -> dict:
    (found,) = [m for m in objects if m["metadata"]["name"] == name]
    return found


# --------------------------------------------------------------------------------------------
# Render: the layout
# --------------------------------------------------------------------------------------------


def test_the_platform_creates_the_runner_namespace_without_the_team_label_and_grants_only_the_team_stack():
    result = platform_render()
    namespace = named(of(result, "Namespace"), RUNNER_NS)
    labels = namespace["metadata"]["labels"]
    assert labels[admission.RUNNERS_LABEL] == "vision"
    assert "mlplane.dev/team" not in labels  # member-facing policies select the team label
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    bindings = of(result, "RoleBinding", RUNNER_NS)
    assert [b["subjects"] for b in bindings] == [[{"kind": "ServiceAccount", "name": "team-vision", "namespace": "mlplane-teams"}]]


def test_the_platform_creates_the_admission_policies_and_their_bindings():
    result = platform_render()
    policies = {p["metadata"]["name"]: p for p in of(result, "ValidatingAdmissionPolicy")}
    assert set(policies) == {"mlplane-team-pod-service-accounts", "mlplane-team-no-token-secrets"}
    for policy in policies.values():
        assert policy["apiVersion"] == "admissionregistration.k8s.io/v1"
        assert policy["spec"]["failurePolicy"] == "Fail"
    pods = policies["mlplane-team-pod-service-accounts"]["spec"]
    assert pods["matchConstraints"]["resourceRules"] == [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]
    tokens = policies["mlplane-team-no-token-secrets"]["spec"]
    assert tokens["matchConstraints"]["resourceRules"][0]["operations"] == ["CREATE", "UPDATE"]
    assert "kubernetes.io/service-account-token" in tokens["validations"][0]["expression"]
    bindings = {b["metadata"]["name"]: b["spec"] for b in of(result, "ValidatingAdmissionPolicyBinding")}
    selector = lambda label: {"namespaceSelector": {"matchExpressions": [{"key": label, "operator": "Exists"}]}}  # noqa: E731
    assert bindings == {
        "mlplane-team-pod-service-accounts": {"policyName": "mlplane-team-pod-service-accounts",
                                              "validationActions": ["Deny"], "matchResources": selector("mlplane.dev/team")},
        "mlplane-team-no-token-secrets": {"policyName": "mlplane-team-no-token-secrets",
                                          "validationActions": ["Deny"], "matchResources": selector("mlplane.dev/team")},
        "mlplane-team-no-token-secrets-runners": {"policyName": "mlplane-team-no-token-secrets",
                                                  "validationActions": ["Deny"], "matchResources": selector(admission.RUNNERS_LABEL)},
    }


def test_no_team_no_admission_policies():
    source = cli.Source(PLATFORM, "mlplane:platform", "local", None, {})
    assert not of(cli.offline_run(source, parse_platform(PLATFORM)), "ValidatingAdmissionPolicy")


def test_the_github_credential_and_the_runner_account_live_in_the_runner_namespace():
    result = team_render()
    assert named(of(result, "Secret"), "github-config")["metadata"]["namespace"] == RUNNER_NS
    assert named(of(result, "ServiceAccount"), "team-runner")["metadata"]["namespace"] == RUNNER_NS
    assert not [m for m in of(result, "Secret", WORK) if m["metadata"]["name"] == "github-config"]
    # The runner's Role is in the work namespace, bound to the runner namespace's account only.
    role = named(of(result, "Role", WORK), "team-runner")
    assert not [r for r in role["rules"] if r["apiGroups"] != [""]]  # no RBAC, no Jobs
    binding = named(of(result, "RoleBinding", WORK), "team-runner")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "team-runner", "namespace": RUNNER_NS}]
    # Members get no Role or RoleBinding in the runner namespace; none of theirs grants RBAC.
    assert not of(result, "Role", RUNNER_NS) and not of(result, "RoleBinding", RUNNER_NS)
    for role in of(result, "Role"):
        if role["metadata"]["name"] == "team-member":
            assert not [r for r in role["rules"] if "rbac.authorization.k8s.io" in r["apiGroups"]]


def test_the_runner_namespace_only_calls_github_and_the_api_server():
    result = team_render()
    names = {p["metadata"]["name"] for p in of(result, "NetworkPolicy", RUNNER_NS)}
    assert names == {"deny-ingress", "default-deny", "allow-dns", "runner-egress"}
    egress = named(of(result, "NetworkPolicy", RUNNER_NS), "runner-egress")["spec"]["egress"]
    ports = sorted(p["port"] for rule in egress for p in rule["ports"])
    assert ports == [443, 443, 6443]


def test_every_pod_mlplane_puts_in_team_namespaces_uses_an_allowed_service_account():
    """The admission policy must not block what mlplane itself creates there."""
    for obj in team_render().manifests():
        if obj["metadata"].get("namespace") not in (WORK, SERVING):
            continue
        spec = (obj.get("spec") or {}).get("template", {}).get("spec")
        if spec is not None:
            assert spec.get("serviceAccountName", "default") in admission.TEAM_POD_ACCOUNTS, obj["metadata"]["name"]
    template = yaml.safe_load(named(of(team_render(), "ConfigMap", RUNNER_NS), "job-pod-template")["data"]["job.yaml"])
    assert "serviceAccountName" not in template["spec"]  # job pods run as the work namespace's default


def test_team_job_pods_get_the_push_credential_as_docker_config():
    template = yaml.safe_load(named(of(team_render(), "ConfigMap", RUNNER_NS), "job-pod-template")["data"]["job.yaml"])
    (job,) = template["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in job["env"]}
    assert env["DOCKER_CONFIG"] == "/mlplane/docker" and env["REGISTRY_AUTH_FILE"] == "/mlplane/docker/config.json"
    assert {"name": "registry-push", "mountPath": "/mlplane/docker/config.json", "subPath": "config.json",
            "readOnly": True} in job["volumeMounts"]
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert volumes["registry-push"]["secret"] == {
        "secretName": "registry-push", "items": [{"key": ".dockerconfigjson", "path": "config.json"}]}
    assert "emptyDir" in volumes["docker-config"]


# --------------------------------------------------------------------------------------------
# Config: who can run jobs on the runners (item 5)
# --------------------------------------------------------------------------------------------

ORG = "https://github.com/acme"
SCOPE_CASES = [
    ({"github_config_url": ORG}, "github_config_url 'https://github.com/acme' is an organization URL and runner_group is not set"),
    ({"github_config_url": "https://github.com/enterprises/acme"},
     "github_config_url 'https://github.com/enterprises/acme' is an enterprise URL and runner_group is not set"),
    ({"github_config_url": ORG, "runner_group": "Default"}, "runner_group 'Default' is the organization's Default group"),
    ({"github_config_url": "https://github.com/acme/vision", "runner_group": "ml"},
     "runner_group 'ml' is set but github_config_url 'https://github.com/acme/vision' is a repository URL"),
    ({"github_config_url": "https://github.com/acme/vision", "repository_visibility": "public"},
     "repository_visibility is 'public' and allow_public_repository is not set"),
]


@pytest.mark.parametrize(("runners", "expected"), SCOPE_CASES)
def test_runner_scope_is_refused_for_the_platform_and_for_teams(runners, expected):
    runners = {**runners, "github_token_key": "ghToken"}
    with pytest.raises(ConfigError) as platform_error:
        parse_platform({"ci_runners": runners})
    assert f"mlplane:platform.ci_runners: {expected}" in str(platform_error.value)
    assert "Allowed:" in str(platform_error.value)
    with pytest.raises(ConfigError) as team_error:
        parse_team({"name": "vision", "platform_stack": "local", "network": {"allow_internet_https": True},
                    "ci_runners": runners})
    assert f"mlplane:team.ci_runners: {expected}" in str(team_error.value)


@pytest.mark.parametrize("runners", [
    {"github_config_url": "https://github.com/acme/vision"},
    {"github_config_url": ORG, "runner_group": "vision-ci"},
    {"github_config_url": "https://github.com/acme/vision", "repository_visibility": "public", "allow_public_repository": True},
    {"github_config_url": "https://github.com/acme/vision", "repository_visibility": "internal"},
])
def test_runner_scopes_that_are_accepted(runners):
    config = parse_platform({"ci_runners": {**runners, "github_token_key": "ghToken"}})
    assert config.ci_runners.enabled


def test_the_runner_group_reaches_the_scale_set():
    from mlplane.services import ci_runners
    from mlplane.core import kube
    from mlplane.config import CiRunnersConfig

    config = CiRunnersConfig(github_config_url=ORG, runner_group="vision-ci", github_token_key="t")
    args = ci_runners.CiRunnersArgs(
        config=config, platform=kube.Platform(name="mlplane", provider=None, protect_stateful=False, secret=None),  # type: ignore[arg-type]
        registry_pull_prefix="localhost:5001", registry_push_url="r:5000", tracking_uri="http://t",
        tracking_username="u", tracking_password="p",
    )
    assert ci_runners.scale_set_values(args, "mlplane-ci")["runnerGroup"] == "vision-ci"


def test_team_runners_refuse_the_volume_mode():
    with pytest.raises(ConfigError) as error:
        parse_team({"name": "vision", "platform_stack": "local", "network": {"allow_internet_https": True},
                    "ci_runners": {**RUNNERS, "container_mode": "kubernetes"}})
    assert "mlplane:team.ci_runners: container_mode 'kubernetes' is not offered to teams" in str(error.value)


def test_validate_exits_2_naming_the_field_given_and_allowed(tmp_path):
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump({"ci_runners": {"github_config_url": ORG, "github_token_key": "ghToken"}}))
    result = subprocess.run([sys.executable, "-m", "mlplane", "validate", "--config", str(path)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "platform.ci_runners: github_config_url 'https://github.com/acme' is an organization URL" in result.stderr
    assert "Allowed: a repository URL" in result.stderr and "Traceback" not in result.stderr


# --------------------------------------------------------------------------------------------
# e2e: the boundary, through a real API server
# --------------------------------------------------------------------------------------------

try:  # the API server fixture of the e2e suite (tests/ is on sys.path under pytest)
    from test_e2e_apiserver import CRD_GROUPS, ApiServer, _pods_from_templates, apiserver  # noqa: F401
except ImportError:  # pragma: no cover
    pass

RBAC = "rbac.authorization.k8s.io"
SETUP_KINDS = ("Namespace", "ServiceAccount", "Role", "RoleBinding", "ValidatingAdmissionPolicy",
               "ValidatingAdmissionPolicyBinding")


def _subject(user: str) -> tuple[str, list[str]]:
    if user.startswith("system:serviceaccount:"):
        namespace = user.split(":")[2]
        return user, ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]
    return user, ["system:authenticated"]


def can(server, user: str, verb: str, resource: str, namespace: str, group: str = "", name: str | None = None) -> bool:
    user, groups = _subject(user)
    attributes = {"verb": verb, "resource": resource, "group": group, "namespace": namespace}
    if name:
        attributes["name"] = name
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": user, "groups": groups, "resourceAttributes": attributes}}
    status, payload, _ = server.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    assert status == 201, payload
    return bool(payload["status"].get("allowed"))


def as_user(server, user: str, method: str, path: str, body: dict) -> tuple[int, dict]:
    import json
    import ssl
    import urllib.error
    import urllib.request

    from test_e2e_apiserver import TOKEN

    user, groups = _subject(user)
    req = urllib.request.Request(server.url + path, data=json.dumps(body).encode(), method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    req.add_header("Content-Type", "application/json")
    req.add_header("Impersonate-User", user)
    for group in groups:
        req.add_header("Impersonate-Group", group)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(req, context=context, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.fixture(scope="module")
def cluster(apiserver):
    """The platform's objects for team vision (namespaces, identities, admission policies) and the
    team stack's RBAC and service accounts, applied for real; `default` accounts as a controller
    manager would create them."""
    objects = [m for m in platform_render().manifests() if m["kind"] in SETUP_KINDS]
    objects += [m for m in team_render().manifests() if m["kind"] in SETUP_KINDS]
    for obj in sorted(objects, key=lambda m: SETUP_KINDS.index(m["kind"])):
        query = "?fieldManager=mlplane&force=true"
        status, payload, _ = apiserver.request("PATCH", apiserver.path(obj) + query, obj, "application/apply-patch+yaml")
        assert status in (200, 201), f"{obj['kind']} {obj['metadata']['name']}: HTTP {status} {payload}"
    for namespace in (WORK, SERVING, RUNNER_NS):
        account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": namespace}}
        status, payload, _ = apiserver.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", account)
        assert status in (201, 409), payload
    # What a member could try to run as: a service account with the controller's name in the
    # work namespace (members may create service accounts there).
    decoy = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "arc-controller", "namespace": WORK}}
    status, payload, _ = apiserver.request("POST", f"/api/v1/namespaces/{WORK}/serviceaccounts", decoy)
    assert status in (201, 409), payload
    _wait_for_policies(apiserver)
    return apiserver


def _pod(namespace: str, account: str | None) -> dict:
    spec = {
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1001, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "job", "image": "python:3.13-slim", "securityContext": {
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
    }
    if account:
        spec["serviceAccountName"] = account
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": namespace}, "spec": spec}


def _wait_for_policies(server) -> None:
    """Each policy is compiled asynchronously after its creation, independently of the others:
    wait until both deny (the decoy pod, and a token Secret in the runner namespace)."""
    token = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
             "metadata": {"name": "probe", "namespace": RUNNER_NS,
                          "annotations": {"kubernetes.io/service-account.name": "default"}}}
    probes = [
        (f"/api/v1/namespaces/{WORK}/pods?dryRun=All", _pod(WORK, "arc-controller")),
        (f"/api/v1/namespaces/{RUNNER_NS}/secrets?dryRun=All", token),
    ]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(server.request("POST", path, body)[0] == 403 for path, body in probes):
            return
        time.sleep(0.5)
    pytest.fail("the admission policies did not take effect within 30 s")


@pytest.mark.e2e
def test_e2e_a_member_cannot_read_the_github_credential(cluster):
    assert can(cluster, MEMBER, "get", "secrets", WORK)  # the member Role reads the work namespace's secrets
    for verb in ("get", "list", "watch"):
        assert not can(cluster, MEMBER, verb, "secrets", RUNNER_NS, name="github-config" if verb == "get" else None)
    for verb, resource in (("create", "pods"), ("create", "pods/exec"), ("get", "configmaps"), ("create", "serviceaccounts/token")):
        assert not can(cluster, MEMBER, verb, resource, RUNNER_NS), (verb, resource)


@pytest.mark.e2e
@pytest.mark.parametrize("namespace", [WORK, SERVING, RUNNER_NS])
def test_e2e_a_member_cannot_write_rbac(cluster, namespace):
    for verb in ("create", "update", "patch", "escalate", "bind"):
        for resource in ("roles", "rolebindings"):
            assert not can(cluster, MEMBER, verb, resource, namespace, RBAC), (verb, resource, namespace)
    status, payload = as_user(cluster, MEMBER, "POST", f"/apis/{RBAC}/v1/namespaces/{namespace}/rolebindings?dryRun=All", {
        "apiVersion": f"{RBAC}/v1", "kind": "RoleBinding", "metadata": {"name": "escalate", "namespace": namespace},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"apiGroup": RBAC, "kind": "User", "name": MEMBER}],
    })
    assert status == 403, payload


@pytest.mark.e2e
def test_e2e_a_member_cannot_run_a_pod_as_another_service_account(cluster):
    assert can(cluster, MEMBER, "create", "pods", WORK)  # RBAC allows the create; admission decides
    status, payload = as_user(cluster, MEMBER, "POST", f"/api/v1/namespaces/{WORK}/pods?dryRun=All", _pod(WORK, "arc-controller"))
    assert status == 403, payload
    assert "run as one of the service accounts [default], not arc-controller" in payload["message"], payload["message"]
    assert "mlplane-team-pod-service-accounts" in payload["message"]
    status, payload = as_user(cluster, MEMBER, "POST", f"/api/v1/namespaces/{WORK}/pods?dryRun=All", _pod(WORK, None))
    assert status == 201, payload.get("message")


@pytest.mark.e2e
@pytest.mark.parametrize("namespace", [WORK, SERVING])
def test_e2e_a_member_cannot_mint_a_service_account_token(cluster, namespace):
    assert can(cluster, MEMBER, "create", "secrets", namespace)
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
              "metadata": {"name": "mint", "namespace": namespace,
                           "annotations": {"kubernetes.io/service-account.name": "default"}}}
    status, payload = as_user(cluster, MEMBER, "POST", f"/api/v1/namespaces/{namespace}/secrets?dryRun=All", secret)
    assert status == 403 and "service-account-token are refused in team namespaces" in payload["message"], payload
    opaque = copy.deepcopy(secret)
    opaque["type"] = "Opaque"
    del opaque["metadata"]["annotations"]
    status, payload = as_user(cluster, MEMBER, "POST", f"/api/v1/namespaces/{namespace}/secrets?dryRun=All", opaque)
    assert status == 201, payload.get("message")


@pytest.mark.e2e
def test_e2e_no_token_secret_in_the_runner_namespace_either(cluster):
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
              "metadata": {"name": "mint", "namespace": RUNNER_NS,
                           "annotations": {"kubernetes.io/service-account.name": "team-runner"}}}
    status, payload, _ = cluster.request("POST", f"/api/v1/namespaces/{RUNNER_NS}/secrets?dryRun=All", secret)
    assert status == 403, payload


@pytest.mark.e2e
@pytest.mark.parametrize("account", [f"system:serviceaccount:{WORK}:default", f"system:serviceaccount:{SERVING}:default",
                                     f"system:serviceaccount:{WORK}:arc-controller"])
def test_e2e_no_service_account_a_member_could_use_can_escalate(cluster, account):
    for namespace in (WORK, SERVING, RUNNER_NS):
        for verb, resource, group in (("create", "roles", RBAC), ("create", "rolebindings", RBAC), ("bind", "roles", RBAC),
                                      ("escalate", "roles", RBAC), ("get", "secrets", ""), ("create", "pods", ""),
                                      ("create", "serviceaccounts/token", "")):
            assert not can(cluster, account, verb, resource, namespace, group), (account, verb, resource, namespace)


@pytest.mark.e2e
def test_e2e_the_runner_account_does_what_the_hooks_need_and_nothing_more(cluster):
    runner = f"system:serviceaccount:{RUNNER_NS}:team-runner"
    for verb, resource in (("create", "pods"), ("delete", "pods"), ("create", "pods/exec"), ("get", "pods/log"),
                           ("create", "secrets")):
        assert can(cluster, runner, verb, resource, WORK), (verb, resource)
    assert not can(cluster, runner, "get", "secrets", RUNNER_NS, name="github-config")
    for namespace in (WORK, RUNNER_NS):
        for verb, resource in (("create", "roles"), ("create", "rolebindings")):
            assert not can(cluster, runner, verb, resource, namespace, RBAC)


@pytest.mark.e2e
def test_e2e_the_policies_admit_every_pod_mlplane_creates_in_team_namespaces(cluster):
    team_objects = [m for m in team_render().manifests() if m["metadata"].get("namespace") in (WORK, SERVING)]
    pods = _pods_from_templates(team_objects)
    assert pods, "the team render has no pod templates in its namespaces"
    for pod in pods:
        status, payload, _ = cluster.request("POST", f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods?dryRun=All", pod)
        assert status == 201, (pod["metadata"]["name"], payload.get("message"))
    template = yaml.safe_load(named(of(team_render(), "ConfigMap", RUNNER_NS), "job-pod-template")["data"]["job.yaml"])
    from runner_hooks import hook_job_pod

    from mlplane.config import versions

    job = hook_job_pod(runner_pod="team-vision-x7k2p-runner-4qz9d", namespace=WORK,
                       runner_image=versions.IMAGES["actions-runner"].ref(None), job_image="python:3.13-slim",
                       template=template)
    status, payload, warnings = cluster.request("POST", f"/api/v1/namespaces/{WORK}/pods?dryRun=All", job)
    assert status == 201, payload.get("message")
    assert not [w for w in warnings if "PodSecurity" in w], warnings


def test_platform_runners_reach_the_registry_network_only_and_get_the_push_credential():
    """Follow-ups of issue 15: no TCP 5000 to anywhere; job pods authenticate their pushes."""
    raw = {"ci_runners": RUNNERS}
    source = cli.Source(raw, "mlplane:platform", "local", None, {})
    config = parse_platform(raw)
    result = cli.offline_run(source, config)
    egress = named(of(result, "NetworkPolicy", "mlplane-ci-runners"), "runner-egress")["spec"]["egress"]
    bundled = config.registry.bundled
    assert {"to": [{"ipBlock": {"cidr": bundled.network_cidr}}],
            "ports": [{"port": 5000, "protocol": "TCP"}, {"port": bundled.auth_port, "protocol": "TCP"}]} in egress
    for rule in egress:
        if any(peer.get("ipBlock", {}).get("cidr") in ("0.0.0.0/0", "::/0") for peer in rule.get("to", [])):
            assert [p["port"] for p in rule["ports"]] in ([443], [443, 6443]), rule
    template = yaml.safe_load(named(of(result, "ConfigMap", "mlplane-ci-runners"), "job-pod-template")["data"]["job.yaml"])
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert volumes["registry-push"]["secret"]["secretName"] == "registry-push"
    assert named(of(result, "Secret", "mlplane-ci-runners"), "registry-push")["type"] == "kubernetes.io/dockerconfigjson"


def test_dind_runners_get_the_push_credential_as_docker_config():
    from mlplane.services import ci_runners
    from mlplane.core import kube
    from mlplane.config import CiRunnersConfig

    config = CiRunnersConfig(github_config_url="https://github.com/acme/models", github_token_key="t",
                             container_mode="dind", allow_privileged_runners=True)
    args = ci_runners.CiRunnersArgs(
        config=config, platform=kube.Platform(name="mlplane", provider=None, protect_stateful=False, secret=None),  # type: ignore[arg-type]
        registry_pull_prefix="localhost:5001", registry_push_url="r:5000", tracking_uri="http://t",
        tracking_username="u", tracking_password="p", registry_push_secret="registry-push",
    )
    spec = ci_runners.runner_pod_spec(args)
    (runner,) = spec["containers"]
    assert {"name": "DOCKER_CONFIG", "value": "/mlplane/docker"} in runner["env"]
    assert {v["name"] for v in spec["volumes"]} >= {"docker-config", "registry-push"}
    assert [m["name"] for m in runner["volumeMounts"]][-2:] == ["docker-config", "registry-push"]
