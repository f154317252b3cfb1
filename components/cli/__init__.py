"""The ``mlplane`` command line, one module per command group; this module assembles them.

- ``platform``: ``validate``, ``schema``, ``render``, ``footprint``, ``plan`` (offline, on a
  platform stack); ``docs``: ``mlplane docs``; ``teams``: ``mlplane team ...``; ``images``:
  ``mlplane images check|lock``; ``policy_pack``: ``mlplane policy-pack ...``; ``verify``:
  ``mlplane verify``; ``state``: ``mlplane state bootstrap|check``; ``support``: the consoles, ``fail`` and helpers they share.

Bad input exits 2 with one line per problem and never a traceback.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mlplane.cli import docs as docs_cmd
from mlplane.cli import platform as platform_cmds
from mlplane.cli import teams
from mlplane.cli.images import images_app
from mlplane.cli.policy_pack import policy_pack_app
from mlplane.cli.state import state_app
from mlplane.cli.support import EXIT_INVALID, err, fail, out  # noqa: F401 (err, out, EXIT_INVALID: callers)
from mlplane.cli.verify import verify_command
from mlplane.config import ConfigError, parse_platform  # noqa: F401 (callers and tests)
from mlplane.tooling import interrupts, progress
from mlplane.tooling.offline import offline_run  # noqa: F401 (callers and tests)
from mlplane.tooling.render_output import write_render  # noqa: F401 (used by tests and callers)
from mlplane.tooling.render_records import DuplicateUrnError

# Re-exported: the reading of stack files lives in mlplane.config.stack_files (below the stack program,
# which reads team stack files too); callers and tests import these names from here.
from mlplane.config.stack_files import (  # noqa: F401
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
from mlplane.cli.docs import extra_reference_documents, footprint_document, reference_documents  # noqa: F401

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


# The commands, in the order `mlplane --help` lists them.
app.command()(platform_cmds.validate)
app.command()(platform_cmds.schema)
app.command("render")(platform_cmds.render_cmd)
app.command()(platform_cmds.footprint)
app.command("plan")(platform_cmds.plan_cmd)
app.command()(docs_cmd.docs)
app.add_typer(teams.team_app, name="team")
app.add_typer(images_app, name="images")
app.add_typer(policy_pack_app, name="policy-pack")
app.command("verify")(verify_command)
app.add_typer(state_app, name="state")


def main() -> None:
    """Console entry point: input errors exit 2 with one line per problem, without a traceback;
    Ctrl-C prints one line and exits 130 (components/tooling/interrupts.py)."""
    interrupts.install()
    try:
        app()
    except InputError as error:
        fail(error.problems)
    except DuplicateUrnError as error:
        # A program defect the engine would stop `pulumi up` on: exit 1 with its message.
        fail([f"{error} (the stack program registered it twice; `pulumi up` would stop here too)"], code=1)
    except KeyboardInterrupt:
        interrupts.report()
        raise SystemExit(interrupts.EXIT_INTERRUPTED) from None


if __name__ == "__main__":
    main()
