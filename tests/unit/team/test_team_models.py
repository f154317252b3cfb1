"""A team's model extras, rendered offline: inference logging to the team's bucket, drift checks
with the team's MLflow account, the model exporter, progressive canaries run by a per-team Flagger
controller, and the isolation of all of it (namespaces, identities, NetworkPolicies, quotas)."""

from __future__ import annotations

import json

import pytest

from mlplane import cli
from mlplane.config import ConfigError, parse_platform
from mlplane.config.team import check_platform, parse_team
from mlplane.policies import Stack, policy
from mlplane.policies.model import Resource
from mlplane.program import scraped_team_namespaces
from mlplane.services import drift, progressive
from mlplane.services.prometheus_config import TEAM_MODEL_INFO
from mlplane.services.team_access import TeamGrant
from mlplane.tooling import checks
from mlplane.cli import offline_run

from test_routing_upstream import strict_errors
from test_team import PLATFORM, manifests, one, render, team_raw

PROGRESSIVE_PLATFORM = {**PLATFORM, "serving": {"progressive": {"enabled": True}}}
LOGGING = {"sample_rate": 0.2, "exclude_fields": ["email"]}
DRIFT = {"schedule": "15 * * * *", "window": "6h", "thresholds": {"psi": 0.25, "share": 0.4}}


def featured(name: str, **extra) -> dict:
    """A team serving one logged, drift-checked model and one progressive model."""
    return team_raw(name, serving={"models": [
        {"name": "scorer", "registered_model": f"{name}-scorer", "version": 3, "logging": LOGGING, "drift": DRIFT},
        {"name": "ranker", "registered_model": f"{name}-ranker", "version": 7,
         "canary": {"mode": "progressive", "steps": [10, 20, 40], "interval": "2m"}},
    ]}, **extra)


@pytest.fixture(scope="module")
def two() -> dict:
    return {name: render(featured(name), PROGRESSIVE_PLATFORM) for name in ("fraud", "risk")}


def env(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_logging_writes_to_the_teams_bucket_with_the_teams_own_key(two):
    result, ns = two["fraud"], "mlplane-team-fraud-serving"
    store = one(result, "Secret", ns, drift.STORE_SECRET)
    s3 = one(result, "Secret", "mlplane-team-fraud", "s3-credentials")
    assert store["stringData"]["access-key-id"] == s3["stringData"]["AWS_ACCESS_KEY_ID"]
    assert store["stringData"]["secret-access-key"] == s3["stringData"]["AWS_SECRET_ACCESS_KEY"]
    deployment = one(result, "Deployment", ns, "scorer")
    containers = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}
    logger = env(containers["inference-logger"])
    assert logger["BUCKET"] == "team-fraud" and logger["NAMESPACE"] == ns and logger["SAMPLE_RATE"] == "0.2"
    assert logger["EXCLUDE_FIELDS"] == '["email"]'
    assert deployment["spec"]["template"]["metadata"]["labels"][drift.STORE_LABEL] == "true"
    # The platform's buckets and its inference identity appear nowhere in the team's objects.
    text = json.dumps(result.manifests())
    assert "mlplane-datasets" not in text and "mlplane-inference" not in text


def test_drift_runs_in_the_teams_namespace_with_its_mlflow_account_and_workspace(two):
    result, ns = two["fraud"], "mlplane-team-fraud-serving"
    job = one(result, "CronJob", ns, "scorer-drift")
    assert job["spec"]["schedule"] == "15 * * * *"
    [container] = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    values = env(container)
    assert values["MLFLOW_WORKSPACE"] == "team-fraud" and values["BUCKET"] == "team-fraud"
    assert values["MLFLOW_TRACKING_USERNAME"] == {"secretKeyRef": {"name": "mlflow-credentials", "key": "username"}}
    assert values["PSI_THRESHOLD"] == "0.25" and values["SHARE_THRESHOLD"] == "0.4"
    assert values["REGISTERED_MODEL"] == "fraud-scorer" and values["MODEL_REF"] == "3"
    assert values["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert job["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"][drift.STORE_LABEL] == "true"


def test_the_model_exporter_publishes_info_and_drift_for_the_platform_prometheus(two):
    result, ns = two["fraud"], "mlplane-team-fraud-serving"
    exporter = one(result, "Deployment", ns, drift.TEAM_EXPORTER)
    labels = exporter["spec"]["template"]["metadata"]["labels"]
    assert labels["mlplane.dev/scrape"] == "metrics" and labels[drift.STORE_LABEL] == "true"
    [container] = exporter["spec"]["template"]["spec"]["containers"]
    assert container["ports"][0]["name"] == "metrics"
    values = env(container)
    assert values["BUCKET"] == "team-fraud" and values["INFO_FILE"].endswith(drift.INFO_FILE)
    info = one(result, "ConfigMap", ns, "model-info")["data"][drift.INFO_FILE]
    assert f'{TEAM_MODEL_INFO}{{model="scorer",registered_model="fraud-scorer",route="scorer",version="v3"}} 1' in info
    assert 'model="ranker"' in info
    # Only the platform's monitoring namespace reaches it, on its metrics port.
    policy_ = one(result, "NetworkPolicy", ns, drift.TEAM_EXPORTER)
    assert policy_["spec"]["ingress"] == [{"from": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "mlplane-monitoring"}}}], "ports": [{"port": "metrics", "protocol": "TCP"}]}]


