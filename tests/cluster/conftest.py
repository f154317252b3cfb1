"""Session fixture of the cluster tests: a control plane with simulated nodes (control_plane.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from .control_plane import ControlPlane, crd_dir, find_binaries


def _required() -> bool:
    return os.environ.get("MLPLANE_REQUIRE_TOOLS") == "1"


@pytest.fixture(scope="session")
def control_plane():
    binaries, missing = find_binaries()
    engine = [tool for tool in ("pulumi", "pulumi-language-python") if shutil.which(tool) is None]
    if missing or engine:
        reason = (f"{', '.join(missing + engine)} not found: run scripts/bootstrap-engine.sh, "
                  "scripts/bootstrap-apiserver.sh and scripts/bootstrap-cluster.sh and put the bin dir "
                  "(scripts/bootstrap-engine.sh --print-bin-dir) on PATH")
        if _required():
            pytest.fail(f"required (MLPLANE_REQUIRE_TOOLS=1): {reason}")
        pytest.skip(reason)
    base = Path(tempfile.mkdtemp(prefix="mlplane-cluster-"))
    plane = ControlPlane(base, binaries)
    try:
        plane.start()
        plane.crds = plane.install_crds(crd_dir())
        yield plane
    finally:
        plane.stop()
        if os.environ.get("MLPLANE_KEEP_CLUSTER_DIR") != "1":
            shutil.rmtree(base, ignore_errors=True)
