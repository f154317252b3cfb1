"""Benchmark: 50 team environments on one platform, rendered offline in one process.

    python benchmarks/teams_scale.py [--sizes 1,10,25,50] [--write docs/teams-scale.md]

The platform stack is rendered once (its outputs stand in for every team's StackReference, as
`mlplane render --stack team-NAME` does); then, for each size N, N teams are rendered one after
the other, each a fresh offline capture of the real team stack program. Reported per size: wall
time per team and resident memory growth (after the batch, and its peak), so linear growth shows
as a flat time per team and a flat memory per team. The 50 renders are then checked for
collisions with each other and with the platform: Kubernetes objects, namespaces, buckets, S3
identities, MLflow workspaces, runner labels, host names and Pulumi resource names.
"""

from __future__ import annotations

import argparse
import gc
import platform as host
import resource
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mlplane.tooling import checks
from mlplane import cli
from mlplane.cli import teams
from mlplane.config import parse_platform
from mlplane.tooling.render import Capture
from mlplane.config.team import parse_team

PLATFORM = {
    "name": "mlplane",
    "lifecycle": {"throwaway": True},
    "tracking": {"workspaces": True},
    "ci_runners": {"github_config_url": "https://github.com/acme/models", "github_token_key": "githubToken"},
    "serving": {"models": [{"name": "iris", "registered_model": "iris", "alias": "champion"}]},
}
#: The one object every team touches: each patches in its own dashboard key.
SHARED = "ConfigMap/mlplane-monitoring/grafana-dashboards"


def team_raw(index: int) -> dict:
    """A realistic team: every service, members, a replicated model with a canary, CI runners."""
    name = f"ds{index:02d}"
    return {
        "name": name,
        "platform_stack": "local",
        "members": {"users": [f"lead@{name}.example.com"], "groups": [f"{name}-scientists"]},
        "network": {"allow_internet_https": True},
        "ci_runners": {"github_config_url": f"https://github.com/acme/{name}", "github_token_key": "githubToken"},
        "serving": {"models": [{"name": "scorer", "registered_model": f"{name}-scorer", "alias": "champion",
                                "min_replicas": 2, "canary": {"version": 2, "weight": 10}}]},
    }


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Batch:
    size: int
    seconds: float
    rss_growth_mib: float
    peak_mib: float

    @property
    def per_team_ms(self) -> float:
        return 1000 * self.seconds / self.size

    @property
    def per_team_mib(self) -> float:
        return self.rss_growth_mib / self.size


@dataclass
class Footprint:
    """What each render claims, kept small so memory measures the renders, not this list."""

    objects: Counter = field(default_factory=Counter)
    patched_keys: Counter = field(default_factory=Counter)
    #: Bytes of the shared dashboards ConfigMap's data once every team has patched in its key.
    dashboard_bytes: int = 0
    claims: dict[str, Counter] = field(default_factory=lambda: {k: Counter() for k in (
        "namespaces", "buckets", "identities", "workspaces", "runner labels", "hosts", "resource names")})

    def add(self, result: Capture, summary: dict) -> None:
        for manifest in result.manifests():
            object_id = checks.object_id(manifest)
            if object_id == SHARED:
                self.patched_keys.update(list(manifest.get("data", {})))
                self.dashboard_bytes += sum(len(k) + len(v.encode()) for k, v in manifest["data"].items())
            else:
                self.objects[object_id] += 1
        self.claims["namespaces"].update(summary["namespaces"].values())
        for key, value in (("buckets", summary["bucket"]), ("workspaces", summary["mlflowWorkspace"]),
                           ("identities", summary["mlflowWorkspace"]), ("runner labels", summary["runnerLabel"])):
            if value:
                self.claims[key][value] += 1
        self.claims["hosts"].update(url.split("//", 1)[1] for url in summary["modelUrls"].values())
        self.claims["resource names"].update(r.name for r in result.resources)

    def collisions(self) -> list[str]:
        found = [f"object {k} x{n}" for k, n in self.objects.items() if n > 1]
        found += [f"dashboard key {k} x{n}" for k, n in self.patched_keys.items() if n > 1]
        for kind, counter in self.claims.items():
            found += [f"{kind}: {k} x{n}" for k, n in counter.items() if n > 1]
        return found


