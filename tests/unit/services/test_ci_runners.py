"""The CiRunners component: nothing when off; ARC and one runner scale set when on.

The ARC charts cannot be fetched offline: these tests check the values passed to them (the
runner and job pod specs are also validated as Pods) and every object mlplane writes itself.
"""

from __future__ import annotations

import dataclasses

import kubernetes_validate
import pytest
import yaml

from mlplane.core import kube
from mlplane.services.ci_runners import (
    CiRunners,
    CiRunnersArgs,
    chart_workloads,
    how_to_enable,
    job_pod_template,
    runner_pod_spec,
)
from mlplane.config import CiRunnersConfig, ConfigError, parse_platform
from mlplane.tooling.render import SECRET_MASK

from conftest import fake_secret, opts

TOKEN = {"ci_runners": {"github_config_url": "https://github.com/acme/models", "github_token_key": "githubToken"}}
APP = {
    "ci_runners": {
        "github_config_url": "https://github.com/acme/models",
        "github_app": {"app_id": 123, "installation_id": 456, "private_key_key": "githubAppKey"},
    }
}
DIND = {"ci_runners": {**TOKEN["ci_runners"], "container_mode": "dind", "allow_privileged_runners": True}}
KUBERNETES = {"ci_runners": {**TOKEN["ci_runners"], "container_mode": "kubernetes", "work_volume_size": "8Gi"}}
TRACKING_URI = "http://mlflow.mlplane-tracking.svc.cluster.local:5000"


def args_for(platform, config) -> CiRunnersArgs:
    return CiRunnersArgs(
        config=config.ci_runners,
        platform=platform,
        registry_pull_prefix="localhost:5001",
        registry_push_url="mlplane-registry:5000",
        tracking_uri=TRACKING_URI,
        tracking_username="admin",
        tracking_password=fake_secret("trackingPassword"),
    )


def build(platform, config, root):
    runners = CiRunners("mlplane-ci", args_for(platform, config), opts(root))
    return {"runners": runners}


def children(result):
    return {r.name: r for r in result.resources if r.parent and r.parent.endswith("::mlplane-ci")}


def scale_set_values(result):
    return result.named("mlplane-ci-scale-set").inputs["values"]


def runner_container(spec):
    return next(c for c in spec["containers"] if c["name"] == "runner")


def plain_args(config: CiRunnersConfig) -> CiRunnersArgs:
    platform = kube.Platform(name="mlplane", provider=None, protect_stateful=True, secret=fake_secret)  # type: ignore[arg-type]
    return CiRunnersArgs(config, platform, "localhost:5001", "mlplane-registry:5000", TRACKING_URI, "admin", "pw")


# --------------------------------------------------------------------------------------------
# Off
# --------------------------------------------------------------------------------------------


def test_off_by_default_creates_nothing(run_component):
    result, out = run_component(build)
    assert result.named("mlplane-ci").type == "mlplane:ci:Runners"
    assert result.parent_of("mlplane-ci").name == "mlplane"
    assert children(result) == {}
    assert out["runners"].scrape_targets == [] and out["runners"].uis == []
    assert out["runners"].runner_namespace is None
    assert chart_workloads(CiRunnersConfig()) == []


def test_url_without_credentials_is_still_off(run_component):
    result, _ = run_component(build, {"ci_runners": {"github_config_url": "https://github.com/acme/models"}})
    assert children(result) == {}


def test_how_to_enable_names_every_key_and_the_secret_commands():
    text = how_to_enable(CiRunnersConfig())
    assert "pulumi config set --path 'mlplane:platform.ci_runners.github_config_url'" in text
    assert "pulumi config set --path 'mlplane:platform.ci_runners.github_app.app_id'" in text
    assert "pulumi config set --path 'mlplane:platform.ci_runners.github_app.private_key_key' githubAppPrivateKey" in text
    assert "pulumi config set --secret mlplane:githubAppPrivateKey" in text
    assert "pulumi config set --path 'mlplane:platform.ci_runners.github_token_key' githubToken" in text
    assert "pulumi config set --secret mlplane:githubToken" in text
    assert "runs-on: mlplane" in text


def test_how_to_enable_skips_what_is_already_set():
    text = how_to_enable(CiRunnersConfig(github_config_url="https://github.com/acme/models", runner_labels=["gpu"]))
    assert "github_config_url" not in text
    assert text.splitlines()[1].startswith("1. Give ARC credentials")
    assert "runs-on: gpu" in text


