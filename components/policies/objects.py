"""Reading Kubernetes objects: pod specs, containers, secret-looking names, pinned images."""

from __future__ import annotations

import re
from typing import Any, Iterable, Iterator, Mapping

from mlplane.policies.model import Resource, UNKNOWN, Unknown


#: Where each workload kind keeps its pod spec.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
#: Workloads that run to completion: no health probes expected.
RUN_TO_COMPLETION = {"Job", "CronJob"}
#: Built-in and well-known cluster-scoped kinds (any kind starting with 'Cluster' is too).
CLUSTER_SCOPED = {
    "Namespace",
    "Node",
    "PersistentVolume",
    "StorageClass",
    "CSIDriver",
    "CSINode",
    "VolumeAttachment",
    "PriorityClass",
    "RuntimeClass",
    "IngressClass",
    "GatewayClass",
    "CustomResourceDefinition",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "CertificateSigningRequest",
    "FlowSchema",
    "PriorityLevelConfiguration",
}
#: Capabilities Pod Security 'restricted' allows a container to add.
ALLOWED_CAPABILITIES = {"NET_BIND_SERVICE"}


def _at(node: Any, path: Iterable[str]) -> Any:
    """The value at ``path`` in nested mappings: None when absent, UNKNOWN when not known yet."""
    for key in path:
        if isinstance(node, Unknown):
            return UNKNOWN
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def number(value: Any) -> float | None:
    """A numeric value (the RPC layer turns integers into floats), None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def pod_spec(resource: Resource) -> Mapping[str, Any] | None:
    """The pod spec of a workload object, None for other objects or when not known."""
    path = POD_SPEC_PATHS.get(resource.kind)
    if path is None:
        return None
    spec = _at(resource.props, path)
    return spec if isinstance(spec, Mapping) else None


def pod_spec_path(resource: Resource) -> str:
    return ".".join(POD_SPEC_PATHS.get(resource.kind, ()))


def containers(spec: Mapping[str, Any], *groups: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(description, container) for each container of the given groups (default: all)."""
    for group in groups or ("initContainers", "containers", "ephemeralContainers"):
        items = spec.get(group)
        if not isinstance(items, list):
            continue
        for index, item in enumerate(items):
            if isinstance(item, Mapping):
                name = item.get("name")
                label = "init container" if group == "initContainers" else "container"
                shown = name if isinstance(name, str) else f"#{index}"
                yield f"{label} '{shown}'", item


_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_SECRET_WORDS = {
    "password",
    "passwd",
    "passphrase",
    "token",
    "secret",
    "key",
    "private",
    "credential",
    "credentials",
    "apikey",
}
#: Last words naming a reference to a secret rather than the secret itself.
_REFERENCE_WORDS = {"id", "path", "file", "dir", "name", "ref", "arn", "url"}


def words(name: str) -> list[str]:
    """Lower-case words of a camelCase, snake_case, kebab-case or dotted name."""
    return [w.lower() for w in _WORD.findall(name)]


def looks_secret(name: str) -> bool:
    """Whether a key or variable name suggests it holds a secret (password, token, key...)."""
    parts = words(name)
    if not parts or "public" in parts or parts[-1] in _REFERENCE_WORDS:
        return False
    return any(part in _SECRET_WORDS for part in parts)


def pinned_image(reference: str) -> bool:
    """An image pinned to a digest or to a tag other than 'latest'."""
    if "@sha256:" in reference:
        return True
    last = reference.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    return bool(tag) and tag != "latest"


_EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")
