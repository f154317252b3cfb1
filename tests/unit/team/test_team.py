"""The Team component, rendered offline against its platform's outputs (StackReference mocks).

Isolation is proven on the rendered manifests of two teams on one platform: every namespace has
its quota, limit range and default-deny policies, RBAC is namespaced only, and everything team A's
stack creates (credentials, policies, bindings, Jobs in platform namespaces) names team A only.
"""

from __future__ import annotations

import json
from functools import lru_cache

import pulumi
import pytest

from mlplane.tooling import checks
from mlplane import cli
from mlplane.cli import teams
from mlplane.config import parse_platform
from mlplane.tooling.render import SECRET_MASK, Capture, StackOutputs, capture, stand_in_secret
from mlplane.team import TYPE, stack_reference_name
from mlplane.config.team import parse_team

PLATFORM = {
    "name": "mlplane",
    "lifecycle": {"throwaway": True},
    "tracking": {"workspaces": True},
    "ci_runners": {"github_config_url": "https://github.com/acme/models", "github_token_key": "githubToken"},
}
#: Namespaces of the platform a team's policies may name, besides its own.
PLATFORM_NAMESPACES = {"kube-system", "mlplane-tracking", "mlplane-storage", "mlplane-monitoring", "mlplane-gateway"}
RUNNERS = {"github_config_url": "https://github.com/acme/fraud", "github_token_key": "fraudGithubToken"}


def team_raw(name: str, **extra) -> dict:
    return {
        "name": name,
        "platform_stack": "local",
        "members": {"users": [f"{name}-lead@example.com"], "groups": [f"{name}-scientists"]},
        "serving": {"models": [{"name": "scorer", "registered_model": f"{name}-scorer", "alias": "champion", "min_replicas": 2}]},
        **extra,
    }


def checked(raw_team: dict, raw_platform: dict = PLATFORM) -> teams.CheckedTeam:
    source = cli.Source(raw_platform, "mlplane:platform", "local", None, {})
    return teams.CheckedTeam(parse_team(raw_team), source, parse_platform(raw_platform), [])


@lru_cache(maxsize=4)
def platform_outputs(raw_platform_json: str = json.dumps(PLATFORM)) -> StackOutputs:
    return teams.platform_stand_in(checked(team_raw("any"), json.loads(raw_platform_json)))


def render(raw_team: dict, raw_platform: dict = PLATFORM, **options) -> Capture:
    outputs = platform_outputs(json.dumps(raw_platform))
    return teams.offline_team_run(checked(raw_team, raw_platform), f"team-{raw_team['name']}", outputs, **options)


@pytest.fixture(scope="module")
def two_teams() -> dict[str, Capture]:
    return {
        "fraud": render(team_raw("fraud", ci_runners=RUNNERS, network={"allow_internet_https": True})),
        "risk": render(team_raw("risk")),
    }


def manifests(result: Capture, kind: str | None = None, namespace: str | None = None) -> list[dict]:
    return [
        m for m in result.manifests()
        if (kind is None or m["kind"] == kind) and (namespace is None or m["metadata"].get("namespace") == namespace)
    ]


def one(result: Capture, kind: str, namespace: str, name: str) -> dict:
    found = [m for m in manifests(result, kind, namespace) if m["metadata"]["name"] == name]
    assert len(found) == 1, (kind, namespace, name)
    return found[0]


def env(container: dict) -> dict[str, object]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# --------------------------------------------------------------------------------------------
# The contract: names, type token, parents
# --------------------------------------------------------------------------------------------


