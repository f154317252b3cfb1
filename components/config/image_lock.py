"""The image lock file: reading it back (``images.lock_file``), for the config and `mlplane images`.

``mlplane images lock`` (mlplane.cli.images) writes the file; the config model (mlplane.config) reads
it when ``images.lock_file`` is set, so the reader sits in the config layer, below the command
(docs/architecture.md).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mlplane.config import versions

GENERATOR = "mlplane images lock"
LOCK_VERSION = 1
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class LockError(Exception):
    """An image lock file that cannot be used (unreadable, not a lock, stale)."""


def read_lock(path: Path, registry_mirror: str | None, chart_mirror: str | None) -> dict[str, Any]:
    """Load a lock file and check that its entries name the refs this config would pull."""
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise LockError(f"{path} does not exist; run `mlplane images lock --stack <stack>` to write it") from None
    except (OSError, UnicodeDecodeError) as error:
        raise LockError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    except json.JSONDecodeError as error:
        raise LockError(f"{path} is not JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(document, dict) or document.get("generator") != GENERATOR:
        raise LockError(f"{path} is not a lock written by `{GENERATOR}`")
    problems = []
    for section, pins, current in (
        ("images", versions.IMAGES, lambda key: versions.IMAGES[key].ref(registry_mirror)),
        ("charts", versions.CHARTS, lambda key: versions.CHARTS[key].ref(chart_mirror)),
    ):
        entries = document.get(section, {})
        if not isinstance(entries, dict):
            raise LockError(f"{path}: '{section}' must be a mapping")
        for key, entry in entries.items():
            if key not in pins:
                problems.append(f"{section}.{key} is not a pin in versions.py")
                continue
            if not isinstance(entry, dict) or not DIGEST.match(str(entry.get("digest", ""))):
                problems.append(f"{section}.{key} has no sha256 digest")
                continue
            want = current(key)
            if section == "charts":
                want = f"{want}:{versions.CHARTS[key].version}"
            if entry.get("ref") != want:
                problems.append(f"{section}.{key} locks {entry.get('ref')}, the stack now uses {want}")
    if problems:
        raise LockError(f"{path} is stale ({'; '.join(problems)}); run `mlplane images lock` again")
    return {"images": document.get("images", {}), "charts": document.get("charts", {})}
