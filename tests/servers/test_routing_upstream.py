"""What mlplane hands Envoy Gateway, checked against Envoy Gateway's own sources.

The chart's objects and the Envoy Deployment the controller builds from the EnvoyProxy are not in
the render, so the schema checks and checkov never see them. These tests take the pinned Envoy
Gateway release from the Go module proxy (``go mod download github.com/envoyproxy/gateway@<pin>``,
the same tag as the chart) and check:

- the EnvoyProxy spec against the EnvoyProxy CRD's OpenAPI schema, strictly (types, enums,
  patterns, required fields, and no field the schema does not know: the API server would prune
  it silently);
- every chart value mlplane sets is one the chart's templates read;
- the pods the chart and the controller build from those values (modelled on
  ``charts/gateway-helm/templates/envoy-gateway-deployment.yaml`` and
  ``internal/infrastructure/kubernetes/proxy/resource.go``) pass the platform's own restricted
  Pod Security, resources, probes and read-only-root checks (``mlplane.policies``).

CEL rules (``x-kubernetes-validations``) need an API server: the EnvoyProxy is dry-run against
one with the CRD installed in the e2e suite when its binaries are built.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import yaml

from mlplane import policies
from mlplane.config import versions
from mlplane.cli import load_platform, offline_run

ROOT = Path(__file__).resolve().parents[2]
MODULE = "github.com/envoyproxy/gateway"
CRD = "charts/gateway-helm/charts/crds/crds/generated/gateway.envoyproxy.io_envoyproxies.yaml"
CHART = "charts/gateway-helm"


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory) -> Path:
    """The pinned Envoy Gateway release's source, from the Go module proxy (cached by Go)."""
    version = versions.CHARTS["envoy-gateway"].version
    go = shutil.which("go")
    if go is None:
        if os.environ.get("MLPLANE_REQUIRE_TOOLS") == "1":
            pytest.fail("go is required (MLPLANE_REQUIRE_TOOLS=1) to fetch the Envoy Gateway sources")
        pytest.skip("go not on PATH: cannot fetch the Envoy Gateway sources from the module proxy")
    work = tmp_path_factory.mktemp("egmod")
    done = subprocess.run(
        [go, "mod", "download", "-json", f"{MODULE}@{version}"],
        cwd=work, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "GOFLAGS": "-mod=mod", "GO111MODULE": "on"},
    )
    info = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    assert done.returncode == 0 and info.get("Dir"), (
        f"the pinned Envoy Gateway {version} is not on the Go module proxy: {info.get('Error') or done.stderr.strip()}"
    )
    return Path(info["Dir"])


@pytest.fixture(scope="module")
def rendered():
    """The EnvoyProxy spec and chart values of the default platform, as the component passes them."""
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        source, platform = load_platform("local", None)
        result = offline_run(source, platform)
    finally:
        os.chdir(cwd)
    proxy = next(r for r in result.resources if r.type == "kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy")
    chart = next(r for r in result.resources if r.type.startswith("kubernetes:helm.sh/") and r.name.endswith("routing-chart"))
    return proxy.manifest(), chart.inputs["values"]


# ------------------------------------------------------------------------- strict CRD schema


def _unknown_fields(value: Any, schema: dict[str, Any], path: str) -> Iterator[str]:
    """Fields the structural schema does not declare (the API server prunes them silently)."""
    if schema.get("x-kubernetes-preserve-unknown-fields") or not isinstance(schema, dict):
        return
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if props is not None and key in props:
                yield from _unknown_fields(item, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                yield from _unknown_fields(item, extra, f"{path}.{key}")
            elif props is not None or extra is False:
                yield f"{path}.{key}"
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from _unknown_fields(item, schema["items"], f"{path}[{index}]")


def strict_errors(document: dict[str, Any], crd: dict[str, Any], version: str) -> list[str]:
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = served["schema"]["openAPIV3Schema"]
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(document)]
    errors += [f"unknown field {p}" for p in _unknown_fields(document, schema, "")]
    return errors


def test_the_envoy_proxy_validates_strictly_against_its_crd(module_dir, rendered):
    crd = yaml.safe_load((module_dir / CRD).read_text())
    manifest, _ = rendered
    assert manifest["apiVersion"] == f"{crd['spec']['group']}/v1alpha1"
    assert strict_errors(manifest, crd, "v1alpha1") == []


def test_the_strict_check_catches_what_the_api_server_would_prune_or_reject(module_dir, rendered):
    crd = yaml.safe_load((module_dir / CRD).read_text())
    manifest, _ = rendered
    bad = json.loads(json.dumps(manifest))
    deployment = bad["spec"]["provider"]["kubernetes"]["envoyDeployment"]
    deployment["container"]["volumeMount"] = []  # a typo: pruned without a word
    deployment["replicas"] = "one"
    errors = strict_errors(bad, crd, "v1alpha1")
    assert any("unknown field .spec.provider.kubernetes.envoyDeployment.container.volumeMount" in e for e in errors)
    assert any("replicas" in e for e in errors)


# ------------------------------------------------------------------------------ chart values


