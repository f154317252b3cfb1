"""``mlplane policy-pack``: locate the mlplane policy pack shipped inside the installed package.

The pack (``mlplane/policypack``: ``PulumiPolicy.yaml`` and ``__main__.py``) is package data, so a
project that installed mlplane from a release or a wheel runs the same guardrails under the engine
as an mlplane checkout does::

    pulumi preview --policy-pack "$(mlplane policy-pack path)"

The pack runs with the first ``python3`` on ``PATH`` (its ``PulumiPolicy.yaml`` names no
virtualenv), which must be the environment mlplane is installed in: activate the project's
virtualenv or put its ``bin`` directory first on ``PATH``.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import typer

policy_pack_app = typer.Typer(
    help="The mlplane policy pack for `pulumi preview/up --policy-pack`.",
    no_args_is_help=True,
    add_completion=False,
)

#: The files the engine needs to run the pack.
PACK_FILES = ("PulumiPolicy.yaml", "__main__.py")


def pack_dir() -> Path:
    """The policy pack directory inside the installed mlplane package (or the checkout it runs from)."""
    folder = importlib.resources.files("mlplane") / "policypack"
    path = Path(str(folder))
    missing = [name for name in PACK_FILES if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the mlplane installation at {path.parent} has no policy pack ({', '.join(missing)} missing): "
            "reinstall mlplane from a release or a wheel built with `python -m build`"
        )
    return path


@policy_pack_app.command("path")
def path_command() -> None:
    """Print the directory of the policy pack, for `--policy-pack "$(mlplane policy-pack path)"`."""
    from mlplane.cli.support import err

    try:
        directory = pack_dir()
    except FileNotFoundError as error:
        err.print(f"error: {error}", markup=False)
        raise typer.Exit(1) from None
    typer.echo(str(directory))
