"""Benchmark: wall time and peak memory of an offline render of a stack.

    python benchmarks/render_time.py --stack local --runs 5 [--write docs/performance.md]

Each run is a fresh process (`mlplane render`), so import time is included, as a user sees it.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK_BEGIN = "<!-- render-benchmark:begin -->"
MARK_END = "<!-- render-benchmark:end -->"


def one_run(stack: str) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as out:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "mlplane", "render", "--stack", stack, "--out", out],
            cwd=ROOT, check=True, capture_output=True,
        )
        elapsed = time.perf_counter() - start
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        objects = len(list((Path(out) / "manifests").glob("*.yaml")))
        resources = len(json.loads((Path(out) / "resources.json").read_text()))
    del before
    return elapsed, peak_kib / 1024, objects * 10_000 + resources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stack", default="local")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write", type=Path, help="Markdown file to update between the benchmark markers")
    args = parser.parse_args()
    times, peaks = [], []
    counts = 0
    for _ in range(args.runs):
        elapsed, peak, counts = one_run(args.stack)
        times.append(elapsed)
        peaks.append(peak)
    objects, resources = divmod(counts, 10_000)
    report = "\n".join([
        MARK_BEGIN,
        f"Offline render of stack `{args.stack}` ({resources} Pulumi resources, {objects} Kubernetes objects), "
        f"{args.runs} runs, each a fresh `mlplane render` process, on {platform.machine()} with "
        f"Python {platform.python_version()}:",
        "",
        "| metric | value |",
        "|---|---|",
        f"| median wall time | {statistics.median(times):.2f} s |",
        f"| min / max wall time | {min(times):.2f} s / {max(times):.2f} s |",
        f"| peak RSS (max over runs) | {max(peaks):.0f} MiB |",
        MARK_END,
    ])
    print(report)
    if args.write:
        text = args.write.read_text() if args.write.exists() else ""
        if MARK_BEGIN in text:
            head, _, rest = text.partition(MARK_BEGIN)
            _, _, tail = rest.partition(MARK_END)
            text = head + report + tail
        else:
            text = text + ("\n" if text else "") + report + "\n"
        args.write.write_text(text)


if __name__ == "__main__":
    main()
