"""The ``mlplane`` command line: validate, schema, render, footprint (and the commands added by
later modules). Bad input exits 2 with one line per problem and never a traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from . import interrupts, progress
from .cli_support import EXIT_INVALID, err, fail, out, plain_credentials, writing_to  # noqa: F401 (err, EXIT_INVALID: callers)
from .config import ConfigError, PlatformConfig, memory_bytes, parse_platform  # noqa: F401 (ConfigError, parse_platform: callers)
from .config_keys import TEAM_CONFIG_KEY
from .offline import offline_run, render_team_stack
from .render_output import check_directory, write_render  # noqa: F401 (write_render: used by tests and callers)

# Re-exported: the reading of stack files lives in mlplane.stack_files (below the stack program,
# which reads team stack files too); callers and tests import these names from here.
from .stack_files import (  # noqa: F401
    InputError,
    Source,
    load_platform,
    load_source,
    project_dir,
    read_stack_config,
    secret_problems,
    secure_keys,
    stack_file,
)

app = typer.Typer(
    name="mlplane",
    help="A complete MLOps platform from one typed config.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _global_options(
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="No progress lines on stderr (they are shown only on a terminal anyway)."),
    ] = False,
) -> None:
    """A complete MLOps platform from one typed config."""
    progress.set_quiet(quiet)

StackOpt = Annotated[Optional[str], typer.Option("--stack", help="Stack name: reads stacks/Pulumi.<NAME>.yaml.")]
ConfigOpt = Annotated[
    Optional[Path], typer.Option("--config", help="YAML file holding the platform object (what sits under mlplane:platform).")
]


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


@app.command()
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
    from . import ci_runners

    found = []
    if not platform.ci_runners.enabled:
        found.append(ci_runners.how_to_enable(platform.ci_runners))
    if platform.lifecycle.throwaway:
        found.append("lifecycle.throwaway is true: stateful resources are not protected and are deleted by `pulumi destroy`")
    return found


@app.command()
def schema() -> None:
    """Print the JSON Schema of the platform config (for editors and docs)."""
    sys.stdout.write(json.dumps(PlatformConfig.model_json_schema(by_alias=True), indent=2) + "\n")


@app.command("render")
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


@app.command()
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
    from . import footprint as fp

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
    from .config import cpu_millicores

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


@app.command("plan")
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
    from . import plan as plan_mod

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


REFERENCE_INTRO = (
    "Every key of the `mlplane:platform` stack config object, with its type, default and meaning. "
    "Unknown keys are rejected. Keys ending in `_key` name a secret Pulumi config key "
    "(`pulumi config set --secret mlplane:<key> <value>`), never the secret itself."
)


def reference_documents() -> dict[str, str]:
    """Generated docs: path relative to the project -> content."""
    from .reference import generate

    documents = {
        "docs/config-reference.md": generate(PlatformConfig, "mlplane:platform", REFERENCE_INTRO),
        "docs/footprint.md": footprint_document(),
    }
    documents.update(extra_reference_documents())
    return documents


FOOTPRINT_INTRO = """# Footprint

<!-- Generated by `mlplane docs` from `mlplane footprint --stack local`. Do not edit by hand. -->

The budget for the default local platform is **1.5 CPUs and 2.5 GiB of memory requested in
total**, so it runs on an 8 GB laptop and on a CI runner (for comparison: Kubeflow's 22
components request 4.4 CPUs and 12 GiB; deployKF asks for 10 GB; Flyte's sandbox 8 GB).
Every workload, including those installed by Helm charts, has requests and limits set by
mlplane. Chart workloads are counted from the values mlplane passes to the chart (their
templates cannot be rendered offline). Not counted: short-lived setup Jobs, kind's own
control plane and CNI (about 0.85 CPU and 0.3 GiB requested by kube-system on a kind node),
models you add to `serving.models`, and busy CI runners (see `ci_runners.runner_resources`).
CI enforces the budget: `mlplane footprint --stack local --budget-cpu 1.5 --budget-memory 2.5Gi`.

"""


def footprint_document() -> str:
    import dataclasses

    from . import footprint as fp

    source, platform = load_platform("local", None)
    per = fp.measure(offline_run(source, platform), platform)
    # The optional features, measured on the same stack with each turned on.
    raw = fp.with_features(source.raw)
    featured = offline_run(dataclasses.replace(source, raw=raw), parse_platform(raw, root=source.root))
    return FOOTPRINT_INTRO + fp.markdown(per, "stack local") + "\n\n" + fp.features_markdown(fp.feature_usage(featured)) + "\n"


def extra_reference_documents() -> dict[str, str]:
    """Hook for references generated by other modules (teams, policies)."""
    from .policies import reference_markdown

    return {"docs/policies.md": reference_markdown(), "docs/team-config-reference.md": teams.reference_markdown()}


@app.command()
def docs(
    check: Annotated[bool, typer.Option("--check", help="Exit 1 when a generated doc is stale instead of writing it.")] = False,
) -> None:
    """Regenerate the docs generated from code (config reference, ...). A maintainer's command:
    it runs only in the mlplane source tree and never writes into a project's docs/."""
    from .reference import source_tree_problem

    root = project_dir()
    problem = source_tree_problem(root)
    if problem:
        raise InputError(problem)
    stale = []
    for relative, content in reference_documents().items():
        path = root / relative
        current = path.read_text() if path.exists() else None
        if current == content:
            continue
        if check:
            stale.append(f"{relative} is stale: run `mlplane docs` and commit the result")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            out.print(f"wrote {relative}", markup=False)
    if stale:
        fail(stale, code=1)


from . import teams  # noqa: E402  (the `team` sub-app)

app.add_typer(teams.team_app, name="team")

from .images import images_app  # noqa: E402  (`mlplane images check|lock`)

app.add_typer(images_app, name="images")

from .policypack_cli import policy_pack_app  # noqa: E402

app.add_typer(policy_pack_app, name="policy-pack")

from .verify_cli import verify_command  # noqa: E402  (`mlplane verify`, docs/verify.md)

app.command("verify")(verify_command)


def main() -> None:
    """Console entry point: input errors exit 2 with one line per problem, without a traceback;
    Ctrl-C prints one line and exits 130 (components/interrupts.py)."""
    interrupts.install()
    try:
        app()
    except InputError as error:
        fail(error.problems)
    except KeyboardInterrupt:
        interrupts.report()
        raise SystemExit(interrupts.EXIT_INTERRUPTED) from None


if __name__ == "__main__":
    main()
