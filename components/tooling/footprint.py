"""CPU, memory and storage a platform asks for, per component and in total.

Workloads mlplane renders itself are read from the rendered manifests (replicas x containers,
HPAs at their minimum). Workloads that Helm charts install cannot be rendered offline, so each
chart-installing component declares them (``chart_workloads``) with the requests and limits
mlplane sets through the chart values; the tests pin that those declarations match the values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from mlplane.services import ci_runners, routing
from mlplane.config import PlatformConfig, Resources, cpu_millicores, memory_bytes
from mlplane.tooling.render import Capture

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}
GIB = 2**30
MIB = 2**20


@dataclass
class Usage:
    """Summed requests and limits."""

    cpu_request_m: int = 0
    cpu_limit_m: int = 0
    memory_request: int = 0
    memory_limit: int = 0
    storage: int = 0
    workloads: list[str] = field(default_factory=list)

    def add(self, other: Usage) -> None:
        self.cpu_request_m += other.cpu_request_m
        self.cpu_limit_m += other.cpu_limit_m
        self.memory_request += other.memory_request
        self.memory_limit += other.memory_limit
        self.storage += other.storage
        self.workloads += other.workloads

    def as_json(self) -> dict[str, Any]:
        return {
            "cpu_request": f"{self.cpu_request_m}m",
            "cpu_limit": f"{self.cpu_limit_m}m",
            "memory_request": f"{self.memory_request // MIB}Mi",
            "memory_limit": f"{self.memory_limit // MIB}Mi",
            "storage": f"{self.storage // MIB}Mi",
            "workloads": sorted(self.workloads),
        }


@dataclass(frozen=True)
class ChartWorkload:
    """A workload a Helm chart installs, with the resources mlplane sets through its values."""

    name: str
    replicas: int
    resources: Resources


def _containers_usage(pod_spec: dict[str, Any], replicas: int) -> Usage:
    usage = Usage()
    for container in pod_spec.get("containers", []):
        res = container.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        usage.cpu_request_m += replicas * cpu_millicores(str(req.get("cpu", "0")))
        usage.cpu_limit_m += replicas * cpu_millicores(str(lim.get("cpu", "0")))
        usage.memory_request += replicas * memory_bytes(str(req.get("memory", "0")))
        usage.memory_limit += replicas * memory_bytes(str(lim.get("memory", "0")))
    return usage


def _component_of(capture: Capture, urn: str | None) -> str:
    """The nearest mlplane component (below the Platform) a resource belongs to."""
    by_urn = {r.urn: r for r in capture.resources}
    current = by_urn.get(urn or "")
    found = "other"
    while current is not None:
        if current.type.startswith("mlplane:") and current.type != "mlplane:index:Platform":
            found = current.type.split(":")[-1]
        current = by_urn.get(current.parent or "")
    return found


def measure(capture: Capture, config: PlatformConfig) -> dict[str, Usage]:
    """Usage per component type name (e.g. ``TrackingServer``) from a render."""
    per: dict[str, Usage] = {}
    hpa_min = {
        (m["metadata"].get("namespace"), m["spec"]["scaleTargetRef"]["name"]): m["spec"].get("minReplicas", 1)
        for m in capture.manifests()
        if m["kind"] == "HorizontalPodAutoscaler"
    }
    for record in capture.kubernetes_objects():
        manifest = record.manifest()
        kind = manifest["kind"]
        component = _component_of(capture, record.parent)
        usage = per.setdefault(component, Usage())
        meta = manifest.get("metadata", {})
        if kind in WORKLOAD_KINDS:
            spec = manifest.get("spec", {})
            replicas = hpa_min.get((meta.get("namespace"), meta.get("name")), spec.get("replicas", 1))
            if kind == "DaemonSet":
                replicas = 1
            part = _containers_usage(spec["template"]["spec"], replicas)
            part.workloads.append(f"{kind} {meta.get('name')} x{replicas}")
            for claim in spec.get("volumeClaimTemplates", []):
                part.storage += replicas * memory_bytes(claim["spec"]["resources"]["requests"]["storage"])
            usage.add(part)
        elif kind == "PersistentVolumeClaim":
            usage.storage += memory_bytes(manifest["spec"]["resources"]["requests"]["storage"])
    for component, workloads in _chart_workloads(config):
        usage = per.setdefault(component, Usage())
        for workload in workloads:
            part = Usage(
                cpu_request_m=workload.replicas * cpu_millicores(workload.resources.requests.cpu),
                cpu_limit_m=workload.replicas * cpu_millicores(workload.resources.limits.cpu),
                memory_request=workload.replicas * memory_bytes(workload.resources.requests.memory),
                memory_limit=workload.replicas * memory_bytes(workload.resources.limits.memory),
                workloads=[f"{workload.name} x{workload.replicas} (Helm chart)"],
            )
            usage.add(part)
    return {k: v for k, v in per.items() if v.workloads or v.storage}


def _chart_workloads(config: PlatformConfig) -> Iterable[tuple[str, list[ChartWorkload]]]:
    yield "Routing", [_as_chart_workload(w) for w in routing.chart_workloads(config.routing)]
    if config.ci_runners.enabled:
        yield "Runners", [_as_chart_workload(w) for w in ci_runners.chart_workloads(config.ci_runners)]


def _as_chart_workload(item: Any) -> ChartWorkload:
    if isinstance(item, ChartWorkload):
        return item
    if isinstance(item, tuple):
        name, replicas, resources = item
        return ChartWorkload(name, replicas, resources)
    return ChartWorkload(item.name, item.replicas, item.resources)


def total(per: dict[str, Usage]) -> Usage:
    out = Usage()
    for usage in per.values():
        out.add(usage)
    return out


def markdown(per: dict[str, Usage], config_name: str) -> str:
    """The footprint as a Markdown table (docs/footprint.md is generated from this)."""
    rows = [
        f"| {name} | {u['cpu_request']} | {u['cpu_limit']} | {u['memory_request']} | {u['memory_limit']} "
        f"| {u['storage']} | {', '.join(u['workloads'])} |"
        for name, u in ((name, usage.as_json()) for name, usage in sorted(per.items()))
    ]
    t = total(per).as_json()
    return "\n".join(
        [
            f"Footprint of `{config_name}` (requests and limits; HPAs at their minimum).",
            "",
            "| component | CPU request | CPU limit | memory request | memory limit | storage | workloads |",
            "|---|---|---|---|---|---|---|",
            *rows,
            f"| **total** | **{t['cpu_request']}** | {t['cpu_limit']} | **{t['memory_request']}** | {t['memory_limit']} | {t['storage']} | |",
        ]
    )


# --------------------------------------------------------------------------------------------
# Optional features (off by default): what each adds when turned on (docs/footprint.md)
# --------------------------------------------------------------------------------------------

#: One model with every optional feature on; docs/footprint.md renders the local stack with it.
FEATURES_MODEL: dict[str, Any] = {
    "name": "example", "registered_model": "example", "version": 1,
    "canary": {"mode": "progressive"}, "logging": {"sample_rate": 0.1}, "drift": {},
}


def with_features(raw: Any) -> dict[str, Any]:
    """A platform object with :data:`FEATURES_MODEL` served and Flagger enabled."""
    merged = dict(raw or {})
    serving = dict(merged.get("serving") or {})
    serving["models"] = [*serving.get("models", []), FEATURES_MODEL]
    serving["progressive"] = {**(serving.get("progressive") or {}), "enabled": True}
    merged["serving"] = serving
    return merged


#: A team's model with every feature on (docs/footprint.md, "Team environments").
TEAM_FEATURES_MODEL: dict[str, Any] = {
    "name": "example", "registered_model": "example", "version": 1,
    "canary": {"mode": "progressive"}, "logging": {"sample_rate": 0.1}, "drift": {},
}
TEAM_FEATURES = {
    "model-exporter": "Model exporter (service `monitoring`, any model), one per team",
    "flagger-team": "Flagger controller of the team (platform `serving.progressive.enabled`), one per admitted team",
}


def _feature_of(manifest: dict[str, Any], container: str) -> str | None:
    kind, name = manifest["kind"], manifest["metadata"].get("name", "")
    if kind == "Deployment" and name == "model-exporter":
        return TEAM_FEATURES["model-exporter"]
    if kind == "Deployment" and name.startswith("flagger-team-"):
        return TEAM_FEATURES["flagger-team"]
    if container == "inference-logger":
        return "Inference logging sidecar (`logging`), per model replica"
    if kind == "Deployment" and name == "drift-exporter":
        return "Drift exporter (`drift`), one per serving namespace"
    if kind == "CronJob" and name.endswith("-drift"):
        return "Drift job (`drift`), per model, only while it runs"
    if kind == "Deployment" and name == "flagger":
        return "Flagger controller (`serving.progressive.enabled`)"
    return None


def feature_usage(capture: Capture) -> dict[str, Usage]:
    """Requests and limits each optional feature adds, from a render with :func:`with_features`."""
    per: dict[str, Usage] = {}
    for manifest in capture.manifests():
        spec = manifest.get("spec", {})
        if manifest["kind"] in WORKLOAD_KINDS:
            pod = spec.get("template", {}).get("spec", {})
        elif manifest["kind"] == "CronJob":
            pod = spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
        else:
            continue
        for container in pod.get("containers", []):
            feature = _feature_of(manifest, container.get("name", ""))
            if feature is not None:
                part = _containers_usage({"containers": [container]}, 1)
                part.workloads.append(f"{manifest['kind']} {manifest['metadata']['name']} / {container['name']}")
                per.setdefault(feature, Usage()).add(part)
    return per


def team_features_markdown(per: dict[str, Usage]) -> str:
    """The table of what a team's model features add (each off by default)."""
    rows = [
        f"| {name} | {u['cpu_request']} | {u['cpu_limit']} | {u['memory_request']} | {u['memory_limit']} | {', '.join(u['workloads'])} |"
        for name, u in ((name, usage.as_json()) for name, usage in sorted(per.items()))
    ]
    return "\n".join(
        [
            "### Team environments",
            "",
            "A team's models get the same features, in the team's serving namespace and under its",
            "`quota.serving` (the logging sidecars and drift jobs count there: `mlplane validate`",
            "refuses a model whose smallest scale does not fit). Measured from a render of team",
            "`example` on this stack with one model that turns every feature on",
            "(`footprint.TEAM_FEATURES_MODEL`); the controller runs in the platform's Flagger namespace:",
            "",
            "| feature | CPU request | CPU limit | memory request | memory limit | measured on |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )


def features_markdown(per: dict[str, Usage]) -> str:
    """The table of optional features (each off by default)."""
    rows = [
        f"| {name} | {u['cpu_request']} | {u['cpu_limit']} | {u['memory_request']} | {u['memory_limit']} | {', '.join(u['workloads'])} |"
        for name, u in ((name, usage.as_json()) for name, usage in sorted(per.items()))
    ]
    return "\n".join(
        [
            "## Optional features",
            "",
            "Each is off by default, so none counts in the budget above. When turned on, each adds",
            "these requests and limits (defaults of its `resources` setting; measured from a render",
            "of this stack with one model that turns every feature on, `footprint.FEATURES_MODEL`):",
            "",
            "| feature | CPU request | CPU limit | memory request | memory limit | measured on |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            "The model itself (its replicas) is not a feature: see `serving.models[].resources`. In",
            "mode `progressive`, Flagger runs the primary and, during a rollout, the canary: a model",
            "then needs up to twice its replicas while a rollout lasts. See [models](models.md).",
        ]
    )
