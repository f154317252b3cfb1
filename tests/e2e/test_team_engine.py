"""`mlplane team create/list/destroy` under the real Pulumi engine (pytest -m e2e).

A throwaway project with the repository's program and a platform stack in cluster mode 'render'.
The platform stack itself needs providers this machine may not have, so a stand-in stack of the
same project, in the same file backend, exports the platform's outputs; the team stack reads them
through its StackReference (``organization/mlplane/local``), its provider writes manifests to a
directory, and the team is then offboarded and destroyed: its stack and config file are gone.
Needs ``pulumi``, ``pulumi-language-python`` and the kubernetes resource plugin
(scripts/bootstrap-engine.sh provides them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_e2e_platform import stand_in_plugins

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e

PLATFORM_OUTPUTS = {
    "name": "mlplane",
    "domain": "mlplane.localhost",
    "gateway": {"name": "mlplane", "namespace": "mlplane-gateway", "httpPort": 80},
    "trackingUri": "http://mlflow.mlplane-tracking.svc.cluster.local:5000",
    "s3Endpoint": "http://seaweedfs.mlplane-storage.svc.cluster.local:8333",
    "s3Region": "us-east-1",
    "registryPullPrefix": "ghcr.io/acme",
    "registryClusterPushUrl": "ghcr.io/acme",
}

STAND_IN = """
import json, sys
import pulumi
from pulumi import automation as auto

def program():
    pulumi.export("platform", json.loads(sys.argv[2]))
    pulumi.export("mlflowAdminUsername", "admin")
    pulumi.export("mlflowAdminPassword", pulumi.Output.secret("stand-in"))
    # The platform has admitted team ops (mlplane.services.team_access), so `team create` deploys it directly.
    pulumi.export("admittedTeams", ["ops"])
    # What it granted ops from its file (mlplane.program: teamGrants): nothing to update.
    pulumi.export("teamGrants", {"ops": {"services": ["registry"]}})

stack = auto.create_or_select_stack("local", project_name="mlplane", program=program,
                                    opts=auto.LocalWorkspaceOptions(work_dir=sys.argv[1]))
stack.up()
"""


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    missing = [tool for tool in ("pulumi", "pulumi-language-python") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not on PATH: run scripts/bootstrap-engine.sh and put its --print-bin-dir on PATH")
    project = tmp_path / "project"
    (project / "stacks").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text(
        "name: mlplane\nruntime:\n  name: python\n  options:\n    toolchain: pip\n"
        f"    virtualenv: {ROOT / '.venv'}\nmain: stacks/\nstackConfigDir: stacks\n"
    )
    shutil.copy(ROOT / "stacks" / "__main__.py", project / "stacks" / "__main__.py")
    (project / "stacks" / "Pulumi.local.yaml").write_text(
        "config:\n  mlplane:platform:\n"
        f"    cluster: {{mode: render, render: {{directory: {tmp_path / 'render'}}}}}\n"
        "    registry: {mode: external, external: {url: ghcr.io/acme}}\n"
        # `team destroy` updates the platform stack with the real program (the revoke of the
        # team's grants): an Envoy Gateway "already in the cluster", as no chart can be fetched here.
        "    routing: {controller: existing}\n"
        "    tracking: {workspaces: true}\n    lifecycle: {throwaway: true}\n"
    )
    env = {
        **os.environ,
        "PULUMI_BACKEND_URL": "",
        "PULUMI_CONFIG_PASSPHRASE": "e2e",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        # A team stack registers a random owner id (mlplane.dev/owner): the stand-in random
        # provider where the real plugin cannot be built (docs/e2e.md).
        "PATH": f"{stand_in_plugins(tmp_path)}{os.pathsep}{os.environ['PATH']}",
    }
    (project / ".state").mkdir()
    stand_in = tmp_path / "stand-in"
    stand_in.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", STAND_IN, str(stand_in), json.dumps(PLATFORM_OUTPUTS)],
        env={**env, "PULUMI_BACKEND_URL": f"file://{project / '.state'}"}, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return project, env


def mlplane(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlplane", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=900)


def test_create_list_and_destroy_a_team_with_the_real_engine(project):
    path, env = project
    created = mlplane(path, env, "team", "create", "ops", "--platform-stack", "local", "--service", "registry")
    assert created.returncode == 0, created.stdout + created.stderr
    assert "team 'ops' is deployed" in created.stdout
    render = path.parent / "render-team-ops"
    written = {p.name for p in render.rglob("*.yaml")}
    assert any("team-quota" in name for name in written), written
    listed = json.loads(mlplane(path, env, "team", "list", "--json").stdout)
    assert listed[0]["stack"] == "team-ops" and "resources" in listed[0]["state"]
    destroyed = mlplane(path, env, "team", "destroy", "ops", "--yes")
    assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
    assert not (path / "stacks" / "Pulumi.team-ops.yaml").exists()
    assert not any("team-quota" in p.name for p in render.rglob("*.yaml"))
    assert json.loads(mlplane(path, env, "team", "list", "--json").stdout) == []
