"""Team deployments through the Pulumi Automation API: deploy, preview, offboard and list teams.

The project's local file backend is used by default (``PULUMI_BACKEND_URL`` selects another, e.g.
S3). Deploying commands check for the Pulumi CLI, the platform stack and the team's secrets first,
and fail with :class:`DeployError` (exit 1 in the command line, mlplane.cli.teams) before writing or
creating anything. `mlplane verify --stack` reads stack outputs through the same workspace.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from mlplane.tooling import render as render_mod
from mlplane.config.keys import OFFBOARDING_KEY

#: mlplane.program.OFFBOARDING_ENV (the program is not imported here: it loads the Pulumi SDK).
OFFBOARDING_ENV = "MLPLANE_OFFBOARDING_RUN"
from mlplane.config.stack_files import InputError, read_stack_config
from mlplane.config.team import TeamConfig
from mlplane.config.team_stacks import parse_team_stack, team_stacks


class DeployError(Exception):
    """A deploying command cannot run or failed: reported as one line per problem, exit 1."""

    def __init__(self, *problems: str):
        self.problems = list(problems)
        super().__init__("\n".join(problems))


def backend_url(project: Path) -> str:
    """PULUMI_BACKEND_URL, or the project's own file backend (``file://<project>/.state``)."""
    return os.environ.get("PULUMI_BACKEND_URL") or f"file://{project}/.state"


#: What was (not) done when a deploying command stops early, and what works without Pulumi,
#: per command: each command says its own words (only `create` writes a config file).
STOPPED = {
    "create": (
        "nothing was written or deployed",
        "`mlplane team create NAME --platform-stack STACK --config-only` writes the config without "
        "deploying, and `mlplane render --stack team-NAME` renders it offline",
    ),
    "preview": (
        "nothing was previewed",
        "`mlplane plan --stack team-NAME` and `mlplane render --stack team-NAME` show the team's "
        "objects offline",
    ),
    "destroy": ("nothing was changed", "the team's config file and stack are untouched"),
}


def require_pulumi(command: str = "create") -> str:
    """The Pulumi CLI on PATH, or a DeployError saying what to do (``command`` stopped early)."""
    found = shutil.which("pulumi")
    if found is None:
        stopped, instead = STOPPED[command]
        raise DeployError(
            "the Pulumi CLI is not on PATH: install it (https://www.pulumi.com/docs/install/) and "
            f"run the command again; {stopped}. {instead[0].upper()}{instead[1:]}"
        )
    return found


def workspace_env(project: Path) -> dict[str, str]:
    backend = backend_url(project)
    if backend.startswith("file://"):
        Path(backend[len("file://") :]).mkdir(parents=True, exist_ok=True)
    from mlplane.tooling.secrets_provider import SecretsProviderError, passphrase_env

    try:
        secrets = passphrase_env(backend, sorted((project / "stacks").glob("Pulumi.*.yaml")))
    except SecretsProviderError as error:
        raise DeployError(f"{error}; nothing was written or deployed") from None
    return {"PULUMI_BACKEND_URL": backend, **secrets, "PULUMI_SKIP_UPDATE_CHECK": "true"}


def _workspace(project: Path) -> Any:
    from pulumi import automation as auto

    return auto.LocalWorkspace(work_dir=str(project), env_vars=workspace_env(project))


def deployed_stacks(project: Path) -> dict[str, Any]:
    """Stack name -> StackSummary of every stack of the project in the backend."""
    return {summary.name: summary for summary in _workspace(project).list_stacks()}


def require_platform_deployed(team: TeamConfig, project: Path, command: str = "create") -> None:
    local = team.platform_stack.rsplit("/", 1)[-1]
    if "/" not in team.platform_stack and local not in deployed_stacks(project):
        raise DeployError(
            f"platform stack '{local}' is not deployed in {backend_url(project)}: deploy it first "
            f"(`pulumi up --stack {local}`, or scripts/up.sh); {STOPPED[command][0]}"
        )


