"""Config that cannot be silently ignored, and messages that do not mislead (issue 8, items 4-8).

Every key of the `mlplane` namespace of a stack is one mlplane reads; a stack has a platform (or
team) object; secrets typed in plain text are called that; commands give advice that fits them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[3]
PLATFORM = {"mlplane:platform": {"lifecycle": {"throwaway": True}, "tracking": {"workspaces": True}}}
EXTERNAL_DB = {"mlplane:platform": {"database": {"mode": "external", "external": {"host": "db.example.com", "password_key": "dbPassword"}}}}
SECURE = {"secure": "v1:AAAAAAAAAAAAAAAA:BBBBBBBBBBBB"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    (tmp_path / "stacks").mkdir()
    (tmp_path / "no-pulumi").mkdir()
    stack(tmp_path, "local", PLATFORM)
    return tmp_path


def stack(project: Path, name: str, config: dict | None, text: str | None = None) -> Path:
    path = project / "stacks" / f"Pulumi.{name}.yaml"
    path.write_text(text if text is not None else yaml.safe_dump({"config": config}))
    return path


def mlplane(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, in ``cwd``, with no Pulumi CLI on PATH and stdout piped."""
    return subprocess.run(
        [sys.executable, "-m", "mlplane", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": str(cwd / "no-pulumi"), "PULUMI_BACKEND_URL": "", "COLUMNS": "80"},
        timeout=180,
    )


# --------------------------------------------------------------------------------------------
# 4. Unknown keys of the mlplane namespace
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["validate"], ["render", "--out", "out"], ["plan"], ["footprint"]])
def test_a_misspelled_platform_key_is_rejected_by_every_command(project, command):
    stack(project, "dev", {"mlplane:platfrom": {"name": "x"}})
    result = mlplane(project, command[0], "--stack", "dev", *command[1:])
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error: mlplane:platfrom: unknown config key in the 'mlplane' namespace (did you mean mlplane:platform?)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "out").exists()


def test_an_unknown_key_next_to_a_valid_platform_is_rejected(project):
    stack(project, "dev", {**PLATFORM, "mlplane:platforms": {"name": "x"}, "aws:region": "eu-west-1", "pulumi:tags": {"a": "b"}})
    result = mlplane(project, "validate", "--stack", "dev")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: mlplane:platforms: unknown config key")
    assert "(did you mean mlplane:platform?)" in lines[0]
    assert "`pulumi config rm mlplane:platforms --stack dev`" in lines[0]


def test_secret_keys_the_config_names_are_known_and_a_misspelled_one_is_not(project):
    stack(project, "good", {**EXTERNAL_DB, "mlplane:dbPassword": SECURE})
    assert mlplane(project, "validate", "--stack", "good").returncode == 0
    stack(project, "typo", {**EXTERNAL_DB, "mlplane:dbPassword": SECURE, "mlplane:dbPasword": SECURE})
    result = mlplane(project, "validate", "--stack", "typo")
    assert result.returncode == 2
    assert "error: mlplane:dbPasword: unknown config key in the 'mlplane' namespace (did you mean mlplane:dbPassword?)" in result.stderr
    assert "this stack may hold mlplane:dbPassword, mlplane:platform" in result.stderr


def test_the_stack_program_rejects_unknown_keys_before_registering_anything():
    """Under `pulumi up` the engine passes the whole stack config: the program checks it too."""
    import pulumi

    from mlplane import program
    from mlplane.tooling.render import capture

    with pytest.raises(pulumi.RunError) as caught:
        capture(program.main, config={"mlplane:platform": "{}", "mlplane:platfrom": json.dumps({"name": "x"}), "aws:region": "x"})
    assert "mlplane:platfrom: unknown config key in the 'mlplane' namespace (did you mean mlplane:platform?)" in str(caught.value)
    assert caught.value.recorded == []


