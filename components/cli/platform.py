"""Commands on a platform stack, all offline: ``validate``, ``schema``, ``render``, ``footprint``, ``plan``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from mlplane.cli import teams
from mlplane.cli.support import fail, out, plain_credentials, writing_to
from mlplane.config import PlatformConfig, memory_bytes
from mlplane.config.keys import TEAM_CONFIG_KEY
from mlplane.config.stack_files import InputError, load_platform, read_stack_config
from mlplane.tooling.offline import offline_run, render_team_stack
from mlplane.tooling.render_output import check_directory, write_render


StackOpt = Annotated[Optional[str], typer.Option("--stack", help="Stack name: reads stacks/Pulumi.<NAME>.yaml.")]
ConfigOpt = Annotated[
    Optional[Path], typer.Option("--config", help="YAML file holding the platform object (what sits under mlplane:platform).")
]


def validate(stack: StackOpt = None, config: ConfigOpt = None) -> None:
    """Validate a platform or team config: exit 0 when valid, 2 with one line per problem."""
    if stack is not None and TEAM_CONFIG_KEY in read_stack_config(stack):
        for line in teams.validate_stack(stack):
            out.print(line, markup=False)
        return
    # Plain-text credentials of any namespace are reported with the config's own problems.
    plain = plain_credentials(stack, read_stack_config(stack)) if stack is not None else []
    try:
        _, platform = load_platform(stack, config)
    except InputError as error:
        raise InputError(*error.problems, *plain) from None
    if plain:
        raise InputError(*plain)
    out.print("valid: mlplane platform config", markup=False)
    for note in notes(platform):
        out.print(f"note: {note}", markup=False)


def notes(platform: PlatformConfig) -> list[str]:
    """Things worth knowing about a valid config (components that are off, and how to turn them on)."""
    from mlplane.config.ci_runners import how_to_enable

    found = []
    if not platform.ci_runners.enabled:
        found.append(how_to_enable(platform.ci_runners))
    if platform.lifecycle.throwaway:
        found.append("lifecycle.throwaway is true: stateful resources are not protected and are deleted by `pulumi destroy`")
    return found


def schema() -> None:
    """Print the JSON Schema of the platform config (for editors and docs)."""
    sys.stdout.write(json.dumps(PlatformConfig.model_json_schema(by_alias=True), indent=2) + "\n")


def render_cmd(
    stack: StackOpt = None,
    config: ConfigOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write manifests/, resources.json, outputs.json.")] = Path("out"),
    adopt_dir: Annotated[
        bool,
        typer.Option(
            "--adopt-dir",
            help="Render into a directory that also holds files mlplane did not write; they are left untouched.",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace files of an earlier render that were changed since (the changes are lost)."),
    ] = False,
) -> None:
    """Run the stack program offline and write every object and resource it would create.

    A team stack renders its platform stack offline first; the platform's outputs (generated
    secrets as stand-ins) answer the team's StackReference. The render replaces only what an
    earlier render wrote (listed in DIR/.mlplane-render.json), all at once, and never a file
    mlplane did not write (docs/render-output.md).
    """
    # The directory is checked before the slow render, and again when the render is written.
    writing_to(out_dir, lambda: check_directory(out_dir, adopt=adopt_dir, force=force))
    if stack is not None and TEAM_CONFIG_KEY in read_stack_config(stack):
        result = render_team_stack(stack)
    else:
        source, platform = load_platform(stack, config)
        result = offline_run(source, platform)
    written = writing_to(out_dir, lambda: write_render(result, out_dir, adopt=adopt_dir, force=force))
    out.print(
        f"rendered {len(result.resources)} resources and {len(written.manifests)} Kubernetes objects to {out_dir} "
        "(generated secrets are stand-ins; the manifests still contain them: do not publish)",
        markup=False,
    )
    if written.removed:
        out.print(f"removed {len(written.removed)} manifests of the earlier render that it no longer produces", markup=False)
    if written.others_left:
        out.print(f"files in {out_dir} that mlplane did not write were left untouched", markup=False)


def footprint(
    stack: StackOpt = None,
    config: ConfigOpt = None,
    output: Annotated[str, typer.Option("--format", help="table, json or markdown.")] = "table",
    budget_cpu: Annotated[Optional[str], typer.Option(help="Fail (exit 1) when total CPU requests exceed this, e.g. 1.5")] = None,
    budget_memory: Annotated[Optional[str], typer.Option(help="Fail (exit 1) when total memory requests exceed this, e.g. 2.5Gi")] = None,
) -> None:
    """CPU, memory and storage requested per component and in total (Helm chart workloads included)."""
    if output not in ("table", "json", "markdown"):
        raise InputError(f"--format: must be one of table, json, markdown (given: {output!r})")
    budgets = _parse_budgets(budget_cpu, budget_memory)
    source, platform = load_platform(stack, config)
    from mlplane.tooling import footprint as fp

    per = fp.measure(offline_run(source, platform), platform)
    total = fp.total(per)
    if output == "json":
        document = {"components": {k: v.as_json() for k, v in sorted(per.items())}, "total": total.as_json()}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    elif output == "markdown":
        sys.stdout.write(fp.markdown(per, f"stack {stack}" if stack else str(config)) + "\n")
    else:
        from rich.table import Table

        table = Table(title="mlplane footprint (requests / limits; HPAs at their minimum)")
        for column in ("component", "CPU req", "CPU lim", "mem req", "mem lim", "storage", "workloads"):
            table.add_column(column, overflow="fold")
        for name, usage in sorted(per.items()):
            row = usage.as_json()
            table.add_row(name, row["cpu_request"], row["cpu_limit"], row["memory_request"], row["memory_limit"], row["storage"], "\n".join(row["workloads"]))
        row = total.as_json()
        table.add_row("total", row["cpu_request"], row["cpu_limit"], row["memory_request"], row["memory_limit"], row["storage"], "", style="bold")
        Console(highlight=False, width=max(out.width, 140)).print(table)
    over = []
    if budgets[0] is not None and total.cpu_request_m > budgets[0]:
        over.append(f"CPU requests {total.cpu_request_m}m exceed the budget {budget_cpu}")
    if budgets[1] is not None and total.memory_request > budgets[1]:
        over.append(f"memory requests {total.memory_request // 2**20}Mi exceed the budget {budget_memory}")
    if over:
        fail(over, code=1)


def _parse_budgets(cpu: str | None, memory: str | None) -> tuple[int | None, int | None]:
    from mlplane.config import cpu_millicores

    problems = []
    parsed: list[int | None] = [None, None]
    for index, (flag, value, parse) in enumerate((("--budget-cpu", cpu, cpu_millicores), ("--budget-memory", memory, memory_bytes))):
        if value is None:
            continue
        try:
            parsed[index] = parse(value)
        except ValueError as error:
            problems.append(f"{flag}: {error} (given: {value!r})")
    if problems:
        raise InputError(*problems)
    return parsed[0], parsed[1]


def plan_cmd(
    stack: StackOpt = None,
    config: ConfigOpt = None,
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Write the report to this file (default: stdout).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Write JSON instead of Markdown.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace --out even when it is not an earlier mlplane plan report.")] = False,
) -> None:
    """Offline plan for a pull request: render, strict schemas, policies, footprint, as a Markdown report.

    Platform and team stacks. Exit 0 when clean (advisory findings allowed), 1 on a mandatory policy
    violation or a schema finding, 2 on invalid input (nothing written). Needs no credentials, cluster
    or Pulumi CLI.
    """
    from mlplane.tooling import plan as plan_mod

    if out_file is not None and not force:
        # Checked before the slow render: a file that is not an earlier report is the user's.
        problem = plan_mod.foreign_file(out_file)
        if problem:
            raise InputError(problem)
    result = plan_mod.build(stack, config)
    text = writing_to(out_file, lambda: plan_mod.write(result, out_file, as_json))
    if out_file is None:
        sys.stdout.write(text)
    else:
        out.print(f"{plan_mod.summary_line(result)} (report: {out_file})", markup=False)
    if result.exit_code:
        raise typer.Exit(result.exit_code)
