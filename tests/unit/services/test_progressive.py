"""Flagger objects of a progressive canary, validated strictly against Flagger's own CRDs
(``artifacts/flagger/crd.yaml`` of github.com/fluxcd/flagger at the pinned version, fetched from
the Go module proxy)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mlplane.core import kube
from mlplane.services import progressive
from mlplane.config import ConfigError, parse_platform

from test_routing_upstream import strict_errors


GATEWAY = kube.GatewayRef(name="mlplane", namespace="mlplane-routing", domain="mlplane.localhost", http_port=80)


@pytest.fixture(scope="module")
def flagger_module(tmp_path_factory) -> Path:
    """The Flagger module's directory, from the Go module proxy."""
    if shutil.which("go") is None:
        pytest.skip("go is not on PATH (needed to fetch Flagger's CRDs from the module proxy)")
    gopath = tmp_path_factory.mktemp("gopath")
    done = subprocess.run(
        ["go", "mod", "download", "-json", f"github.com/fluxcd/flagger@{progressive.FLAGGER_VERSION}"],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "GOPATH": str(gopath), "GOFLAGS": "-mod=mod"}, cwd=gopath,
    )
    info = json.loads(done.stdout or "{}")
    assert info.get("Dir"), done.stderr
    return Path(info["Dir"])


@pytest.fixture(scope="module")
def crds(flagger_module) -> dict[str, dict]:
    documents = yaml.safe_load_all((flagger_module / "artifacts/flagger/crd.yaml").read_text())
    return {d["spec"]["names"]["kind"]: d for d in documents if d}


def _model(**canary):
    config = parse_platform({"serving": {"progressive": {"enabled": True}, "models": [
        {"name": "iris", "registered_model": "iris", "version": 4,
         "canary": {"mode": "progressive", "steps": [5, 20, 50], "interval": "2m",
                    "thresholds": {"error_rate": 0.02, "p99_latency_seconds": 0.3}, **canary}}]}})
    return config.serving.models[0]


def test_canary_and_metric_templates_validate_strictly_against_flaggers_crds(crds):
    model = _model()
    spec = progressive.canary_spec(model, GATEWAY, 80, {"app.kubernetes.io/name": "iris"})
    document = {"apiVersion": progressive.API_VERSION, "kind": "Canary", "metadata": {"name": "iris"}, "spec": spec}
    assert strict_errors(document, crds["Canary"], "v1beta1") == []
    assert spec["analysis"]["stepWeights"] == [5, 20, 50] and spec["analysis"]["interval"] == "2m"
    assert [m["thresholdRange"]["max"] for m in spec["analysis"]["metrics"]] == [0.02, 0.3]
    for name, template in progressive.metric_templates("iris", "http://prometheus:9090").items():
        document = {"apiVersion": progressive.API_VERSION, "kind": "MetricTemplate", "metadata": {"name": name}, "spec": template}
        assert strict_errors(document, crds["MetricTemplate"], "v1beta1") == []
        assert 'envoy_cluster_name="httproute/{{ namespace }}/{{ target }}/rule/0"' in template["query"]


def test_every_flagger_check_counts_only_the_gateways_own_envoy_series():
    """A series named like Envoy's from any other job (a team's pod) never enters a check."""
    for template in progressive.metric_templates("iris", "http://prometheus:9090").values():
        selectors = re.findall(r"envoy_[a-z_]+\{([^}]*)\}", template["query"])
        assert selectors and all(s.startswith(f'job="{progressive.GATEWAY_JOB}",') for s in selectors), template["query"]


