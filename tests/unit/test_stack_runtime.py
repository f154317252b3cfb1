"""What the images need at run time, over the whole rendered stack (local and extended).

Rules that no single component test can see: every Job ends; every container that runs MLflow
has usage telemetry off; no volume hides a path where an image keeps what its program needs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from mlplane.cli import load_platform, offline_run

ROOT = Path(__file__).resolve().parents[2]
EXTENDED = {
    "serving": {"models": [{"name": "iris", "registered_model": "iris-classifier", "alias": "champion",
                            "canary": {"version": 3, "weight": 10}}]},
    "ci_runners": {"github_config_url": "https://github.com/acme/models", "github_token_key": "githubToken"},
}
#: Where images keep their program and its bundled data, by image repository (no tag): a volume
#: mounted at or under one of these hides what is there. Sources: grafana/grafana Dockerfile
#: (GF_PATHS_HOME=/usr/share/grafana, its data/plugins-bundled holds the Prometheus data source
#: plugin from 13.2), the postgres image (/usr/lib/postgresql, /usr/share/postgresql), and
#: every image's system paths.
IMAGE_PATHS = {
    "grafana/grafana": ["/usr/share/grafana"],
    "postgres": ["/usr/lib/postgresql", "/usr/share/postgresql"],
}
SYSTEM_PATHS = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc/ssl"]


def _render(raw: dict | None, tmp_path_factory) -> list[dict]:
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        if raw is None:
            source, platform = load_platform("local", None)
        else:
            path = tmp_path_factory.mktemp("cfg") / "platform.yaml"
            path.write_text(yaml.safe_dump(raw))
            source, platform = load_platform(None, path)
        return offline_run(source, platform).manifests()
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module", params=["local", "extended"])
def manifests(request, tmp_path_factory) -> list[dict]:
    return _render(None if request.param == "local" else EXTENDED, tmp_path_factory)


def _templates(manifests: list[dict]):
    for item in manifests:
        spec = item.get("spec") or {}
        template = spec.get("template") or (spec.get("jobTemplate") or {}).get("spec", {}).get("template")
        if isinstance(template, dict) and "spec" in template:
            yield item, template["spec"]


def _containers(pod: dict):
    yield from pod.get("initContainers", [])
    yield from pod.get("containers", [])


def test_every_job_has_a_deadline(manifests):
    jobs = [m for m in manifests if m["kind"] == "Job"]
    assert jobs
    for job in jobs:
        assert job["spec"].get("activeDeadlineSeconds", 0) > 0, job["metadata"]["name"]


def test_every_mlflow_container_runs_with_telemetry_off(manifests):
    seen = 0
    for item, pod in _templates(manifests):
        for container in _containers(pod):
            runs_mlflow = "/mlflow/mlflow:" in container["image"] or container.get("command", [None])[0] == "mlflow"
            if not runs_mlflow:
                continue
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            where = f"{item['kind']} {item['metadata']['name']}: {container['name']}"
            assert env.get("MLFLOW_DISABLE_TELEMETRY") == "true", where
            assert env.get("DO_NOT_TRACK") == "true", where
            seen += 1
    assert seen >= 3


def test_seaweedfs_reports_no_cluster_statistics(manifests):
    found = [c for _, pod in _templates(manifests) for c in _containers(pod) if "seaweedfs" in c["image"]]
    assert found
    for container in found:
        args = container.get("args", [])
        if "mini" in args:
            assert "-master.telemetry=false" in args


def _hides(mount_path: str, image_path: str) -> bool:
    mount = mount_path.rstrip("/") or "/"
    return mount == image_path or mount.startswith(image_path + "/") or image_path.startswith(mount + "/") or mount == "/"


def test_no_volume_hides_what_an_image_needs(manifests):
    for item, pod in _templates(manifests):
        for container in _containers(pod):
            repository = container["image"].split("@")[0].rsplit(":", 1)[0].split("/", 1)[-1]
            repository = repository.removeprefix("library/")
            protected = SYSTEM_PATHS + IMAGE_PATHS.get(repository, [])
            for mount in container.get("volumeMounts", []):
                for path in protected:
                    assert not _hides(mount["mountPath"], path), (
                        f"{item['kind']} {item['metadata']['name']}: {container['name']} mounts "
                        f"{mount['mountPath']} over the image's {path}"
                    )


def test_the_rule_catches_a_mount_over_grafanas_bundled_plugins():
    assert _hides("/usr/share/grafana/data/plugins-bundled", "/usr/share/grafana")
    assert _hides("/usr/share", "/usr/share/grafana")
    assert not _hides("/var/lib/grafana", "/usr/share/grafana")
    assert not _hides("/tmp", "/usr")