def test_resource_names_type_token_and_parents_are_the_public_contract(two_teams):
    result = two_teams["fraud"]
    assert result.named("team-fraud").type == TYPE
    assert result.named("team-fraud-kubernetes").type == "pulumi:providers:kubernetes"
    children = {r.name for r in result.resources if r.parent and r.parent.endswith(f"{TYPE}::team-fraud")}
    per_namespace = {
        f"team-fraud-{space}-{role}"
        for space in ("work", "serving")
        for role in (
            "quota", "limits", "deny-all", "allow-dns", "allow-team", "allow-platform",
            "allow-prometheus", "member-role", "member-binding", "prometheus-role", "prometheus-binding",
            "environment", "mlflow-credentials",
        )
    }
    assert children == per_namespace | {
        "team-fraud-runner-deny-ingress", "team-fraud-runner-allow-dns", "team-fraud-runner-default-deny",
        "team-fraud-runner-egress",
        "team-fraud-serving-allow-gateway", "team-fraud-work-allow-internet",
        "team-fraud-s3-credentials",
        "team-fraud-serving-scorer-deployment", "team-fraud-serving-scorer-service", "team-fraud-serving-scorer-hpa",
        "team-fraud-serving-scorer-pdb", "team-fraud-serving-scorer-route",
        "team-fraud-serving-api-keys", "team-fraud-serving-api-keys-key", "team-fraud-serving-scorer-security-policy",
        # Its model exporter (service 'monitoring'): the model's info series for the platform Prometheus.
        "team-fraud-serving-model-info", "team-fraud-serving-inference-scripts",
        "team-fraud-serving-model-exporter", "team-fraud-serving-model-exporter-network-policy",
        "team-fraud-runner-github", "team-fraud-runner-job-template", "team-fraud-runner-account",
        "team-fraud-runner-role", "team-fraud-runner-role-binding", "team-fraud-runner-controller",
        "team-fraud-runner-scale-set",
        "team-fraud-grafana-dashboard",
    }
    assert not any(r.aliases for r in result.resources)


def test_a_minimal_team_gets_namespaces_guardrails_and_its_services():
    result = render({"name": "ops", "platform_stack": "local", "services": ["registry"]})
    kinds = sorted({m["kind"] for m in result.manifests()})
    # The namespaces themselves are the platform stack's (tests/unit/team/test_team_identity.py).
    assert kinds == ["ConfigMap", "LimitRange", "NetworkPolicy", "ResourceQuota", "Role"]
    assert result.outputs["team"]["bucket"] is None and "mlflowPassword" not in result.outputs


# --------------------------------------------------------------------------------------------
# Isolation, on the rendered manifests of two teams
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fraud", "risk"])
def test_each_team_namespace_has_quota_limits_and_default_deny(two_teams, name):
    result = two_teams[name]
    for namespace in (f"mlplane-team-{name}", f"mlplane-team-{name}-serving"):
        hard = one(result, "ResourceQuota", namespace, "team-quota")["spec"]["hard"]
        assert {"requests.cpu", "limits.cpu", "requests.memory", "limits.memory", "requests.nvidia.com/gpu",
                "pods", "requests.storage", "persistentvolumeclaims"} <= set(hard)
        assert hard["services.nodeports"] == hard["services.loadbalancers"] == "0"
        limits = one(result, "LimitRange", namespace, "team-limits")["spec"]["limits"][0]
        assert set(limits) == {"type", "default", "defaultRequest", "max"}
        deny = one(result, "NetworkPolicy", namespace, "default-deny")["spec"]
        assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        dns = one(result, "NetworkPolicy", namespace, "allow-dns")["spec"]["egress"][0]
        assert {p["port"] for p in dns["ports"]} == {53}