def test_only_store_pods_reach_the_object_store_and_only_its_s3_port(two):
    result, ns = two["fraud"], "mlplane-team-fraud-serving"
    egress = one(result, "NetworkPolicy", ns, "inference-store-egress")
    assert egress["spec"]["podSelector"] == {"matchLabels": {drift.STORE_LABEL: "true"}}
    [rule] = egress["spec"]["egress"]
    assert rule["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mlplane-storage"}},
                           "podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "mlplane",
                                                           "app.kubernetes.io/component": "storage",
                                                           "app.kubernetes.io/name": "seaweedfs"}}}]
    assert rule["ports"] == [{"port": 8333, "protocol": "TCP"}]
    # The namespace-wide policies are unchanged: serving pods reach MLflow only, and the default deny stays.
    platform = one(result, "NetworkPolicy", ns, "allow-platform-services")
    assert [r["ports"] for r in platform["spec"]["egress"]] == [[{"port": 5000, "protocol": "TCP"}]]
    assert one(result, "NetworkPolicy", ns, "default-deny")["spec"]["podSelector"] == {}


def test_progressive_canaries_validate_against_flaggers_crds_and_pass_the_policy(two):
    result, ns = two["fraud"], "mlplane-team-fraud-serving"
    kinds = {d["spec"]["names"]["kind"]: d for d in progressive.crd_documents()}
    canary = one(result, "Canary", ns, "ranker")
    assert strict_errors(canary, kinds["Canary"], "v1beta1") == []
    for name in ("ranker-error-rate", "ranker-latency"):
        template = one(result, "MetricTemplate", ns, name)
        assert strict_errors(template, kinds["MetricTemplate"], "v1beta1") == []
        assert template["spec"]["provider"]["address"] == "http://prometheus.mlplane-monitoring.svc.cluster.local:9090"
    spec = canary["spec"]
    assert spec["service"]["hosts"] == ["ranker.fraud.mlplane.localhost"]
    assert {r["name"] for r in spec["service"]["gatewayRefs"]} == {"mlplane"}
    assert spec["analysis"]["stepWeights"] == [10, 20, 40] and spec["analysis"]["interval"] == "2m"
    # Flagger creates the model's Services and route; the team stack creates neither.
    assert not [m for m in manifests(result, namespace=ns) if m["kind"] in ("Service", "HTTPRoute")
                and m["metadata"]["name"].startswith("ranker")]
    check = policy("progressive-delivery-analysis").resource_check
    resource = Resource(type="kubernetes:flagger.app/v1beta1:Canary", name="ranker", urn="urn:x", props=canary)
    assert check(resource, Stack("team-fraud")) == []
    assert [f.check for f in checks.validate_schemas(result.manifests())] == []


def test_two_featured_teams_share_nothing(two):
    for me, other in (("fraud", "risk"), ("risk", "fraud")):
        text = json.dumps(two[me].manifests())
        assert f"team-{other}" not in text and f"mlplane-team-{other}" not in text and f"{other}-scorer" not in text