def test_the_stack_program_reads_the_engines_config_environment(monkeypatch):
    """The engine hands config to the Python program as PULUMI_CONFIG (JSON), not the runtime map."""
    from mlplane import program

    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"mlplane:platform": "{}", "mlplane:grafanaPassword": "x"}))
    assert {"mlplane:platform", "mlplane:grafanaPassword"} <= program.stack_config_keys()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"mlplane:teem": "x"}, "mlplane:teem: unknown config key in the 'mlplane' namespace (did you mean mlplane:team?)"),
        ({"mlplane:platform": {}}, "mlplane:platform: unknown config key in the 'mlplane' namespace"),
        ({"mlplane:githubToken": SECURE}, "mlplane:githubToken: unknown config key"),
    ],
)
def test_team_stacks_hold_only_the_keys_a_team_reads(project, extra, expected):
    stack(project, "team-fraud", {"mlplane:team": {"name": "fraud", "platform_stack": "local"}, **extra})
    for command in (["validate"], ["render", "--out", "out"], ["plan"]):
        result = mlplane(project, command[0], "--stack", "team-fraud", *command[1:])
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert expected in result.stderr
    assert not (project / "out").exists()


def test_the_team_stack_program_rejects_unknown_keys(project, monkeypatch):
    import pulumi

    from mlplane import program
    from mlplane.tooling.render import capture

    team = {"name": "fraud", "platform_stack": "local"}
    stack(project, "team-fraud", {"mlplane:team": team})
    monkeypatch.chdir(project)
    with pytest.raises(pulumi.RunError) as caught:
        capture(program.main, stack="team-fraud", config={"mlplane:team": json.dumps(team), "mlplane:plaform": "x"})
    assert "mlplane:plaform: unknown config key in the 'mlplane' namespace (did you mean mlplane:platform?)" in str(caught.value)
    assert caught.value.recorded == []


# --------------------------------------------------------------------------------------------
# 5. A stack without a platform object
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("", "has no platform object"),
        ("# nothing yet\n", "has no platform object"),
        ("config: {}\n", "has no platform object"),
        ("config:\n  aws:region: eu-west-1\n", "has no platform object"),
        ("config:\n  mlplane:platform:\n", "holds an empty platform object (null)"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "render", "plan"])
def test_a_stack_without_a_platform_object_says_how_to_start(project, text, what, command):
    stack(project, "dev", None, text=text)
    result = mlplane(project, command, "--stack", "dev")
    assert result.returncode == 2, result.stdout
    assert f"error: mlplane:platform: stacks/Pulumi.dev.yaml {what}; add `mlplane:platform: {{}}` under `config:`" in result.stderr
    assert not (project / "out").exists()


def test_an_explicit_empty_platform_object_asks_for_every_default(project):
    stack(project, "dev", None, text="config:\n  mlplane:platform: {}\n")
    assert mlplane(project, "validate", "--stack", "dev").returncode == 0
    stack(project, "json", None, text="config:\n  mlplane:platform: '{}'\n")
    assert mlplane(project, "validate", "--stack", "json").returncode == 0


def test_an_empty_config_file_says_how_to_start(project):
    (project / "empty.yaml").write_text("")
    result = mlplane(project, "validate", "--config", "empty.yaml")
    assert result.returncode == 2
    assert "error: --config: empty.yaml is empty: write `{}` in it to ask for every default" in result.stderr
    (project / "empty.yaml").write_text("{}\n")
    assert mlplane(project, "validate", "--config", "empty.yaml").returncode == 0


def test_the_stack_program_refuses_a_stack_without_a_platform_object():
    import pulumi

    from mlplane import program
    from mlplane.tooling.render import capture

    with pytest.raises(pulumi.RunError) as caught:
        capture(program.main, config={"aws:region": "x"})
    assert "mlplane:platform: the stack has no platform object: add `mlplane:platform: {}`" in str(caught.value)
    assert caught.value.recorded == []


def test_the_repository_and_template_stacks_still_validate():
    for path in [ROOT / "stacks" / "Pulumi.local.yaml", ROOT / "templates" / "team" / "stacks" / "Pulumi.local.yaml"]:
        values = yaml.safe_load(path.read_text())["config"]
        assert set(values) == {"mlplane:platform"}, path
    from mlplane.config import parse_platform

    for template in ("platform-local", "team"):
        document = yaml.safe_load((ROOT / "templates" / template / "Pulumi.yaml").read_text())
        keys = set(document["template"]["config"])
        assert keys <= {"mlplane:platform", "mlplane:team"}, template
        if "mlplane:platform" in keys:
            parse_platform(json.loads(document["template"]["config"]["mlplane:platform"]["default"]))


