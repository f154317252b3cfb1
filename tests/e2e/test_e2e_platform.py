"""End to end with the real Pulumi engine: preview, up, no-change preview, a config change,
secrets in state, destroy — of the platform stack program, installed into an "existing"
cluster whose Kubernetes provider renders manifests to a directory (no cluster here).

Run with `pytest -m e2e` after `scripts/bootstrap-engine.sh` (its --print-bin-dir on PATH).
The steps share one stack and run in file order.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from mlplane.tooling import checks

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
STACK = "e2e"
PASSPHRASE = "mlplane-e2e-passphrase"
RANDOM_VERSION = version("pulumi-random")


def _engine_missing() -> str | None:
    missing = [tool for tool in ("pulumi", "pulumi-language-python") if shutil.which(tool) is None]
    return ", ".join(missing) or None


def platform_config(rendered: Path, max_replicas: int = 2) -> dict:
    return {
        "name": "mlplane",
        "cluster": {"mode": "render", "render": {"directory": str(rendered)}},
        "registry": {"mode": "external", "external": {"url": "localhost:5001"}},
        # Helm charts cannot be fetched here: use an Envoy Gateway "already in the cluster".
        "routing": {"controller": "existing"},
        "serving": {
            "models": [
                {"name": "iris", "registered_model": "iris", "version": 1, "max_replicas": max_replicas}
            ]
        },
        "lifecycle": {"throwaway": True},
    }


def stand_in_plugins(base: Path) -> str:
    """A bin dir with the stand-in random provider, unless the real plugin is installed.

    The module proxy reachable here refuses pulumi-random's provider module, so CI cannot build
    the real plugin (docs/e2e.md); a user's machine with `pulumi plugin install` uses the real one.
    """
    bin_dir = base / "plugins"
    bin_dir.mkdir(exist_ok=True)
    home = Path(os.environ.get("PULUMI_HOME", Path.home() / ".pulumi"))
    if any(home.glob(f"plugins/resource-random-v{RANDOM_VERSION}")):
        return str(bin_dir)
    plugin = bin_dir / "pulumi-resource-random"
    plugin.write_text(
        f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m tests.engine.random_provider \"$@\"\n"
    )
    plugin.chmod(0o755)
    return str(bin_dir)


class Project:
    """A copy of the project's entry point with its own state backend and stack config."""

    def __init__(self, base: Path):
        self.dir = base / "project"
        self.state = base / "state"
        self.rendered = base / "rendered"
        (self.dir / "stacks").mkdir(parents=True)
        self.state.mkdir()
        shutil.copy(ROOT / "stacks" / "__main__.py", self.dir / "stacks" / "__main__.py")
        project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
        project["runtime"]["options"]["virtualenv"] = str(ROOT / ".venv")
        (self.dir / "Pulumi.yaml").write_text(yaml.safe_dump(project))
        self.env = {
            **os.environ,
            "PATH": f"{stand_in_plugins(base)}{os.pathsep}{os.environ['PATH']}",
            "PULUMI_BACKEND_URL": f"file://{self.state}",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        }

    def write_config(self, config: dict) -> None:
        path = self.dir / "stacks" / f"Pulumi.{STACK}.yaml"
        document = yaml.safe_load(path.read_text()) if path.exists() else {}
        document = document or {}
        document.setdefault("config", {})["mlplane:platform"] = config
        path.write_text(yaml.safe_dump(document))

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["pulumi", *args, "--stack", STACK, "--non-interactive"],
            cwd=self.dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        return result

    def rendered_manifests(self) -> list[dict]:
        return [
            document
            for path in sorted(self.rendered.rglob("*.yaml"))
            for document in yaml.safe_load_all(path.read_text())
            if document
        ]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    missing = _engine_missing()
    if missing:
        message = f"{missing} not on PATH: run scripts/bootstrap-engine.sh and put its --print-bin-dir on PATH"
        if os.environ.get("MLPLANE_REQUIRE_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    project = Project(tmp_path_factory.mktemp("e2e"))
    subprocess.run(
        ["pulumi", "stack", "init", STACK, "--non-interactive"],
        cwd=project.dir, env=project.env, check=True, capture_output=True, text=True,
    )
    project.write_config(platform_config(project.rendered))
    return project


def _steps(preview_json: str) -> list[dict]:
    document = json.loads(preview_json)
    return [s for s in document.get("steps", []) if s.get("op") != "same"]


def test_1_preview_plans_the_platform(project):
    result = project.run("preview", "--json")
    steps = _steps(result.stdout)
    assert steps and {s["op"] for s in steps} == {"create"}
    types = {s["urn"].split("::")[2].split("$")[-1] for s in steps}
    assert "mlplane:index:Platform" in types and "kubernetes:apps/v1:Deployment" in types


def test_2_up_renders_every_object(project):
    project.run("up", "--yes", "--skip-preview")
    manifests = project.rendered_manifests()
    assert len(manifests) > 30
    assert not [str(f) for f in checks.validate_schemas(manifests)]


def test_3_rendered_objects_agree_with_the_offline_render(project, tmp_path):
    from mlplane.cli import Source, offline_run, write_render
    from mlplane.config import parse_platform

    raw = platform_config(project.rendered)
    offline = offline_run(Source(raw, "platform", STACK, None, {}), parse_platform(raw))

    def key(manifest: dict) -> tuple:
        meta = manifest["metadata"]
        name = meta["name"]
        if manifest["kind"] == "Job":
            # Setup Jobs are named after a digest of their inputs, generated credentials
            # included; the offline render's stand-in credentials differ from the real ones.
            name = re.sub(r"-[0-9a-f]{10}$", "-<digest>", name)
        return manifest["kind"], meta.get("namespace"), name

    engine = {key(m) for m in project.rendered_manifests()}
    assert engine == {key(m) for m in offline.manifests()}
    write_render(offline, tmp_path)
    if checks.checkov_executable():
        engine_dir = tmp_path / "engine"
        engine_dir.mkdir()
        for index, manifest in enumerate(project.rendered_manifests()):
            (engine_dir / f"{index:03d}.yaml").write_text(yaml.safe_dump(manifest))
        assert [str(f) for f in checks.run_checkov(engine_dir)] == []


def test_4_second_preview_expects_no_changes(project):
    project.run("preview", "--expect-no-changes")


def test_5_a_config_change_updates_exactly_one_resource(project):
    project.write_config(platform_config(project.rendered, max_replicas=3))
    steps = _steps(project.run("preview", "--json").stdout)
    assert [(s["op"], s["urn"].split("::")[-1]) for s in steps] == [("update", "mlplane-serving-iris-hpa")]
    project.run("up", "--yes", "--skip-preview")
    project.run("preview", "--expect-no-changes")


def test_5b_an_alert_rule_change_rolls_prometheus_and_never_replaces_its_statefulset(project):
    """The provider replaces a ConfigMap whose data changes (its name is fixed: delete first); the
    StatefulSet mounting it must only roll (checksum annotation), never be replaced with it: a
    replaced StatefulSet is deleted first (docs/upgrading.md). Found by the upgrade e2e test."""
    config = platform_config(project.rendered, max_replicas=3)
    config["monitoring"] = {"alerts": {"model_error_rate": 0.1}}
    project.write_config(config)
    steps = _steps(project.run("preview", "--json").stdout)
    assert sorted((s["op"], s["urn"].split("::")[-1]) for s in steps) == [
        ("replace", "mlplane-monitoring-prometheus-config"),
        ("update", "mlplane-monitoring-prometheus-statefulset"),
    ]
    project.run("up", "--yes", "--skip-preview")
    project.run("preview", "--expect-no-changes")


def test_6_secrets_are_encrypted_in_state(project):
    password = project.run("stack", "output", "mlflowAdminPassword", "--show-secrets").stdout.strip()
    assert len(password) >= 16
    state = "".join(p.read_text() for p in project.state.rglob("*.json"))
    assert password not in state
    assert "ciphertext" in state


def test_7_destroy_leaves_no_resources_and_no_rendered_files(project):
    project.run("destroy", "--yes", "--skip-preview")
    exported = json.loads(project.run("stack", "export").stdout)
    assert exported["deployment"].get("resources", []) == []
    assert not [p for p in project.rendered.rglob("*.yaml")]
