"""`mlplane team destroy`'s steps and their order (mlplane.tooling.team_deployments.destroy), with
the engine calls recorded: the team stack's destroy, the platform's revoke update (a copy of its
config with mlplane:offboardTeams), stack rm and the file's removal, the platform's un-admit
update. A failed revoke stops before anything is forgotten, so running the command again finishes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from mlplane.config.team import parse_team
from mlplane.tooling import team_deployments as deployments


class Recorder:
    def __init__(self, fail_revoke: bool = False):
        self.steps: list[tuple] = []
        self.fail_revoke = fail_revoke

    def stack(self, team, project, create):
        recorder = self
        return SimpleNamespace(
            destroy=lambda **_: recorder.steps.append(("destroy",)),
            workspace=SimpleNamespace(remove_stack=lambda name: recorder.steps.append(("stack rm", name))),
        )

    def update_platform(self, team, project, on_output, why, config_file=None):
        if config_file is not None:
            config = yaml.safe_load(Path(config_file).read_text())["config"]
            self.steps.append(("platform up", config.get("mlplane:offboardTeams")))
            if self.fail_revoke:
                raise deployments.DeployError("pulumi up of platform stack 'local' failed: boom")
        else:
            self.steps.append(("platform up", None))


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.local.yaml").write_text("config:\n  mlplane:platform: {}\nencryptionsalt: v1:x\n")
    team_file = tmp_path / "stacks" / "Pulumi.team-fraud.yaml"
    team_file.write_text("config:\n  mlplane:team: {name: fraud, platform_stack: local}\n")
    monkeypatch.setattr(deployments, "deployed_stacks", lambda project: {"team-fraud": SimpleNamespace(resource_count=12)})
    monkeypatch.setattr(deployments, "_run", lambda what, action: action())
    return tmp_path, team_file


@pytest.mark.parametrize(("keep", "mode"), [(False, "delete-data"), (True, "keep-data")])
def test_destroy_then_revoke_then_forget_then_unadmit(project, monkeypatch, keep, mode):
    path, team_file = project
    recorder = Recorder()
    monkeypatch.setattr(deployments, "_stack", recorder.stack)
    monkeypatch.setattr(deployments, "update_platform", recorder.update_platform)
    platform_file = (path / "stacks" / "Pulumi.local.yaml").read_text()
    deployments.destroy(parse_team({"name": "fraud", "platform_stack": "local"}), path, team_file, keep, print)
    assert recorder.steps == [
        ("destroy",), ("platform up", {"fraud": mode}), ("stack rm", "team-fraud"), ("platform up", None),
    ]
    assert not team_file.exists()
    # The platform's own file is never changed: the revoke deploys a copy.
    assert (path / "stacks" / "Pulumi.local.yaml").read_text() == platform_file


def test_a_failed_revoke_forgets_nothing_so_the_command_can_be_run_again(project, monkeypatch):
    path, team_file = project
    recorder = Recorder(fail_revoke=True)
    monkeypatch.setattr(deployments, "_stack", recorder.stack)
    monkeypatch.setattr(deployments, "update_platform", recorder.update_platform)
    with pytest.raises(deployments.DeployError, match="boom"):
        deployments.destroy(parse_team({"name": "fraud", "platform_stack": "local"}), path, team_file, False, print)
    assert recorder.steps == [("destroy",), ("platform up", {"fraud": "delete-data"})]
    assert team_file.exists()


def test_a_team_without_a_stack_is_still_revoked_and_forgotten(project, monkeypatch):
    """Admitted but never deployed, or a run stopped after `stack rm`: no stack to destroy or
    remove, but the revoke and the un-admit still run and the file goes."""
    path, team_file = project
    recorder = Recorder()
    monkeypatch.setattr(deployments, "deployed_stacks", lambda project: {})
    monkeypatch.setattr(deployments, "_stack", lambda *a, **k: pytest.fail("no stack to select"))
    monkeypatch.setattr(deployments, "update_platform", recorder.update_platform)
    deployments.destroy(parse_team({"name": "fraud", "platform_stack": "local"}), path, team_file, True, print)
    assert recorder.steps == [("platform up", {"fraud": "keep-data"}), ("platform up", None)]
    assert not team_file.exists()