@pytest.mark.parametrize(("name", "other"), [("fraud", "risk"), ("risk", "fraud")])
def test_rbac_is_namespaced_and_binds_only_the_teams_own_subjects(two_teams, name, other):
    result = two_teams[name]
    own = {f"mlplane-team-{name}", f"mlplane-team-{name}-serving"}
    assert not manifests(result, "ClusterRole") and not manifests(result, "ClusterRoleBinding")
    for binding in manifests(result, "RoleBinding"):
        assert binding["metadata"]["namespace"] in own
        assert binding["roleRef"]["kind"] == "Role"
        for subject in binding["subjects"]:
            if subject["kind"] == "ServiceAccount":
                assert (subject["namespace"], subject["name"]) in {("mlplane-monitoring", "prometheus"), (f"mlplane-team-{name}-runners", "team-runner")}
            else:
                assert subject["name"] in {f"{name}-lead@example.com", f"{name}-scientists"}
    for role in manifests(result, "Role"):
        assert role["metadata"]["namespace"] in own
    member = one(result, "Role", f"mlplane-team-{name}", "team-member")
    writable = {r for rule in member["rules"] if "create" in rule["verbs"] for r in rule["resources"]}
    assert not writable & {"networkpolicies", "resourcequotas", "limitranges", "roles", "rolebindings", "httproutes"}


@pytest.mark.parametrize(("name", "other"), [("fraud", "risk"), ("risk", "fraud")])
def test_nothing_a_team_creates_names_another_team(two_teams, name, other):
    text = json.dumps(two_teams[name].manifests())
    for token in (f"team-{other}", f"mlplane-team-{other}", f"{other}-lead", f"{other}-scientists", f"{other}."):
        assert token not in text
    own = {f"mlplane-team-{name}", f"mlplane-team-{name}-serving"}
    for policy in manifests(two_teams[name], "NetworkPolicy"):
        rules = policy["spec"].get("ingress", []) + policy["spec"].get("egress", [])
        for peer in (p for rule in rules for p in rule.get("from", rule.get("to", []))):
            selector = peer.get("namespaceSelector", {})
            named = set(selector.get("matchLabels", {}).values())
            named |= {v for e in selector.get("matchExpressions", []) for v in e["values"]}
            assert named <= own | PLATFORM_NAMESPACES, (policy["metadata"]["name"], named)


@pytest.mark.parametrize("name", ["fraud", "risk"])
def test_the_team_writes_the_credentials_its_platform_generated_into_its_own_namespaces(two_teams, name):
    result = two_teams[name]
    s3 = one(result, "Secret", f"mlplane-team-{name}", "s3-credentials")["stringData"]
    assert s3["AWS_ACCESS_KEY_ID"] == stand_in_secret(f"output:teamCredentials.{name}.s3AccessKeyId")
    assert s3["AWS_SECRET_ACCESS_KEY"] == stand_in_secret(f"output:teamCredentials.{name}.s3SecretAccessKey")
    assert s3["MLPLANE_BUCKET"] == f"team-{name}"
    for space in ("", "-serving"):
        credentials = one(result, "Secret", f"mlplane-team-{name}{space}", "mlflow-credentials")["stringData"]
        assert credentials == {"username": f"team-{name}", "password": stand_in_secret(f"output:teamCredentials.{name}.mlflowPassword")}


def test_a_team_stack_has_no_object_in_the_storage_or_tracking_namespaces(two_teams):
    """Its grants there are the platform stack's (mlplane.services.team_grants): the team identity
    has no right there, so its provider never has to list or watch anything there (issue 12)."""
    for result in two_teams.values():
        placed = {m["metadata"].get("namespace") for m in result.manifests()}
        assert not placed & {"mlplane-storage", "mlplane-tracking"}


def test_a_platform_that_did_not_generate_the_teams_credentials_fails_the_team_clearly():
    outputs = platform_outputs()
    stale = StackOutputs({**outputs.outputs, "teamCredentials": {"fraud": {"mlflowPassword": "x"}}}, outputs.secret_names)
    with pytest.raises(Exception, match="generated no s3AccessKeyId for this team"):
        teams.offline_team_run(checked(team_raw("fraud")), "team-fraud", stale)


