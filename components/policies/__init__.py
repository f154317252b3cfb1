"""The platform's guardrails, defined once and run in two places.

Every rule is a plain function over a neutral view of a resource (:class:`Resource`: type token,
name, URN, inputs, ``protect``) and of the stack (:class:`Stack`: name, throwaway or not, which
config keys are secure). It returns :class:`Problem` s, each with the fix.

- ``mlplane plan`` (``components/tooling/plan.py``) builds the views from an offline render
  (:class:`mlplane.tooling.render.Recorded`), where everything is known: inputs, ``protect``,
  ``retain_on_delete`` and which inputs are Pulumi secrets.
- The Pulumi policy pack (``components/policypack``, ``pulumi preview --policy-pack``) builds
  them from pulumi-policy's ``ResourceValidationArgs`` and ``StackValidationArgs``
  (:func:`pack_policies`). The engine does not tell a policy pack which inputs are secrets nor
  whether ``retain_on_delete`` is set, and values computed by other resources may be unknown
  during a preview: those parts of a rule are skipped there (each policy's ``engine_note``).

Deliberate exceptions use the mechanism checkov already honours: an inline
``checkov.io/skip<N>: <CHECK>=<reason>`` annotation on the object (``kube.checkov_skips``). A
rule part that corresponds to a checkov check is not reported on an object that skips it.

``reference_markdown()`` renders ``docs/policies.md`` from the definitions below.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Mapping

import yaml

#: The label marking a team's objects: the value of ``kube.TEAM_LABEL``, repeated rather than imported
#: because ``mlplane.core.kube`` loads the Pulumi SDK, which `mlplane validate` never needs
#: (tests/test_fast_paths.py pins that the two agree).
TEAM_LABEL = "mlplane.dev/team"

if TYPE_CHECKING:
    import pulumi_policy

Enforcement = Literal["mandatory", "advisory"]
MANDATORY: Enforcement = "mandatory"
ADVISORY: Enforcement = "advisory"

#: Label that marks a namespace as a team's (its value is the team name).
#: Annotation explaining why a namespace enforces a Pod Security level other than 'restricted'.
POD_SECURITY_REASON = "mlplane.dev/pod-security-reason"
#: Prefixes of inline exception annotations (the ones checkov reads).
SKIP_PREFIXES = ("checkov.io/skip", "bridgecrew.io/skip")
PSS = "pod-security.kubernetes.io/"


class Unknown:
    """A value the engine cannot know yet (computed by another resource during a preview)."""

    def __repr__(self) -> str:
        return "<unknown>"


#: The one instance rules compare against: parts of a rule that need an unknown value are skipped.
UNKNOWN = Unknown()


@dataclass(frozen=True)
class Resource:
    """One resource as the rules see it, from an offline render or from the engine."""

    type: str
    name: str
    urn: str
    #: Inputs; Kubernetes objects carry camelCase ``apiVersion``, ``kind``, ``metadata``, ``spec``.
    props: Mapping[str, Any]
    protect: bool = False
    #: ``None`` when not known (the engine does not pass it to policy packs).
    retain_on_delete: bool | None = None
    #: Dotted paths of inputs that are Pulumi secrets; ``None`` when not known (policy packs).
    secret_paths: frozenset[str] | None = None

    @property
    def kind(self) -> str:
        """The Kubernetes kind (last part of the type token), '' for other resources."""
        return self.type.rsplit(":", 1)[-1] if self.is_kubernetes_object else ""

    @property
    def is_kubernetes_object(self) -> bool:
        if not self.type.startswith("kubernetes:") or self.type.startswith(
            ("kubernetes:helm.sh/", "kubernetes:yaml", "kubernetes:kustomize")
        ):
            return False
        return not self.type.endswith(("Patch", "List"))

    @property
    def metadata(self) -> Mapping[str, Any]:
        meta = self.props.get("metadata")
        return meta if isinstance(meta, Mapping) else {}

    @property
    def parent_type(self) -> str | None:
        """Type token of the parent, read from the URN's qualified type."""
        parts = self.urn.split("::")
        chain = parts[2].split("$") if len(parts) > 3 else []
        return chain[-2] if len(chain) > 1 else None

    @property
    def label(self) -> str:
        """How reports name the resource: ``Kind/namespace/name`` for Kubernetes objects."""
        if self.is_kubernetes_object:
            meta = self.metadata
            name, namespace = meta.get("name", self.name), meta.get("namespace")
            name = self.name if isinstance(name, Unknown) else name
            if namespace and not isinstance(namespace, Unknown):
                return f"{self.kind}/{namespace}/{name}"
            return f"{self.kind}/{name}"
        return f"{self.type.rsplit(':', 1)[-1]} {self.name}"

    def is_secret(self, path: str) -> bool | None:
        """Whether the input at ``path`` (or what contains it) is a Pulumi secret; None if unknown."""
        if self.secret_paths is None:
            return None
        return any(path == p or path.startswith(p + ".") or path.startswith(p + "[") or p == "" for p in self.secret_paths)

    def skips(self, check: str) -> bool:
        """Whether the object carries an inline exception for this checkov check."""
        annotations = self.metadata.get("annotations")
        if not isinstance(annotations, Mapping):
            return False
        return any(
            key.startswith(SKIP_PREFIXES) and isinstance(value, str) and value.split("=", 1)[0].strip() == check
            for key, value in annotations.items()
        )


@dataclass(frozen=True)
class Stack:
    """The stack the resources belong to."""

    name: str
    #: ``lifecycle.throwaway`` of the platform config: stateful resources may be deleted.
    throwaway: bool = False
    #: Every top-level config key and whether it is ``secure:``; ``None`` when not known.
    config_secure: Mapping[str, bool] | None = None


@dataclass(frozen=True)
class Problem:
    """What is wrong and how to fix it; stack rules also say which resource it is about."""

    message: str
    fix: str
    resource: Resource | None = None


@dataclass(frozen=True)
class Violation:
    """A problem reported by one policy, ready for a report."""

    policy: str
    enforcement: Enforcement
    resource: str
    urn: str | None
    message: str
    fix: str

    def as_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "enforcement": self.enforcement,
            "resource": self.resource,
            "urn": self.urn,
            "message": self.message,
            "fix": self.fix,
        }