# --------------------------------------------------------------------------------------------
# 6. Team name collisions, from the command line
# --------------------------------------------------------------------------------------------


def test_a_team_named_after_another_teams_serving_namespace_is_refused(project):
    created = mlplane(project, "team", "create", "x", "--platform-stack", "local", "--config-only")
    assert created.returncode == 0, created.stderr
    clash = mlplane(project, "team", "create", "x-serving", "--platform-stack", "local", "--config-only")
    assert clash.returncode == 2
    assert "mlplane:team.name: must not end in '-serving': the serving namespace of team 'x' is '<platform>-team-x-serving'" in clash.stderr
    assert not (project / "stacks" / "Pulumi.team-x-serving.yaml").exists()


def test_a_hand_written_team_file_that_collides_is_refused_by_validate(project):
    stack(project, "team-x-serving", {"mlplane:team": {"name": "x-serving", "platform_stack": "local"}})
    result = mlplane(project, "validate", "--stack", "team-x-serving")
    assert result.returncode == 2
    assert "mlplane:team.name: must not end in '-serving'" in result.stderr


# --------------------------------------------------------------------------------------------
# 7. Secrets in plain text
# --------------------------------------------------------------------------------------------


def test_a_secret_typed_in_plain_text_is_not_reported_as_missing(project):
    stack(project, "dev", {**EXTERNAL_DB, "mlplane:dbPassword": "hunter2"})
    for command in ("validate", "render", "plan"):
        result = mlplane(project, command, "--stack", "dev")
        assert result.returncode == 2, (command, result.stdout)
        assert "is not set" not in result.stderr
        assert (
            "error: mlplane:platform.database.external.password_key: secret config key 'dbPassword' is set in plain "
            "text in stacks/Pulumi.dev.yaml, not as a secret: set it encrypted with "
            "`pulumi config set --secret mlplane:dbPassword <value> --stack dev`"
        ) in result.stderr
    stack(project, "missing", EXTERNAL_DB)
    assert "secret config key 'dbPassword' is not set" in mlplane(project, "validate", "--stack", "missing").stderr


def test_a_secret_of_another_namespace_does_not_stand_in_for_an_mlplane_secret(project):
    stack(project, "dev", {**EXTERNAL_DB, "aws:dbPassword": SECURE})
    result = mlplane(project, "validate", "--stack", "dev")
    assert result.returncode == 2
    assert "secret config key 'dbPassword' is not set" in result.stderr


def test_a_team_secret_in_plain_text_is_named(project):
    team = {"name": "fraud", "platform_stack": "local", "network": {"allow_internet_https": True},
            "ci_runners": {"github_config_url": "https://github.com/acme/models", "github_token_key": "githubToken"}}
    runners = {"github_config_url": "https://github.com/acme/models", "github_token_key": "platformToken"}
    stack(project, "local", {"mlplane:platform": {**PLATFORM["mlplane:platform"], "ci_runners": runners}, "mlplane:platformToken": SECURE})
    stack(project, "team-fraud", {"mlplane:team": team, "mlplane:githubToken": "ghp_plain"})
    result = mlplane(project, "validate", "--stack", "team-fraud")
    assert result.returncode == 2, result.stdout
    assert "mlplane:team.ci_runners.github_token_key: secret config key 'githubToken' is set in plain text" in result.stderr
    stack(project, "team-fraud", {"mlplane:team": team, "mlplane:githubToken": SECURE})
    result = mlplane(project, "validate", "--stack", "team-fraud")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("key", ["aws:secretKey", "aws:accessKey", "gcp:credentials", "azure-native:clientSecret"])
def test_validate_flags_plain_provider_credentials_like_plan(project, key):
    stack(project, "dev", {**PLATFORM, key: "AKIA-plain", "aws:region": "eu-west-1"})
    result = mlplane(project, "validate", "--stack", "dev")
    assert result.returncode == 2
    assert f"error: stack config key '{key}' looks like a secret but is stored in plain text: pulumi config set --secret {key}" in result.stderr
    plan = mlplane(project, "plan", "--stack", "dev")
    assert plan.returncode == 1 and key in plan.stdout  # the same policy, enforced by plan
    stack(project, "dev", {**PLATFORM, key: SECURE})
    assert mlplane(project, "validate", "--stack", "dev").returncode == 0
    stack(project, "team-fraud", {"mlplane:team": {"name": "fraud", "platform_stack": "local"}, key: "plain"})
    team = mlplane(project, "validate", "--stack", "team-fraud")
    assert team.returncode == 2 and f"stack config key '{key}' looks like a secret" in team.stderr


