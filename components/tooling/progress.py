"""Progress lines on stderr for the steps a user waits on (rendering, schemas, policies).

One line per step, written when the step starts, so a command that takes seconds is never
silent. stdout is never touched: ``plan --json``, ``footprint --format json`` and ``schema`` stay
machine-readable. Progress is shown only when stderr is a terminal; ``mlplane --quiet`` turns it
off, and the ``MLPLANE_PROGRESS`` environment variable overrides the terminal check
(``1``: always, ``0``: never), for CI logs and for the tests.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Iterator

#: Environment variable forcing progress on (``1``) or off (``0``), whatever stderr is.
ENV = "MLPLANE_PROGRESS"

_quiet = False


def set_quiet(quiet: bool) -> None:
    """``mlplane --quiet``: no progress lines for the rest of the process."""
    global _quiet
    _quiet = quiet


def enabled() -> bool:
    """Whether progress lines are written: not quiet, and forced on or stderr is a terminal."""
    if _quiet:
        return False
    forced = os.environ.get(ENV, "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return True
    if forced in ("0", "false", "no", "off"):
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stderr
        return False


def note(message: str) -> None:
    """One progress line on stderr (when progress is enabled)."""
    if not enabled():
        return
    try:
        sys.stderr.write(f"{message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        # A closed or broken stderr must never fail the command it reports on.
        pass


@contextmanager
def step(message: str) -> Iterator[None]:
    """Announce a step (``rendering stack local…``) and, when it took over a second, its time."""
    note(f"{message}…")
    start = time.monotonic()
    yield
    elapsed = time.monotonic() - start
    if elapsed >= 1.0:
        note(f"  done in {elapsed:.1f} s")
