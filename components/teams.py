"""Team environments from the command line: config files, checks, offline renders, deployments.

A team is a stack ``team-<name>`` of the platform's own project, configured by
``stacks/Pulumi.team-<name>.yaml`` holding ``mlplane:team``. This module

- builds and checks a team config (alone, against its platform's config, against the other team
  stacks of the same platform) before anything is written;
- writes the config file (``--config-only`` stops there, for review in a pull request);
- renders a team offline: the platform stack is rendered offline first and its outputs stand in
  for the StackReference (generated secrets get deterministic stand-ins);
- deploys, previews, offboards and lists teams through the Pulumi Automation API, with the
  project's local file backend by default (``PULUMI_BACKEND_URL`` selects another, e.g. S3).

Deploying commands check for the Pulumi CLI, the platform stack and the team's secrets first,
and fail with exit 1 before writing or creating anything.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Optional

import typer
import yaml

from . import render as render_mod
from .config import ConfigError, PlatformConfig
from .team_config import (
    SERVING_SUFFIX,
    STACK_PREFIX,
    TEAM_KEY,
    TEAM_NAME_MAX,
    TeamConfig,
    check_collisions,
    check_platform,
    parse_team,
)

TEAM_CONFIG_KEY = f"mlplane:{TEAM_KEY}"
#: Set (to 'delete-data' or 'keep-data') only in the config of the offboarding run before destroy.
OFFBOARDING_KEY = "mlplane:offboarding"
OFFBOARDING_MODES = ("delete-data", "keep-data")
#: Only for state on this machine (a file backend): see mlplane.secrets_provider.
DEFAULT_PASSPHRASE = "mlplane-local"
EXIT_FAILED = 1
#: Width of `team list` when stdout is not a terminal: wide enough that no cell is ever cut.
LIST_WIDTH = 1000


class DeployError(Exception):
    """A deploying command cannot run or failed: reported as one line per problem, exit 1."""

    def __init__(self, *problems: str):
        self.problems = list(problems)
        super().__init__("\n".join(problems))


# --------------------------------------------------------------------------------------------
# Config files
# --------------------------------------------------------------------------------------------


def stack_name(team: str) -> str:
    return f"{STACK_PREFIX}{team}"


def team_stacks(project: Path) -> dict[str, Path]:
    """Every team stack config file of the project: stack name -> path."""
    return {
        path.name[len("Pulumi.") : -len(".yaml")]: path
        for path in sorted((project / "stacks").glob(f"Pulumi.{STACK_PREFIX}*.yaml"))
    }


def is_team_stack(stack_config: dict[str, Any]) -> bool:
    return TEAM_CONFIG_KEY in stack_config


def parse_team_stack(stack: str, stack_config: dict[str, Any]) -> TeamConfig:
    """The validated team of a stack config; its name must match the stack name."""
    from .cli import InputError

    try:
        team = parse_team(stack_config.get(TEAM_CONFIG_KEY), root=TEAM_CONFIG_KEY)
    except ConfigError as error:
        raise InputError(*error.problems) from None
    if team.stack != stack:
        raise InputError(
            f"{TEAM_CONFIG_KEY}.name: stack '{stack}' holds team '{team.name}'; a team's stack is "
            f"'{team.stack}' (rename the file or the team)"
        )
    return team


def platform_of(team: TeamConfig) -> tuple[Any, PlatformConfig]:
    """The platform stack's config (stacks/Pulumi.<stack>.yaml of this project), validated."""
    from .cli import InputError, load_platform

    local = team.platform_stack.rsplit("/", 1)[-1]
    try:
        return load_platform(local, None)
    except InputError as error:
        raise InputError(
            *(f"{TEAM_CONFIG_KEY}.platform_stack: platform stack '{local}': {line}" for line in error.problems)
        ) from None


def other_teams(team: TeamConfig, project: Path) -> dict[str, TeamConfig]:
    """The other team stacks on the same platform stack (files that do not validate are skipped:
    `mlplane validate --stack <them>` reports them)."""
    from .cli import InputError, read_stack_config

    found = {}
    for stack in team_stacks(project):
        if stack == team.stack:
            continue
        try:
            other = parse_team_stack(stack, read_stack_config(stack))
        except InputError:
            continue
        if other.platform_stack == team.platform_stack:
            found[stack] = other
    return found


