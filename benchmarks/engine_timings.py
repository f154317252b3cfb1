"""Benchmark: `pulumi preview` and `pulumi up` of the platform stack with the real engine.

    PATH=$(scripts/bootstrap-engine.sh --print-bin-dir):$PATH python benchmarks/engine_timings.py

Uses the e2e project setup (render mode, file backend, stand-in random provider where the real
one is not installed) and prints a Markdown table of wall times.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_e2e_platform import STACK, Project, platform_config  # noqa: E402


def timed(project: Project, *args: str) -> float:
    start = time.perf_counter()
    project.run(*args)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as base:
        project = Project(Path(base))
        subprocess.run(["pulumi", "stack", "init", STACK, "--non-interactive"], cwd=project.dir, env=project.env, check=True, capture_output=True)
        project.write_config(platform_config(project.rendered))
        rows = [
            ("preview (empty stack)", timed(project, "preview")),
            ("up (create everything)", timed(project, "up", "--yes", "--skip-preview")),
            ("preview (no changes)", timed(project, "preview", "--expect-no-changes")),
            ("up (no changes)", timed(project, "up", "--yes", "--skip-preview")),
            ("destroy", timed(project, "destroy", "--yes", "--skip-preview")),
        ]
    print("| step | wall time |\n|---|---|")
    for step, seconds in rows:
        print(f"| {step} | {seconds:.1f} s |")


if __name__ == "__main__":
    main()