def _leaf_paths(node: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaf_paths(value, (*prefix, key))
    else:
        yield prefix


def test_every_value_mlplane_sets_is_read_by_the_charts_templates(module_dir, rendered):
    _, values = rendered
    templates = "\n".join(p.read_text() for p in (module_dir / CHART / "templates").glob("*"))
    unread = []
    for path in _leaf_paths(values):
        # Read directly, or a parent rendered whole (toYaml) or branched on (with/if).
        if not any(re.search(r"\.Values\." + re.escape(".".join(path[:n])) + r"\b(?!\.)", templates)
                   for n in range(len(path), 1, -1)):
            unread.append(".".join(path))
    assert unread == []


def test_the_controller_pull_policy_is_the_value_the_chart_reads(module_dir, rendered):
    _, values = rendered
    helpers = (module_dir / CHART / "templates" / "_helpers.tpl").read_text()
    helper = re.search(r'define "eg\.image\.pullPolicy" -}}\s*{{-\s*(.*?)\s*-}}', helpers).group(1)
    # Helm's `default A B` is B unless B is empty: the global value decides.
    assert helper == "default .Values.deployment.envoyGateway.imagePullPolicy .Values.global.images.envoyGateway.pullPolicy"
    assert values["global"]["images"]["envoyGateway"]["pullPolicy"] == "Always"


# ------------------------------------------------------------------ pods built from the values


def _chart_defaults(module_dir: Path) -> dict[str, Any]:
    text = (module_dir / CHART / "values.tmpl.yaml").read_text()
    return yaml.safe_load(text.replace("${GatewayImage}", "image").replace("${GatewayImagePullPolicy}", "IfNotPresent"))


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in override.items()}}
    return override


def _deployment(name: str, pod: dict[str, Any]) -> policies.Resource:
    props = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "mlplane-gateway"},
             "spec": {"template": {"spec": pod}}}
    return policies.Resource(type="kubernetes:apps/v1:Deployment", name=name, urn=f"urn:{name}", props=props)


def _problems(resource: policies.Resource) -> list[str]:
    stack = policies.Stack(name="local", throwaway=True)
    checks = (policies.check_restricted_security_context, policies.check_requests_and_limits,
              policies.check_health_probes, policies.check_read_only_root)
    return [problem.message for check in checks for problem in check(resource, stack)]


def test_the_controller_pod_the_chart_builds_meets_the_baseline(module_dir, rendered):
    _, values = rendered
    merged = _merge(_chart_defaults(module_dir), values)
    gateway = merged["deployment"]["envoyGateway"]
    # envoy-gateway-deployment.yaml: pod securityContext from deployment.pod.securityContext, the
    # container's resources, securityContext and probes from deployment.envoyGateway.*.
    pod = {
        "securityContext": merged["deployment"]["pod"].get("securityContext") or {},
        "containers": [{
            "name": "envoy-gateway",
            "resources": gateway["resources"],
            "securityContext": gateway["securityContext"],
            "livenessProbe": gateway["livenessProbe"],
            "readinessProbe": gateway["readinessProbe"],
            "startupProbe": gateway["startupProbe"],
        }],
    }
    assert _problems(_deployment("envoy-gateway", pod)) == []


def test_the_proxy_pod_the_controller_builds_meets_the_baseline(rendered):
    manifest, _ = rendered
    deployment = manifest["spec"]["provider"]["kubernetes"]["envoyDeployment"]
    container = deployment["container"]
    (shutdown_patch,) = deployment["patch"]["value"]["spec"]["template"]["spec"]["containers"]
    # resource.go: both containers get the EnvoyProxy container securityContext over the secure
    # defaults, upstream's probes; the envoy container gets its resources and volumeMounts, the
    # shutdown-manager what the strategic-merge patch adds.
    probes = {"livenessProbe": {"httpGet": {"path": "/ready"}}, "readinessProbe": {"httpGet": {"path": "/ready"}}}
    pod = {
        "securityContext": deployment["pod"]["securityContext"],
        "volumes": deployment["pod"]["volumes"],
        "containers": [
            {"name": "envoy", "resources": container["resources"], "securityContext": container["securityContext"],
             "volumeMounts": container["volumeMounts"], **probes},
            {"name": "shutdown-manager", "resources": shutdown_patch["resources"],
             "securityContext": container["securityContext"], "volumeMounts": shutdown_patch["volumeMounts"], **probes},
        ],
    }
    assert _problems(_deployment("envoy", pod)) == []
    volumes = {v["name"]: v for v in pod["volumes"]}
    for item in pod["containers"]:
        writable = {m["mountPath"] for m in item["volumeMounts"] if "emptyDir" in volumes[m["name"]]}
        assert "/tmp" in writable, item["name"]  # shutdown-manager writes /tmp/shutdown-ready


def test_the_proxy_writes_only_where_mlplane_gives_it_a_volume(module_dir):
    """The paths the pinned release writes to, read from its source, are under /tmp or /dev."""
    manager = (module_dir / "internal/cmd/envoy/shutdown_manager.go").read_text()
    assert re.search(r'ShutdownReadyFile\s*=\s*"/tmp/', manager)
    bootstrap = (module_dir / "internal/xds/bootstrap/bootstrap.go").read_text()
    assert re.search(r'envoyAdminAccessLogPath\s*=\s*"/dev/null"', bootstrap)
    listener = (module_dir / "internal/gatewayapi/listener.go").read_text()
    file_paths = set(re.findall(r'Path:\s*"(/[^"]*)"', listener))
    assert file_paths <= {"/dev/stdout"}, file_paths
