"""Scripts shipped into pods as files: the drift check and inference logger (mounted from
ConfigMaps), the MLflow setup, reader and team scripts and the metrics exporter (``python -c``),
and the SeaweedFS grant and revoke scripts (``sh -c``). Linters and tests read them as files; the
components read them with :func:`text`, byte for byte, so moving a script here re-runs no Job.
mlplane never imports them; the folder is a package only so tests can import their pure functions.
"""

from __future__ import annotations

import importlib.resources


def text(name: str) -> str:
    """The text of the script ``name`` in this folder, exactly as it is shipped into a pod."""
    return (importlib.resources.files("mlplane.scripts") / name).read_text(encoding="utf-8")