def _stack(team: TeamConfig, project: Path, create: bool) -> Any:
    from pulumi import automation as auto

    options = auto.LocalWorkspaceOptions(work_dir=str(project), env_vars=workspace_env(project))
    if create:
        return auto.create_or_select_stack(stack_name=team.stack, work_dir=str(project), opts=options)
    try:
        return auto.select_stack(stack_name=team.stack, work_dir=str(project), opts=options)
    except auto.StackNotFoundError:
        raise DeployError(
            f"team '{team.name}' has no stack in {backend_url(project)}: deploy it with "
            f"`mlplane team create {team.name}`"
        ) from None


def _run(step: str, action: Callable[[], Any]) -> Any:
    from pulumi import automation as auto

    try:
        return action()
    except auto.CommandError as error:
        raise DeployError(f"{step} failed: {failure_reason(str(error))}") from None


def failure_reason(text: str) -> str:
    """The engine's own error lines from a failed command's output (the last three), or its last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = list(dict.fromkeys(line for line in lines if line.startswith("error:")))
    if errors:
        return " | ".join(errors[-3:])
    return lines[-1] if lines else "no output"


def _platform_stack(team: TeamConfig, project: Path) -> Any:
    from pulumi import automation as auto

    local = team.platform_stack.rsplit("/", 1)[-1]
    options = auto.LocalWorkspaceOptions(work_dir=str(project), env_vars=workspace_env(project))
    return auto.select_stack(stack_name=local, work_dir=str(project), opts=options)


def update_platform(
    team: TeamConfig, project: Path, on_output: Callable[[str], Any], why: str, config_file: Path | None = None
) -> None:
    """``pulumi up`` of the team's platform stack, which admits exactly the team stack files of the
    project naming it (mlplane.services.team_access): run after a team file is written or removed.
    ``config_file``: a copy of the platform stack's config to deploy instead of its file."""
    if "/" in team.platform_stack:
        raise DeployError(
            f"platform stack '{team.platform_stack}' is not a stack of this project's backend: run "
            f"`pulumi up` on it ({why}), then run this command again"
        )
    on_output(f"updating platform stack '{team.platform_stack}' ({why})")
    stack = _platform_stack(team, project)
    extra = {} if config_file is None else {"config_file": str(config_file)}
    if config_file is not None:
        # The program honours mlplane:offboardTeams only in this run (mlplane.program.offboarding_teams).
        stack.workspace.env_vars[OFFBOARDING_ENV] = "1"
    _run(
        f"pulumi up of platform stack '{team.platform_stack}'",
        lambda: stack.up(on_output=on_output, color="never", **extra),
    )


def admit(team: TeamConfig, project: Path, on_output: Callable[[str], Any]) -> None:
    """Make sure the platform stack has admitted the team (its namespaces and identity exist) with
    the grants its file asks for now (services, bucket: the platform's output ``teamGrants``)."""
    why = f"it creates team '{team.name}''s namespaces and provisioning identity"
    if "/" not in team.platform_stack:
        outputs = _platform_stack(team, project).outputs()
        admitted = outputs.get("admittedTeams")
        if admitted is not None and team.name in (admitted.value or []):
            grants = outputs.get("teamGrants")
            if grants is not None and (grants.value or {}).get(team.name) == team.grant_summary():
                return
            why = f"team '{team.name}''s file asks for other grants than the platform made (services, bucket)"
    update_platform(team, project, on_output, why)


def deploy(team: TeamConfig, project: Path, on_output: Callable[[str], Any]) -> dict[str, Any]:
    """``pulumi up`` of the team stack, after the platform stack admitted it; returns its outputs
    (secret ones masked)."""
    admit(team, project, on_output)
    stack = _stack(team, project, create=True)
    result = _run("pulumi up", lambda: stack.up(on_output=on_output, color="never"))
    return {key: render_mod.SECRET_MASK if value.secret else value.value for key, value in result.outputs.items()}


def preview(team: TeamConfig, project: Path, on_output: Callable[[str], Any]) -> Any:
    stack = _stack(team, project, create=True)
    return _run("pulumi preview", lambda: stack.preview(on_output=on_output, color="never"))


