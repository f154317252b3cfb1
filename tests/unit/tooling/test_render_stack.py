"""The whole local stack rendered offline: golden snapshot, strict schemas, security scan, contract.

Regenerate the snapshots after an intended change with `MLPLANE_UPDATE_GOLDEN=1 pytest tests/unit/tooling/test_render_stack.py`
and review the diff like any other code change.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from mlplane.tooling import checks
from mlplane.cli import load_platform, offline_run, write_render
from mlplane.tooling.render import SECRET_MASK

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).resolve().parents[2] / "golden"

EXTENDED = {
    "serving": {
        "models": [
            {"name": "iris", "registered_model": "iris-classifier", "alias": "champion", "min_replicas": 2,
             "canary": {"version": 3, "weight": 10}},
            {"name": "churn", "registered_model": "churn", "version": 4},
            {"name": "fraud", "registered_model": "fraud", "version": 2, "min_replicas": 2,
             "canary": {"mode": "progressive", "steps": [10, 30, 50], "interval": "1m"}},
        ],
        "progressive": {"enabled": True},
    },
    "ci_runners": {"github_config_url": "https://github.com/acme/models", "github_token_key": "githubToken"},
}


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    os.chdir(ROOT)
    source, platform = load_platform("local", None)
    result = offline_run(source, platform)
    out = tmp_path_factory.mktemp("render-local")
    write_render(result, out)
    return result, out


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "platform.yaml"
    path.write_text(yaml.safe_dump(EXTENDED))
    source, platform = load_platform(None, path)
    result = offline_run(source, platform)
    out = tmp_path_factory.mktemp("render-extended")
    write_render(result, out)
    return result, out


def _contract(result) -> list[dict]:
    """The public contract: type token, name and parent name of every resource."""
    by_urn = {r.urn: r.name for r in result.resources}
    return [
        {"type": r.type, "name": r.name, "parent": by_urn.get(r.parent or "", None)}
        for r in result.resources
    ]


def _check_golden(name: str, document) -> None:
    path = GOLDEN / name
    text = json.dumps(document, indent=1, sort_keys=True) + "\n"
    if os.environ.get("MLPLANE_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"{path} is missing: generate it with MLPLANE_UPDATE_GOLDEN=1 and review it"
    assert json.loads(path.read_text()) == json.loads(text), f"{name} changed: review, then MLPLANE_UPDATE_GOLDEN=1"


def test_resource_names_types_and_parents_are_pinned(local):
    result, _ = local
    _check_golden("local-contract.json", sorted(_contract(result), key=lambda r: (r["type"], r["name"])))


def test_rendered_manifests_match_the_golden_snapshot(local):
    result, _ = local
    _check_golden("local-manifests.json", sorted(result.manifests(), key=checks.object_id))


def test_resources_json_matches_the_golden_snapshot(local):
    _, out = local
    _check_golden("local-resources.json", json.loads((out / "resources.json").read_text()))


def test_no_aliases_are_registered(local):
    result, _ = local
    assert [r.name for r in result.resources if r.aliases] == []


def test_render_is_deterministic(local):
    result, _ = local
    source, platform = load_platform("local", None)
    again = offline_run(source, platform)
    assert [r.as_json() for r in again.resources] == [r.as_json() for r in result.resources]


def test_resource_names_are_unique(extended):
    result, _ = extended
    keys = [(r.type, r.name) for r in result.resources]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("fixture", ["local", "extended"])
def test_manifests_pass_strict_schema_validation(fixture, request):
    result, _ = request.getfixturevalue(fixture)
    findings = checks.validate_schemas(result.manifests())
    assert [str(f) for f in findings] == []


@pytest.mark.parametrize("fixture", ["local", "extended"])
def test_manifests_pass_the_checkov_baseline(fixture, request):
    if checks.checkov_executable() is None:
        if os.environ.get("MLPLANE_REQUIRE_TOOLS") == "1":
            pytest.fail("checkov is required (MLPLANE_REQUIRE_TOOLS=1) but not found: set MLPLANE_CHECKOV")
        pytest.skip("checkov not installed: scripts/test.sh installs it into its own virtualenv")
    _, out = request.getfixturevalue(fixture)
    findings = checks.run_checkov(out / "manifests")
    assert [str(f) for f in findings] == []


def test_every_exception_to_a_check_has_a_reason(extended):
    result, _ = extended
    for manifest in result.manifests():
        for key, value in (manifest["metadata"].get("annotations") or {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                assert re.fullmatch(r"CKV2?_K8S_[0-9]+", check) and len(reason) > 20, (checks.object_id(manifest), value)


def test_every_namespace_is_pod_security_restricted_or_says_why(extended):
    result, _ = extended
    for manifest in result.manifests():
        if manifest["kind"] != "Namespace":
            continue
        labels = manifest["metadata"]["labels"]
        level = labels["pod-security.kubernetes.io/enforce"]
        assert labels["pod-security.kubernetes.io/enforce-version"].startswith("v1.")
        if level != "restricted":
            assert manifest["metadata"]["annotations"]["mlplane.dev/pod-security-reason"]


def test_every_workload_sets_requests_limits_and_probes(extended):
    result, _ = extended
    for manifest in result.manifests():
        if manifest["kind"] not in ("Deployment", "StatefulSet", "DaemonSet"):
            continue
        for container in manifest["spec"]["template"]["spec"]["containers"]:
            where = f"{checks.object_id(manifest)}:{container['name']}"
            assert set(container["resources"]) == {"requests", "limits"}, where
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), where
            assert "livenessProbe" in container and "readinessProbe" in container, where
            assert ":latest" not in container["image"] and ":" in container["image"], where


def test_no_secret_value_in_container_env(extended):
    result, _ = extended
    for manifest in result.manifests():
        if manifest["kind"] not in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            continue
        for container in manifest["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                secretive = any(word in env["name"].upper() for word in ("PASSWORD", "SECRET", "TOKEN", "KEY"))
                if secretive and not env["name"].endswith("_FILE"):  # *_FILE names a mounted file
                    assert "valueFrom" in env, (checks.object_id(manifest), env["name"])


def test_secret_inputs_are_masked_in_resources_json(extended):
    _, out = extended
    document = json.loads((out / "resources.json").read_text())
    secrets = [r for r in document if r["type"] == "kubernetes:core/v1:Secret"]
    assert secrets
    for record in secrets:
        payload = record["inputs"].get("stringData", record["inputs"].get("data"))
        assert payload == SECRET_MASK, record["name"]


def test_secret_stack_outputs_are_masked(local):
    result, _ = local
    for key in ("mlflowAdminPassword", "grafanaAdminPassword", "s3SecretAccessKey", "kubeconfig", "registryPassword"):
        assert result.outputs[key] == SECRET_MASK, key


def test_the_bundled_registrys_platform_credentials_are_stack_outputs(local):
    """`docker login` and `mlplane verify` push with them; the password is a secret output."""
    result, _ = local
    assert result.outputs["registryUsername"] == "platform"
    assert result.outputs["registryPassword"] == SECRET_MASK


def test_stateful_resources_follow_the_lifecycle_setting(local, extended):
    throwaway, _ = local  # the local stack is throwaway
    assert not any(r.protect for r in throwaway.resources)
    protected, _ = extended  # defaults: protected
    stateful = [r for r in protected.resources if r.type == "kubernetes:apps/v1:StatefulSet"]
    assert stateful and all(r.protect and r.retain_on_delete for r in stateful)


def test_helm_releases_carry_chart_version_and_values(extended):
    _, out = extended
    document = json.loads((out / "resources.json").read_text())
    charts = [r for r in document if r["type"].startswith("kubernetes:helm.sh/")]
    assert charts
    for chart in charts:
        assert chart["inputs"]["chart"].startswith("oci://")
        assert chart["inputs"]["version"]
        assert isinstance(chart["inputs"].get("values"), dict)


def test_invalid_config_registers_nothing():
    import pulumi

    from mlplane import program
    from mlplane.tooling.render import capture

    with pytest.raises(pulumi.RunError) as caught:
        capture(program.main, config={"mlplane:platform": json.dumps({"name": "NOPE", "tracking": {"workers": 0}})})
    assert "mlplane:platform.name: must be a DNS-1123 label" in str(caught.value)
    assert "mlplane:platform.tracking.workers" in str(caught.value)
    assert caught.value.recorded == []
