"""Nothing deployed changes across the package restructure (issue 10, item 8): `pulumi up` of the
platform with the program of the last commit before the subpackage move, then
`pulumi preview --expect-no-changes` with the program of this checkout, in render mode with the
real engine. Type tokens, names and parents are strings, so a module move must leave every URN and
input as it was; this proves it through the engine's own diff, not only the golden snapshots.

The earlier program is taken from git (`git archive`) and put first on PYTHONPATH, ahead of the
editable install, for the first run only.
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


def _earlier_package(target: Path) -> Path | None:
    """The earlier `components/` as an importable `mlplane` package under ``target``, or None when
    this clone does not hold that commit (a shallow clone)."""
    done = subprocess.run(["git", "archive", "--format=tar", BEFORE_RESTRUCTURE, "components"],
                          cwd=ROOT, capture_output=True)
    if done.returncode != 0:
        return None
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        archive.extractall(target, filter="data")
    shim = target / "shim"
    shim.mkdir()
    (shim / "mlplane").symlink_to(target / "components")
    return shim


def test_the_restructured_program_previews_no_changes_over_the_earlier_one(tmp_path):
    missing = _engine_missing()
    if missing:
        pytest.skip(f"{missing} not on PATH: run scripts/bootstrap-engine.sh")
    shim = _earlier_package(tmp_path / "before")
    if shim is None:
        pytest.skip(f"commit {BEFORE_RESTRUCTURE} is not in this clone (shallow): nothing to compare with")
    project = Project(tmp_path / "e2e")
    subprocess.run(["pulumi", "stack", "init", STACK, "--non-interactive"],
                   cwd=project.dir, env=project.env, check=True, capture_output=True, text=True)
    project.write_config(platform_config(project.rendered))

    earlier_env = {**project.env, "PYTHONPATH": f"{shim}{os.pathsep}{project.env.get('PYTHONPATH', '')}"}
    probe = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c", "import mlplane; print(mlplane.__file__)"],
                           env=earlier_env, capture_output=True, text=True, check=True)
    assert str(tmp_path / "before") in probe.stdout, probe.stdout  # the earlier program really runs

    project.env = earlier_env
    project.run("up", "--yes", "--skip-preview")
    project.env = {k: v for k, v in earlier_env.items() if k != "PYTHONPATH"}
    preview = project.run("preview", "--expect-no-changes", "--diff", check=False)
    assert preview.returncode == 0, preview.stdout[-6000:] + preview.stderr[-3000:]