def test_the_steps_produce_a_config_that_turns_runners_on():
    raw = {"github_config_url": "https://github.com/acme/models", "github_token_key": "githubToken"}
    assert CiRunnersConfig.model_validate(raw).enabled


# --------------------------------------------------------------------------------------------
# On
# --------------------------------------------------------------------------------------------


def test_on_creates_namespaces_secrets_job_template_and_both_charts(run_component):
    result, _ = run_component(build, TOKEN)
    assert {n: r.type for n, r in children(result).items()} == {
        "mlplane-ci-controller-namespace": "kubernetes:core/v1:Namespace",
        "mlplane-ci-runner-namespace": "kubernetes:core/v1:Namespace",
        "mlplane-ci-controller-deny-ingress": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        "mlplane-ci-runner-deny-ingress": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        **{
            f"mlplane-ci-{role}-{policy}": "kubernetes:networking.k8s.io/v1:NetworkPolicy"
            for role in ("controller", "runner")
            for policy in ("default-deny", "allow-dns", "egress")
        },
        "mlplane-ci-github": "kubernetes:core/v1:Secret",
        "mlplane-ci-tracking": "kubernetes:core/v1:Secret",
        "mlplane-ci-job-template": "kubernetes:core/v1:ConfigMap",
        "mlplane-ci-controller": "kubernetes:helm.sh/v4:Chart",
        "mlplane-ci-scale-set": "kubernetes:helm.sh/v4:Chart",
    }
    namespaces = {
        r.manifest()["metadata"]["name"]: r.manifest()["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        for r in result.by_type("kubernetes:core/v1:Namespace")
    }
    assert namespaces == {"mlplane-ci": "restricted", "mlplane-ci-runners": "restricted"}


def test_both_namespaces_deny_all_ingress(run_component):
    result, _ = run_component(build, TOKEN)
    for role, namespace in (("controller", "mlplane-ci"), ("runner", "mlplane-ci-runners")):
        policy = result.named(f"mlplane-ci-{role}-deny-ingress").manifest()
        assert policy["metadata"]["namespace"] == namespace
        assert policy["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []}


def test_token_credentials_stay_secret(run_component):
    result, _ = run_component(build, TOKEN)
    github = result.named("mlplane-ci-github")
    assert github.manifest()["metadata"]["name"] == "github-config"
    assert github.manifest()["metadata"]["namespace"] == "mlplane-ci-runners"
    assert github.manifest()["stringData"] == {"github_token": "value-of-githubToken"}
    assert github.masked_inputs()["stringData"] == SECRET_MASK


def test_app_credentials_are_written_as_arc_expects_and_stay_secret(run_component):
    result, _ = run_component(build, APP)
    github = result.named("mlplane-ci-github")
    assert github.manifest()["stringData"] == {
        "github_app_id": "123",
        "github_app_installation_id": "456",
        "github_app_private_key": "value-of-githubAppKey",
    }
    assert github.masked_inputs()["stringData"] == SECRET_MASK


def test_tracking_password_is_a_secret_and_only_referenced_from_pods(run_component):
    result, _ = run_component(build, TOKEN)
    tracking = result.named("mlplane-ci-tracking")
    assert tracking.masked_inputs()["stringData"] == SECRET_MASK
    # Steps run in job pods: the runner itself gets no MLflow credential in the 'kubernetes*' modes.
    spec = scale_set_values(result)["template"]["spec"]
    assert not [e for e in runner_container(spec)["env"] if e["name"].startswith("MLFLOW_")]
    template = yaml.safe_load(result.named("mlplane-ci-job-template").manifest()["data"]["job.yaml"])
    env = {e["name"]: e for e in template["spec"]["containers"][0]["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == TRACKING_URI
    for name, key in (("MLFLOW_TRACKING_USERNAME", "username"), ("MLFLOW_TRACKING_PASSWORD", "password")):
        assert env[name] == {"name": name, "valueFrom": {"secretKeyRef": {"name": "mlflow-credentials", "key": key}}}


def test_jobs_get_mlflow_and_registry_addresses(run_component):
    result, _ = run_component(build, TOKEN)
    template = yaml.safe_load(result.named("mlplane-ci-job-template").manifest()["data"]["job.yaml"])
    (job,) = template["spec"]["containers"]
    env = {e["name"]: e for e in job["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == TRACKING_URI
    assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-credentials"
    assert env["MLPLANE_REGISTRY"]["value"] == "mlplane-registry:5000"
    assert env["MLPLANE_REGISTRY_PULL_PREFIX"]["value"] == "localhost:5001"


def test_scale_set_values_wire_github_runners_and_the_controller(run_component):
    raw = {"ci_runners": {**TOKEN["ci_runners"], "runner_labels": ["gpu"], "min_runners": 1, "max_runners": 4}}
    result, _ = run_component(build, raw)
    chart = result.named("mlplane-ci-scale-set").inputs
    assert chart["chart"].endswith("/gha-runner-scale-set") and chart["version"] == "0.14.2"
    assert chart["namespace"] == "mlplane-ci-runners"
    values = chart["values"]
    assert values["githubConfigUrl"] == "https://github.com/acme/models"
    assert values["githubConfigSecret"] == "github-config"
    assert values["runnerScaleSetName"] == "gpu"
    assert (values["minRunners"], values["maxRunners"]) == (1, 4)
    assert values["containerMode"] == {"type": "kubernetes-novolume"}
    assert values["controllerServiceAccount"] == {"namespace": "mlplane-ci", "name": "arc-controller"}


def test_scale_set_waits_for_the_controller_and_its_inputs(run_component):
    result, _ = run_component(build, TOKEN)
    depends = result.named("mlplane-ci-scale-set").depends_on
    for name in ("mlplane-ci-controller", "mlplane-ci-github", "mlplane-ci-tracking", "mlplane-ci-job-template"):
        assert result.named(name).urn in depends, name


def test_controller_values_pin_the_image_watch_one_namespace_and_restrict_the_pod(run_component):
    result, _ = run_component(build, TOKEN)
    chart = result.named("mlplane-ci-controller").inputs
    assert chart["chart"].endswith("/gha-runner-scale-set-controller") and chart["version"] == "0.14.2"
    assert chart["namespace"] == "mlplane-ci"
    values = chart["values"]
    assert values["image"]["repository"] == "ghcr.io/actions/gha-runner-scale-set-controller"
    assert values["image"]["tag"] == "0.14.2"
    assert values["flags"]["watchSingleNamespace"] == "mlplane-ci-runners"
    assert values["serviceAccount"] == {"create": True, "name": "arc-controller"}
    assert values["resources"] == kube.resources(CiRunnersConfig().controller_resources)
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    assert values["securityContext"]["readOnlyRootFilesystem"] is True
    assert values["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_listener_gets_controller_resources_and_restricted_contexts(run_component):
    result, _ = run_component(build, TOKEN)
    listener = scale_set_values(result)["listenerTemplate"]["spec"]
    assert listener["securityContext"]["runAsNonRoot"] is True
    (container,) = listener["containers"]
    assert container["name"] == "listener"
    assert container["resources"] == kube.resources(CiRunnersConfig().controller_resources)
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_runner_pod_is_restricted_with_config_resources(run_component):
    result, _ = run_component(build, TOKEN)
    spec = scale_set_values(result)["template"]["spec"]
    runner = runner_container(spec)
    assert runner["image"] == "ghcr.io/actions/actions-runner:2.334.0"
    assert runner["command"] == ["/home/runner/run.sh"]
    assert runner["resources"] == kube.resources(CiRunnersConfig().runner_resources)
    assert runner["securityContext"]["runAsUser"] == 1001
    assert runner["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is True
    env = {e["name"]: e["value"] for e in runner["env"] if "value" in e}
    assert env["ACTIONS_RUNNER_CONTAINER_HOOK_TEMPLATE"] == "/home/runner/pod-templates/job.yaml"
    assert spec["volumes"] == [{"name": "job-pod-template", "configMap": {"name": "job-pod-template"}}]


@pytest.mark.parametrize("mode", ["kubernetes-novolume", "kubernetes", "dind"])
@pytest.mark.parametrize("minor", ["1.34", "1.37"])
def test_runner_and_job_pods_pass_strict_schema_validation(mode, minor):
    raw = {**TOKEN["ci_runners"], "container_mode": mode, "allow_privileged_runners": mode == "dind"}
    args = plain_args(CiRunnersConfig.model_validate(raw))
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "runner"}, "spec": runner_pod_spec(args)}
    kubernetes_validate.validate(pod, minor, strict=True)
    job = job_pod_template(args)["spec"]
    job["containers"][0].update(name="job", image="python:3.13")
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "job"}, "spec": job}, minor, strict=True)


def test_job_pods_are_restricted_with_job_resources():
    config = CiRunnersConfig.model_validate(TOKEN["ci_runners"])
    spec = job_pod_template(plain_args(config))["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 1001
    assert spec["automountServiceAccountToken"] is False
    (job,) = spec["containers"]
    assert job["name"] == "$job"
    assert job["resources"] == kube.resources(config.job_resources)
    assert job["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert job["securityContext"]["allowPrivilegeEscalation"] is False


def test_kubernetes_mode_sizes_the_work_volume(run_component):
    result, _ = run_component(build, KUBERNETES)
    assert scale_set_values(result)["containerMode"] == {
        "type": "kubernetes",
        "kubernetesModeWorkVolumeClaim": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "8Gi"}}},
    }


def test_dind_opts_the_runner_namespace_out_of_restricted_with_a_reason(run_component):
    result, _ = run_component(build, DIND)
    namespace = result.named("mlplane-ci-runner-namespace").manifest()["metadata"]
    assert namespace["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert "dind" in namespace["annotations"]["mlplane.dev/pod-security-reason"]
    assert "mlplane-ci-job-template" not in children(result)


def test_dind_sidecar_is_privileged_but_bounded_and_the_runner_is_not(run_component):
    result, _ = run_component(build, DIND)
    values = scale_set_values(result)
    assert "containerMode" not in values
    spec = values["template"]["spec"]
    dind = next(c for c in spec["initContainers"] if c["name"] == "dind")
    assert dind["image"] == "docker.io/library/docker:29.8.2-dind"
    assert dind["securityContext"]["privileged"] is True
    assert dind["restartPolicy"] == "Always"
    assert dind["resources"] == kube.resources(CiRunnersConfig().job_resources)
    runner = runner_container(spec)
    assert runner["securityContext"]["privileged"] is False
    assert runner["securityContext"]["runAsNonRoot"] is True
    assert {e["name"]: e.get("value") for e in runner["env"]}["DOCKER_HOST"] == "unix:///var/run/docker.sock"
    assert spec["automountServiceAccountToken"] is False


def test_dind_without_explicit_opt_out_is_rejected():
    with pytest.raises(ConfigError, match="allow_privileged_runners"):
        parse_platform({"ci_runners": {**TOKEN["ci_runners"], "container_mode": "dind"}})


def test_built_in_objects_pass_strict_schema_validation(run_component):
    result, _ = run_component(build, TOKEN)
    for record in result.kubernetes_objects():
        for minor in ("1.34", "1.37"):
            kubernetes_validate.validate(record.manifest(), minor, strict=True)


def test_chart_workloads_add_up_to_the_peak_and_mark_the_idle_part():
    config = CiRunnersConfig.model_validate({**TOKEN["ci_runners"], "min_runners": 1, "max_runners": 5})
    rows = chart_workloads(config)
    assert rows == [
        ("arc-controller", 1, config.controller_resources),
        ("arc-listener", 1, config.controller_resources),
        ("runner, idle (min_runners)", 1, config.runner_resources),
        ("runner, busy (up to max_runners)", 4, config.runner_resources),
        ("job pod, busy (one per runner)", 5, config.job_resources),
    ]
    runners = sum(replicas for name, replicas, _ in rows if name.startswith("runner"))
    assert runners == config.max_runners
    assert sum(replicas for name, replicas, _ in rows if "idle" in name) == config.min_runners


def test_dind_workloads_count_a_sidecar_per_runner():
    config = CiRunnersConfig.model_validate({**DIND["ci_runners"], "min_runners": 2, "max_runners": 3})
    sidecars = {name: replicas for name, replicas, _ in chart_workloads(config) if name.startswith("dind")}
    assert sidecars == {"dind sidecar, idle (min_runners)": 2, "dind sidecar, busy (up to max_runners)": 1}


# --------------------------------------------------------------------------------------------
# The container hooks' job pod ('kubernetes-novolume'): fs-init replaced by a restricted one
# --------------------------------------------------------------------------------------------


def _novolume_job_pod(template):
    from runner_hooks import hook_job_pod

    return hook_job_pod(
        runner_pod="mlplane-abcde-runner-x1y2z", namespace="mlplane-ci-runners",
        runner_image="ghcr.io/actions/actions-runner:2.334.0", job_image="python:3.13", template=template,
    )


def test_novolume_template_replaces_the_hooks_fs_init_with_a_restricted_one():
    config = CiRunnersConfig.model_validate(TOKEN["ci_runners"])
    assert config.container_mode == "kubernetes-novolume"
    template = job_pod_template(plain_args(config))
    pod = _novolume_job_pod(template)["spec"]
    (init,) = pod["initContainers"]
    assert init["name"] == "fs-init"
    assert init["image"] == "ghcr.io/actions/actions-runner:2.334.0"
    assert init["command"] == ["sh", "-c", "cp -R --preserve=mode,timestamps /home/runner/externals/. /mnt/externals/"]
    assert "sudo" not in " ".join(init["command"])
    context = init["securityContext"]
    assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}
    assert context["runAsNonRoot"] is True and context["runAsUser"] == 1001
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert init["resources"] == kube.resources(config.job_resources)
    # It fills the volume the hooks define and mount at /__e in the job container.
    assert init["volumeMounts"] == [{"name": "externals", "mountPath": "/mnt/externals"}]
    assert {"name": "externals", "emptyDir": {}} in pod["volumes"]
    (job,) = pod["containers"]
    assert {"name": "externals", "mountPath": "/__e"} in job["volumeMounts"]
    assert job["securityContext"]["allowPrivilegeEscalation"] is False
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "job"}, "spec": pod}, "1.37", strict=True)


