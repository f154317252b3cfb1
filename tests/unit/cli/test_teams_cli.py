"""`mlplane team ...` and team stacks in `mlplane validate/render`: exit codes, one line per
problem, nothing written on bad input or without a Pulumi CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlplane.config.team import parse_team

ROOT = Path(__file__).resolve().parents[3]
PLATFORM = "config:\n  mlplane:platform:\n    lifecycle: {throwaway: true}\n    tracking: {workspaces: true}\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project like the repository's: Pulumi.yaml and a platform stack 'local' with workspaces on."""
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.local.yaml").write_text(PLATFORM)
    (tmp_path / "no-pulumi").mkdir()
    return tmp_path


def mlplane(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in ``project`` with a PATH that holds no Pulumi CLI."""
    return subprocess.run(
        [sys.executable, "-m", "mlplane", *args],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", "PATH": str(project / "no-pulumi"), "PULUMI_BACKEND_URL": ""},
        timeout=120,
    )


def team_file(project: Path, name: str) -> Path:
    return project / "stacks" / f"Pulumi.team-{name}.yaml"


def test_config_only_writes_a_reviewable_config_that_validates_and_renders(project):
    result = mlplane(project, "team", "create", "fraud", "--platform-stack", "local", "--config-only",
                     "--requests-cpu", "2", "--limits-cpu", "4", "--gpus", "1", "--user", "alice@example.com")
    assert result.returncode == 0, result.stderr
    assert "wrote stacks/Pulumi.team-fraud.yaml" in result.stdout
    document = yaml.safe_load(team_file(project, "fraud").read_text())
    team = parse_team(document["config"]["mlplane:team"])
    assert (team.name, team.platform_stack, team.quota.work.limits_cpu, team.quota.work.gpus) == ("fraud", "local", "4", 1)
    assert team.members.users == ["alice@example.com"]
    assert mlplane(project, "validate", "--stack", "team-fraud").returncode == 0
    rendered = mlplane(project, "render", "--stack", "team-fraud", "--out", str(project / "out"))
    assert rendered.returncode == 0, rendered.stderr
    assert (project / "out" / "manifests" / "mlplane-team-fraud.resourcequota.team-quota.yaml").exists()
    outputs = json.loads((project / "out" / "outputs.json").read_text())
    assert outputs["team"]["namespaces"] == {"work": "mlplane-team-fraud", "serving": "mlplane-team-fraud-serving"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["Bad_Name"], "mlplane:team.name: must be a DNS-1123 label"),
        (["fraud", "--limits-cpu=-1"], "mlplane:team.quota.work.limits_cpu: must be a CPU quantity"),
        (["fraud", "--requests-memory", "lots"], "mlplane:team.quota.work.requests_memory: must be a memory quantity"),
        (["fraud", "--gpus=-2"], "mlplane:team.quota.work.gpus: Input should be greater than or equal to 0"),
        (["fraud", "--service", "kafka"], "mlplane:team.services[0]: Input should be 'tracking', 'object_storage', 'registry' or 'monitoring'"),
        (["fraud", "--group", "system:authenticated"], "mlplane:team.members.groups[0]: names starting with 'system:'"),
    ],
)
def test_bad_options_exit_2_with_the_field_path_and_write_nothing(project, args, expected):
    result = mlplane(project, "team", "create", *args, "--platform-stack", "local", "--config-only")
    assert result.returncode == 2, result.stdout
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert list((project / "stacks").glob("Pulumi.team-*.yaml")) == []


def test_a_name_or_bucket_that_collides_with_an_existing_team_is_refused(project):
    assert mlplane(project, "team", "create", "fraud", "--platform-stack", "local", "--config-only").returncode == 0
    again = mlplane(project, "team", "create", "fraud", "--platform-stack", "local", "--config-only")
    assert again.returncode == 2 and "mlplane:team.name: team 'fraud' already exists" in again.stderr
    team_file(project, "risk").write_text(
        "config:\n  mlplane:team: {name: risk, platform_stack: local, object_storage: {bucket: team-ops}}\n"
    )
    clash = mlplane(project, "team", "create", "ops", "--platform-stack", "local", "--config-only")
    assert clash.returncode == 2
    assert "mlplane:team.object_storage.bucket: bucket 'team-ops' belongs to team 'risk' (stack 'team-risk')" in clash.stderr
    assert not team_file(project, "ops").exists()


def test_a_platform_that_cannot_host_the_team_is_refused_before_writing(project):
    (project / "stacks" / "Pulumi.local.yaml").write_text("config:\n  mlplane:platform: {}\n")
    result = mlplane(project, "team", "create", "fraud", "--platform-stack", "local", "--config-only")
    assert result.returncode == 2 and "set tracking.workspaces: true" in result.stderr
    missing = mlplane(project, "team", "create", "fraud", "--platform-stack", "prod", "--config-only")
    assert missing.returncode == 2 and "mlplane:team.platform_stack: platform stack 'prod': --stack: no stack 'prod'" in missing.stderr
    assert not team_file(project, "fraud").exists()


@pytest.mark.parametrize("command", [["create", "fraud", "--platform-stack", "local"], ["preview", "fraud"], ["destroy", "fraud", "--yes"]])
def test_deploying_commands_without_a_pulumi_cli_exit_1_and_change_nothing(project, command):
    if command[0] != "create":
        assert mlplane(project, "team", "create", "fraud", "--platform-stack", "local", "--config-only").returncode == 0
    before = {p.name: p.read_text() for p in (project / "stacks").iterdir()}
    result = mlplane(project, "team", *command)
    assert result.returncode == 1, result.stdout + result.stderr
    stopped = {"create": "nothing was written or deployed", "preview": "nothing was previewed", "destroy": "nothing was changed"}
    assert "the Pulumi CLI is not on PATH" in result.stderr and stopped[command[0]] in result.stderr
    assert {p.name: p.read_text() for p in (project / "stacks").iterdir()} == before
    assert not (project / ".state").exists()


def test_list_shows_teams_quotas_and_state(project):
    mlplane(project, "team", "create", "fraud", "--platform-stack", "local", "--config-only", "--gpus", "2")
    team_file(project, "broken").write_text("config:\n  mlplane:team: {name: Broken}\n")
    result = mlplane(project, "team", "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["stack"]: row for row in json.loads(result.stdout)}
    assert rows["team-fraud"]["quota"]["work"]["gpus"] == 2
    assert rows["team-fraud"]["state"] == "unknown (no Pulumi CLI)"
    assert "must be a DNS-1123 label" in rows["team-broken"]["problem"]
    table = mlplane(project, "team", "list")
    assert table.returncode == 0 and "fraud" in table.stdout and "invalid" in table.stdout


def test_platform_only_commands_refuse_team_stacks(project):
    mlplane(project, "team", "create", "fraud", "--platform-stack", "local", "--config-only")
    result = mlplane(project, "footprint", "--stack", "team-fraud")
    assert result.returncode == 2 and "'team-fraud' is a team stack" in result.stderr


def test_a_team_file_whose_name_does_not_match_its_stack_is_refused(project):
    team_file(project, "fraud").write_text("config:\n  mlplane:team: {name: risk, platform_stack: local}\n")
    result = mlplane(project, "validate", "--stack", "team-fraud")
    assert result.returncode == 2 and "stack 'team-fraud' holds team 'risk'" in result.stderr


def test_the_offboarding_run_deploys_a_copy_of_the_platform_config_with_its_encryption_salt(tmp_path):
    from mlplane.cli.teams import OFFBOARDING_KEY, _offboarding_config

    path = tmp_path / "Pulumi.local.yaml"
    original = "config:\n  mlplane:platform: {name: mlplane}\nencryptionsalt: v1:abc\n"
    path.write_text(original)
    with _offboarding_config(path, "fraud", "keep-data") as copy:
        document = yaml.safe_load(copy.read_text())
        assert document["encryptionsalt"] == "v1:abc"
        assert document["config"][OFFBOARDING_KEY] == {"fraud": "keep-data"}
        assert document["config"]["mlplane:platform"] == {"name": "mlplane"}
    assert not copy.exists()
    # The user's file is never changed.
    assert path.read_text() == original


def test_engine_failures_are_reported_by_their_error_lines():
    from mlplane.cli.teams import failure_reason

    text = "\n code: 255\n stdout: Updating\n  error: no resource plugin 'x' found\n\n stderr: \nerror: update failed\n"
    assert failure_reason(text) == "error: no resource plugin 'x' found | error: update failed"
    assert failure_reason("\n code: 1\n stdout: something\n") == "stdout: something"


def test_a_broken_team_file_stops_the_platforms_render_instead_of_dropping_the_team(project):
    """Left out of the platform's admitted teams, a deployed team's namespaces (and everything in
    them) would be deleted by the platform's next update: the file is named and nothing is written."""
    team_file(project, "broken").write_text(
        "config:\n  mlplane:team: {name: broken, platform_stack: local, quota: {work: {pods: -1}}}\n"
    )
    team_file(project, "elsewhere").write_text(
        "config:\n  mlplane:team: {name: elsewhere, platform_stack: staging, quota: {work: {pods: -1}}}\n"
    )
    result = mlplane(project, "render", "--stack", "local", "--out", str(project / "out"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Pulumi.team-broken.yaml: mlplane:team.quota.work.pods" in result.stderr
    assert "elsewhere" not in result.stderr and "Traceback" not in result.stderr
    assert not (project / "out").exists()


def test_destroy_accepts_a_team_file_that_no_longer_fits_its_platform(project):
    """The file parses but the platform changed under it: offboarding must still be possible (it
    stops only for want of a Pulumi CLI here, after the file was accepted)."""
    team_file(project, "fraud").write_text(
        "config:\n  mlplane:team: {name: fraud, platform_stack: local, services: [tracking]}\n"
    )
    (project / "stacks" / "Pulumi.local.yaml").write_text("config:\n  mlplane:platform: {tracking: {workspaces: false}}\n")
    assert mlplane(project, "validate", "--stack", "team-fraud").returncode == 2
    result = mlplane(project, "team", "destroy", "fraud", "--yes")
    assert "pulumi" in result.stderr.lower() and "mlplane:team" not in result.stderr, result.stderr
    assert team_file(project, "fraud").exists()