def admitted_teams(platform: PlatformConfig, platform_stack: str, project: Path) -> list[Any]:
    """The teams the platform stack ``platform_stack`` admits: every team stack config of the
    project naming it whose config is valid on ``platform`` (the others are reported by
    `mlplane validate --stack <them>`). Each gets its namespaces and a provisioning identity
    (mlplane.team_access); a team stack without one cannot deploy."""
    from .cli import InputError, read_stack_config
    from .team_access import TeamGrant

    grants = []
    for stack in team_stacks(project):
        try:
            team = parse_team_stack(stack, read_stack_config(stack))
        except InputError:
            continue
        if team.platform_stack.rsplit("/", 1)[-1] != platform_stack or check_platform(team, platform, TEAM_CONFIG_KEY):
            continue
        work, serving = team.namespaces(platform.name)
        grants.append(TeamGrant(name=team.name, work_namespace=work, serving_namespace=serving))
    return grants


@dataclass(frozen=True)
class CheckedTeam:
    """A team config that passed every check, with the platform it runs on."""

    team: TeamConfig
    platform_source: Any
    platform: PlatformConfig
    #: Secret config keys the team names that its stack does not hold yet.
    missing_secrets: list[str]


def known_keys(team: TeamConfig) -> set[str]:
    """The ``mlplane`` keys a team stack may hold: the team object, the offboarding switch and the
    secret keys its ``*_key`` fields name."""
    return {TEAM_CONFIG_KEY, OFFBOARDING_KEY, *(f"mlplane:{key}" for _, key in secret_fields(team))}


def stack_key_problems(team: TeamConfig, keys: Any) -> list[str]:
    """Keys of the ``mlplane`` namespace a team stack holds that mlplane does not read."""
    from .cli import OBJECT_KEYS
    from .config import unknown_stack_keys

    return unknown_stack_keys(keys, known_keys(team), TEAM_CONFIG_KEY, OBJECT_KEYS, team.stack)


def check_team(
    team: TeamConfig, project: Path, secure_keys: frozenset[str] = frozenset(), stack_config: dict[str, Any] | None = None
) -> CheckedTeam:
    """Every check before anything is written or created: the stack's keys, the platform, the
    other teams. ``stack_config`` is the team stack's config file when it exists."""
    from .cli import InputError, secret_problems

    problems = stack_key_problems(team, stack_config or {})
    platform_source, platform = platform_of(team)
    problems += check_platform(team, platform, TEAM_CONFIG_KEY)
    problems += check_collisions(team, other_teams(team, project), TEAM_CONFIG_KEY, platform.name)
    if stack_config is not None:
        # A secret key set in plain text is an error; one not set yet is a note (see validate_stack).
        problems += [
            line
            for line in secret_problems(secret_fields(team), stack_config, team.stack)
            if "in plain text" in line
        ]
    if problems:
        raise InputError(*problems)
    missing = [key for _, key in secret_fields(team) if key not in secure_keys]
    return CheckedTeam(team, platform_source, platform, missing)


def team_document(team: TeamConfig) -> dict[str, Any]:
    """The stack config file of a team: only what differs from the defaults, for review."""
    body = team.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    ordered = {"name": team.name, "platform_stack": team.platform_stack}
    ordered.update({k: v for k, v in body.items() if k not in ordered})
    return {"config": {TEAM_CONFIG_KEY: ordered}}


def write_team_config(team: TeamConfig, path: Path) -> None:
    header = (
        f"# Team '{team.name}' on platform stack '{team.platform_stack}', written by `mlplane team create`.\n"
        "# Every key: docs/team-config-reference.md. Check it offline with\n"
        f"# `mlplane validate --stack {team.stack}` and `mlplane render --stack {team.stack} --out out`.\n"
    )
    path.write_text(header + yaml.safe_dump(team_document(team), sort_keys=False, width=100))


