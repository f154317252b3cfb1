"""Whether the running stack program is an offline render (mlplane.tooling.render) or a real engine run.

A building block: components ask :func:`offline` (an offline render reads no local files, such
as a kubeconfig), and the offline harness sets it around a run. Neither imports the other
(docs/architecture.md).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

_offline = False


def offline() -> bool:
    """Whether the running program is an offline render: no cluster, files or credentials."""
    return _offline


@contextlib.contextmanager
def offline_render() -> Iterator[None]:
    """Mark the program run inside the block as an offline render."""
    global _offline
    _offline = True
    try:
        yield
    finally:
        _offline = False
