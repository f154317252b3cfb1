"""TLS and authentication on the Gateway (routing.tls, serving.auth, monitoring.prometheus.route).

Render tests of the Gateway's listeners, the HTTPS redirect, the model routes' SecurityPolicies
and the Prometheus route; config refusals (exit 2, the field named); and the rendered objects
validated strictly against the pinned Envoy Gateway v1.9.1 CRDs (SecurityPolicy, and the Gateway
API CRDs its chart ships), fetched from the Go module proxy like tests/servers/test_routing_upstream.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from mlplane import cli
from mlplane.cli import teams
from mlplane.config import ConfigError, parse_platform
from mlplane.tooling.render import Capture
from mlplane.config.team import parse_team

# The module fixture and the strict schema check of the upstream test (tests/ is on sys.path).
from test_routing_upstream import module_dir, strict_errors  # noqa: F401

ROOT = Path(__file__).resolve().parents[3]
SECURITY_POLICY_CRD = "charts/gateway-helm/charts/crds/crds/generated/gateway.envoyproxy.io_securitypolicies.yaml"
GATEWAY_API_CRDS = "charts/gateway-helm/charts/crds/crds/gatewayapi-crds.yaml"
EXISTING = {
    "cluster": {"mode": "existing", "existing": {"kubeconfig": "~/.kube/config", "context": "prod"}},
    "registry": {"mode": "external", "external": {"url": "ghcr.io/acme"}},
    "routing": {"domain": "ml.example.com"},
}
TLS = {**EXISTING, "routing": {"domain": "ml.example.com", "tls": {
    "certificate_secret": "gateway-tls",
    "certificates": [{"hostname": "*.vision.ml.example.com", "secret": "vision-tls"}],
}}}
MODELS = {"models": [{"name": "iris", "registered_model": "iris", "alias": "champion"}]}


def with_(base: dict, **extra) -> dict:
    return json.loads(json.dumps({**base, **extra}))


@lru_cache(maxsize=8)
def _render(raw_json: str) -> Capture:
    raw = json.loads(raw_json)
    return cli.offline_run(cli.Source(raw, "mlplane:platform", "prod", None, {}), parse_platform(raw), teams=[])


def render(raw: dict) -> Capture:
    return _render(json.dumps(raw, sort_keys=True))


def of(result: Capture, kind: str, name: str | None = None) -> list[dict]:
    return [m for m in result.manifests() if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]


def problems(raw: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_platform(raw)
    return "\n".join(caught.value.problems)


# --------------------------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------------------------


def test_tls_terminates_https_with_the_brought_certificates_and_redirects_http():
    result = render(with_(TLS, serving=MODELS))
    (gateway,) = of(result, "Gateway")
    listeners = {item["name"]: item for item in gateway["spec"]["listeners"]}
    assert set(listeners) == {"http", "https", "https-1"}
    assert listeners["https"]["hostname"] == "*.ml.example.com" and listeners["https"]["port"] == 443
    assert listeners["https"]["tls"] == {"mode": "Terminate", "certificateRefs": [{"group": "", "kind": "Secret", "name": "gateway-tls"}]}
    assert listeners["https-1"]["hostname"] == "*.vision.ml.example.com"
    assert listeners["https-1"]["tls"]["certificateRefs"][0]["name"] == "vision-tls"
    # Only the redirect route of the Gateway's own namespace attaches to plain HTTP.
    assert listeners["http"]["allowedRoutes"]["namespaces"] == {"from": "Same"}
    (redirect,) = of(result, "HTTPRoute", "https-redirect")
    assert redirect["metadata"]["namespace"] == "mlplane-gateway"
    assert redirect["spec"]["parentRefs"][0]["sectionName"] == "http"
    assert redirect["spec"]["rules"] == [
        {"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}
    ]
    for route in of(result, "HTTPRoute"):
        if route["metadata"]["name"] != "https-redirect":
            assert {ref["sectionName"] for ref in route["spec"]["parentRefs"]} == {"https", "https-1"}, route["metadata"]
    assert result.outputs["urls"]["mlflow"] == "https://mlflow.ml.example.com"
    proxy = of(result, "EnvoyProxy")[0]
    ports = proxy["spec"]["provider"]["kubernetes"]["envoyService"]["patch"]["value"]["spec"]["ports"]
    assert {"port": 443, "nodePort": 30443} in ports


def test_without_tls_the_laptop_stack_serves_plain_http_explicitly():
    source, platform = cli.load_platform("local", None)
    assert platform.routing.tls.plain_http is True and platform.cluster.mode == "kind"
    result = render(parse_platform({"routing": {"tls": {"plain_http": True}}}).model_dump(mode="json", by_alias=True))
    (gateway,) = of(result, "Gateway")
    assert [item["name"] for item in gateway["spec"]["listeners"]] == ["http"]
    assert not of(result, "HTTPRoute", "https-redirect")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (EXISTING, "routing.tls.certificate_secret: required with cluster.mode 'existing'"),
        ({"routing": {"tls": {"certificate_secret": "gateway-tls"}}}, "routing.tls.certificate_secret: a kind cluster"),
        (with_(EXISTING, routing={"tls": {"plain_http": True, "certificate_secret": "x"}}), "plain_http: true conflicts"),
        (with_(EXISTING, routing={"tls": {"certificates": [{"hostname": "*.a.b", "secret": "s"}]}}), "certificates need certificate_secret"),
        (with_(EXISTING, routing={"tls": {"certificate_secret": "Not_A_Name"}}), "routing.tls.certificate_secret"),
        (with_(TLS, monitoring={"prometheus": {"route": True}}), "monitoring.prometheus.route: Prometheus has no authentication"),
        ({"serving": {"auth": {"mode": "jwt"}}}, "jwt: set it exactly when mode is 'jwt'"),
        ({"serving": {"auth": {"mode": "jwt", "jwt": {"issuer": "i", "jwks_uri": "http://plain"}}}}, "serving.auth.jwt.jwks_uri"),
    ],
)
def test_insecure_or_inconsistent_gateway_config_is_refused_naming_the_field(raw, expected):
    assert expected in problems(raw)


def test_validate_exits_2_for_an_existing_cluster_without_tls(tmp_path):
    (tmp_path / "stacks").mkdir()
    (tmp_path / "Pulumi.yaml").write_text("name: mlplane\nruntime: python\nmain: stacks/\nstackConfigDir: stacks\n")
    (tmp_path / "stacks" / "Pulumi.prod.yaml").write_text(yaml.safe_dump({"config": {"mlplane:platform": EXISTING}}))
    outcome = subprocess.run([sys.executable, "-m", "mlplane", "validate", "--stack", "prod"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    output = outcome.stdout + outcome.stderr
    assert outcome.returncode == 2, output
    assert "routing.tls.certificate_secret" in output and "plain_http" in output and "Traceback" not in output


def test_an_explicit_plain_http_opt_out_is_accepted_on_an_existing_cluster():
    platform = parse_platform(with_(EXISTING, routing={"domain": "ml.example.com", "tls": {"plain_http": True}}))
    assert platform.routing.tls.plain_http


# --------------------------------------------------------------------------------------------
# Model authentication
# --------------------------------------------------------------------------------------------


def test_model_routes_require_an_api_key_by_default():
    result = render(with_(TLS, serving=MODELS))
    (policy,) = of(result, "SecurityPolicy")
    assert policy["metadata"]["namespace"] == "mlplane-serving"
    assert policy["spec"]["targetRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "iris"}]
    assert policy["spec"]["apiKeyAuth"] == {
        "credentialRefs": [{"group": "", "kind": "Secret", "name": "model-api-keys"}],
        "extractFrom": [{"headers": ["x-api-key"]}],
        "sanitize": True,
    }
    (keys,) = [m for m in of(result, "Secret", "model-api-keys")]
    assert set(keys.get("stringData") or keys.get("data")) == {"default"}
    assert "modelApiKey" in result.outputs
    secret_outputs = result.named("mlplane-serving-api-keys").masked_inputs()
    assert secret_outputs["stringData"] == "[secret]"


def test_jwt_auth_uses_the_configured_issuer_and_jwks():
    jwt = {"issuer": "https://login.example.com/", "jwks_uri": "https://login.example.com/jwks", "audiences": ["models"]}
    result = render(with_(TLS, serving={**MODELS, "auth": {"mode": "jwt", "jwt": jwt}}))
    (policy,) = of(result, "SecurityPolicy")
    assert policy["spec"]["jwt"] == {"providers": [{
        "name": "models", "issuer": "https://login.example.com/",
        "remoteJWKS": {"uri": "https://login.example.com/jwks"}, "audiences": ["models"],
    }]}
    assert not of(result, "Secret", "model-api-keys") and "modelApiKey" not in result.outputs


def test_auth_none_is_an_explicit_opt_out():
    result = render(with_(TLS, serving={**MODELS, "auth": {"mode": "none"}}))
    assert not of(result, "SecurityPolicy")


def test_team_models_get_their_own_key_and_attach_to_the_https_listeners():
    platform = parse_platform(TLS)
    team = parse_team({"name": "vision", "platform_stack": "prod",
                       "serving": {"models": [{"name": "scorer", "registered_model": "s", "alias": "a"}]}})
    checked = teams.CheckedTeam(team, cli.Source(TLS, "mlplane:platform", "prod", None, {}), platform, [])
    result = teams.offline_team_run(checked, "team-vision")
    (policy,) = of(result, "SecurityPolicy")
    assert policy["metadata"]["namespace"] == "mlplane-team-vision-serving"
    (keys,) = of(result, "Secret", "model-api-keys")
    assert keys["metadata"]["namespace"] == "mlplane-team-vision-serving"
    (route,) = [r for r in of(result, "HTTPRoute") if r["metadata"]["name"] == "scorer"]
    assert {ref["sectionName"] for ref in route["spec"]["parentRefs"]} == {"https", "https-1"}
    assert result.outputs["team"]["modelUrls"] == {"scorer": "https://scorer.vision.ml.example.com"}
    assert "modelApiKey" in result.outputs


# --------------------------------------------------------------------------------------------
# Prometheus
# --------------------------------------------------------------------------------------------


def test_prometheus_has_no_route_outside_the_laptop_stack():
    result = render(TLS)
    assert not of(result, "HTTPRoute", "prometheus")
    assert "prometheus" not in result.outputs["urls"]


def test_prometheus_keeps_its_route_on_kind():
    result = render({"routing": {"tls": {"plain_http": True}}})
    assert of(result, "HTTPRoute", "prometheus")
    assert result.outputs["urls"]["prometheus"] == "http://prometheus.mlplane.localhost"
    result = render({"routing": {"tls": {"plain_http": True}}, "monitoring": {"prometheus": {"route": False}}})
    assert not of(result, "HTTPRoute", "prometheus")


# --------------------------------------------------------------------------------------------
# Upstream schemas (Envoy Gateway v1.9.1 CRDs)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", [{"mode": "api-key"}, {"mode": "jwt", "jwt": {
    "issuer": "https://login.example.com/", "jwks_uri": "https://login.example.com/jwks", "audiences": ["m"]}}])
def test_the_security_policy_validates_strictly_against_its_crd(module_dir, auth):  # noqa: F811
    crd = yaml.safe_load((module_dir / SECURITY_POLICY_CRD).read_text())
    (policy,) = of(render(with_(TLS, serving={**MODELS, "auth": auth})), "SecurityPolicy")
    assert policy["apiVersion"] == f"{crd['spec']['group']}/v1alpha1"
    assert strict_errors(policy, crd, "v1alpha1") == []
    broken = json.loads(json.dumps(policy))
    broken["spec"]["apiKeyAuth" if "apiKeyAuth" in broken["spec"] else "jwt"]["notAField"] = 1
    assert strict_errors(broken, crd, "v1alpha1")  # the check does catch unknown fields


def test_the_tls_gateway_and_redirect_route_validate_against_the_gateway_api_crds(module_dir):  # noqa: F811
    crds = {doc["spec"]["names"]["kind"]: doc for doc in yaml.safe_load_all((module_dir / GATEWAY_API_CRDS).read_text())
            if doc and doc.get("kind") == "CustomResourceDefinition"}
    result = render(with_(TLS, serving=MODELS))
    for kind in ("Gateway", "HTTPRoute"):
        for document in of(result, kind):
            version = document["apiVersion"].split("/")[1]
            assert strict_errors(document, crds[kind], version) == [], (kind, document["metadata"]["name"])