ResourceCheck = Callable[[Resource, Stack], list[Problem]]
StackCheck = Callable[[list[Resource], Stack], list[Problem]]


@dataclass(frozen=True)
class Policy:
    """One guardrail: its check, why it exists, how strictly it is enforced and what it covers."""

    name: str
    description: str
    rationale: str
    enforcement: Enforcement
    applies_to: str
    remediation: str
    resource_check: ResourceCheck | None = None
    stack_check: StackCheck | None = None
    #: Inline checkov exceptions that switch off the matching part of the rule.
    checkov: tuple[str, ...] = ()
    #: What the policy pack (running under the engine) sees differently from ``mlplane plan``.
    engine_note: str = ""
    #: Why the policy cannot be evaluated for a stack (None: it can).
    not_applicable: Callable[[Stack], str | None] | None = None

    def __post_init__(self) -> None:
        if (self.resource_check is None) == (self.stack_check is None):
            raise ValueError(f"policy {self.name}: give exactly one of resource_check or stack_check")

    @property
    def scope(self) -> str:
        return "resource" if self.resource_check is not None else "stack"

    def inapplicable(self, stack: Stack) -> str | None:
        """Why the policy does not apply to this stack, or None."""
        return self.not_applicable(stack) if self.not_applicable is not None else None


# --------------------------------------------------------------------------------------------
# Reading Kubernetes objects
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Security baseline (mandatory)
# --------------------------------------------------------------------------------------------


def check_pod_security_admission(resource: Resource, stack: Stack) -> list[Problem]:
    if resource.kind != "Namespace":
        return []
    labels = resource.metadata.get("labels")
    annotations = resource.metadata.get("annotations")
    if isinstance(labels, Unknown):
        return []
    labels = labels if isinstance(labels, Mapping) else {}
    annotations = annotations if isinstance(annotations, Mapping) else {}
    enforce = labels.get(PSS + "enforce")
    version = labels.get(PSS + "enforce-version")
    problems = []
    fix_create = "create namespaces with kube.namespace(), which labels them for Pod Security 'restricted'"
    if enforce is None:
        return [Problem(f"no '{PSS}enforce' label: Pod Security admission does not apply", fix_create)]
    if isinstance(enforce, Unknown):
        return []
    if enforce != "restricted":
        if TEAM_LABEL in labels:
            problems.append(
                Problem(
                    f"team namespace enforces Pod Security '{enforce}'",
                    "team namespaces always enforce 'restricted': tenants get no privileged pods",
                )
            )
        elif not annotations.get(POD_SECURITY_REASON):
            problems.append(
                Problem(
                    f"enforces Pod Security '{enforce}' without saying why",
                    f"pass reason=... to kube.namespace() (annotation '{POD_SECURITY_REASON}'), or enforce 'restricted'",
                )
            )
    if version is None or version == "latest":
        problems.append(
            Problem(
                f"'{PSS}enforce-version' is {'missing' if version is None else 'latest'}: the level's meaning changes with the cluster",
                "pin it to versions.POD_SECURITY_VERSION (kube.namespace() does)",
            )
        )
    return problems


def _effective(container: Mapping[str, Any], pod: Mapping[str, Any], key: str) -> Any:
    """A security setting of the container, falling back to the pod's."""
    own = _at(container, ("securityContext", key))
    return own if own is not None else _at(pod, ("securityContext", key))


def check_restricted_security_context(resource: Resource, stack: Stack) -> list[Problem]:
    spec = pod_spec(resource)
    if spec is None:
        return []
    fix = "build containers with kube.container() and pods with kube.Workload (restricted security context)"
    problems: list[Problem] = []

    def report(check: str, message: str) -> None:
        if not resource.skips(check):
            problems.append(Problem(message, f"{fix}, or document an exception with kube.checkov_skips(('{check}', reason))"))

    for flag, check in (("hostNetwork", "CKV_K8S_19"), ("hostPID", "CKV_K8S_17"), ("hostIPC", "CKV_K8S_18")):
        if spec.get(flag) is True:
            report(check, f"pod sets {flag}: it shares the node's namespace")
    volumes = spec.get("volumes")
    for volume in volumes if isinstance(volumes, list) else []:
        if isinstance(volume, Mapping) and volume.get("hostPath") is not None:
            problems.append(Problem(f"volume '{volume.get('name')}' mounts a hostPath", "use an emptyDir, a PersistentVolumeClaim, a ConfigMap or a Secret"))
    for what, container in containers(spec):
        non_root = _effective(container, spec, "runAsNonRoot")
        if non_root is not True and not isinstance(non_root, Unknown):
            report("CKV_K8S_23", f"{what}: runAsNonRoot is not true")
        uid = _effective(container, spec, "runAsUser")
        if not isinstance(uid, Unknown) and not (number(uid) or 0) > 0:
            report("CKV_K8S_40", f"{what}: no fixed non-root runAsUser")
        if _at(container, ("securityContext", "allowPrivilegeEscalation")) is not False:
            report("CKV_K8S_20", f"{what}: allowPrivilegeEscalation is not false")
        if _at(container, ("securityContext", "privileged")) is True:
            report("CKV_K8S_16", f"{what}: runs privileged")
        drop = _at(container, ("securityContext", "capabilities", "drop"))
        if not isinstance(drop, Unknown) and not (isinstance(drop, list) and "ALL" in drop):
            report("CKV_K8S_37", f"{what}: does not drop ALL capabilities")
        add = _at(container, ("securityContext", "capabilities", "add"))
        extra = sorted(set(add) - ALLOWED_CAPABILITIES) if isinstance(add, list) else []
        if extra:
            report("CKV_K8S_25", f"{what}: adds capabilities {', '.join(map(str, extra))}")
        seccomp = _effective(container, spec, "seccompProfile")
        kind = _at(seccomp, ("type",)) if isinstance(seccomp, Mapping) else seccomp
        if not isinstance(kind, Unknown) and kind not in ("RuntimeDefault", "Localhost"):
            report("CKV_K8S_31", f"{what}: no RuntimeDefault seccomp profile")
    return problems


