"""Benchmark: `pulumi up`, no-change preview and destroy of the platform against a real control
plane with simulated nodes (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok).

    scripts/bootstrap-engine.sh && scripts/bootstrap-apiserver.sh && scripts/bootstrap-cluster.sh
    PATH=$(scripts/bootstrap-engine.sh --print-bin-dir):$PATH .venv/bin/python benchmarks/cluster_up.py

Uses the cluster tests' control plane and project setup (tests/cluster/) and prints a Markdown
table of wall times: control-plane start, up (creates and awaits every object), preview with no
changes, up with no changes, metrics-server turned off (its aggregated API is never served by
simulated pods and would block namespace deletion), destroy (awaits every deletion, namespaces
included).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.cluster.control_plane import ControlPlane, crd_dir, find_binaries  # noqa: E402
from tests.cluster.test_cluster_up import PLATFORM_STACK, Project, platform_config  # noqa: E402


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    binaries, missing = find_binaries()
    if missing or not shutil.which("pulumi"):
        sys.exit(f"missing: {', '.join(missing) or 'pulumi'} (see the usage in this file's docstring)")
    base = Path(tempfile.mkdtemp(prefix="mlplane-bench-cluster-"))
    plane = ControlPlane(base, binaries)
    try:
        rows = [("control plane start (5 processes, 3 fake nodes, CRDs)",
                 timed(lambda: (plane.start(), plane.install_crds(crd_dir()))))]
        project = Project(base, plane)
        project.pulumi(PLATFORM_STACK, "stack", "init")
        project.write_config(PLATFORM_STACK, "platform", platform_config(plane.kubeconfig))
        resources = None

        def up() -> None:
            nonlocal resources
            project.pulumi(PLATFORM_STACK, "up", "--yes", "--skip-preview")
            resources = len(project.kube_objects(PLATFORM_STACK))

        rows += [
            ("up (create and await everything)", timed(up)),
            ("preview (no changes)", timed(lambda: project.pulumi(PLATFORM_STACK, "preview", "--expect-no-changes"))),
            ("up (no changes)", timed(lambda: project.pulumi(PLATFORM_STACK, "up", "--yes", "--skip-preview"))),
        ]
        # An APIService no simulated pod serves blocks namespace deletion (docs/e2e.md, step 7b):
        # metrics-server is turned off first, as in the cluster tests.
        project.write_config(PLATFORM_STACK, "platform", platform_config(plane.kubeconfig, metrics_server=False))
        rows += [
            ("up (metrics-server off: its objects deleted)",
             timed(lambda: project.pulumi(PLATFORM_STACK, "up", "--yes", "--skip-preview"))),
            ("destroy (awaits every deletion, namespaces included)",
             timed(lambda: project.pulumi(PLATFORM_STACK, "destroy", "--yes", "--skip-preview"))),
        ]
    finally:
        plane.stop()
        if os.environ.get("MLPLANE_KEEP_CLUSTER_DIR") != "1":
            shutil.rmtree(base, ignore_errors=True)
    print(f"{resources} Kubernetes objects, {os.cpu_count()} cores\n")
    print("| step | wall time |\n|---|---|")
    for step, seconds in rows:
        print(f"| {step} | {seconds:.1f} s |")


if __name__ == "__main__":
    main()