# --------------------------------------------------------------------------------------------
# 8. Messages that mislead
# --------------------------------------------------------------------------------------------


def test_an_unquoted_kubernetes_version_in_a_stack_file_validates(project):
    text = "config:\n  mlplane:platform:\n    cluster:\n      kind:\n        kubernetes_version: 1.35\n"
    stack(project, "dev", None, text=text)
    assert mlplane(project, "validate", "--stack", "dev").returncode == 0
    stack(project, "old", None, text=text.replace("1.35", "1.30"))
    result = mlplane(project, "validate", "--stack", "old")
    assert result.returncode == 2
    assert "YAML read an unquoted number here (1.3)" in result.stderr and "write the version in quotes" in result.stderr


@pytest.mark.parametrize(
    "args",
    [["team", "list"], ["team", "create", "fraud", "--platform-stack", "local"], ["team", "preview", "fraud"],
     ["team", "destroy", "fraud", "--yes"]],
)
def test_commands_outside_a_project_do_not_suggest_flags_they_do_not_take(tmp_path, args):
    (tmp_path / "no-pulumi").mkdir()
    result = mlplane(tmp_path, *args)
    assert result.returncode == 2
    assert "--stack" not in result.stderr and "--config" not in result.stderr, result.stderr
    assert "no Pulumi.yaml found" in result.stderr and "run this command inside an mlplane project" in result.stderr


def test_commands_with_stack_outside_a_project_name_their_flags(tmp_path):
    (tmp_path / "no-pulumi").mkdir()
    result = mlplane(tmp_path, "validate", "--stack", "local")
    assert result.returncode == 2
    assert "error: --stack: no Pulumi.yaml found" in result.stderr and "--config FILE" in result.stderr


@pytest.mark.parametrize("command", [["preview", "fraud"], ["destroy", "fraud", "--yes"]])
def test_preview_and_destroy_failures_speak_for_themselves(project, command):
    stack(project, "team-fraud", {"mlplane:team": {"name": "fraud", "platform_stack": "local"}})
    result = mlplane(project, "team", *command)
    assert result.returncode == 1
    assert "the Pulumi CLI is not on PATH" in result.stderr
    assert "nothing was written" not in result.stderr and "--config-only" not in result.stderr
    assert ("nothing was previewed" if command[0] == "preview" else "nothing was changed") in result.stderr


def test_create_still_points_to_config_only(project):
    result = mlplane(project, "team", "create", "fraud", "--platform-stack", "local")
    assert result.returncode == 1
    assert "nothing was written or deployed" in result.stderr and "--config-only" in result.stderr


def test_team_list_does_not_truncate_names_when_piped(project, monkeypatch):
    long_name = "a-very-long-team-name-of-30-ch"
    assert len(long_name) == 30
    stack(project, f"team-{long_name}", {"mlplane:team": {"name": long_name, "platform_stack": "local"}})
    stack(project, "team-broken", {"mlplane:team": {"name": "broken", "platform_stack": "local", "quota": {"work": {"pods": 0}}}})
    piped = mlplane(project, "team", "list")
    assert piped.returncode == 0, piped.stderr
    assert long_name in piped.stdout and "…" not in piped.stdout
    assert "mlplane:team.quota.work.pods: Input should be greater than or equal to 1" in piped.stdout
    row = next(line for line in piped.stdout.splitlines() if long_name in line)
    assert "tracking, object_storage, registry, monitoring" in row  # one line per team

    from mlplane.cli import app

    monkeypatch.chdir(project)
    result = CliRunner().invoke(app, ["team", "list"], env={"COLUMNS": "60", "PATH": str(project / "no-pulumi")}, catch_exceptions=False)
    assert result.exit_code == 0
    assert long_name in result.stdout and "…" not in result.stdout