def test_two_teams_share_no_credentials_and_no_object(two_teams):
    fraud, risk = two_teams["fraud"], two_teams["risk"]
    keys = [one(r, "Secret", f"mlplane-team-{n}", "s3-credentials")["stringData"] for n, r in (("fraud", fraud), ("risk", risk))]
    assert keys[0]["AWS_ACCESS_KEY_ID"] != keys[1]["AWS_ACCESS_KEY_ID"]
    assert keys[0]["AWS_SECRET_ACCESS_KEY"] != keys[1]["AWS_SECRET_ACCESS_KEY"]
    ids = [{checks.object_id(m) for m in r.manifests()} for r in (fraud, risk)]
    shared = ids[0] & ids[1]
    # The one shared object is the platform's dashboards ConfigMap, which each team patches with its own key.
    assert shared == {"ConfigMap/mlplane-monitoring/grafana-dashboards"}
    patched = [set(one(r, "ConfigMap", "mlplane-monitoring", "grafana-dashboards")["data"]) for r in (fraud, risk)]
    assert patched == [{"team-fraud.json"}, {"team-risk.json"}]


def test_models_attach_to_the_platform_gateway_under_the_teams_own_host(two_teams):
    result = two_teams["fraud"]
    route = one(result, "HTTPRoute", "mlplane-team-fraud-serving", "scorer")
    assert route["spec"]["hostnames"] == ["scorer.fraud.mlplane.localhost"]
    parent = route["spec"]["parentRefs"][0]
    assert (parent["name"], parent["namespace"]) == ("mlplane", "mlplane-gateway")
    # The namespaces' labels (gateway access on serving only): tests/unit/team/test_team_identity.py.
    model = one(result, "Deployment", "mlplane-team-fraud-serving", "scorer")["spec"]["template"]["spec"]["containers"][0]
    assert env(model)["MLFLOW_WORKSPACE"] == "team-fraud"
    assert result.outputs["team"]["modelUrls"] == {"scorer": "http://scorer.fraud.mlplane.localhost"}
    gateway = one(result, "NetworkPolicy", "mlplane-team-fraud-serving", "allow-gateway")["spec"]["ingress"][0]
    assert gateway["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mlplane-gateway"}}}]


def test_the_team_dashboard_reads_only_its_own_routes(two_teams):
    data = one(two_teams["fraud"], "ConfigMap", "mlplane-monitoring", "grafana-dashboards")["data"]["team-fraud.json"]
    dashboard = json.loads(data)
    assert dashboard["uid"] == "team-fraud"
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert exprs and all('httproute/mlplane-team-fraud-serving/' in e for e in exprs)


def test_runners_get_their_own_controller_watching_only_the_runner_namespace(two_teams):
    """Controller, listener, runners and the GitHub credential in the runner namespace (no member
    Role there); job pods in the work namespace (docs/components/ci-runners.md, "Team runners")."""
    result = two_teams["fraud"]
    controller = result.named("team-fraud-runner-controller").inputs
    assert controller["namespace"] == "mlplane-team-fraud-runners" and controller["skipCrds"] is True
    assert controller["values"]["flags"]["watchSingleNamespace"] == "mlplane-team-fraud-runners"
    scale_set = result.named("team-fraud-runner-scale-set").inputs
    assert scale_set["namespace"] == "mlplane-team-fraud-runners" and scale_set["name"] == "team-fraud"
    values = scale_set["values"]
    assert values["runnerScaleSetName"] == "team-fraud"
    assert values["controllerServiceAccount"] == {"namespace": "mlplane-team-fraud-runners", "name": "arc-controller"}
    (runner,) = values["template"]["spec"]["containers"]
    assert {"name": "ACTIONS_RUNNER_KUBERNETES_NAMESPACE", "value": "mlplane-team-fraud"} in runner["env"]
    assert result.named("team-fraud-runner-github").inputs["metadata"]["namespace"] == "mlplane-team-fraud-runners"
    assert values["template"]["spec"]["serviceAccountName"] == "team-runner"
    assert result.named("team-fraud-runner-github").masked_inputs()["stringData"] == SECRET_MASK
    assert result.outputs["team"]["runnerLabel"] == "team-fraud"