def test_without_the_template_the_hooks_fs_init_is_not_restricted():
    """What the template fixes: the hooks' own fs-init sets only runAsUser/runAsGroup."""
    (init,) = _novolume_job_pod(None)["spec"]["initContainers"]
    assert init["securityContext"] == {"runAsGroup": 1001, "runAsUser": 1001}


def test_kubernetes_mode_template_adds_no_init_container():
    """The volume-mode hooks (/home/runner/k8s) add no fs-init and define no 'externals' volume:
    an init container there would name a volume the pod does not have."""
    config = CiRunnersConfig.model_validate(KUBERNETES["ci_runners"])
    assert "initContainers" not in job_pod_template(plain_args(config))["spec"]


def test_rendered_job_template_configmap_carries_the_restricted_fs_init(run_component):
    result, _ = run_component(build, TOKEN)
    data = result.named("mlplane-ci-job-template").manifest()["data"]["job.yaml"]
    (init,) = yaml.safe_load(data)["spec"]["initContainers"]
    assert init["name"] == "fs-init" and init["securityContext"]["allowPrivilegeEscalation"] is False


# --------------------------------------------------------------------------------------------
# dind and the plain-HTTP registry
# --------------------------------------------------------------------------------------------


def _dind_args(insecure: bool):
    config = CiRunnersConfig.model_validate({**DIND["ci_runners"]})
    args = dataclasses.replace(plain_args(config), registry_insecure=insecure)
    spec = runner_pod_spec(args)
    return next(c for c in spec["initContainers"] if c["name"] == "dind")["args"]


def test_dind_trusts_the_plain_http_bundled_registry():
    assert _dind_args(True) == [
        "dockerd", "--host=unix:///var/run/docker.sock", "--group=123", "--insecure-registry=mlplane-registry:5000",
    ]


def test_dind_keeps_tls_for_an_https_registry():
    assert not [a for a in _dind_args(False) if a.startswith("--insecure-registry")]


def test_rendered_platform_dind_sidecar_names_the_bundled_registry(tmp_path):
    from mlplane.cli import load_platform, offline_run

    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(DIND))
    source, platform = load_platform(None, path)
    assert platform.registry.mode == "bundled"
    result = offline_run(source, platform)
    values = result.named("mlplane-runners-scale-set").inputs["values"]
    dind = next(c for c in values["template"]["spec"]["initContainers"] if c["name"] == "dind")
    assert dind["args"][-1] == "--insecure-registry=mlplane-registry:5000"