@contextmanager
def _offboarding_config(path: Path, team: str, mode: str) -> Iterator[Path]:
    """A copy of the platform stack's config file (encryption salt included) with ``team`` in its
    offboarding key (``mlplane:offboardTeams``); the file itself is never changed."""
    document = yaml.safe_load(path.read_text()) or {}
    config = document.setdefault("config", {})
    offboarding = config.get(OFFBOARDING_KEY)
    config[OFFBOARDING_KEY] = {**(offboarding if isinstance(offboarding, dict) else {}), team: mode}
    with tempfile.TemporaryDirectory(prefix="mlplane-offboard-") as directory:
        copy = Path(directory) / path.name
        copy.write_text(yaml.safe_dump(document, sort_keys=False))
        yield copy


def destroy(team: TeamConfig, project: Path, config_path: Path, keep_data: bool, on_output: Callable[[str], Any]) -> None:
    """Destroy the team stack (its objects in its own namespaces), offboard it (the platform
    stack revokes its credentials and deletes its data unless kept), remove the stack and its
    config, then update the platform stack, which deletes the team's namespaces, identity and grants.

    Every step may be re-run: until its file is removed, the team stays admitted, so a run stopped
    half-way is finished by running the command again."""
    summary = deployed_stacks(project).get(team.stack)
    # No stack: a team admitted but never deployed, or a run stopped after `stack rm`.
    stack = _stack(team, project, create=False) if summary is not None else None
    if stack is not None and summary.resource_count:
        _run("pulumi destroy", lambda: stack.destroy(on_output=on_output, color="never"))
    mode = "keep-data" if keep_data else "delete-data"
    if "/" not in team.platform_stack:
        platform_file = project / "stacks" / f"Pulumi.{team.platform_stack}.yaml"
        with _offboarding_config(platform_file, team.name, mode) as offboarding:
            update_platform(
                team, project, on_output, f"it revokes team '{team.name}''s credentials ({mode})", offboarding
            )
    else:
        on_output(
            f"warning: platform stack '{team.platform_stack}' is not a stack of this project's backend: "
            f"team '{team.name}''s S3 identity and MLflow account stay until its platform is updated"
        )
    if stack is not None:
        _run("pulumi stack rm", lambda: stack.workspace.remove_stack(team.stack))
    config_path.unlink(missing_ok=True)
    # The team's namespaces and identity are the platform stack's: without the file it drops them.
    # The team itself is gone by now (its file too), so a failure here is reported, not fatal:
    # the namespaces are empty and the identity can only reach them until the platform's next up.
    try:
        update_platform(team, project, on_output, f"it removes team '{team.name}''s namespaces and provisioning identity")
    except DeployError as error:
        on_output(
            f"warning: team '{team.name}' is destroyed, but its namespaces and provisioning identity remain until "
            f"`pulumi up --stack {team.platform_stack}` succeeds: {error}"
        )


# --------------------------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TeamRow:
    """One line of `mlplane team list`."""

    stack: str
    team: TeamConfig | None
    state: str
    problem: str | None = None

    def as_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"stack": self.stack, "state": self.state}
        if self.problem:
            row["problem"] = self.problem
        if self.team is not None:
            row |= {
                "name": self.team.name,
                "platformStack": self.team.platform_stack,
                "services": list(self.team.services),
                "quota": self.team.quota.model_dump(mode="json"),
                "models": [m.name for m in self.team.serving.models],
                "runners": self.team.ci_runners.enabled,
            }
        return row


def list_teams(project: Path) -> list[TeamRow]:
    """Every team stack file with its state in the backend ('unknown' without a Pulumi CLI)."""
    deployed: dict[str, Any] | None = None
    if shutil.which("pulumi") is not None:
        deployed = deployed_stacks(project)
    rows = []
    for stack in team_stacks(project):
        state = "unknown (no Pulumi CLI)"
        if deployed is not None:
            summary = deployed.get(stack)
            state = "not deployed" if summary is None else _state(summary)
        try:
            rows.append(TeamRow(stack, parse_team_stack(stack, read_stack_config(stack)), state))
        except InputError as error:
            rows.append(TeamRow(stack, None, state, "; ".join(error.problems)))
    return rows


def _state(summary: Any) -> str:
    if summary.update_in_progress:
        return "updating"
    count = summary.resource_count if summary.resource_count is not None else "?"
    when = summary.last_update.strftime("%Y-%m-%d %H:%M") if summary.last_update else "never"
    return f"{count} resources, last update {when}"