def platform_claims(footprint: Footprint) -> Capture:
    """The platform's own render, counted like a team's, so teams cannot collide with it either."""
    source = cli.Source(PLATFORM, "mlplane:platform", "local", None, {})
    result = cli.offline_run(source, parse_platform(PLATFORM))
    for manifest in result.manifests():
        object_id = checks.object_id(manifest)
        if object_id == SHARED:
            footprint.patched_keys.update(list(manifest.get("data", {})))
            footprint.dashboard_bytes += sum(len(k) + len(v.encode()) for k, v in manifest["data"].items())
        else:
            footprint.objects[object_id] += 1
    footprint.claims["namespaces"].update(
        m["metadata"]["name"] for m in result.manifests() if m["kind"] == "Namespace"
    )
    buckets = parse_platform(PLATFORM).object_storage.buckets
    footprint.claims["buckets"].update([buckets.artifacts, buckets.datasets, buckets.models])
    footprint.claims["hosts"].update(url.split("//", 1)[1].split("/", 1)[0] for url in result.outputs["urls"].values())
    footprint.claims["resource names"].update(r.name for r in result.resources)
    return result


def run(sizes: list[int]) -> tuple[list[Batch], Footprint, int]:
    platform_config = parse_platform(PLATFORM)
    source = cli.Source(PLATFORM, "mlplane:platform", "local", None, {})
    first = teams.CheckedTeam(parse_team(team_raw(1)), source, platform_config, [])
    outputs = teams.platform_stand_in(first)
    # Warm up imports and caches, so the first batch measures renders, not module loading.
    teams.offline_team_run(first, "team-ds01", outputs)
    gc.collect()
    batches: list[Batch] = []
    footprint = Footprint()
    objects_per_team = 0
    for size in sizes:
        gc.collect()
        before = rss_mib()
        elapsed = 0.0
        for index in range(1, size + 1):
            start = time.perf_counter()
            checked = teams.CheckedTeam(parse_team(team_raw(index)), source, platform_config, [])
            result = teams.offline_team_run(checked, checked.team.stack, outputs)
            elapsed += time.perf_counter() - start
            if size == max(sizes):
                footprint.add(result, result.outputs["team"])
                objects_per_team = len(result.manifests())
            del result
        gc.collect()
        batches.append(Batch(size, elapsed, rss_mib() - before, peak_mib()))
    platform_claims(footprint)
    return batches, footprint, objects_per_team


def report(batches: list[Batch], footprint: Footprint, objects_per_team: int) -> str:
    largest = batches[-1].size
    per_team = [b.per_team_ms for b in batches]
    spread = max(per_team) / min(per_team)
    collisions = footprint.collisions()
    lines = [
        "# Teams at scale",
        "",
        "<!-- Written by `python benchmarks/teams_scale.py --write docs/teams-scale.md`. -->",
        "",
        f"{largest} team environments on one platform, rendered offline in one process on "
        f"{host.machine()} with Python {host.python_version()}. Each team: work and serving "
        "namespaces with quota, limit range and network policies, member and runner RBAC, a bucket "
        "and S3 identity, an MLflow workspace and account, its own ARC controller and scale set, "
        f"one replicated model with a canary, a Grafana dashboard: {objects_per_team} Kubernetes "
        "objects per team. The platform stack is rendered once; its outputs answer every team's "
        "StackReference.",
        "",
        "| teams | wall time | per team | resident memory growth | per team | peak resident |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for batch in batches:
        lines.append(
            f"| {batch.size} | {batch.seconds:.2f} s | {batch.per_team_ms:.0f} ms | "
            f"{batch.rss_growth_mib:+.1f} MiB | {batch.per_team_mib:+.2f} MiB | {batch.peak_mib:.0f} MiB |"
        )
    lines += [
        "",
        f"Time per team varies by a factor of {spread:.2f} between the smallest and the largest batch "
        f"(median {statistics.median(per_team):.0f} ms): rendering N teams takes time linear in N. "
        "Memory growth is what a batch leaves resident after garbage collection; each render is "
        "released when the next starts, so growth per team stays flat instead of accumulating.",
        "",
        f"Collisions among the {largest} teams and the platform (Kubernetes objects by kind, namespace "
        "and name; namespaces; buckets; S3 identities; MLflow workspaces; runner labels; host names; "
        f"Pulumi resource names): **{len(collisions)}**"
        + (":\n\n" + "\n".join(f"- {c}" for c in collisions) if collisions else "."),
        f"The one object every team touches is `{SHARED}`: each team's stack patches in only its "
        f"own key ({len(footprint.patched_keys)} distinct keys, the platform's included), "
        f"{footprint.dashboard_bytes / 1024:.0f} KiB of data in all, within the 1 MiB a ConfigMap may hold "
        f"(about {footprint.dashboard_bytes / len(footprint.patched_keys) / 1024:.1f} KiB per dashboard).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,10,25,50", help="Comma-separated batch sizes, ascending.")
    parser.add_argument("--write", type=Path, help="Write the Markdown report to this file.")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    batches, footprint, objects = run(sizes)
    text = report(batches, footprint, objects)
    if args.write:
        args.write.write_text(text)
    sys.stdout.write(text)
    if footprint.collisions():
        raise SystemExit(1)


if __name__ == "__main__":
    main()