def check_service_account_token(resource: Resource, stack: Stack) -> list[Problem]:
    spec = pod_spec(resource)
    if spec is None or resource.skips("CKV_K8S_38"):
        return []
    automount = spec.get("automountServiceAccountToken")
    account = spec.get("serviceAccountName")
    if automount is False or isinstance(automount, Unknown) or isinstance(account, Unknown):
        return []
    if account in (None, "", "default"):
        return [
            Problem(
                "pod mounts the default service account's API token",
                "set automountServiceAccountToken: false (kube.Workload does), or give the pod its own "
                "ServiceAccount with a namespaced Role when it talks to the API",
            )
        ]
    return []


def check_secrets_by_reference(resource: Resource, stack: Stack) -> list[Problem]:
    problems: list[Problem] = []
    spec = pod_spec(resource)
    if spec is not None:
        fix = "read it from a Secret: env valueFrom.secretKeyRef (kube.secret_env) or a Secret volume"
        for what, container in containers(spec):
            env = container.get("env")
            for item in env if isinstance(env, list) else []:
                if not isinstance(item, Mapping):
                    continue
                name, value = item.get("name"), item.get("value")
                if isinstance(name, str) and isinstance(value, str) and value and looks_secret(name) and not value.startswith("/"):
                    problems.append(Problem(f"{what}: env {name} holds a literal value", fix))
        if resource.is_secret(pod_spec_path(resource)):
            problems.append(
                Problem(
                    "a Pulumi secret is written into the pod template (env value, args or command): "
                    "it shows in plain text in the object",
                    fix,
                )
            )
    if resource.kind == "Secret" and resource.secret_paths is not None:
        for block in ("stringData", "data"):
            values = resource.props.get(block)
            if not isinstance(values, Mapping) or resource.is_secret(block):
                continue
            for key, value in values.items():
                if looks_secret(key) and value:
                    problems.append(
                        Problem(
                            f"{block}.{key} is a literal in the program, not a Pulumi secret",
                            "generate it with pulumi_random.RandomPassword or read it with "
                            "Config.require_secret (a `*_key` field of the config)",
                        )
                    )
    return problems


def check_no_default_namespace(resource: Resource, stack: Stack) -> list[Problem]:
    kind = resource.kind
    if not kind or kind in CLUSTER_SCOPED or kind.startswith("Cluster") or resource.skips("CKV_K8S_21"):
        return []
    namespace = resource.metadata.get("namespace")
    if isinstance(namespace, Unknown):
        return []
    if namespace in (None, "", "default"):
        return [
            Problem(
                f"{kind} is created in the 'default' namespace",
                "set metadata.namespace to the component's namespace (f\"{platform.name}-<component>\")",
            )
        ]
    return []


# --------------------------------------------------------------------------------------------
# Platform rules
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Stack rules
# --------------------------------------------------------------------------------------------


def _namespace_of(resource: Resource) -> Any:
    return resource.metadata.get("namespace")


def check_team_isolation(resources: list[Resource], stack: Stack) -> list[Problem]:
    teams: dict[str, Resource] = {}
    for resource in resources:
        labels = resource.metadata.get("labels") if resource.kind == "Namespace" else None
        name = resource.metadata.get("name")
        if isinstance(labels, Mapping) and TEAM_LABEL in labels and isinstance(name, str):
            teams[name] = resource
    if not teams:
        return []
    problems = []
    for namespace, ns_resource in sorted(teams.items()):
        inside = [r for r in resources if _namespace_of(r) == namespace]
        if not any(_is_default_deny(r) for r in inside):
            problems.append(
                Problem(
                    "team namespace has no default-deny NetworkPolicy for ingress and egress",
                    "add a NetworkPolicy with podSelector: {} and policyTypes [Ingress, Egress] and no rules, "
                    "then explicit allows (DNS, the platform services the team uses)",
                    ns_resource,
                )
            )
        for kind, why in (("ResourceQuota", "caps the team's CPU, memory, storage and GPUs"), ("LimitRange", "gives every container default requests and limits")):
            if not any(r.kind == kind for r in inside):
                problems.append(Problem(f"team namespace has no {kind}", f"add a {kind} in the namespace: it {why}", ns_resource))
    members = _team_subjects(resources, set(teams))
    for resource in resources:
        if resource.kind != "ClusterRoleBinding":
            continue
        subjects = resource.props.get("subjects")
        for subject in subjects if isinstance(subjects, list) else []:
            if isinstance(subject, Mapping) and _subject_key(subject) in members:
                problems.append(
                    Problem(
                        f"binds team subject {subject.get('kind')} '{subject.get('name')}' cluster-wide",
                        "grant tenants namespaced Roles with RoleBindings in their namespace only",
                        resource,
                    )
                )
    return problems


def _is_default_deny(resource: Resource) -> bool:
    if resource.kind != "NetworkPolicy":
        return False
    spec = resource.props.get("spec")
    if not isinstance(spec, Mapping):
        return False
    selector = spec.get("podSelector")
    types = spec.get("policyTypes")
    return (
        isinstance(selector, Mapping)
        and not selector.get("matchLabels")
        and not selector.get("matchExpressions")
        and isinstance(types, list)
        and {"Ingress", "Egress"} <= set(types)
        and not spec.get("ingress")
        and not spec.get("egress")
    )


def _subject_key(subject: Mapping[str, Any]) -> tuple[Any, ...]:
    kind = subject.get("kind")
    if kind == "ServiceAccount":
        return (kind, subject.get("namespace"), subject.get("name"))
    return (kind, subject.get("name"))


def _team_subjects(resources: list[Resource], team_namespaces: set[str]) -> set[tuple[Any, ...]]:
    """Subjects belonging to a team: its namespaces' service accounts and whoever its RoleBindings bind."""
    found: set[tuple[Any, ...]] = set()
    for resource in resources:
        namespace = _namespace_of(resource)
        if namespace not in team_namespaces:
            continue
        if resource.kind == "ServiceAccount":
            found.add(("ServiceAccount", namespace, resource.metadata.get("name")))
        elif resource.kind == "RoleBinding":
            subjects = resource.props.get("subjects")
            for subject in subjects if isinstance(subjects, list) else []:
                if isinstance(subject, Mapping):
                    found.add(_subject_key(subject))
    return found