# --------------------------------------------------------------------------------------------
# Offline render
# --------------------------------------------------------------------------------------------


def stand_in_outputs(outputs: dict[str, Any]) -> render_mod.StackOutputs:
    """A platform's offline outputs as StackReference outputs: secret ones get stand-ins."""
    values = {}
    secret_names = []
    for key, value in outputs.items():
        if value == render_mod.SECRET_MASK:
            secret_names.append(key)
            value = render_mod.stand_in_secret(f"output:{key}")
        values[key] = value
    return render_mod.StackOutputs(outputs=values, secret_names=tuple(sorted(secret_names)))


def platform_stand_in(checked: CheckedTeam) -> render_mod.StackOutputs:
    """The platform stack's outputs from its own offline render (see :func:`stand_in_outputs`).

    The platform is rendered admitting the team (mlplane.team_access). A platform in cluster mode
    'render' has no kubeconfig; in the other modes the team's kubeconfig is a secret output and
    gets a stand-in like every generated secret.
    """
    from .cli import offline_run
    from .team_access import TeamGrant

    team = checked.team
    work, serving = team.namespaces(checked.platform.name)
    grant = TeamGrant(name=team.name, work_namespace=work, serving_namespace=serving)
    outputs = dict(offline_run(checked.platform_source, checked.platform, teams=[grant]).outputs)
    return admitting(stand_in_outputs(outputs), checked)


def admitting(outputs: render_mod.StackOutputs, checked: CheckedTeam) -> render_mod.StackOutputs:
    """The platform's outputs with the team admitted: its scoped kubeconfig (a secret output)
    stands in like every generated secret (none in cluster mode 'render')."""
    if checked.platform.cluster.mode == "render":
        return outputs
    current = outputs.outputs.get("teamKubeconfigs")
    kubeconfigs = dict(current) if isinstance(current, dict) else {}
    kubeconfigs.setdefault(checked.team.name, render_mod.stand_in_secret(f"output:teamKubeconfigs.{checked.team.name}"))
    values = {**outputs.outputs, "teamKubeconfigs": kubeconfigs}
    return render_mod.StackOutputs(outputs=values, secret_names=tuple(sorted({*outputs.secret_names, "teamKubeconfigs"})))


def offline_team_run(
    checked: CheckedTeam,
    source_stack: str,
    platform_outputs: render_mod.StackOutputs | None = None,
    project: str = "mlplane",
    offboarding: str | None = None,
) -> render_mod.Capture:
    """Run the team stack program offline against the platform's (rendered) outputs.

    ``offboarding`` ('delete-data' or 'keep-data') renders the offboarding run instead.
    """
    from .team import stack_reference_name, team_program

    team = checked.team
    outputs = admitting(platform_outputs, checked) if platform_outputs else platform_stand_in(checked)
    secrets = {f"mlplane:{key}": render_mod.stand_in_secret(f"config:{key}") for key in _secret_keys(team)}
    config = {TEAM_CONFIG_KEY: json.dumps(team.model_dump(mode="json", by_alias=True)), **secrets}
    reference = stack_reference_name(team.platform_stack, project)
    return render_mod.capture(
        lambda: team_program(
            team, checked.platform, offboarding=offboarding is not None, delete_data=offboarding != "keep-data"
        ),
        project=project,
        stack=source_stack,
        config=config,
        secret_keys=list(secrets),
        stack_references={reference: outputs},
    )


def secret_fields(team: TeamConfig) -> list[tuple[str, str]]:
    """Every secret config key the team names, as (field path, key)."""
    found = []
    if team.ci_runners.github_token_key:
        found.append((f"{TEAM_CONFIG_KEY}.ci_runners.github_token_key", team.ci_runners.github_token_key))
    if team.ci_runners.github_app is not None:
        found.append((f"{TEAM_CONFIG_KEY}.ci_runners.github_app.private_key_key", team.ci_runners.github_app.private_key_key))
    return found


def _secret_keys(team: TeamConfig) -> list[str]:
    return [key for _, key in secret_fields(team)]