def test_team_job_pods_get_the_restricted_fs_init_and_the_internet_rule_excepts_metadata(two_teams):
    """Team job pods run in the team's restricted work namespace: its job pod template replaces
    the container hooks' fs-init like the platform's (docs/components/ci-runners.md)."""
    import yaml

    result = two_teams["fraud"]
    template = yaml.safe_load(result.named("team-fraud-runner-job-template").inputs["data"]["job.yaml"])
    (init,) = template["spec"]["initContainers"]
    assert init["name"] == "fs-init" and init["securityContext"]["allowPrivilegeEscalation"] is False
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    internet = [m for m in result.manifests() if m["kind"] == "NetworkPolicy" and m["metadata"]["name"] == "allow-internet-https"]
    assert internet
    for policy in internet:
        for rule in policy["spec"]["egress"]:
            assert {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}} in rule["to"]


def test_egress_opens_only_the_services_the_team_uses():
    result = render({"name": "ops", "platform_stack": "local", "services": ["object_storage"]})
    egress = one(result, "NetworkPolicy", "mlplane-team-ops", "allow-platform-services")["spec"]["egress"]
    assert [rule["ports"][0]["port"] for rule in egress] == [8333]
    assert not [m for m in manifests(result, "NetworkPolicy") if m["metadata"]["name"] in ("allow-prometheus", "allow-internet-https")]


# --------------------------------------------------------------------------------------------
# StackReference wiring, secrets
# --------------------------------------------------------------------------------------------


def test_platform_outputs_reach_the_team_through_the_stack_reference(two_teams):
    result = two_teams["risk"]
    platform = platform_outputs().outputs["platform"]
    environment = one(result, "ConfigMap", "mlplane-team-risk", "team-environment")["data"]
    assert environment["MLFLOW_TRACKING_URI"] == platform["trackingUri"] == "http://mlflow.mlplane-tracking.svc.cluster.local:5000"
    assert environment["AWS_ENDPOINT_URL_S3"] == platform["s3Endpoint"]
    assert environment["MLPLANE_REGISTRY"] == platform["registryClusterPushUrl"]
    assert environment["MLFLOW_WORKSPACE"] == "team-risk"
    provider = result.named("team-risk-kubernetes")
    # The team's own scoped identity, never the platform's admin kubeconfig.
    assert provider.inputs["kubeconfig"] == stand_in_secret("output:teamKubeconfigs.risk")
    assert provider.masked_inputs()["kubeconfig"] == SECRET_MASK and provider.inputs["context"] == "mlplane-team-risk"


def test_team_secrets_stay_secret(two_teams):
    outputs = two_teams["fraud"].outputs
    for key in ("s3AccessKeyId", "s3SecretAccessKey", "mlflowPassword"):
        assert outputs[key] == SECRET_MASK
    for name in ("team-fraud-s3-credentials", "team-fraud-work-mlflow-credentials"):
        assert two_teams["fraud"].named(name).masked_inputs()["stringData"] == SECRET_MASK
    for job in manifests(two_teams["fraud"], "Job"):
        for name, value in env(job["spec"]["template"]["spec"]["containers"][0]).items():
            assert not ("PASSWORD" in name or "SECRET" in name) or isinstance(value, dict), name


def test_the_stack_reference_is_qualified_for_the_file_backend():
    assert stack_reference_name("local", "mlplane") == "organization/mlplane/local"
    assert stack_reference_name("acme/mlplane/prod", "mlplane") == "acme/mlplane/prod"


def test_a_platform_deployed_from_another_config_fails_the_team():
    outputs = platform_outputs()
    wrong = StackOutputs({**outputs.outputs, "platform": {**outputs.outputs["platform"], "domain": "other.example"}}, outputs.secret_names)
    with pytest.raises(Exception, match="do not match its config file"):
        teams.offline_team_run(checked(team_raw("fraud")), "team-fraud", wrong)


