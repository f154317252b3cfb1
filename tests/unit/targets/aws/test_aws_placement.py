"""Node placement on AWS: every pod the platform creates is pinned to its node group.

The example AWS stack with the runners, progressive delivery, a logged and drift-checked model and a
GPU model, rendered offline: platform services on ``system``, models, their drift jobs and the CI
runner and job pods on ``serving``, the GPU model on ``gpu`` with the taint's toleration. An adopted
cluster's nodes carry no group labels, so nothing is pinned there; and the local render does not
change at all (its goldens, tests/unit/tooling/test_render_stack.py).
"""

from __future__ import annotations

import os

import pytest
import yaml

from mlplane.cli import load_platform, offline_run, write_render
from mlplane.config import ConfigError, parse_platform
from mlplane.core import kube
from mlplane.services import ci_runners
from mlplane.tooling import checks

from test_aws_workloads import MODEL, RUNNERS, aws_raw
from test_render_stack import ROOT

GPU_MODEL = {"name": "vision", "registered_model": "vision", "version": 1, "gpus": 1}
GPU_GROUP = {"enabled": True, "instance_types": ["g6.xlarge"], "min_size": 0, "max_size": 2, "desired_size": 0}
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}


def with_gpu(raw: dict) -> dict:
    raw = yaml.safe_load(yaml.safe_dump(raw))
    raw["aws"]["eks"]["node_groups"]["gpu"] = GPU_GROUP
    return raw


def render(raw: dict, tmp_path_factory, name: str):
    os.chdir(ROOT)
    path = tmp_path_factory.mktemp("cfg") / "platform.yaml"
    path.write_text(yaml.safe_dump(raw))
    source, platform = load_platform(None, path)
    result = offline_run(source, platform, teams=[])
    out = tmp_path_factory.mktemp(name)
    write_render(result, out)
    return result, out


@pytest.fixture(scope="module")
def placed(tmp_path_factory):
    raw = with_gpu(aws_raw(ci_runners=RUNNERS, serving={"models": [MODEL, GPU_MODEL], "progressive": {"enabled": True}}))
    return render(raw, tmp_path_factory, "aws-placement")


