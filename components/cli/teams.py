"""`mlplane team ...` and the team side of `mlplane validate`: the command line of team environments.

A team is a stack ``team-<name>`` of the platform's own project, configured by
``stacks/Pulumi.team-<name>.yaml`` holding ``mlplane:team``. The work is done below the command line
(docs/architecture.md):

- mlplane.config.team_stacks reads and checks a team config (alone, against its platform's config,
  against the other team stacks of the same platform) before anything is written;
- this module writes the config file (``--config-only`` stops there, for review in a pull request);
- mlplane.tooling.offline renders a team offline: the platform stack is rendered offline first and its
  outputs stand in for the StackReference (generated secrets get deterministic stand-ins);
- mlplane.tooling.team_deployments deploys, previews, offboards and lists teams through the Pulumi
  Automation API, with the project's local file backend by default (``PULUMI_BACKEND_URL``
  selects another, e.g. S3).

Deploying commands check for the Pulumi CLI, the platform stack and the team's secrets first,
and fail with exit 1 before writing or creating anything.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
import yaml

from mlplane.cli.support import fail, out, plain_credentials
from mlplane.config import ConfigError
from mlplane.config.keys import OFFBOARDING_KEY, TEAM_CONFIG_KEY  # noqa: F401 (OFFBOARDING_KEY: tests)
from mlplane.tooling.offline import offline_team_run, platform_stand_in  # noqa: F401 (callers and tests use them from here)
from mlplane.config.stack_files import InputError, project_dir, read_stack_config, stack_file
from mlplane.config.team import SERVING_SUFFIX, TEAM_NAME_MAX, TeamConfig, parse_team
from mlplane.tooling.team_deployments import (  # noqa: F401 (callers and tests use them from here)
    DeployError,
    _offboarding_config,
    deploy,
    destroy,
    failure_reason,
    list_teams,
    preview,
    require_platform_deployed,
    require_pulumi,
    workspace_env,
)
from mlplane.config.team_stacks import (  # noqa: F401 (callers and tests use them from here)
    CheckedTeam,
    check_team,
    checked_stack,
    parse_team_stack,
    stack_name,
)

EXIT_FAILED = 1
#: Width of `team list` when stdout is not a terminal: wide enough that no cell is ever cut.
LIST_WIDTH = 1000


# --------------------------------------------------------------------------------------------
# Config files
# --------------------------------------------------------------------------------------------


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
# `mlplane validate --stack team-NAME`
# --------------------------------------------------------------------------------------------


def validate_stack(stack: str) -> list[str]:
    """`mlplane validate --stack team-NAME`: the lines to print (problems raise InputError)."""
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


def _existing(name: str, *, parse_only: bool = False) -> tuple[TeamConfig, Path, Path]:
    """The team of ``name``'s stack file, validated on its platform (``parse_only``: the file's
    own schema only, so that a team whose file no longer fits its platform can still leave)."""
    project = project_dir()
    path = stack_file(stack_name(name), project)
    if not path.exists():
        raise InputError(f"team '{name}': no stacks/{path.name}; create it with `mlplane team create {name} --platform-stack STACK`")
    if parse_only:
        return parse_team_stack(stack_name(name), read_stack_config(stack_name(name))), project, path
    checked, _ = checked_stack(stack_name(name))
    return checked.team, project, path


@team_app.command("preview")
def preview_cmd(name: NameArg) -> None:
    """Show what deploying the team's config would change (pulumi preview through the Automation API)."""
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
    team, project, path = _existing(name, parse_only=True)

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
    from mlplane.tooling.reference import generate

    text = generate(TeamConfig, TEAM_CONFIG_KEY, REFERENCE_INTRO)
    return text.replace("# Config reference", "# Team config reference", 1).replace(
        "from components/config/", "from components/config/team.py", 1
    )
