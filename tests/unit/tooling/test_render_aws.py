"""The example AWS stack (stacks/Pulumi.aws.yaml) rendered offline: golden contract, strict schemas,
the security scan, and the local target never loading the AWS SDK."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlplane.cli import load_platform, offline_run, write_render
from mlplane.tooling import checks

from test_render_stack import ROOT, _check_golden, _contract


@pytest.fixture(scope="module")
def aws_stack(tmp_path_factory):
    os.chdir(ROOT)
    source, platform = load_platform("aws", None)
    result = offline_run(source, platform)
    out = tmp_path_factory.mktemp("render-aws")
    write_render(result, out)
    return result, out


@pytest.fixture(scope="module")
def aws_gpu(tmp_path_factory):
    """The example with the GPU group on: the NVIDIA device plugin is rendered too."""
    raw = yaml.safe_load((ROOT / "stacks" / "Pulumi.aws.yaml").read_text())["config"]["mlplane:platform"]
    raw["aws"]["eks"]["node_groups"]["gpu"]["enabled"] = True
    path = tmp_path_factory.mktemp("cfg") / "platform.yaml"
    path.write_text(yaml.safe_dump(raw))
    source, platform = load_platform(None, path)
    result = offline_run(source, platform)
    out = tmp_path_factory.mktemp("render-aws-gpu")
    write_render(result, out)
    return result, out


def test_aws_resource_names_types_and_parents_are_pinned(aws_stack):
    result, _ = aws_stack
    _check_golden("aws-contract.json", sorted(_contract(result), key=lambda r: (r["type"], r["name"])))


def test_aws_render_registers_no_aliases_and_unique_names(aws_gpu):
    result, _ = aws_gpu
    assert [r.name for r in result.resources if r.aliases] == []
    keys = [(r.type, r.name) for r in result.resources]
    assert len(keys) == len(set(keys))


def test_every_aws_resource_is_a_child_of_an_mlplane_component(aws_stack):
    result, _ = aws_stack
    parents = {r.urn: r.type for r in result.resources}
    for resource in result.resources:
        if resource.type.startswith("aws:") or resource.type == "pulumi:providers:aws":
            assert parents.get(resource.parent or "", "").startswith("mlplane:"), resource.name


@pytest.mark.parametrize("fixture", ["aws_stack", "aws_gpu"])
def test_aws_manifests_pass_strict_schema_validation(fixture, request):
    result, _ = request.getfixturevalue(fixture)
    assert [str(f) for f in checks.validate_schemas(result.manifests())] == []


@pytest.mark.parametrize("fixture", ["aws_stack", "aws_gpu"])
def test_aws_manifests_pass_the_checkov_baseline(fixture, request):
    if checks.checkov_executable() is None:
        if os.environ.get("MLPLANE_REQUIRE_TOOLS") == "1":
            pytest.fail("checkov is required (MLPLANE_REQUIRE_TOOLS=1) but not found: set MLPLANE_CHECKOV")
        pytest.skip("checkov not installed: scripts/test.sh installs it into its own virtualenv")
    _, out = request.getfixturevalue(fixture)
    assert [str(f) for f in checks.run_checkov(out / "manifests")] == []


def test_aws_render_is_deterministic(aws_stack):
    result, _ = aws_stack
    source, platform = load_platform("aws", None)
    again = offline_run(source, platform)
    assert [r.as_json() for r in again.resources] == [r.as_json() for r in result.resources]


def test_the_aws_stack_validates_renders_and_plans_offline_without_credentials(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "none")
    mlplane = str(Path(sys.executable).parent / "mlplane")
    for command in (["validate"], ["render", "--out", str(tmp_path / "out")], ["plan", "--out", str(tmp_path / "plan.md")]):
        run = subprocess.run([mlplane, *command, "--stack", "aws"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, (command, run.stdout, run.stderr)


def test_the_local_target_never_imports_the_aws_sdk():
    code = (
        "import os, sys; os.chdir(sys.argv[1]);"
        "from mlplane.cli import load_platform, offline_run;"
        "offline_run(*load_platform('local', None));"
        "print('pulumi_aws' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "False"
