"""What the command modules share (cli.py, teams.py, images.py, verify_cli.py, policypack_cli.py):
the consoles, exiting with one line per problem, unwritable outputs as bad input, and the
plain-text credential check that `mlplane validate` runs on platform and team stacks.

It sits at the bottom of the command-line layer so the command modules import it instead of
each other (docs/architecture.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, NoReturn, TypeVar

from rich.console import Console

from mlplane.tooling.render_output import OutputRefused
from mlplane.config.stack_files import InputError

T = TypeVar("T")
EXIT_INVALID = 2

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(problems: list[str], code: int = EXIT_INVALID) -> NoReturn:
    for line in problems:
        err.print(f"error: {line}", markup=False)
    raise SystemExit(code)


def writing_to(target: Path | None, write: Callable[[], T]) -> T:
    """Run ``write``; an unwritable ``--out`` is bad input (exit 2), not a traceback."""
    try:
        return write()
    except OutputRefused as error:
        raise InputError(*error.problems) from None
    except OSError as error:
        raise InputError(f"--out: cannot write {target}: {error.strerror or error}") from None


def plain_credentials(stack: str, values: dict[str, Any]) -> list[str]:
    """Config keys of any namespace (``aws:secretKey``...) that look secret but are stored in plain
    text: the policy `mlplane plan` enforces (no-plain-secret-config), reused as is."""
    from mlplane import policies

    view = policies.Stack(name=stack, config_secure=policies.config_secure_keys(values))
    return [f"{problem.message}: {problem.fix}" for problem in policies.check_plain_secret_config([], view)]