def test_a_render_mode_platform_gives_the_team_a_render_provider():
    raw = {**PLATFORM, "cluster": {"mode": "render", "render": {"directory": "build/manifests"}},
           "registry": {"mode": "external", "external": {"url": "ghcr.io/acme"}}}
    result = render(team_raw("fraud"), raw)
    provider = result.named("team-fraud-kubernetes").inputs
    assert provider == {**provider, "renderYamlToDirectory": "build/manifests-team-fraud"}
    assert "kubeconfig" not in provider
    egress = one(result, "NetworkPolicy", "mlplane-team-fraud", "allow-platform-services")["spec"]["egress"]
    # Anywhere but the cloud metadata endpoint (kube.anywhere).
    assert {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}} in egress[-1]["to"]
    assert egress[-1]["ports"][0]["port"] == 443


# --------------------------------------------------------------------------------------------
# Offboarding, schemas
# --------------------------------------------------------------------------------------------


def test_team_manifests_pass_strict_schema_validation(two_teams):
    for result in two_teams.values():
        assert [str(f) for f in checks.validate_schemas(result.manifests(), ["1.34", "1.37"])] == []


def test_team_manifests_pass_the_checkov_baseline(two_teams, tmp_path):
    if checks.checkov_executable() is None:
        pytest.skip("checkov not installed: scripts/test.sh installs it into its own virtualenv")
    cli.write_render(two_teams["fraud"], tmp_path)
    assert [str(f) for f in checks.run_checkov(tmp_path / "manifests")] == []


# --------------------------------------------------------------------------------------------
# Bad config: nothing registered
# --------------------------------------------------------------------------------------------


def test_an_invalid_team_stack_config_registers_nothing(tmp_path, monkeypatch):
    from mlplane.program import main

    (tmp_path / "stacks").mkdir()
    (tmp_path / "Pulumi.yaml").write_text("name: mlplane\nruntime: python\nmain: stacks/\nstackConfigDir: stacks\n")
    (tmp_path / "stacks" / "Pulumi.local.yaml").write_text("config:\n  mlplane:platform: {tracking: {workspaces: true}}\n")
    monkeypatch.chdir(tmp_path)
    raw = {"name": "fraud", "platform_stack": "local", "quota": {"work": {"limits_cpu": "-1"}}}
    with pytest.raises(pulumi.RunError) as caught:
        capture(main, stack="team-fraud", config={"mlplane:team": json.dumps(raw)})
    assert "mlplane:team.quota.work.limits_cpu: must be a CPU quantity" in str(caught.value)
    assert caught.value.recorded == []  # type: ignore[attr-defined]


def test_a_platform_with_workspaces_runs_mlflow_with_them_and_keeps_the_default_workspace_readable():
    source = cli.Source(PLATFORM, "mlplane:platform", "local", None, {})
    result = cli.offline_run(source, parse_platform(PLATFORM))
    deployment = next(m for m in result.manifests() if m["kind"] == "Deployment" and m["metadata"]["name"] == "mlflow")
    assert "--enable-workspaces" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    server = next(m for m in result.manifests() if m["kind"] == "Secret" and m["metadata"]["name"] == "mlflow-server")
    assert "grant_default_workspace_access = true" in server["stringData"]["auth.ini"]


def test_every_mlflow_container_of_a_team_runs_with_telemetry_off(two_teams):
    result = two_teams["fraud"]
    seen = []
    for item in result.manifests():
        if item["kind"] not in ("Deployment", "Job"):
            continue
        for container in item["spec"]["template"]["spec"]["containers"]:
            if "/mlflow/mlflow:" in container["image"]:
                values = env(container)
                assert values["MLFLOW_DISABLE_TELEMETRY"] == "true", container["name"]
                assert values["DO_NOT_TRACK"] == "true", container["name"]
                seen.append((item["kind"], container["name"]))
    assert any(kind == "Deployment" and name == "model" for kind, name in seen)