def test_deleting_a_canary_hands_the_target_back_scaled_like_the_primary(crds):
    """Leaving mode 'progressive' deletes the Canary; without revertOnDeletion Flagger would
    leave the target Deployment at the 0 replicas it runs with between rollouts."""
    spec = progressive.canary_spec(_model(), GATEWAY, 80)
    assert spec["revertOnDeletion"] is True
    assert crds["Canary"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "revertOnDeletion"]["type"] == "boolean"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"steps": [50, 20]}, "strictly increasing"),
        ({"steps": [0, 100]}, "strictly increasing"),
        ({"version": 5}, "remove the canary's version"),
    ],
)
def test_bad_progressive_canaries_are_refused(raw, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        _model(**raw)


def test_progressive_needs_the_controller_and_a_pinned_version():
    with pytest.raises((ConfigError, ValueError), match="serving.progressive.enabled"):
        parse_platform({"serving": {"models": [{"name": "iris", "registered_model": "iris", "version": 4,
                                                 "canary": {"mode": "progressive"}}]}})
    with pytest.raises((ConfigError, ValueError), match="pinned 'version'"):
        parse_platform({"serving": {"progressive": {"enabled": True}, "models": [
            {"name": "iris", "registered_model": "iris", "alias": "champion", "canary": {"mode": "progressive"}}]}})


# ------------------------------------------------------------------------- the wired objects

import pulumi  # noqa: E402

from mlplane.tooling import checks  # noqa: E402
from mlplane.cli import load_platform, offline_run  # noqa: E402
from mlplane.services.serving import Serving, ServingArgs  # noqa: E402

from conftest import opts  # noqa: E402

PROGRESSIVE = {"serving": {"progressive": {"enabled": True}, "models": [
    {"name": "fraud", "registered_model": "fraud", "version": 2, "min_replicas": 2,
     "canary": {"mode": "progressive", "steps": [10, 30, 50], "interval": "1m"}},
    {"name": "wine", "registered_model": "wine", "alias": "champion"},
]}}
PROMETHEUS = "http://prometheus.mlplane-monitoring.svc.cluster.local:9090"


def _serving(prometheus: bool = True):
    def build(platform, config, root):
        extra = {"prometheus_url": PROMETHEUS,
                 "prometheus_pods": ("mlplane-monitoring", platform.selector("monitoring", "prometheus"))}
        serving = Serving("mlplane-serving", ServingArgs(
            config=config.serving, platform=platform, gateway=GATEWAY,
            tracking_uri="http://mlflow.mlplane-tracking.svc.cluster.local:5000", tracking_username="serving",
            tracking_password=pulumi.Output.secret("pw"), **(extra if prometheus else {}),
        ), opts(root))
        return {"serving": serving}
    return build


def _objects(result) -> dict[tuple[str, str | None, str], dict]:
    return {(m["kind"], m["metadata"].get("namespace"), m["metadata"]["name"]): m for m in result.manifests()}


def test_shipped_crds_are_the_modules_file(flagger_module):
    shipped = (Path(progressive.__file__).parents[1] / progressive.CRDS_RESOURCE).read_text().splitlines(keepends=True)
    assert all(line.startswith("#") for line in shipped[: progressive.CRDS_HEADER_LINES])
    assert "".join(shipped[progressive.CRDS_HEADER_LINES:]) == (flagger_module / "artifacts/flagger/crd.yaml").read_text()
    assert sorted(d["spec"]["names"]["kind"] for d in progressive.crd_documents()) == ["AlertProvider", "Canary", "MetricTemplate"]


def test_the_controller_follows_the_modules_manifests(flagger_module):
    from mlplane.config import versions

    kustomization = yaml.safe_load((flagger_module / "kustomize/base/flagger/kustomization.yaml").read_text())
    (pin,) = [i for i in kustomization["images"] if i["name"] == "ghcr.io/fluxcd/flagger"]
    image = versions.IMAGES["flagger"]
    assert (f"{image.registry}/{image.repository}", image.tag) == (pin["newName"], pin["newTag"])
    # Every flag exists in the controller's command line (cmd/flagger/main.go).
    main = (flagger_module / "cmd/flagger/main.go").read_text()
    for arg in progressive.controller_args("mlplane-serving", PROMETHEUS):
        flag = arg.lstrip("-").split("=", 1)[0]
        assert f'"{flag}",' in main, flag
    # The gatewayapi overlay's provider; the Role grants a subset of upstream's ClusterRole.
    overlay = yaml.safe_load((flagger_module / "kustomize/gatewayapi/patch.yaml").read_text())
    assert f"-mesh-provider={progressive.PROVIDER}" in overlay["spec"]["template"]["spec"]["containers"][0]["args"]
    (role,) = [d for d in yaml.safe_load_all((flagger_module / "kustomize/base/flagger/rbac.yaml").read_text())
               if d and d["kind"] == "ClusterRole"]
    granted = {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule.get("apiGroups", [])
               for r in rule.get("resources", [])}
    for rule in progressive.ROLE_RULES:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert set(rule["verbs"]) <= granted[(group, resource)], (group, resource)


def test_a_progressive_model_gets_a_canary_and_flagger_owns_its_services_and_route(run_component):
    result, _ = run_component(_serving(), PROGRESSIVE)
    objects = _objects(result)
    ns = "mlplane-serving"
    # Flagger creates fraud, fraud-primary, fraud-canary Services and the HTTPRoute fraud.
    assert not [key for key in objects if key[0] in {"Service", "HTTPRoute"} and key[2].startswith("fraud")]
    assert {("Deployment", ns, "fraud"), ("HorizontalPodAutoscaler", ns, "fraud"), ("PodDisruptionBudget", ns, "fraud"),
            ("PodDisruptionBudget", ns, "fraud-primary"), ("Canary", ns, "fraud"),
            ("MetricTemplate", ns, "fraud-error-rate"), ("MetricTemplate", ns, "fraud-latency")} <= set(objects)
    assert objects[("PodDisruptionBudget", ns, "fraud-primary")]["spec"]["selector"]["matchLabels"][kube.NAME] == "fraud-primary"
    # The other model keeps Serving's own Service and route.
    assert {("Service", ns, "wine"), ("HTTPRoute", ns, "wine")} <= set(objects)
    # The API-key SecurityPolicy targets the route Flagger creates, by name.
    policy = objects[("SecurityPolicy", ns, "fraud")]
    assert policy["spec"]["targetRefs"][0]["name"] == "fraud"
    kinds = {d["spec"]["names"]["kind"]: d for d in progressive.crd_documents()}
    for kind in ("Canary", "MetricTemplate"):
        for key, manifest in objects.items():
            if key[0] == kind:
                assert strict_errors(manifest, kinds[kind], "v1beta1") == [], key
    canary = objects[("Canary", ns, "fraud")]["spec"]
    assert canary["service"]["hosts"] == ["fraud.mlplane.localhost"]
    assert canary["service"]["gatewayRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                                 "name": "mlplane", "namespace": "mlplane-routing", "sectionName": "http"}]
    assert objects[("MetricTemplate", ns, "fraud-error-rate")]["spec"]["provider"]["address"] == PROMETHEUS
    assert [f.check for f in checks.validate_schemas(result.manifests())] == []


def test_the_controller_outlives_the_canaries_it_must_finalize(run_component):
    """revertOnDeletion puts Flagger's finalizer on the Canary: the controller (its Deployment,
    Role and NetworkPolicies) is deleted only after the Canary, or the deletion would hang."""
    result, _ = run_component(_serving(), PROGRESSIVE)
    canary = next(r for r in result.resources if r.type.endswith("Canary"))
    assert canary.manifest()["spec"]["revertOnDeletion"] is True
    controller = [r for r in result.resources if r.parent == result.named("mlplane-serving-flagger").urn]
    needed = {r.urn for r in controller if r.type.split(":")[-1] in ("Deployment", "RoleBinding", "NetworkPolicy")}
    assert len(needed) >= 4 and needed <= set(canary.depends_on), needed - set(canary.depends_on)


def test_the_flagger_controller_is_namespaced_restricted_and_fenced(run_component):
    result, built = run_component(_serving(), PROGRESSIVE)
    objects = _objects(result)
    assert result.named("mlplane-serving-flagger").type == progressive.FLAGGER_TYPE
    deployment = objects[("Deployment", "mlplane-flagger", "flagger")]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/fluxcd/flagger:1.36.1"
    assert "-namespace=mlplane-serving" in container["args"] and f"-metrics-server={PROMETHEUS}" in container["args"]
    assert pod["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] == {"cpu": "10m", "memory": "64Mi"}
    # RBAC: a Role in the watched namespace only; no ClusterRole.
    assert ("Role", "mlplane-serving", "flagger") in objects
    assert not [key for key in objects if key[0] in {"ClusterRole", "ClusterRoleBinding"} and "flagger" in key[2]]
    binding = objects[("RoleBinding", "mlplane-serving", "flagger")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "flagger", "namespace": "mlplane-flagger"}]
    # Egress: the API server and the Prometheus pods on 9090 only (and DNS).
    egress = objects[("NetworkPolicy", "mlplane-flagger", "flagger-egress")]["spec"]["egress"]
    assert egress[0] == kube.api_server_egress()
    assert egress[1]["ports"] == kube.tcp(9090)
    assert egress[1]["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "mlplane-monitoring"}
    assert ("NetworkPolicy", "mlplane-flagger", "default-deny") in objects
    serving = built["serving"]
    assert serving.prometheus_clients == ["mlplane-flagger"]
    assert [t.job for t in serving.scrape_targets] == ["flagger"]


def test_progressive_delivery_needs_the_prometheus_it_checks(run_component):
    with pytest.raises(Exception, match="Prometheus"):
        run_component(_serving(prometheus=False), PROGRESSIVE)


def test_off_by_default_nothing_of_flagger_is_rendered(run_component):
    result, _ = run_component(_serving(), {"serving": {"models": [{"name": "wine", "registered_model": "wine", "version": 1}]}})
    assert not [m for m in result.manifests() if "flagger" in json.dumps(m)]


def test_the_platform_admits_flagger_to_prometheus(tmp_path):
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(PROGRESSIVE))
    source, platform = load_platform(None, path)
    result = offline_run(source, platform)
    objects = _objects(result)
    sources = objects[("NetworkPolicy", "mlplane-monitoring", "prometheus")]["spec"]["ingress"][0]["from"]
    assert kube.namespace_peer("mlplane-flagger") in sources
    config = yaml.safe_load(next(v for (k, ns, n), v in objects.items() if (k, ns) == ("ConfigMap", "mlplane-monitoring") and n.startswith("prometheus-config-"))["data"]["prometheus.yml"])
    assert "flagger" in [job["job_name"] for job in config["scrape_configs"]]


# ------------------------------------------------------------------ policy: canary analysis

from mlplane import policies  # noqa: E402


def _canary_resource(spec: dict) -> policies.Resource:
    type_ = "kubernetes:flagger.app/v1beta1:Canary"
    props = {"apiVersion": progressive.API_VERSION, "kind": "Canary", "metadata": {"name": "iris", "namespace": "ml"}, "spec": spec}
    return policies.Resource(type=type_, name="res-iris", urn=f"urn:pulumi:prod::proj::{type_}::res-iris", props=props)


def _analysis_problems(spec: dict) -> list[str]:
    check = policies.policy("progressive-delivery-analysis").resource_check
    return [p.message for p in check(_canary_resource(spec), policies.Stack("prod"))]


def test_the_canaries_mlplane_builds_pass_the_analysis_policy():
    assert policies.policy("progressive-delivery-analysis").enforcement == policies.MANDATORY
    assert _analysis_problems(progressive.canary_spec(_model(), GATEWAY, 80)) == []
    # The limits themselves are allowed.
    edge = _model(steps=[50], interval="30s", thresholds={"error_rate": 0.5})
    assert _analysis_problems(progressive.canary_spec(edge, GATEWAY, 80)) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"analysis": {"stepWeights": [10, 60]}}, "reaches 60% of the requests"),
        ({"analysis": {"stepWeights": [], "maxWeight": 80, "stepWeight": 20}}, "reaches 80%"),
        ({"analysis": {"interval": "29s"}}, "interval '29s' is not a duration of at least 30s"),
        ({"analysis": {"interval": "500ms"}}, "at least 30s"),
        ({"analysis": {"interval": "soon"}}, "interval 'soon'"),
        ({"analysis": {"metrics": []}}, "has no metrics"),
        ({"skipAnalysis": True}, "skipAnalysis is true"),
        ({"analysis": {"metrics": [{"name": "error-rate", "thresholdRange": {"max": 0.51}}]}}, "error rate of 0.51"),
        ({"analysis": {"metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 40}}]}}, "under 50%"),
    ],
)
def test_unsafe_canary_analyses_are_violations(change, message):
    spec = progressive.canary_spec(_model(), GATEWAY, 80)
    spec = {**spec, **{k: v for k, v in change.items() if k != "analysis"}}
    spec["analysis"] = {**spec["analysis"], **change.get("analysis", {})}
    problems = _analysis_problems(spec)
    assert len(problems) == 1 and message in problems[0], problems


def test_the_analysis_policy_ignores_other_kinds_and_unknown_values():
    other = policies.Resource(type="kubernetes:apps/v1:Deployment", name="d", urn="u",
                              props={"apiVersion": "apps/v1", "kind": "Deployment", "spec": {}})
    check = policies.policy("progressive-delivery-analysis").resource_check
    assert check(other, policies.Stack("prod")) == []
    assert _analysis_problems({"analysis": policies.UNKNOWN}) == []
    assert policies.go_duration_seconds("1m30s") == 90 and policies.go_duration_seconds("90") is None


# ---------------------------------------------------------------------------------- teams


@pytest.mark.parametrize(
    ("services", "model", "message"),
    [
        (["tracking"], {"logging": {"sample_rate": 0.1}}, "logging writes to the team's bucket: add 'object_storage'"),
        (["tracking", "object_storage"], {"logging": {"sample_rate": 0.1}, "drift": {}},
         "drift scores reach alerts and dashboards through the platform Prometheus: add 'monitoring'"),
    ],
)
def test_team_logging_and_drift_need_the_teams_bucket_and_monitoring(services, model, message):
    from mlplane.config.team import parse_team

    raw = {"name": "fraud", "platform_stack": "local", "services": services,
           "serving": {"models": [{"name": "iris", "registered_model": "iris", "version": 2, **model}]}}
    with pytest.raises(ConfigError, match=message):
        parse_team(raw)


def test_team_progressive_canaries_need_the_platforms_flagger():
    from mlplane.config.team import check_platform, parse_team

    team = parse_team({"name": "fraud", "platform_stack": "local", "serving": {"models": [
        {"name": "iris", "registered_model": "iris", "version": 2, "canary": {"mode": "progressive"}}]}})
    assert team.serving.progressive and team.serving.as_serving_config().progressive.enabled
    base = {"tracking": {"auth": True, "workspaces": True}}
    [problem] = check_platform(team, parse_platform(base))
    assert "iris use canary mode 'progressive'" in problem and "serving.progressive.enabled: true" in problem
    assert check_platform(team, parse_platform({**base, "serving": {"progressive": {"enabled": True}}})) == []


# ------------------------------------------------------------------------- one weight rule


@pytest.mark.parametrize("steps", [[10, 51], [60], [10, 25, 50, 75, 99]])
def test_config_refuses_the_steps_the_policy_would_fail(steps):
    with pytest.raises((ConfigError, ValueError), match=r"between 1 and 50"):
        _model(steps=steps)
    spec = progressive.canary_spec(_model(steps=[10, 25, 50]), GATEWAY, 80)
    spec["analysis"]["stepWeights"] = steps
    assert any("reaches" in p for p in _analysis_problems(spec))


@pytest.mark.parametrize("interval", ["29s", "500ms", "1d", "1w"])
def test_config_refuses_the_intervals_the_policy_would_fail_or_flagger_could_not_read(interval):
    with pytest.raises((ConfigError, ValueError), match=r"interval .* at least 30s"):
        _model(interval=interval)


def test_every_step_and_interval_the_config_accepts_passes_the_policy():
    """The config and the policy share one limit (config.serving.CANARY_MAX_STEP_WEIGHT)."""
    from mlplane.config.serving import CANARY_MAX_STEP_WEIGHT, CANARY_MIN_INTERVAL_SECONDS

    assert policies.CANARY_MAX_WEIGHT == CANARY_MAX_STEP_WEIGHT == 50
    assert policies.CANARY_MIN_INTERVAL_SECONDS == CANARY_MIN_INTERVAL_SECONDS == 30
    for steps, interval in ([[1], "30s"], [[50], "1h"], [list(range(1, 51)), "2m"], [[49, 50], "90s"]):
        assert _analysis_problems(progressive.canary_spec(_model(steps=steps, interval=interval), GATEWAY, 80)) == []


# ------------------------------------------------------------------------------- dashboard


def test_the_model_dashboard_shows_drift_and_canary_weights_next_to_latency_and_errors():
    from mlplane.services.monitoring import dashboards

    document = json.loads(dashboards()["models.json"])
    panels = {p["title"]: p for p in document["panels"]}
    drift = " ".join(t["expr"] for t in panels["Input drift (share of drifted features)"]["targets"])
    assert 'mlplane_model_drift_share{model="$model"}' in drift and "mlplane_model_drift_share_threshold" in drift
    assert "mlplane_model_feature_drift_psi" in panels["Feature drift (PSI)"]["targets"][0]["expr"]
    # Flagger's gauge (pkg/metrics/recorder.go: flagger_canary_weight{workload,namespace}).
    weights = [t["expr"] for t in panels["Canary weight (progressive delivery)"]["targets"]]
    assert weights == ['max(flagger_canary_weight{workload="$model"})', 'max(flagger_canary_weight{workload="$model-primary"})']
    # Next to the route's panels: same width, directly below latency; ids unique, no overlap.
    latency = panels["Latency"]["gridPos"]
    assert panels["Input drift (share of drifted features)"]["gridPos"]["y"] == latency["y"] + latency["h"]
    assert len({p["id"] for p in document["panels"]}) == len(document["panels"])
    cells = [(x, y) for p in document["panels"] for g in [p["gridPos"]]
             for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])]
    assert len(cells) == len(set(cells))


# ------------------------------------------------------------------------------- footprint


def test_the_footprint_of_each_optional_feature_is_measured_from_a_render():
    from mlplane.tooling import footprint as fp
    from mlplane.cli import footprint_document

    source, platform = load_platform("local", None)
    assert not platform.serving.progressive.enabled and not platform.serving.models  # off by default
    raw = fp.with_features(source.raw)
    per = fp.feature_usage(offline_run(source, parse_platform(raw)))
    got = {name.split(" (")[0]: (u.as_json()["cpu_request"], u.as_json()["memory_request"]) for name, u in per.items()}
    assert got == {"Drift exporter": ("10m", "64Mi"), "Drift job": ("50m", "256Mi"),
                   "Flagger controller": ("10m", "64Mi"), "Inference logging sidecar": ("10m", "64Mi")}
    assert "## Optional features" in footprint_document()
