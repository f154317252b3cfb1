"""The ``mlplane verify`` command (registered in components/cli/); the checks live in verify.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from mlplane.tooling.verify import Row, VerifyInputError, read_outputs_file, stack_outputs, target_from_outputs, verify

EXIT_FAILED = 1
EXIT_INVALID = 2


def _inputs(values: list[str]) -> dict[str, bytes]:
    inputs: dict[str, bytes] = {}
    for value in values:
        model, sep, file = value.partition("=")
        if not sep or not model or not file:
            raise VerifyInputError(f"--input {value!r}: expected MODEL=FILE (a JSON request body for /invocations)")
        try:
            inputs[model] = Path(file).read_bytes()
        except OSError as error:
            raise VerifyInputError(f"--input {value!r}: cannot read {file} ({error.strerror or error})") from None
    return inputs


def _print(rows: list[Row], as_json: bool, title: str) -> None:
    if as_json:
        passed = all(r.status != "fail" for r in rows)
        sys.stdout.write(json.dumps({"target": title, "passed": passed, "checks": [r.as_json() for r in rows]}, indent=2) + "\n")
        return
    console = Console(highlight=False, soft_wrap=not sys.stdout.isatty())
    if console.is_terminal:
        table = Table(title=f"mlplane verify: {title}")
        for column in ("check", "result", "detail", "likely cause"):
            table.add_column(column, overflow="fold")
        style = {"pass": "green", "fail": "bold red", "skip": "yellow"}
        for row in rows:
            table.add_row(row.check, f"[{style[row.status]}]{row.status}[/]", row.detail, row.cause)
        console.print(table)
    else:
        for row in rows:
            cause = f" -- {row.cause}" if row.cause else ""
            sys.stdout.write(f"{row.status.upper():4}  {row.check}: {row.detail}{cause}\n")
    failed = [r.check for r in rows if r.status == "fail"]
    sys.stdout.write(f"{len(failed)} check(s) failed: {', '.join(failed)}\n" if failed else "all checks passed\n")


def verify_command(
    stack: Annotated[Optional[str], typer.Option("--stack", help="Deployed stack to verify (a platform or team stack); its outputs are read with the project's backend.")] = None,
    outputs: Annotated[Optional[Path], typer.Option("--outputs", help="JSON file of stack outputs (`pulumi stack output --json --show-secrets`) instead of --stack.")] = None,
    platform_outputs: Annotated[Optional[Path], typer.Option("--platform-outputs", help="With --outputs of a team stack: the platform stack's outputs file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Write the results as JSON (for CI).")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for each request.", min=0.5, max=600)] = 30.0,
    metric_wait: Annotated[float, typer.Option("--metric-wait", help="Seconds to wait for a model's request metric to move (scrape interval and rule evaluation).", min=0, max=1800)] = 90.0,
    input_files: Annotated[Optional[list[str]], typer.Option("--input", help="MODEL=FILE: request body for a model's /invocations (default: the model version's serving_input_example.json).")] = None,
) -> None:
    """Prove a deployed platform (or team) works end to end: MLflow with auth, a run whose artifact
    lands in the bucket, the model registry, an image push, each model's inference, Prometheus
    targets and metrics, Grafana. Exit 0 all passed, 1 a check failed, 2 bad input."""
    from mlplane.cli.support import fail
    from mlplane.config.stack_files import project_dir

    try:
        if (stack is None) == (outputs is None):
            raise VerifyInputError("give exactly one of --stack NAME or --outputs FILE")
        if platform_outputs is not None and outputs is None:
            raise VerifyInputError("--platform-outputs goes with --outputs (with --stack the platform stack is read itself)")
        inputs = _inputs(input_files or [])
        if outputs is not None:
            data = read_outputs_file(outputs, "--outputs")
            platform = read_outputs_file(platform_outputs, "--platform-outputs") if platform_outputs else None
            title = str(outputs)
        else:
            assert stack is not None
            project = project_dir()
            data = stack_outputs(project, stack)
            platform = None
            team = data.get("team")
            if isinstance(team, dict) and team.get("platformStack"):
                platform = stack_outputs(project, str(team["platformStack"]))
            title = f"stack {stack}"
        target = target_from_outputs(data, platform, where=title)
    except VerifyInputError as error:
        fail(error.problems)
    rows = verify(target, timeout=timeout, metric_wait=metric_wait, inputs=inputs)
    _print(rows, as_json, f"{target.kind} {target.name}")
    if any(r.status == "fail" for r in rows):
        raise SystemExit(EXIT_FAILED)