# --------------------------------------------------------------------------------------------
# The stack program of a team stack (run by the engine through mlplane.program.main)
# --------------------------------------------------------------------------------------------


def run_team_stack() -> None:
    """Validate the team stack's config and build it; any problem stops the run before a resource."""
    import pulumi

    from .cli import InputError, project_dir
    from .program import stack_config_keys
    from .team import team_program

    stack_config = pulumi.Config("mlplane")
    stack = pulumi.get_stack()
    try:
        team = parse_team_stack(stack, {TEAM_CONFIG_KEY: stack_config.get_object(TEAM_KEY)})
        problems = stack_key_problems(team, stack_config_keys())
        _, platform = platform_of(team)
        problems += check_platform(team, platform, TEAM_CONFIG_KEY)
        problems += check_collisions(team, other_teams(team, project_dir()), TEAM_CONFIG_KEY, platform.name)
        mode = stack_config.get(OFFBOARDING_KEY.split(":", 1)[1])
        if mode is not None and mode not in OFFBOARDING_MODES:
            problems.append(f"{OFFBOARDING_KEY}: must be one of {', '.join(OFFBOARDING_MODES)} (given: {mode!r})")
        if problems:
            raise InputError(*problems)
    except InputError as error:
        raise pulumi.RunError("invalid mlplane team config:\n  " + "\n  ".join(error.problems)) from None
    team_program(team, platform, offboarding=mode is not None, delete_data=mode != "keep-data")


# --------------------------------------------------------------------------------------------
# Deployments (Pulumi Automation API)
# --------------------------------------------------------------------------------------------


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
    from .secrets_provider import SecretsProviderError, passphrase_env

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


def update_platform(team: TeamConfig, project: Path, on_output: Callable[[str], Any], why: str) -> None:
    """``pulumi up`` of the team's platform stack, which admits exactly the team stack files of the
    project naming it (mlplane.team_access): run after a team file is written or removed."""
    if "/" in team.platform_stack:
        raise DeployError(
            f"platform stack '{team.platform_stack}' is not a stack of this project's backend: run "
            f"`pulumi up` on it ({why}), then run this command again"
        )
    on_output(f"updating platform stack '{team.platform_stack}' ({why})")
    stack = _platform_stack(team, project)
    _run(f"pulumi up of platform stack '{team.platform_stack}'", lambda: stack.up(on_output=on_output, color="never"))


def admit(team: TeamConfig, project: Path, on_output: Callable[[str], Any]) -> None:
    """Make sure the platform stack has admitted the team (its namespaces and identity exist)."""
    if "/" not in team.platform_stack:
        admitted = _platform_stack(team, project).outputs().get("teamKubeconfigs")
        if admitted is not None and team.name in (admitted.value or {}):
            return
    update_platform(team, project, on_output, f"it creates team '{team.name}''s namespaces and provisioning identity")


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
def _offboarding_config(path: Path, mode: str) -> Iterator[Path]:
    """A copy of the team's config file (encryption salt included) with the offboarding key set."""
    document = yaml.safe_load(path.read_text()) or {}
    document.setdefault("config", {})[OFFBOARDING_KEY] = mode
    with tempfile.TemporaryDirectory(prefix="mlplane-offboard-") as directory:
        copy = Path(directory) / path.name
        copy.write_text(yaml.safe_dump(document, sort_keys=False))
        yield copy


def destroy(team: TeamConfig, project: Path, config_path: Path, keep_data: bool, on_output: Callable[[str], Any]) -> None:
    """Offboard (revoke credentials, delete data unless kept), destroy, remove the stack and its
    config, then update the platform stack, which deletes the team's namespaces and identity."""
    stack = _stack(team, project, create=False)
    summary = deployed_stacks(project).get(team.stack)
    if summary is not None and summary.resource_count:
        # A stack already destroyed (a run stopped before `stack rm`) is not offboarded again.
        mode = "keep-data" if keep_data else "delete-data"
        with _offboarding_config(config_path, mode) as offboarding:
            _run(
                "offboarding (revoking the team's credentials)",
                lambda: stack.up(on_output=on_output, color="never", config_file=str(offboarding)),
            )
        _run("pulumi destroy", lambda: stack.destroy(on_output=on_output, color="never"))
    _run("pulumi stack rm", lambda: stack.workspace.remove_stack(team.stack))
    config_path.unlink(missing_ok=True)
    # The team's namespaces and identity are the platform stack's: without the file it drops them.
    update_platform(team, project, on_output, f"it removes team '{team.name}''s namespaces and provisioning identity")


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
    from .cli import InputError, read_stack_config

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


