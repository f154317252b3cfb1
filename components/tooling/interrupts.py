"""Ctrl-C for the command line: one line on stderr, exit 130, never a traceback.

``install()`` runs before the command line imports anything heavy (the Pulumi SDK, pydantic), so
an interrupt during start-up is handled like one during a command. The handler raises
``SystemExit(130)`` rather than ``KeyboardInterrupt``: ``finally`` blocks still run (a render
removes its staging directory), and neither click nor asyncio turns it into another message.
A second Ctrl-C while that clean-up runs ends the process at once.

``deferred()`` holds SIGINT and SIGTERM back for the few renames that replace one complete
render by another (components/tooling/render_output.py); a signal received meanwhile is delivered
when they are done.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

#: The exit status of a command ended by Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130
MESSAGE = b"interrupted\n"

_received = 0


def _on_interrupt(signum: int, frame: object) -> None:
    global _received
    _received += 1
    if _received > 1:
        os._exit(EXIT_INTERRUPTED)
    # os.write, not print: the handler may run while the main thread is inside a print.
    os.write(2, MESSAGE)
    raise SystemExit(EXIT_INTERRUPTED)


def install() -> None:
    """Make Ctrl-C print one line and exit 130 (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_interrupt)


def report() -> None:
    """For a ``KeyboardInterrupt`` that reached the top (raised by code, not the handler)."""
    os.write(2, MESSAGE)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver them to the previous handlers.

    Outside the main thread signals cannot be handled, so the block runs unprotected.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda signum, frame: pending.append(signum)) for sig in signals}
    previous = {sig: signal.SIG_DFL if handler is None else handler for sig, handler in previous.items()}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(pending):
            signal.raise_signal(sig)