def _throwaway(stack: Stack) -> str | None:
    return "throwaway stack (lifecycle.throwaway): stateful resources may be deleted" if stack.throwaway else None


def _no_stack_config(stack: Stack) -> str | None:
    return "the stack's config file is not known (rendered from --config, or not found)" if stack.config_secure is None else None


def check_plain_secret_config(resources: list[Resource], stack: Stack) -> list[Problem]:
    if stack.config_secure is None:
        return []
    return [
        Problem(
            f"stack config key '{key}' looks like a secret but is stored in plain text",
            f"pulumi config set --secret {key} <value> --stack {stack.name} (and rotate the value: it is in git history)",
        )
        for key, secure in sorted(stack.config_secure.items())
        if not secure and looks_secret(key.split(":", 1)[-1])
    ]


def check_disruption_budgets(resources: list[Resource], stack: Stack) -> list[Problem]:
    budgets = [r for r in resources if r.kind == "PodDisruptionBudget"]
    scaled = {
        (_namespace_of(r), _at(r.props, ("spec", "scaleTargetRef", "name"))): _at(r.props, ("spec", "minReplicas"))
        for r in resources
        if r.kind == "HorizontalPodAutoscaler"
    }
    problems = []
    for resource in resources:
        if resource.kind not in ("Deployment", "StatefulSet"):
            continue
        key = (_namespace_of(resource), resource.metadata.get("name"))
        count = number(scaled.get(key, _at(resource.props, ("spec", "replicas"))))
        if count is None or count < 2:
            continue
        replicas = int(count)
        labels = _at(resource.props, ("spec", "template", "metadata", "labels"))
        labels = labels if isinstance(labels, Mapping) else {}
        matching = [b for b in budgets if _namespace_of(b) == key[0] and _selects(b, labels)]
        fix = "add a policy/v1 PodDisruptionBudget selecting the pods with minAvailable below the replicas"
        if not matching:
            problems.append(Problem(f"{replicas} replicas and no PodDisruptionBudget: a node drain may stop them all", fix, resource))
        elif not any(_allows_eviction(b, replicas) for b in matching):
            problems.append(Problem(f"its PodDisruptionBudget allows no eviction at {replicas} replicas: node drains block", fix, resource))
    return problems


#: Limits of a progressive canary's analysis (policy 'progressive-delivery-analysis').
CANARY_MAX_ERROR_RATE = 0.5
CANARY_MAX_WEIGHT = 50
CANARY_MIN_INTERVAL_SECONDS = 30
_GO_DURATION = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)?(?:ns|us|µs|ms|s|m|h))+$")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def go_duration_seconds(value: Any) -> float | None:
    """Seconds in a Go duration such as '1m30s' (Flagger's intervals), None when it is not one."""
    if not isinstance(value, str) or not _GO_DURATION.match(value):
        return None
    return sum(float(n) * _GO_UNITS[u] for n, u in re.findall(r"([0-9.]+)(ns|us|µs|ms|s|m|h)", value))


def check_canary_analysis(resource: Resource, stack: Stack) -> list[Problem]:
    """A Flagger Canary (flagger.app) whose analysis can roll a bad version back in time."""
    if resource.kind != "Canary" or not str(resource.props.get("apiVersion", "")).startswith("flagger.app/"):
        return []
    analysis = _at(resource.props, ("spec", "analysis"))
    if isinstance(analysis, Unknown):
        return []
    analysis = analysis if isinstance(analysis, Mapping) else {}
    problems: list[Problem] = []
    if _at(resource.props, ("spec", "skipAnalysis")) is True:
        problems.append(Problem("spec.skipAnalysis is true: every version is promoted without a check",
                                "remove skipAnalysis (a fixed-weight canary is the mode without analysis)"))
    metrics = analysis.get("metrics")
    if not isinstance(metrics, Unknown) and not metrics:
        problems.append(Problem("spec.analysis has no metrics: a failing version is promoted anyway",
                                "check the route's error rate and latency (progressive.canary_spec does)"))
    for index, metric in enumerate(metrics if isinstance(metrics, list) else []):
        if not isinstance(metric, Mapping):
            continue
        name = str(metric.get("name", ""))
        limit = _at(metric, ("thresholdRange", "max"))
        if "error" in name and number(limit) is not None and (number(limit) or 0) > CANARY_MAX_ERROR_RATE:
            problems.append(Problem(
                f"spec.analysis.metrics[{index}] '{name}' allows an error rate of {limit} (above {CANARY_MAX_ERROR_RATE})",
                f"set serving.models[].canary.thresholds.error_rate to at most {CANARY_MAX_ERROR_RATE}, e.g. 0.01"))
        if name == "request-success-rate" and number(_at(metric, ("thresholdRange", "min"))) is not None and (
            number(_at(metric, ("thresholdRange", "min"))) or 0
        ) < 100 * (1 - CANARY_MAX_ERROR_RATE):
            problems.append(Problem(
                f"spec.analysis.metrics[{index}] 'request-success-rate' accepts under "
                f"{100 * (1 - CANARY_MAX_ERROR_RATE):.0f}% successful requests",
                "raise thresholdRange.min, e.g. to 99"))
    weights = analysis.get("stepWeights")
    reached = [w for w in (weights if isinstance(weights, list) else []) if number(w) is not None]
    for key in ("maxWeight", "stepWeight"):
        if number(analysis.get(key)) is not None:
            reached.append(analysis[key])
    too_high = [w for w in reached if (number(w) or 0) > CANARY_MAX_WEIGHT]
    if too_high:
        problems.append(Problem(
            f"the canary reaches {max(number(w) or 0 for w in too_high):g}% of the requests before promotion "
            f"(above {CANARY_MAX_WEIGHT}%): a bad version answers most users before it is rolled back",
            f"keep serving.models[].canary.steps at or below {CANARY_MAX_WEIGHT}, e.g. [10, 25, 50]"))
    interval = analysis.get("interval")
    seconds = go_duration_seconds(interval)
    if not isinstance(interval, Unknown) and (seconds is None or seconds < CANARY_MIN_INTERVAL_SECONDS):
        problems.append(Problem(
            f"spec.analysis.interval {interval!r} is not a duration of at least {CANARY_MIN_INTERVAL_SECONDS}s: "
            "a rate over a shorter window has too few Prometheus samples to judge the canary",
            f"set serving.models[].canary.interval to {CANARY_MIN_INTERVAL_SECONDS}s or more, e.g. 1m"))
    return problems


