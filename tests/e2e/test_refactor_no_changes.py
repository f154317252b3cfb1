"""Upgrades through the engine's own diff, in render mode with the real engine: `pulumi up` of the
platform with an earlier program taken from git, then a preview with a later one.

- Nothing deployed changes across the package restructure (issue 10, item 8): the last commit
  before the subpackage move, then the commit that landed it, `--expect-no-changes`. Type tokens,
  names and parents are strings, so a module move must leave every URN and input as it was.
- An upgrade from the last landed release to this checkout never replaces or deletes a StatefulSet
  or a volume claim and deletes nothing (docs/upgrading.md); what it changes is printed.

An earlier program is taken from git (`git archive`) and put first on PYTHONPATH, ahead of the
editable install.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import io
from pathlib import Path

import pytest

from test_e2e_platform import Project, STACK, _engine_missing, platform_config

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
#: The last commit with the flat `components/` package (before the subpackage move).
BEFORE_RESTRUCTURE = "03bad3d"
#: The commit that landed the restructure (and the last release CI passed before this one).
AFTER_RESTRUCTURE = "58a89c9"


def _earlier_package(target: Path, commit: str = BEFORE_RESTRUCTURE) -> Path | None:
    """The `components/` of ``commit`` as an importable `mlplane` package under ``target``, or None
    when this clone does not hold that commit (a shallow clone)."""
    done = subprocess.run(["git", "archive", "--format=tar", commit, "components"],
                          cwd=ROOT, capture_output=True)
    if done.returncode != 0:
        return None
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        archive.extractall(target, filter="data")
    shim = target / "shim"
    shim.mkdir()
    (shim / "mlplane").symlink_to(target / "components")
    return shim


def _deploy_then_preview(tmp_path: Path, before: str, after: str | None) -> subprocess.CompletedProcess[str]:
    """`pulumi up` with the program of commit ``before``, then `preview --json` with ``after`` (a
    commit, or None: this checkout)."""
    missing = _engine_missing()
    if missing:
        pytest.skip(f"{missing} not on PATH: run scripts/bootstrap-engine.sh")
    shims = {commit: _earlier_package(tmp_path / commit, commit) for commit in (before, after) if commit}
    if None in shims.values():
        pytest.skip(f"commits {sorted(shims)} are not all in this clone (shallow): nothing to compare with")
    project = Project(tmp_path / "e2e")
    subprocess.run(["pulumi", "stack", "init", STACK, "--non-interactive"],
                   cwd=project.dir, env=project.env, check=True, capture_output=True, text=True)
    project.write_config(platform_config(project.rendered))
    base = {k: v for k, v in project.env.items() if k != "PYTHONPATH"}

    def program(commit: str | None) -> dict[str, str]:
        if commit is None:
            return base
        env = {**base, "PYTHONPATH": f"{shims[commit]}{os.pathsep}{project.env.get('PYTHONPATH', '')}"}
        probe = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c", "import mlplane; print(mlplane.__file__)"],
                               env=env, capture_output=True, text=True, check=True)
        assert str(tmp_path / commit) in probe.stdout, probe.stdout  # that program really runs
        return env

    project.env = program(before)
    project.run("up", "--yes", "--skip-preview")
    project.env = program(after)
    return project.run("preview", "--json", check=False)


def _changes(preview: subprocess.CompletedProcess[str]) -> list[tuple[str, str, str]]:
    import json

    assert preview.returncode == 0, preview.stdout[-6000:] + preview.stderr[-3000:]
    document = json.loads(preview.stdout)
    return sorted(
        (step["op"], step["urn"].split("::")[2].split("$")[-1], step["urn"].split("::")[-1])
        for step in document.get("steps", []) if step["op"] != "same"
    )


def test_the_restructured_program_previews_no_changes_over_the_earlier_one(tmp_path):
    preview = _deploy_then_preview(tmp_path, BEFORE_RESTRUCTURE, AFTER_RESTRUCTURE)
    assert _changes(preview) == []


def test_an_upgrade_from_the_last_release_replaces_no_statefulset_and_deletes_nothing(tmp_path):
    changes = _changes(_deploy_then_preview(tmp_path, AFTER_RESTRUCTURE, None))
    print("changes from", AFTER_RESTRUCTURE, "to this checkout:", *changes, sep="\n  ")
    stateful = ("kubernetes:apps/v1:StatefulSet", "kubernetes:core/v1:PersistentVolumeClaim")
    assert not [c for c in changes if c[1] in stateful and c[0] != "update"], changes
    assert not [c for c in changes if c[0] in ("delete", "delete-replaced") and c[1] not in ("kubernetes:core/v1:ConfigMap",)], changes