def pod_spec(manifest: dict) -> dict:
    spec = manifest["spec"]
    if manifest["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def group(spec: dict) -> str | None:
    return (spec.get("nodeSelector") or {}).get(kube.NODE_GROUP)


def expected_group(manifest: dict) -> str:
    namespace = manifest["metadata"].get("namespace")
    if manifest["metadata"]["name"] == "nvidia-device-plugin" or manifest["metadata"]["name"] == GPU_MODEL["name"]:
        return "gpu"
    return "serving" if namespace == "mlplane-serving" else "system"


def test_every_pod_of_the_platform_is_pinned_to_its_node_group(placed):
    result, _ = placed
    pods = [m for m in result.manifests() if m["kind"] in POD_KINDS]
    assert len(pods) > 10
    wrong = {(m["kind"], m["metadata"].get("namespace"), m["metadata"]["name"]): group(pod_spec(m))
             for m in pods if group(pod_spec(m)) != expected_group(m)}
    assert wrong == {}


def test_models_and_their_drift_jobs_run_on_the_serving_group(placed):
    result, _ = placed
    serving = {m["metadata"]["name"]: group(pod_spec(m)) for m in result.manifests()
               if m["kind"] in POD_KINDS and m["metadata"].get("namespace") == "mlplane-serving"}
    assert serving["scorer"] == "serving"
    assert any(kind == "serving" for name, kind in serving.items() if "drift" in name)


def test_a_gpu_model_requests_gpus_on_the_gpu_group_and_tolerates_its_taint(placed):
    result, _ = placed
    deployment = next(m for m in result.manifests() if m["kind"] == "Deployment" and m["metadata"]["name"] == "vision")
    spec = pod_spec(deployment)
    assert spec["nodeSelector"] == {kube.NODE_GROUP: "gpu"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    model = next(c for c in spec["containers"] if c["name"] == "model")
    assert model["resources"]["requests"]["nvidia.com/gpu"] == "1" == model["resources"]["limits"]["nvidia.com/gpu"]
    # A model without GPUs neither tolerates the taint nor requests the resource.
    scorer = pod_spec(next(m for m in result.manifests() if m["kind"] == "Deployment" and m["metadata"]["name"] == "scorer"))
    assert "tolerations" not in scorer
    assert all("nvidia.com/gpu" not in c["resources"]["limits"] for c in scorer["containers"])


def chart_values(result, fragment: str) -> dict:
    charts = [r for r in result.resources if r.type.startswith("kubernetes:helm.sh/") and fragment in r.name]
    assert len(charts) == 1, [r.name for r in charts]
    return charts[0].inputs["values"]


def test_the_gateway_controller_and_proxies_run_on_the_system_group(placed):
    result, _ = placed
    values = chart_values(result, "routing")
    assert values["deployment"]["pod"]["nodeSelector"] == {kube.NODE_GROUP: "system"}
    assert values["certgen"]["job"]["nodeSelector"] == {kube.NODE_GROUP: "system"}
    proxy = next(m for m in result.manifests() if m["kind"] == "EnvoyProxy")
    assert proxy["spec"]["provider"]["kubernetes"]["envoyDeployment"]["pod"]["nodeSelector"] == {kube.NODE_GROUP: "system"}


def test_runner_and_job_pods_run_on_serving_and_arc_on_system(placed):
    result, _ = placed
    controller = chart_values(result, "runners-controller")
    assert controller["nodeSelector"] == {kube.NODE_GROUP: "system"}
    scale_set = next(r.inputs["values"] for r in result.resources
                     if r.type.startswith("kubernetes:helm.sh/") and "githubConfigUrl" in r.inputs.get("values", {}))
    assert scale_set["listenerTemplate"]["spec"]["nodeSelector"] == {kube.NODE_GROUP: "system"}
    assert scale_set["template"]["spec"]["nodeSelector"] == {kube.NODE_GROUP: "serving"}
    config_map = next(m for m in result.manifests() if m["kind"] == "ConfigMap" and m["metadata"]["name"] == ci_runners.JOB_TEMPLATE)
    job = yaml.safe_load(config_map["data"][ci_runners.JOB_TEMPLATE_FILE])
    assert job["spec"]["nodeSelector"] == {kube.NODE_GROUP: "serving"}


def test_the_placed_render_passes_the_schemas_and_checkov(placed):
    result, out = placed
    assert [str(f) for f in checks.validate_schemas(result.manifests())] == []
    if checks.checkov_executable() is None:
        pytest.skip("checkov not installed (set MLPLANE_CHECKOV)")
    assert [str(f) for f in checks.run_checkov(out / "manifests")] == []


def test_an_adopted_cluster_pins_nothing(tmp_path_factory):
    raw = aws_raw(serving={"models": [MODEL]})
    raw["aws"] = {**raw["aws"], "network": {"mode": "existing", "existing": {
        "vpc_id": "vpc-0a1b2c3d4e5f67890", "private_subnet_ids": ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"]}},
        "eks": {"mode": "existing", "existing": {"cluster_name": "shared"}}}
    result, _ = render(raw, tmp_path_factory, "aws-adopted")
    assert [m["metadata"]["name"] for m in result.manifests() if m["kind"] in POD_KINDS and group(pod_spec(m))] == []


def test_a_gpu_model_without_a_gpu_group_is_refused():
    raw = aws_raw(serving={"models": [GPU_MODEL]})
    with pytest.raises(ConfigError) as error:
        parse_platform(raw)
    message = str(error.value)
    assert "serving.models[0].gpus" in message and "aws.eks.node_groups.gpu.enabled" in message


def test_a_gpu_model_on_kind_is_refused():
    with pytest.raises(ConfigError) as error:
        parse_platform({"serving": {"models": [GPU_MODEL]}})
    assert "serving.models[0].gpus" in str(error.value) and "kind cluster has no GPUs" in str(error.value)


def test_gpus_are_bounded():
    with pytest.raises(ConfigError) as error:
        parse_platform({"serving": {"models": [{**GPU_MODEL, "gpus": -1}]}})
    assert "gpus" in str(error.value)


def test_a_team_model_requesting_gpus_is_refused():
    from mlplane.config.team import TeamServingConfig

    with pytest.raises(ValueError) as error:
        TeamServingConfig.model_validate({"models": [GPU_MODEL]})
    assert "models[0].gpus" in str(error.value) and "team models cannot request GPUs" in str(error.value)