def test_each_team_gets_its_own_flagger_watching_only_its_serving_namespace():
    raw = parse_platform(PROGRESSIVE_PLATFORM)
    source = cli.Source(PROGRESSIVE_PLATFORM, "mlplane:platform", "local", None, {})
    grants = [TeamGrant(name=t, work_namespace=f"mlplane-team-{t}", serving_namespace=f"mlplane-team-{t}-serving")
              for t in ("fraud", "risk")]
    result = offline_run(source, raw, teams=grants)
    objects = {(m["kind"], m["metadata"].get("namespace"), m["metadata"]["name"]): m for m in result.manifests()}
    # The platform serves no model: the CRDs and the teams' controllers only.
    assert ("Deployment", "mlplane-flagger", "flagger") not in objects
    assert {k[2] for k in objects if k[0] == "CustomResourceDefinition"} >= {"canaries.flagger.app", "metrictemplates.flagger.app"}
    for team in ("fraud", "risk"):
        controller = progressive.team_controller(team)
        deployment = objects[("Deployment", "mlplane-flagger", controller)]
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert f"-namespace=mlplane-team-{team}-serving" in container["args"]
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == controller
        role = objects[("Role", f"mlplane-team-{team}-serving", progressive.TEAM_ROLE)]
        assert role["rules"] == progressive.ROLE_RULES
        binding = objects[("RoleBinding", f"mlplane-team-{team}-serving", progressive.TEAM_ROLE)]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": controller, "namespace": "mlplane-flagger"}]
        egress = objects[("NetworkPolicy", "mlplane-flagger", f"{controller}-egress")]
        assert egress["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == controller
    # Nothing of a team's controller reaches another team's namespace, and no cluster-wide RBAC.
    assert not [k for k in objects if k[0] in ("ClusterRole", "ClusterRoleBinding") and "flagger" in k[2]]
    roles = [k for k in objects if k[0] in ("Role", "RoleBinding") and k[2] == progressive.TEAM_ROLE]
    assert sorted(k[1] for k in roles) == sorted(["mlplane-team-fraud-serving"] * 2 + ["mlplane-team-risk-serving"] * 2)
    # Prometheus admits and scrapes them (job flagger-teams).
    config = next(v for (k, ns, n), v in objects.items() if (k, ns) == ("ConfigMap", "mlplane-monitoring") and n.startswith("prometheus-config-"))["data"]["prometheus.yml"]
    assert "job_name: flagger-teams" in config


def test_no_team_controller_without_progressive_delivery_on_the_platform():
    source = cli.Source(PLATFORM, "mlplane:platform", "local", None, {})
    grants = [TeamGrant(name="fraud", work_namespace="mlplane-team-fraud", serving_namespace="mlplane-team-fraud-serving")]
    result = offline_run(source, parse_platform(PLATFORM), teams=grants)
    assert not [m for m in result.manifests() if "flagger" in m["metadata"]["name"]]


def test_features_off_add_nothing_and_no_monitoring_means_no_exporter():
    plain = render({"name": "ops", "platform_stack": "local", "services": ["registry"]})
    names = {m["metadata"]["name"] for m in plain.manifests()}
    assert not names & {drift.TEAM_EXPORTER, "model-info", drift.STORE_SECRET, drift.SCRIPTS_CONFIG_MAP, "inference-store-egress"}
    quiet = render(team_raw("quiet", services=["tracking", "object_storage"]))
    assert drift.TEAM_EXPORTER not in {m["metadata"]["name"] for m in quiet.manifests()}


def test_only_teams_using_monitoring_are_scraped():
    platform = parse_platform(PLATFORM)
    teams = [parse_team(team_raw("fraud")), parse_team(team_raw("ops", services=["tracking"]))]
    assert scraped_team_namespaces(teams, platform) == ["mlplane-team-fraud", "mlplane-team-fraud-serving"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # Two replicas of 100m, each with a 10m sidecar, and the drift job's 50m: 270m.
        ({"quota": {"serving": {"requests_cpu": "260m"}}}, "sidecars and the drift job included"),
        # A progressive model at min_replicas 2 runs 4 pods during a rollout.
        ({"quota": {"serving": {"pods": 3}}}, "a progressive canary counts twice"),
    ],
)
def test_the_serving_quota_counts_sidecars_drift_jobs_and_rollouts(change, message):
    models = [{"name": "scorer", "registered_model": "s", "version": 1, "min_replicas": 2, "logging": LOGGING, "drift": DRIFT}]
    if "pods" in change["quota"]["serving"]:
        models = [{"name": "ranker", "registered_model": "r", "version": 1, "min_replicas": 2, "canary": {"mode": "progressive"}}]
    with pytest.raises(ConfigError, match=message):
        parse_team({"name": "fraud", "platform_stack": "local", "serving": {"models": models}, **change})


def test_a_drift_job_larger_than_the_limit_range_is_refused():
    model = {"name": "scorer", "registered_model": "s", "version": 1, "logging": LOGGING,
             "drift": {"resources": {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"cpu": "6", "memory": "1Gi"}}}}
    with pytest.raises(ConfigError, match=r"drift.resources.limits \(6 CPU, 1Gi\) exceed limit_range.max"):
        parse_team({"name": "fraud", "platform_stack": "local", "serving": {"models": [model]}})


