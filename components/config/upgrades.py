"""Versions of the config schema (the ``version`` field of ``mlplane:platform`` and ``mlplane:team``)
and the upgrade steps between them.

Today there is one version, 1, and an object without ``version`` is version 1: every stack written
before the field existed stays valid as it is. A release that changes the schema incompatibly
(renames or moves a key, changes a meaning) raises :data:`CONFIG_VERSION`, keeps reading the older
versions it lists in :data:`SUPPORTED_VERSIONS`, and registers in :data:`UPGRADE_STEPS` the step
that rewrites an object of the previous version into the new one (the way nebari's upgrade.py
keeps one step per release). docs/upgrading.md says what each step changes.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

#: The version this release writes and documents.
CONFIG_VERSION = 1
#: The versions this release reads.
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)

#: One step per version: ``UPGRADE_STEPS[n]`` rewrites a raw object of version ``n - 1`` (platform
#: or team: the step is given which) into version ``n``. Empty while there is one version.
UpgradeStep = Callable[[str, dict[str, Any]], dict[str, Any]]
UPGRADE_STEPS: dict[int, UpgradeStep] = {}


def check_version(value: int) -> int:
    """The ``version`` field's validator: a version this release reads, or a ValueError saying which it reads."""
    if value not in SUPPORTED_VERSIONS:
        allowed = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
        newer = value > CONFIG_VERSION
        raise ValueError(
            f"unsupported config version {value}: this mlplane reads version {allowed}"
            + (" (the config was written for a newer mlplane: upgrade mlplane)" if newer else "")
            + "; see docs/upgrading.md"
        )
    return value


def upgrade(kind: str, raw: Mapping[str, Any], steps: Mapping[int, UpgradeStep] | None = None) -> dict[str, Any]:
    """A raw ``kind`` object ('platform' or 'team') rewritten step by step to :data:`CONFIG_VERSION`.

    An object without ``version`` is version 1. ``steps`` defaults to :data:`UPGRADE_STEPS`.
    """
    steps = UPGRADE_STEPS if steps is None else steps
    current = dict(raw)
    version = current.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        return current  # the config's own validation names the field
    target = max([CONFIG_VERSION, *steps])
    while version < target and version + 1 in steps:
        current = {**steps[version + 1](kind, current), "version": version + 1}
        version += 1
    return current