def _selects(budget: Resource, labels: Mapping[str, Any]) -> bool:
    selector = _at(budget.props, ("spec", "selector", "matchLabels"))
    return isinstance(selector, Mapping) and bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _allows_eviction(budget: Resource, replicas: int) -> bool:
    spec = budget.props.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    min_available, max_unavailable = spec.get("minAvailable"), spec.get("maxUnavailable")
    if max_unavailable is not None:
        return number(max_unavailable) != 0 and max_unavailable != "0%"
    if number(min_available) is not None:
        return (number(min_available) or 0) < replicas
    if isinstance(min_available, str) and min_available.endswith("%"):
        needed = -(-int(min_available[:-1]) * replicas // 100)
        return needed < replicas
    return True


# --------------------------------------------------------------------------------------------
# The policies
# --------------------------------------------------------------------------------------------

POLICIES: tuple[Policy, ...] = (
    Policy(
        name="pod-security-admission",
        description="Namespaces enforce Pod Security 'restricted' at a pinned version.",
        rationale=(
            "The admission controller is the last line of defence: it rejects privileged pods even "
            "when a manifest or a Helm chart forgets a security context. The enforce version is "
            "pinned so a cluster upgrade does not change what 'restricted' means under running "
            "workloads. A component that truly needs 'baseline' says why on the namespace; team "
            "namespaces never get less than 'restricted'."
        ),
        enforcement=MANDATORY,
        applies_to="Namespace",
        remediation="Create namespaces with kube.namespace(); give reason=... for anything but 'restricted'.",
        resource_check=check_pod_security_admission,
    ),
    Policy(
        name="restricted-security-context",
        description="Pods run as a fixed non-root user without privilege escalation, capabilities or host namespaces.",
        rationale=(
            "The Pod Security Standards 'restricted' profile: runAsNonRoot with a fixed UID, "
            "allowPrivilegeEscalation false, all capabilities dropped, the RuntimeDefault seccomp "
            "profile, no privileged containers, no host network, PID or IPC namespace and no "
            "hostPath volumes. Checked on the object so a violation shows in review, not as a pod "
            "that admission rejects after `pulumi up`."
        ),
        enforcement=MANDATORY,
        applies_to="Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob",
        remediation="Use kube.container() and kube.Workload; document a real exception with kube.checkov_skips().",
        resource_check=check_restricted_security_context,
        checkov=("CKV_K8S_16", "CKV_K8S_17", "CKV_K8S_18", "CKV_K8S_19", "CKV_K8S_20", "CKV_K8S_23", "CKV_K8S_25", "CKV_K8S_31", "CKV_K8S_37", "CKV_K8S_40"),
    ),
    Policy(
        name="service-account-token",
        description="Pods do not mount a service account token unless they talk to the Kubernetes API.",
        rationale=(
            "A mounted token lets anyone who gets code execution in the pod call the API as its "
            "service account. Pods that need the API get their own ServiceAccount bound to a "
            "namespaced Role; every other pod sets automountServiceAccountToken: false."
        ),
        enforcement=MANDATORY,
        applies_to="Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob",
        remediation="kube.Workload sets automountServiceAccountToken false; set service_account and automount_token for API clients.",
        resource_check=check_service_account_token,
        checkov=("CKV_K8S_38",),
    ),
    Policy(
        name="secrets-by-reference",
        description="Secrets reach pods only through Secret references, and Secret values are Pulumi secrets.",
        rationale=(
            "An env literal puts the secret in the Deployment object, readable by anyone who can "
            "read workloads, and in every `kubectl describe`. A Secret value written as a literal "
            "in the program is in git. Generated or configured secrets stay Pulumi secrets all the "
            "way, so the state file encrypts them."
        ),
        enforcement=MANDATORY,
        applies_to="workloads (env values with secret-looking names, Pulumi secrets in the pod template); Secret (data, stringData)",
        remediation="Use kube.secret_env() for env vars; generate values with RandomPassword or read them with Config.require_secret.",
        resource_check=check_secrets_by_reference,
        engine_note=(
            "The engine does not tell policy packs which inputs are secrets: under `pulumi preview` "
            "only env literals with secret-looking names are checked; `mlplane plan` also finds "
            "Pulumi secrets inlined into pod templates and Secret values that are not secrets."
        ),
    ),
    Policy(
        name="no-default-namespace",
        description="Namespaced objects are never created in the 'default' namespace.",
        rationale=(
            "Every component owns a namespace (`<platform>-<component>`) with its Pod Security "
            "labels, network policies and quotas; an object in 'default' escapes all of them."
        ),
        enforcement=MANDATORY,
        applies_to="every namespaced Kubernetes object",
        remediation="Set metadata.namespace to the component's namespace.",
        resource_check=check_no_default_namespace,
        checkov=("CKV_K8S_21",),
    ),
    Policy(
        name="pinned-images",
        description="Container images and Helm charts are pinned to exact versions.",
        rationale=(
            "A floating tag ('latest', or none) or a chart version range makes the same config "
            "deploy different software on different days, so a preview no longer says what `up` "
            "will run and a rollback does not roll back. Versions live in versions.py."
        ),
        enforcement=MANDATORY,
        applies_to="workload containers; Helm charts (chart version, image references in values)",
        remediation="Use platform.image(key) and versions.CHARTS.",
        resource_check=check_pinned_images,
        checkov=("CKV_K8S_14",),
    ),
    Policy(
        name="requests-and-limits",
        description="Every container sets CPU and memory requests and limits.",
        rationale=(
            "Requests let the scheduler place pods and keep the platform's footprint predictable "
            "(`mlplane footprint`); limits stop one workload from starving the others on a laptop "
            "or a shared cluster."
        ),
        enforcement=MANDATORY,
        applies_to="containers and init containers of workloads",
        remediation="Pass the component's `resources` config to kube.container().",
        resource_check=check_requests_and_limits,
        checkov=("CKV_K8S_10", "CKV_K8S_11", "CKV_K8S_12", "CKV_K8S_13"),
    ),
    Policy(
        name="stateful-protection",
        description="Stateful resources are protected and retained on delete outside throwaway stacks.",
        rationale=(
            "Volumes, databases, buckets, the registry volume and the local cluster hold data a "
            "delete cannot bring back. Outside a stack marked `lifecycle.throwaway`, `protect` "
            "stops `pulumi destroy` and accidental replacements, and `retain_on_delete` keeps the "
            "data if the resource leaves the program."
        ),
        enforcement=MANDATORY,
        applies_to=(
            "PersistentVolumeClaim, PersistentVolume, StatefulSet with volumeClaimTemplates, Docker "
            "volumes, the kind cluster; for the AWS target: S3 buckets, RDS, ECR repositories, EKS clusters"
        ),
        remediation="Create stateful children with platform.stateful(self).",
        resource_check=check_stateful_protection,
        not_applicable=_throwaway,
        engine_note="The engine does not pass retain_on_delete to policy packs: under `pulumi preview` only protect is checked.",
    ),
    Policy(
        name="team-namespace-isolation",
        description="Team namespaces come with default-deny networking, a quota and limits, and no cluster-wide grants.",
        rationale=(
            "Tenancy as Kubeflow profiles and deployKF do it: a namespace labelled "
            f"'{TEAM_LABEL}' starts closed (a NetworkPolicy denying all ingress and egress, "
            "explicit allows added next to it), is capped by a ResourceQuota and a LimitRange, and "
            "its people and service accounts get namespaced Roles only: a ClusterRoleBinding to a "
            "team subject would reach every other team (CIS 5.3.2)."
        ),
        enforcement=MANDATORY,
        applies_to=f"the whole stack: Namespaces labelled {TEAM_LABEL}, NetworkPolicy, ResourceQuota, LimitRange, ClusterRoleBinding",
        remediation="Create team environments with mlplane's team component; bind team subjects with RoleBindings.",
        stack_check=check_team_isolation,
    ),
    Policy(
        name="no-plain-secret-config",
        description="Stack config keys that look secret are stored encrypted (`secure:`).",
        rationale=(
            "A password, token or key set without --secret sits in plain text in "
            "Pulumi.<stack>.yaml, which is committed. mlplane itself names secrets through "
            "`*_key` fields and refuses plain values for them; this catches every other key, "
            "including other providers' (e.g. a cloud access key)."
        ),
        enforcement=MANDATORY,
        applies_to="top-level stack config keys whose name contains password, token, secret, key, private or credential",
        remediation="pulumi config set --secret <key> <value>, then rotate the exposed value.",
        stack_check=check_plain_secret_config,
        not_applicable=_no_stack_config,
        engine_note=(
            "The engine passes decrypted config to policy packs without saying which keys were "
            "secure, so the pack reads `Pulumi.<stack>.yaml` of the project (found from the "
            "working directory, matched by project name) and is not applicable when it cannot find it."
        ),
    ),
    Policy(
        name="health-probes",
        description="Long-running containers have liveness and readiness probes.",
        rationale=(
            "Without a readiness probe a pod receives traffic before it can serve; without a "
            "liveness probe a hung process is never restarted. Advisory: a few upstream programs "
            "have no health endpoint, and the exception is documented on the object."
        ),
        enforcement=ADVISORY,
        applies_to="containers of Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet (not Jobs)",
        remediation="Pass liveness= and readiness= probes to kube.container().",
        resource_check=check_health_probes,
        checkov=("CKV_K8S_8", "CKV_K8S_9"),
    ),
    Policy(
        name="read-only-root-filesystem",
        description="Containers run with a read-only root filesystem.",
        rationale=(
            "A read-only root stops an intruder from dropping tools into the image and makes the "
            "writable paths explicit (emptyDirs). Advisory because the baseline asks for it "
            "'where the program allows it'; exceptions are documented on the object."
        ),
        enforcement=ADVISORY,
        applies_to="containers and init containers of workloads",
        remediation="kube.container() sets it; mount an emptyDir on each path the program writes.",
        resource_check=check_read_only_root,
        checkov=("CKV_K8S_22",),
    ),
    Policy(
        name="progressive-delivery-analysis",
        description=(
            f"Progressive canaries are checked at least every {CANARY_MIN_INTERVAL_SECONDS}s, reach at most "
            f"{CANARY_MAX_WEIGHT}% of the requests and roll back above a {CANARY_MAX_ERROR_RATE:.0%} error rate."
        ),
        rationale=(
            "Flagger promotes a canary step by step and rolls it back when a check fails. A canary "
            "without metrics or with skipAnalysis is promoted blindly; a check window under "
            f"{CANARY_MIN_INTERVAL_SECONDS}s holds too few Prometheus samples for a rate; a step above "
            f"{CANARY_MAX_WEIGHT}% sends most users to a version not yet judged; an error-rate limit above "
            f"{CANARY_MAX_ERROR_RATE:.0%} accepts a version that fails most requests."
        ),
        enforcement=MANDATORY,
        applies_to="Canary (flagger.app): analysis metrics, stepWeights, stepWeight, maxWeight, interval, skipAnalysis",
        remediation="Set serving.models[].canary (mode 'progressive') steps, interval and thresholds within these limits.",
        resource_check=check_canary_analysis,
    ),
    Policy(
        name="disruption-budgets",
        description="Replicated workloads have a PodDisruptionBudget that still allows evictions.",
        rationale=(
            "With two or more replicas (or an HPA minimum of two or more), a node drain should "
            "keep some pods serving; a budget with minAvailable equal to the replicas blocks "
            "drains forever. Advisory: single-replica workloads on a laptop are expected."
        ),
        enforcement=ADVISORY,
        applies_to="the whole stack: Deployment, StatefulSet, HorizontalPodAutoscaler, PodDisruptionBudget",
        remediation="Add a policy/v1 PodDisruptionBudget with minAvailable below the replica count.",
        stack_check=check_disruption_budgets,
    ),
)


def policy(name: str) -> Policy:
    """The policy with this name."""
    for item in POLICIES:
        if item.name == name:
            return item
    raise KeyError(name)


# --------------------------------------------------------------------------------------------
# Running the policies (mlplane plan)
# --------------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """Violations of every policy over one stack, and which policies could not apply."""

    violations: list[Violation] = field(default_factory=list)
    #: Policy name -> why it could not be evaluated here.
    not_applicable: dict[str, str] = field(default_factory=dict)

    def by_policy(self, name: str) -> list[Violation]:
        return [v for v in self.violations if v.policy == name]

    @property
    def mandatory(self) -> list[Violation]:
        return [v for v in self.violations if v.enforcement == MANDATORY]

    @property
    def advisory(self) -> list[Violation]:
        return [v for v in self.violations if v.enforcement == ADVISORY]


def evaluate(resources: list[Resource], stack: Stack, policies: Iterable[Policy] = POLICIES) -> Evaluation:
    """Run every policy over the resources of one stack."""
    result = Evaluation()
    for item in policies:
        reason = item.inapplicable(stack)
        if reason is not None:
            result.not_applicable[item.name] = reason
        elif item.resource_check is not None:
            for resource in resources:
                result.violations += [_violation(item, p, resource) for p in item.resource_check(resource, stack)]
        else:
            assert item.stack_check is not None
            result.violations += [_violation(item, p, p.resource) for p in item.stack_check(resources, stack)]
    return result


def _violation(item: Policy, problem: Problem, resource: Resource | None) -> Violation:
    return Violation(
        policy=item.name,
        enforcement=item.enforcement,
        resource=resource.label if resource is not None else "stack",
        urn=resource.urn if resource is not None else None,
        message=problem.message,
        fix=problem.fix,
    )


def config_secure_keys(stack_config: Mapping[str, Any]) -> dict[str, bool]:
    """Top-level keys of a stack's ``config:`` mapping and whether each is ``secure:``."""
    return {key: isinstance(value, Mapping) and "secure" in value for key, value in stack_config.items()}


def throwaway_from_config(config: Mapping[str, Any]) -> bool:
    """Whether an mlplane config object of the stack sets ``lifecycle.throwaway: true``.

    Values are what the engine passes (JSON strings for objects) or what a stack file holds.
    """
    for key, value in config.items():
        if not key.startswith("mlplane:"):
            continue
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                continue
        if isinstance(value, Mapping) and _at(value, ("lifecycle", "throwaway")) is True:
            return True
    return False


# --------------------------------------------------------------------------------------------
# The policy pack adapters (pulumi preview --policy-pack components/policypack)
# --------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """pulumi-policy's unknown-checking proxies as plain values, unknowns as UNKNOWN."""
    from pulumi_policy import proxy

    sentinels = {
        proxy.UNKNOWN_BOOLEAN_VALUE,
        proxy.UNKNOWN_NUMBER_VALUE,
        proxy.UNKNOWN_STRING_VALUE,
        proxy.UNKNOWN_ARRAY_VALUE,
        proxy.UNKNOWN_ASSET_VALUE,
        proxy.UNKNOWN_ARCHIVE_VALUE,
        proxy.UNKNOWN_OBJECT_VALUE,
    }

    def convert(node: Any) -> Any:
        if isinstance(node, str):
            return UNKNOWN if node in sentinels else node
        if isinstance(node, (proxy._DictProxy, proxy._ListProxy)):  # noqa: SLF001 (their escape hatch)
            node = node["__target"]
        if isinstance(node, Mapping):
            return {k: convert(v) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [convert(v) for v in node]
        return node

    return convert(value)


def resource_from_pack(resource_type: str, props: Any, urn: str, name: str, protect: bool) -> Resource:
    """The neutral view of what the engine hands a policy (inputs, or outputs for stack policies)."""
    plain = _plain(props)
    return Resource(type=resource_type, name=name, urn=urn, props=plain if isinstance(plain, Mapping) else {}, protect=protect)


def stack_from_environment(environ: Mapping[str, str] | None = None) -> Stack:
    """The stack a policy pack runs for: the engine sets PULUMI_STACK, PULUMI_PROJECT, PULUMI_CONFIG."""
    env = os.environ if environ is None else environ
    try:
        config = json.loads(env.get("PULUMI_CONFIG") or "{}")
    except ValueError:
        config = {}
    stack = (env.get("PULUMI_STACK") or "").rsplit("/", 1)[-1]
    stack_config = read_stack_config_file(env.get("PULUMI_PROJECT", ""), stack, _search_roots(env))
    return Stack(
        name=stack,
        throwaway=throwaway_from_config(config if isinstance(config, Mapping) else {}),
        config_secure=config_secure_keys(stack_config) if stack_config is not None else None,
    )


def _search_roots(env: Mapping[str, str]) -> list[Path]:
    """Where the project may be: the directory `pulumi` was started in, then the pack's."""
    roots = [Path(env["PWD"])] if env.get("PWD") else []
    return [*roots, Path.cwd()]


def read_stack_config_file(project: str, stack: str, roots: Iterable[Path]) -> dict[str, Any] | None:
    """The ``config:`` of ``Pulumi.<stack>.yaml`` of the project named ``project``, None if not found."""
    if not project or not stack:
        return None
    for root in roots:
        for directory in [root.resolve(), *root.resolve().parents]:
            manifest = directory / "Pulumi.yaml"
            if not manifest.is_file():
                continue
            try:
                document = yaml.safe_load(manifest.read_text()) or {}
            except (OSError, yaml.YAMLError):
                break
            if not isinstance(document, Mapping) or document.get("name") != project:
                break
            config_dir = directory / str(document.get("stackConfigDir") or ".")
            path = config_dir / f"Pulumi.{stack}.yaml"
            try:
                stack_document = yaml.safe_load(path.read_text()) or {}
            except (OSError, yaml.YAMLError):
                return None
            config = stack_document.get("config") if isinstance(stack_document, Mapping) else None
            return dict(config) if isinstance(config, Mapping) else {}
    return None


def _enforcement_level(level: Enforcement) -> pulumi_policy.EnforcementLevel:
    from pulumi_policy import EnforcementLevel

    return EnforcementLevel.MANDATORY if level == MANDATORY else EnforcementLevel.ADVISORY


def _pack_message(problem: Problem) -> str:
    return f"{problem.message}. Fix: {problem.fix}."


@functools.lru_cache(maxsize=1)
def current_stack() -> Stack:
    """The stack of this policy pack process (the engine starts one process per operation)."""
    return stack_from_environment()


def resource_validation(item: Policy, stack: Callable[[], Stack] = current_stack) -> Callable[[Any, Callable[..., None]], None]:
    """The pulumi-policy validate callback of a resource policy."""
    check = item.resource_check
    assert check is not None

    def validate(args: Any, report_violation: Callable[..., None]) -> None:
        current = stack()
        if item.inapplicable(current) is not None:
            return
        resource = resource_from_pack(args.resource_type, args.props, args.urn, args.name, bool(args.opts.protect))
        for problem in check(resource, current):
            report_violation(_pack_message(problem))

    return validate


def stack_validation(item: Policy, stack: Callable[[], Stack] = current_stack) -> Callable[[Any, Callable[..., None]], None]:
    """The pulumi-policy validate callback of a stack policy."""
    check = item.stack_check
    assert check is not None

    def validate(args: Any, report_violation: Callable[..., None]) -> None:
        current = stack()
        reason = item.inapplicable(current)
        if reason is not None:
            args.not_applicable(reason)
        resources = [
            resource_from_pack(r.resource_type, r.props, r.urn, r.name, bool(r.opts.protect)) for r in args.resources
        ]
        for problem in check(resources, current):
            urn = problem.resource.urn if problem.resource is not None else None
            report_violation(_pack_message(problem), urn)

    return validate


def pack_policies(stack: Callable[[], Stack] = current_stack) -> list[pulumi_policy.Policy]:
    """The pulumi-policy policies of the pack, built from :data:`POLICIES` (no server started).

    ``stack`` gives the stack view; the default reads the engine's environment once.
    """
    from pulumi_policy import ResourceValidationPolicy, StackValidationPolicy

    built: list[pulumi_policy.Policy] = []
    for item in POLICIES:
        common = {
            "name": item.name,
            "description": item.description,
            "enforcement_level": _enforcement_level(item.enforcement),
            "remediation_steps": item.remediation,
            "tags": ["mlplane", item.scope],
        }
        if item.resource_check is not None:
            built.append(ResourceValidationPolicy(validate=resource_validation(item, stack), **common))
        else:
            built.append(StackValidationPolicy(validate=stack_validation(item, stack), **common))
    return built


# --------------------------------------------------------------------------------------------
# The reference (docs/policies.md)
# --------------------------------------------------------------------------------------------


def reference_markdown() -> str:
    """docs/policies.md: every policy with its rationale, enforcement and coverage."""
    lines = [
        "# Policy reference",
        "",
        "<!-- Generated from components/policies/ by `mlplane docs`: do not edit by hand. -->",
        "",
        "mlplane's guardrails are defined once in `components/policies/` and run in two places:",
        "`mlplane plan` checks the offline render (no credentials, no cluster, no Pulumi CLI), and",
        "the policy pack `components/policypack` runs the same rules under the Pulumi engine",
        "(`pulumi preview --policy-pack components/policypack`). See [previewing changes in CI](ci-previews.md).",
        "",
        "- **mandatory** violations fail `mlplane plan` (exit 1) and block `pulumi preview`/`up`;",
        "- **advisory** violations are reported and do not fail.",
        "",
        "A deliberate exception to a rule part that matches a checkov check is documented on the",
        "object itself, the way checkov reads it: `kube.checkov_skips((\"CKV_K8S_22\", \"reason\"))`",
        "adds the annotation `checkov.io/skip1: CKV_K8S_22=reason`. Both checkov and these policies",
        "honour it, so there is one exception mechanism and every exception is visible in review.",
        "",
        "| policy | enforcement | scope | applies to |",
        "|---|---|---|---|",
    ]
    for item in POLICIES:
        lines.append(f"| [`{item.name}`](#{item.name}) | {item.enforcement} | {item.scope} | {item.applies_to} |")
    for item in POLICIES:
        lines += [
            "",
            f"## {item.name}",
            "",
            f"**{item.description}**",
            "",
            f"- Enforcement: **{item.enforcement}**",
            f"- Scope: {item.scope} ({'each resource' if item.scope == 'resource' else 'all resources of the stack together'})",
            f"- Applies to: {item.applies_to}",
        ]
        if item.checkov:
            lines.append(f"- Inline exceptions honoured: {', '.join(f'`{c}`' for c in item.checkov)}")
        lines += ["", item.rationale, "", f"Fix: {item.remediation}"]
        if item.engine_note:
            lines += ["", f"Under the engine: {item.engine_note}"]
    lines += [
        "",
        "## What the policy pack sees",
        "",
        "The pack adapts pulumi-policy's `ResourceValidationArgs` (type, inputs, name, URN,",
        "`opts.protect`) and `StackValidationArgs` to the same view `mlplane plan` builds from the",
        "render. The stack name, the throwaway flag (`lifecycle.throwaway` of the `mlplane:`",
        "config objects) and the config come from the `PULUMI_STACK`, `PULUMI_PROJECT` and",
        "`PULUMI_CONFIG` variables the engine sets for policy packs. During a preview, values",
        "computed by other resources can be unknown: the parts of a rule that need them are skipped",
        "instead of guessed. Helm charts are one resource each (`kubernetes:helm.sh/v4:Chart`): their",
        "chart version and the images in their values are checked, not the objects the chart renders.",
        "",
    ]
    return "\n".join(lines)