# --------------------------------------------------------------------------------------------
# Commands behind `mlplane validate/render --stack team-NAME`
# --------------------------------------------------------------------------------------------


def checked_stack(stack: str) -> tuple[CheckedTeam, dict[str, Any]]:
    """The checked team of a team stack config file, and the file's config."""
    from .cli import project_dir, read_stack_config

    from .cli import secure_keys

    values = read_stack_config(stack)
    checked = check_team(parse_team_stack(stack, values), project_dir(), secure_keys(values), values)
    return checked, values


def validate_stack(stack: str) -> list[str]:
    """`mlplane validate --stack team-NAME`: the lines to print (problems raise InputError)."""
    from .cli import InputError, plain_credentials

    checked, values = checked_stack(stack)
    plain = plain_credentials(stack, values)
    if plain:
        raise InputError(*plain)
    team = checked.team
    lines = [f"valid: mlplane team config (team '{team.name}' on platform stack '{team.platform_stack}')"]
    lines += [
        f"note: secret config key '{key}' is not set yet: `pulumi config set --secret mlplane:{key} "
        f"<value> --stack {team.stack}` before deploying"
        for key in checked.missing_secrets
    ]
    return lines


def render_stack(stack: str) -> render_mod.Capture:
    """`mlplane render --stack team-NAME`: the platform rendered first, then the team against it."""
    checked, _ = checked_stack(stack)
    return offline_team_run(checked, stack)


# --------------------------------------------------------------------------------------------
# `mlplane team ...`
# --------------------------------------------------------------------------------------------

team_app = typer.Typer(
    name="team",
    help="Team environments: an isolated slice of the platform per team, one stack each.",
    no_args_is_help=True,
)

NameArg = Annotated[
    str,
    typer.Argument(
        help=f"Team name (a DNS label of at most {TEAM_NAME_MAX} characters, not ending in '{SERVING_SUFFIX}'); its stack is team-NAME."
    ),
]


def _exit_on_deploy_error(action: Callable[[], None]) -> None:
    from .cli import fail

    try:
        action()
    except DeployError as error:
        fail(error.problems, code=EXIT_FAILED)


def options_document(
    name: str,
    platform_stack: str,
    *,
    requests_cpu: str | None,
    requests_memory: str | None,
    limits_cpu: str | None,
    limits_memory: str | None,
    gpus: int | None,
    pods: int | None,
    storage: str | None,
    services: list[str] | None,
    users: list[str] | None,
    groups: list[str] | None,
    allow_internet_https: bool,
) -> dict[str, Any]:
    """The raw team object `team create` options describe (validated like a config file)."""
    quota = {
        key: value
        for key, value in (
            ("requests_cpu", requests_cpu), ("requests_memory", requests_memory), ("limits_cpu", limits_cpu),
            ("limits_memory", limits_memory), ("gpus", gpus), ("pods", pods), ("storage", storage),
        )
        if value is not None
    }
    raw: dict[str, Any] = {"name": name, "platform_stack": platform_stack}
    if quota:
        raw["quota"] = {"work": quota}
    if services is not None:
        raw["services"] = services
    if users or groups:
        raw["members"] = {"users": users or [], "groups": groups or []}
    if allow_internet_https:
        raw["network"] = {"allow_internet_https": True}
    return raw


