"""Platform rules: pinned images and charts, requests and limits, probes, read-only roots, stateful protection."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from mlplane.policies.model import Problem, Resource, Stack, Unknown
from mlplane.policies.objects import (
    _at,
    _EXACT_VERSION,
    containers,
    pinned_image,
    pod_spec,
    RUN_TO_COMPLETION,
)


def check_pinned_images(resource: Resource, stack: Stack) -> list[Problem]:
    problems: list[Problem] = []
    spec = pod_spec(resource)
    if spec is not None and not resource.skips("CKV_K8S_14"):
        for what, container in containers(spec):
            image = container.get("image")
            if isinstance(image, Unknown):
                continue
            if not isinstance(image, str) or not pinned_image(image):
                problems.append(
                    Problem(
                        f"{what}: image {image!r} is not pinned to a tag or digest",
                        "use platform.image(key) (pins in versions.py), or a tag other than 'latest'",
                    )
                )
    if resource.type.startswith("kubernetes:helm.sh/") and "chart" in resource.props:
        problems += _chart_pins(resource)
    return problems


def _chart_pins(resource: Resource) -> list[Problem]:
    chart, version = resource.props.get("chart"), resource.props.get("version")
    problems = []
    local = isinstance(chart, str) and (chart.startswith((".", "/")) or chart.endswith(".tgz"))
    if isinstance(chart, str) and not local and not isinstance(version, Unknown):
        if not isinstance(version, str) or not _EXACT_VERSION.match(version):
            problems.append(
                Problem(
                    f"chart {chart} is not pinned to an exact version (version: {version!r})",
                    "pin the chart in versions.CHARTS and pass its version",
                )
            )
    for path, image in _value_images(resource.props.get("values"), "values"):
        problems.append(
            Problem(
                f"chart value {path} is image {image!r}, not pinned to a tag or digest",
                "set the image from platform.image(key) in the chart values",
            )
        )
    return problems


def _value_images(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """Unpinned image references in Helm values: ``image: repo:tag`` strings and ``{repository, tag}``."""
    if isinstance(node, Mapping):
        if isinstance(node.get("repository"), str) and "tag" in node:
            tag = node.get("tag")
            if isinstance(tag, str) and tag in ("", "latest"):
                yield f"{path}.tag", f"{node['repository']}:{tag}"
        for key, value in node.items():
            if key == "image" and isinstance(value, str) and not pinned_image(value):
                yield f"{path}.image", value
            else:
                yield from _value_images(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _value_images(item, f"{path}[{index}]")


_RESOURCE_CHECKS = {
    ("requests", "cpu"): "CKV_K8S_10",
    ("limits", "cpu"): "CKV_K8S_11",
    ("requests", "memory"): "CKV_K8S_12",
    ("limits", "memory"): "CKV_K8S_13",
}


def check_requests_and_limits(resource: Resource, stack: Stack) -> list[Problem]:
    spec = pod_spec(resource)
    if spec is None:
        return []
    problems = []
    for what, container in containers(spec, "initContainers", "containers"):
        amounts = container.get("resources")
        if isinstance(amounts, Unknown):
            continue
        missing = [
            f"{group}.{name}"
            for (group, name), check in _RESOURCE_CHECKS.items()
            if _at(amounts, (group, name)) is None and not resource.skips(check)
        ]
        if missing:
            problems.append(
                Problem(
                    f"{what}: no {', '.join(missing)}",
                    "set requests and limits from the component's `resources` config (kube.container() does)",
                )
            )
    return problems


def check_health_probes(resource: Resource, stack: Stack) -> list[Problem]:
    spec = pod_spec(resource)
    if spec is None or resource.kind in RUN_TO_COMPLETION:
        return []
    problems = []
    for what, container in containers(spec, "containers"):
        missing = [
            probe
            for probe, check in (("livenessProbe", "CKV_K8S_8"), ("readinessProbe", "CKV_K8S_9"))
            if container.get(probe) is None and not resource.skips(check)
        ]
        if missing:
            problems.append(
                Problem(f"{what}: no {' or '.join(missing)}", "pass liveness= and readiness= probes to kube.container()")
            )
    return problems


def check_read_only_root(resource: Resource, stack: Stack) -> list[Problem]:
    spec = pod_spec(resource)
    if spec is None or resource.skips("CKV_K8S_22"):
        return []
    problems = []
    for what, container in containers(spec, "initContainers", "containers"):
        read_only = _at(container, ("securityContext", "readOnlyRootFilesystem"))
        if read_only is not True and not isinstance(read_only, Unknown):
            problems.append(
                Problem(
                    f"{what}: root filesystem is writable",
                    "set readOnlyRootFilesystem (kube.container() does) and mount emptyDirs where the program writes",
                )
            )
    return problems


#: Resource types that hold data (besides StatefulSets with volume claims and the kind cluster).
STATEFUL_TYPES = {
    "kubernetes:core/v1:PersistentVolumeClaim",
    "kubernetes:core/v1:PersistentVolume",
    "docker:index/volume:Volume",
    "aws:s3/bucket:Bucket",
    "aws:s3/bucketV2:BucketV2",
    "aws:rds/instance:Instance",
    "aws:rds/cluster:Cluster",
    "aws:ecr/repository:Repository",
    "aws:eks/cluster:Cluster",
}
CLUSTER_COMPONENT = "mlplane:cluster:Cluster"


def is_stateful(resource: Resource) -> bool:
    """Holds data that a delete destroys: volumes, buckets, databases, the local cluster."""
    if resource.type in STATEFUL_TYPES:
        return True
    if resource.kind == "StatefulSet":
        claims = _at(resource.props, ("spec", "volumeClaimTemplates"))
        return isinstance(claims, list) and bool(claims)
    # The command that creates the kind cluster: deleting it deletes every volume inside.
    return resource.type == "command:local:Command" and resource.parent_type == CLUSTER_COMPONENT


def check_stateful_protection(resource: Resource, stack: Stack) -> list[Problem]:
    if stack.throwaway or not is_stateful(resource):
        return []
    fix = "create it with platform.stateful(self) (protect and retain_on_delete unless lifecycle.throwaway)"
    problems = []
    if not resource.protect:
        problems.append(Problem("stateful resource is not protected: `pulumi destroy` or a rename deletes its data", fix))
    if resource.retain_on_delete is False:
        problems.append(Problem("stateful resource is not retained on delete", fix))
    if resource.kind == "StatefulSet":
        policy = _at(resource.props, ("spec", "persistentVolumeClaimRetentionPolicy", "whenDeleted"))
        if policy == "Delete":
            problems.append(
                Problem(
                    "persistentVolumeClaimRetentionPolicy.whenDeleted is Delete: deleting the StatefulSet deletes its volumes",
                    "use 'Retain' unless platform.protect_stateful is false",
                )
            )
    return problems
