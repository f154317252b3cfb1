"""Benchmark: how long a user waits for each offline command, and the floor a render cannot beat.

    python benchmarks/cli_latency.py --stack local --runs 5 [--write docs/performance.md]

Every run is a fresh process, as a user runs it, so interpreter start-up and imports count.
Wall time and CPU time (user + system of the child) are both reported: on a shared machine the
wall time includes waiting for a core, the CPU time does not.

The floor of a render is a process that imports the same Pulumi SDK modules ``mlplane render``
imports, then registers the same resources (same types, names and inputs, taken from a render)
flat, as plain ``CustomResource``/``ComponentResource`` objects under the same recording mock
monitor (``mlplane.tooling.render.capture``), and writes nothing. What a render costs above it is
mlplane's own work: the CLI and config model, the component tree, typed SDK input classes and
writing the files.

Targets (issue 8): ``plan`` at most 1.5x ``render``; ``render`` at most 2x the floor;
``--help`` and ``validate`` under 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK_BEGIN = "<!-- cli-latency:begin -->"
MARK_END = "<!-- cli-latency:end -->"
#: Top-level packages whose modules the floor imports exactly as a render does.
SDK_PREFIX = "pulumi"


def timed(argv: list[str], cwd: Path = ROOT, pythonpath: Path | None = None) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one fresh process; fails on a non-zero exit."""
    env = {**os.environ, "MLPLANE_PROGRESS": "0"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def prepare_floor(stack: str, work: Path) -> tuple[Path, Path, int]:
    """Render once (untimed): the resources to register and the SDK modules a render imports."""
    resources = work / "resources.json"
    modules = work / "modules.json"
    script = (
        "import json, sys\n"
        "from mlplane import cli\n"
        f"source, platform = cli.load_platform({stack!r}, None)\n"
        "result = cli.offline_run(source, platform)\n"
        f"json.dump([m for m in sys.modules if m.split('.')[0].startswith({SDK_PREFIX!r})], open({str(modules)!r}, 'w'))\n"
        "from mlplane import render\n"
        f"open({str(resources)!r}, 'w').write(render.dumps(render.resources_document(result)))\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, env={**os.environ, "MLPLANE_PROGRESS": "0"})
    return resources, modules, len(json.loads(resources.read_text()))


def floor_child(resources_path: str, modules_path: str, stack: str) -> None:
    """The floor process: same SDK imports, same registrations, flat, same mock monitor."""
    import importlib

    for name in json.loads(Path(modules_path).read_text()):
        importlib.import_module(name)
    import pulumi

    from mlplane.tooling import render

    records = json.loads(Path(resources_path).read_text())

    def program() -> None:
        for record in records:
            if record["custom"]:
                pulumi.CustomResource(record["type"], record["name"], props=record["inputs"])
            else:
                pulumi.ComponentResource(record["type"], record["name"])

    registered = render.capture(program, stack=stack).resources
    if len(registered) != len(records):
        raise SystemExit(f"floor registered {len(registered)} of {len(records)} resources")


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), {platform.machine()}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="local")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write", type=Path, help="Markdown file to update between the benchmark markers")
    parser.add_argument("--note", default="", help="A sentence about the conditions (other load on the machine)")
    parser.add_argument(
        "--compare-with",
        type=Path,
        help="An older source tree (e.g. `git archive <rev> | tar -x -C DIR`): its commands run interleaved as 'before'",
    )
    parser.add_argument("--floor-child", nargs=2, metavar=("RESOURCES", "MODULES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_child:
        floor_child(*args.floor_child, args.stack)
        return

    mlplane = [sys.executable, "-m", "mlplane"]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        resources, modules, count = prepare_floor(args.stack, work)
        commands = {
            "mlplane --help": mlplane + ["--help"],
            f"mlplane validate --stack {args.stack}": mlplane + ["validate", "--stack", args.stack],
            f"mlplane render --stack {args.stack}": mlplane + ["render", "--stack", args.stack, "--out", str(work / "out")],
            f"mlplane footprint --stack {args.stack} --format json": mlplane + ["footprint", "--stack", args.stack, "--format", "json"],
            f"mlplane plan --stack {args.stack} --json": mlplane + ["plan", "--stack", args.stack, "--json"],
            f"floor: {count} resources registered flat": [
                sys.executable, str(Path(__file__).resolve()), "--stack", args.stack, "--floor-child", str(resources), str(modules)
            ],
        }
        places: dict[str, tuple[Path, Path | None]] = {name: (ROOT, None) for name in commands}
        if args.compare_with is not None:
            # The older tree's package, importable as `mlplane` ahead of the editable install.
            (work / "before").mkdir()
            (work / "before" / "mlplane").symlink_to(args.compare_with.resolve() / "components")
            for name in list(commands)[:5]:
                argv = [part.replace(str(work / "out"), str(work / "out-before")) for part in commands[name]]
                commands[f"before: {name}"] = argv
                places[f"before: {name}"] = (args.compare_with.resolve(), work / "before")
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.runs):  # interleaved, so a burst of load hits every command alike
            for name, argv in commands.items():
                samples[name].append(timed(argv, *places[name]))
    load_after = os.getloadavg()

    wall = {name: statistics.median(w for w, _ in runs) for name, runs in samples.items()}
    cpu = {name: statistics.median(c for _, c in runs) for name, runs in samples.items()}
    names = list(commands)
    render, plan, floor = names[2], names[4], names[5]
    def label(name: str) -> str:
        if name.startswith("before: "):
            return f"before: `{name[len('before: '):]}`"
        return name if name.startswith("floor") else f"`{name}`"

    rows = [
        f"| {label(name)} | {wall[name]:.2f} s | {min(w for w, _ in samples[name]):.2f} s | {cpu[name]:.2f} s |"
        for name in names
    ]

    def ratio(a: str, b: str) -> str:
        return f"{wall[a] / wall[b]:.2f}x wall, {cpu[a] / cpu[b]:.2f}x CPU"

    before = []
    if args.compare_with is not None:
        before = ["", "| target | before | after |", "|---|---|---|"]
        # Only ratios within one tree: the floor registers the resources of the current tree.
        before.append(f"| plan at most 1.5x render | {ratio('before: ' + plan, 'before: ' + render)} | {ratio(plan, render)} |")

    report = "\n".join([
        MARK_BEGIN,
        f"`python benchmarks/cli_latency.py --stack {args.stack} --runs {args.runs}` on {machine()}; "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after. {args.note}".rstrip(),
        "",
        "| command (fresh process) | median wall | min wall | median CPU (user+sys) |",
        "|---|---|---|---|",
        *rows,
        "",
        "| target | measured |",
        "|---|---|",
        f"| plan at most 1.5x render | {ratio(plan, render)} |",
        f"| render at most 2x the floor | {ratio(render, floor)} |",
        f"| `--help` under 1 s | {wall[names[0]]:.2f} s wall, {cpu[names[0]]:.2f} s CPU |",
        f"| `validate` under 1 s | {wall[names[1]]:.2f} s wall, {cpu[names[1]]:.2f} s CPU |",
        *before,
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