@team_app.command("create")
def create_cmd(
    name: NameArg,
    platform_stack: Annotated[Optional[str], typer.Option("--platform-stack", help="The platform stack the team runs on, e.g. local.")] = None,
    requests_cpu: Annotated[Optional[str], typer.Option(help="Work namespace quota: CPU requests, e.g. 4.")] = None,
    requests_memory: Annotated[Optional[str], typer.Option(help="Work namespace quota: memory requests, e.g. 8Gi.")] = None,
    limits_cpu: Annotated[Optional[str], typer.Option(help="Work namespace quota: CPU limits, e.g. 8.")] = None,
    limits_memory: Annotated[Optional[str], typer.Option(help="Work namespace quota: memory limits, e.g. 16Gi.")] = None,
    gpus: Annotated[Optional[int], typer.Option(help="Work namespace quota: GPUs.")] = None,
    pods: Annotated[Optional[int], typer.Option(help="Work namespace quota: pods.")] = None,
    storage: Annotated[Optional[str], typer.Option(help="Work namespace quota: PVC storage, e.g. 50Gi.")] = None,
    service: Annotated[Optional[list[str]], typer.Option("--service", help="A platform service the team uses (repeat); default: all.")] = None,
    user: Annotated[Optional[list[str]], typer.Option("--user", help="A member's Kubernetes user name (repeat).")] = None,
    group: Annotated[Optional[list[str]], typer.Option("--group", help="A member group (repeat).")] = None,
    allow_internet_https: Annotated[bool, typer.Option("--allow-internet-https", help="Open HTTPS egress from the work namespace.")] = False,
    config_only: Annotated[bool, typer.Option("--config-only", help="Write stacks/Pulumi.team-NAME.yaml and stop (no Pulumi CLI needed).")] = False,
) -> None:
    """Write the team's stack config and deploy it (or deploy an existing, reviewed config file).

    Every check runs first (the config, its platform, the other teams, the Pulumi CLI and the
    platform stack when deploying); nothing is written or created when one fails.
    """
    from .cli import InputError, out, project_dir, stack_file

    project = project_dir()
    path = stack_file(stack_name(name), project)
    given = options_document(
        name, platform_stack or "", requests_cpu=requests_cpu, requests_memory=requests_memory, limits_cpu=limits_cpu,
        limits_memory=limits_memory, gpus=gpus, pods=pods, storage=storage, services=service, users=user,
        groups=group, allow_internet_https=allow_internet_https,
    )
    if path.exists():
        if config_only or set(given) - {"name", "platform_stack"}:
            raise InputError(
                f"{TEAM_CONFIG_KEY}.name: team '{name}' already exists ({path.relative_to(project)}); "
                f"edit that file, then `mlplane team create {name}` deploys it"
            )
        checked, values = checked_stack(stack_name(name))
        if platform_stack is not None and platform_stack != checked.team.platform_stack:
            raise InputError(
                f"--platform-stack: team '{name}' runs on '{checked.team.platform_stack}' ({path.relative_to(project)})"
            )
    else:
        if platform_stack is None:
            raise InputError(f"--platform-stack: required to create team '{name}' (e.g. --platform-stack local)")
        try:
            team = parse_team(given, root=TEAM_CONFIG_KEY)
        except ConfigError as error:
            raise InputError(*error.problems) from None
        checked = check_team(team, project)
    team = checked.team

    def run() -> None:
        if not config_only:
            require_pulumi()
            require_platform_deployed(team, project)
            if checked.missing_secrets and path.exists():
                raise DeployError(*(
                    f"secret config key '{key}' is not set: `pulumi config set --secret mlplane:{key} <value> "
                    f"--stack {team.stack}`, then run this command again" for key in checked.missing_secrets
                ))
        if not path.exists():
            write_team_config(team, path)
            out.print(f"wrote {path.relative_to(project)}", markup=False)
        if config_only or checked.missing_secrets:
            for key in checked.missing_secrets:
                out.print(f"note: set the secret before deploying: pulumi config set --secret mlplane:{key} <value> --stack {team.stack}", markup=False)
            out.print(f"review it, then `mlplane render --stack {team.stack} --out out` offline, or `mlplane team create {name}` to deploy", markup=False)
            return
        outputs = deploy(team, project, lambda line: out.print(line, markup=False))
        out.print(f"team '{name}' is deployed: {json.dumps(outputs.get('team', {}), sort_keys=True)}", markup=False)

    _exit_on_deploy_error(run)