def test_a_featured_team_is_admitted_only_with_progressive_delivery_on_the_platform():
    team = parse_team(featured("fraud"))
    base = {"tracking": {"auth": True, "workspaces": True}}
    assert any("serving.progressive.enabled" in p for p in check_platform(team, parse_platform(base)))
    assert check_platform(team, parse_platform({**base, "serving": {"progressive": {"enabled": True}}})) == []


def test_the_team_dashboard_shows_drift_and_canary_weights_only_when_used(two):
    from mlplane.team.dashboard import team_dashboard

    ns = "mlplane-team-fraud-serving"
    featured_team = team_dashboard(parse_team(featured("fraud")), ns, "5m")
    panels = {p["title"]: p["targets"][0]["expr"] for p in featured_team["panels"]}
    assert panels["Input drift (share of drifted features)"] == f'max by (model) (mlplane_model_drift_share{{namespace="{ns}"}})'
    assert f'namespace="{ns}"' in panels["Feature drift (PSI)"]
    assert panels["Canary weight (progressive delivery)"] == f'max by (workload) (flagger_canary_weight{{exported_namespace="{ns}"}})'
    cells = [(x, y) for p in featured_team["panels"] for g in [p["gridPos"]]
             for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])]
    assert len(cells) == len(set(cells))
    plain = team_dashboard(parse_team(team_raw("fraud")), ns, "5m")
    assert [p["title"] for p in plain["panels"]] == ["Requests per second", "Error ratio (5xx)", "p99 latency"]
    # The rendered patch carries the featured dashboard.
    patch = one(two["fraud"], "ConfigMap", "mlplane-monitoring", "grafana-dashboards")
    assert "Canary weight (progressive delivery)" in patch["data"]["team-fraud.json"]


def test_featured_team_manifests_pass_strict_schemas_and_the_checkov_baseline(two, tmp_path):
    assert [str(f) for f in checks.validate_schemas(two["fraud"].manifests(), ["1.34", "1.37"])] == []
    if checks.checkov_executable() is None:
        pytest.skip("checkov not installed: scripts/test.sh installs it into its own virtualenv")
    cli.write_render(two["fraud"], tmp_path)
    assert [str(f) for f in checks.run_checkov(tmp_path / "manifests")] == []


def test_the_platform_with_team_controllers_passes_the_checkov_baseline(tmp_path):
    if checks.checkov_executable() is None:
        pytest.skip("checkov not installed: scripts/test.sh installs it into its own virtualenv")
    source = cli.Source(PROGRESSIVE_PLATFORM, "mlplane:platform", "local", None, {})
    grants = [TeamGrant(name="fraud", work_namespace="mlplane-team-fraud", serving_namespace="mlplane-team-fraud-serving")]
    result = offline_run(source, parse_platform(PROGRESSIVE_PLATFORM), teams=grants)
    flagger = [m for m in result.manifests() if m["metadata"].get("namespace") == "mlplane-flagger"
               or m["metadata"].get("name") == progressive.TEAM_ROLE]
    cli.write_render(result, tmp_path)
    findings = [f for f in checks.run_checkov(tmp_path / "manifests") if "flagger" in str(f)]
    assert flagger and findings == []


def test_team_pods_keep_the_admission_rules_and_the_whole_policy_pack_passes(two):
    """Every pod the features add in team namespaces runs as 'default' without a token (the
    admission policy), and the policy pack (team isolation, progressive analysis, baseline) finds
    nothing mandatory in a featured team's stack."""
    from mlplane.policies import evaluate
    from mlplane.services.admission import TEAM_POD_ACCOUNTS
    from mlplane.tooling.plan import resource_view

    result = two["fraud"]
    checked = set()
    for manifest in result.manifests():
        spec = manifest.get("spec", {})
        pod = spec.get("jobTemplate", {}).get("spec", {}).get("template", spec.get("template", {})).get("spec")
        if manifest["metadata"].get("namespace", "").startswith("mlplane-team-fraud") and pod:
            assert pod.get("serviceAccountName", "default") in TEAM_POD_ACCOUNTS, manifest["metadata"]["name"]
            assert pod.get("automountServiceAccountToken") is False, manifest["metadata"]["name"]
            checked.add(manifest["metadata"]["name"])
    assert {"scorer", "scorer-drift", drift.TEAM_EXPORTER, "ranker"} <= checked
    evaluation = evaluate([resource_view(r) for r in result.resources], Stack(name="team-fraud", config_secure={}))
    assert [str(v) for v in evaluation.mandatory] == []