def _existing(name: str) -> tuple[TeamConfig, Path, Path]:
    from .cli import InputError, project_dir, stack_file

    project = project_dir()
    path = stack_file(stack_name(name), project)
    if not path.exists():
        raise InputError(f"team '{name}': no stacks/{path.name}; create it with `mlplane team create {name} --platform-stack STACK`")
    checked, _ = checked_stack(stack_name(name))
    return checked.team, project, path


@team_app.command("preview")
def preview_cmd(name: NameArg) -> None:
    """Show what deploying the team's config would change (pulumi preview through the Automation API)."""
    from .cli import out

    team, project, _ = _existing(name)

    def run() -> None:
        require_pulumi("preview")
        require_platform_deployed(team, project, "preview")
        preview(team, project, lambda line: out.print(line, markup=False))

    _exit_on_deploy_error(run)


@team_app.command("destroy")
def destroy_cmd(
    name: NameArg,
    keep_data: Annotated[bool, typer.Option("--keep-data", help="Keep the team's bucket and MLflow workspace (credentials are revoked either way).")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Offboard a team: revoke its credentials, delete its data (unless --keep-data), destroy its
    stack, and remove the stack and its config file."""
    from .cli import out

    team, project, path = _existing(name)

    def run() -> None:
        require_pulumi("destroy")
        what = "its namespaces and everything in them" + ("" if keep_data else ", its bucket and its MLflow workspace")
        if not yes and not typer.confirm(f"Destroy team '{name}': {what}?"):
            raise DeployError("cancelled; nothing was changed")
        destroy(team, project, path, keep_data, lambda line: out.print(line, markup=False))
        out.print(f"team '{name}' is gone: stack {team.stack} and {path.relative_to(project)} removed", markup=False)

    _exit_on_deploy_error(run)


@team_app.command("list")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every team of this project: platform stack, quotas, services and deployment state."""
    from rich.table import Table

    from .cli import out, project_dir

    rows = list_teams(project_dir())
    if as_json:
        sys.stdout.write(json.dumps([row.as_json() for row in rows], indent=2) + "\n")
        return
    table = Table(title="mlplane teams")
    for column in ("team", "platform", "CPU req/lim", "memory req/lim", "GPUs", "pods", "storage", "services", "state"):
        # Wrapped, never cut with an ellipsis: a team name must be readable whole.
        table.add_column(column, overflow="fold")
    for row in rows:
        if row.team is None:
            table.add_row(row.stack, "", "", "", "", "", "", f"invalid: {row.problem}", row.state)
            continue
        work = row.team.quota.work
        table.add_row(
            row.team.name, row.team.platform_stack, f"{work.requests_cpu}/{work.limits_cpu}",
            f"{work.requests_memory}/{work.limits_memory}", str(work.gpus), str(work.pods), work.storage,
            ", ".join(row.team.services), row.state,
        )
    if out.is_terminal:
        out.print(table)
    else:
        # Piped or redirected: no terminal width to fit, so one line per team, nothing wrapped.
        from rich.console import Console

        Console(highlight=False, width=LIST_WIDTH, file=sys.stdout).print(table, crop=False, soft_wrap=False)


# --------------------------------------------------------------------------------------------
# Generated reference
# --------------------------------------------------------------------------------------------

REFERENCE_INTRO = (
    "Every key of the `mlplane:team` stack config object of a team stack "
    "(`stacks/Pulumi.team-<name>.yaml`), with its type, default and meaning. Unknown keys are "
    "rejected. Keys ending in `_key` name a secret config key of the team stack "
    "(`pulumi config set --secret mlplane:<key> <value> --stack team-<name>`). See "
    "[teams.md](teams.md) for what a team gets and what isolation it guarantees."
)


def reference_markdown() -> str:
    from .reference import generate

    text = generate(TeamConfig, TEAM_CONFIG_KEY, REFERENCE_INTRO)
    return text.replace("# Config reference", "# Team config reference", 1).replace(
        "from components/config.py", "from components/team_config.py", 1
    )
