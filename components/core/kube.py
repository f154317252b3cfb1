"""Building blocks every component uses to emit Kubernetes objects the same, secure way.

The security baseline (Pod Security "restricted", requests and limits, probes, pinned images,
no service account token unless needed) is encoded here once, so a component cannot forget it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s

from mlplane.config import versions
from mlplane.config import ImagesConfig, Resources, project_path

#: Label keys mlplane puts on everything it creates.
PART_OF = "app.kubernetes.io/part-of"
COMPONENT = "app.kubernetes.io/component"
NAME = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
MANAGED_BY = "app.kubernetes.io/managed-by"
#: Namespaces carrying this label may attach HTTPRoutes to the platform Gateway.
GATEWAY_ACCESS = "mlplane.dev/gateway-access"
#: Namespaces of a team environment carry this label (value: the team name).
TEAM_LABEL = "mlplane.dev/team"
#: Pods carrying this label are scraped by the platform Prometheus (value: the port name).
SCRAPE = "mlplane.dev/scrape"
#: Annotation explaining a deliberate exception to a security check.
CHECKOV_SKIP = "checkov.io/skip"
#: The one exception every workload carries: images are pinned by tag, not digest (CKV_K8S_43).
DIGEST_SKIP = ("CKV_K8S_43", versions.DIGEST_EXCEPTION)


def drop_digest_exception(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
    """Transformation: an object whose containers all pull by digest loses the DIGEST_SKIP note.

    Registered on the Platform and Team components, so it sees every object they create; the
    remaining ``checkov.io/skipN`` annotations are renumbered. Objects whose images are not all
    known strings with ``@sha256:`` keep the exception.
    """
    props = args.props
    meta = props.get("metadata") if isinstance(props, Mapping) else None
    notes = meta.get("annotations") if isinstance(meta, Mapping) else None
    digest_note = f"{DIGEST_SKIP[0]}={DIGEST_SKIP[1]}"
    if not isinstance(notes, Mapping) or digest_note not in notes.values():
        return None
    images = list(_container_images(props.get("spec")))
    if not images or not all(isinstance(image, str) and "@sha256:" in image for image in images):
        return None
    skips = sorted(
        ((int(k[len(CHECKOV_SKIP):]), v) for k, v in notes.items() if k.startswith(CHECKOV_SKIP) and k[len(CHECKOV_SKIP):].isdigit()),
    )
    kept = {k: v for k, v in notes.items() if not (k.startswith(CHECKOV_SKIP) and k[len(CHECKOV_SKIP):].isdigit())}
    kept.update({f"{CHECKOV_SKIP}{i + 1}": v for i, (_, v) in enumerate(s for s in skips if s[1] != digest_note)})
    metadata = {k: v for k, v in meta.items() if k != "annotations"}
    if kept:
        metadata["annotations"] = kept
    return pulumi.ResourceTransformationResult(props={**props, "metadata": metadata}, opts=args.opts)


#: Keys on the way to a pod's containers: an unresolved Output there may hide an image.
_POD_PATH = ("spec", "template", "jobTemplate", "containers", "initContainers")


def _container_images(node: Any) -> Any:
    """Every container image in a pod-bearing spec (None for one that is not a known string)."""
    if isinstance(node, pulumi.Output):
        yield None
    elif isinstance(node, Mapping):
        for key in ("containers", "initContainers"):
            containers = node.get(key) or []
            if isinstance(containers, pulumi.Output):
                yield None
                continue
            for container in containers:
                yield container.get("image") if isinstance(container, Mapping) else None
        for key in ("spec", "template", "jobTemplate"):
            if key in node:
                yield from _container_images(node[key])


#: Node label of the node groups a target splits its nodes into (AWS: ``system``, ``serving``,
#: ``gpu``; mlplane.targets.aws.eks sets it on each managed node group).
NODE_GROUP = "mlplane.dev/node-group"
#: The extended resource NVIDIA's device plugin advertises; the GPU group is tainted with it.
GPU_RESOURCE = "nvidia.com/gpu"
#: Where a pod runs: platform services on ``system``; models, their jobs and CI job pods on
#: ``serving``; pods requesting GPUs on ``gpu``.
NodeRole = Literal["system", "serving"]


@dataclass(frozen=True)
class NodePlacement:
    """How pods are pinned to node groups on a target whose nodes carry :data:`NODE_GROUP` labels
    (the AWS target's created cluster). A target without groups (local, an adopted cluster) has
    none: pods go wherever the scheduler puts them and nothing is added to their specs."""

    #: The cluster has a GPU group (tainted ``nvidia.com/gpu``): pods requesting GPUs go there.
    gpu: bool = False

    def pod(self, role: NodeRole, gpus: int = 0) -> dict[str, Any]:
        """Pod spec fields pinning a pod to its group: a ``nodeSelector`` and, for a pod asking
        for GPUs, the toleration of the GPU group's taint."""
        if gpus:
            if not self.gpu:
                raise ValueError(f"a pod requests {gpus} GPU(s) but the cluster has no GPU node group")
            return {
                "nodeSelector": {NODE_GROUP: "gpu"},
                "tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
            }
        return {"nodeSelector": {NODE_GROUP: role}}


@dataclass(frozen=True)
class Platform:
    """What every component needs to know about the platform it belongs to.

    Built once at the stack root from the validated config and handed to every component.
    """

    name: str
    provider: k8s.Provider
    protect_stateful: bool
    #: Resolves a secret config key (a ``*_key`` field of the config) to its secret value.
    secret: Callable[[str], pulumi.Output[str]]
    registry_mirror: str | None = None
    #: The config's ``images`` section (chart mirror and paths, image lock); None: upstream
    #: charts and images by tag.
    images: ImagesConfig | None = None
    #: Node groups pods are pinned to (:class:`NodePlacement`); None: no placement (local).
    placement: NodePlacement | None = None

    def place(self, role: NodeRole, gpus: int = 0) -> dict[str, Any]:
        """Pod spec fields putting a pod on its node group (merge them into the pod spec); {}
        without placement, so specs stay as they are on the local target."""
        return self.placement.pod(role, gpus) if self.placement is not None else {}

    def image(self, key: str) -> str:
        """The pinned reference of an upstream image, through the mirror when one is set, with
        its digest (``image:tag@sha256:...``) when the stack's image lock holds it."""
        ref = versions.IMAGES[key].ref(self.registry_mirror)
        lock = self.images.locked() if self.images is not None else None
        entry = (lock or {}).get("images", {}).get(key)
        if entry and entry.get("ref") == ref:
            return f"{ref}@{entry['digest']}"
        return ref

    def chart(self, key: str) -> versions.Chart:
        """Where a pinned chart comes from: a local path (no version), the chart mirror, or upstream."""
        pinned = versions.CHARTS[key]
        if self.images is None:
            return pinned
        path = self.images.chart_paths.get(key)  # type: ignore[call-overload]
        if path is not None:
            return versions.Chart(str(project_path(path)), None)
        return versions.Chart(pinned.ref(self.images.chart_mirror), pinned.version)

    def labels(self, component: str, name: str | None = None) -> dict[str, str]:
        return {
            PART_OF: self.name,
            COMPONENT: component,
            NAME: name or component,
            MANAGED_BY: "mlplane",
        }

    def selector(self, component: str, name: str | None = None) -> dict[str, str]:
        return {PART_OF: self.name, COMPONENT: component, NAME: name or component}

    def stateful(self, parent: pulumi.Resource, **kwargs: Any) -> pulumi.ResourceOptions:
        """Options for a stateful child (volume, database, bucket): protected unless throwaway."""
        return pulumi.ResourceOptions(
            parent=parent,
            protect=self.protect_stateful,
            retain_on_delete=self.protect_stateful,
            **kwargs,
        )


@dataclass(frozen=True)
class ScrapeTarget:
    """Pods the platform Prometheus scrapes: selected by labels in one namespace."""

    job: str
    namespace: pulumi.Input[str]
    selector: Mapping[str, str]
    port: str
    path: str = "/metrics"


@dataclass(frozen=True)
class Ui:
    """A web UI or endpoint the platform exposes through the Gateway."""

    key: str
    title: str
    url: pulumi.Input[str]


@dataclass(frozen=True)
class GatewayRef:
    """The platform Gateway HTTPRoutes attach to."""

    name: str
    namespace: str
    domain: str
    http_port: int
    #: Where the Envoy proxies run, when not in the Gateway's namespace (an existing Envoy
    #: Gateway in its default deploy mode runs them in its controller namespace).
    proxy_namespace: str | None = None
    #: The Gateway listeners routes attach to (``sectionName``): 'http', or the HTTPS listeners
    #: when TLS is on (mlplane.services.routing.route_listeners).
    listeners: tuple[str, ...] = ("http",)
    #: TLS ends in front of the Gateway (a cloud load balancer with its certificate): routes
    #: attach to the HTTP listener, but clients use https:// URLs.
    edge_tls: bool = False

    @property
    def tls(self) -> bool:
        return self.listeners != ("http",)

    @property
    def proxies_namespace(self) -> str:
        """The namespace traffic from the Gateway comes from (for NetworkPolicy peers)."""
        return self.proxy_namespace or self.namespace

    def host(self, prefix: str) -> str:
        return f"{prefix}.{self.domain}"

    def url(self, prefix: str) -> str:
        if self.tls or self.edge_tls:
            return f"https://{self.host(prefix)}"
        port = "" if self.http_port == 80 else f":{self.http_port}"
        return f"http://{self.host(prefix)}{port}"


# --------------------------------------------------------------------------------------------
# Pod and container specs
# --------------------------------------------------------------------------------------------


def resources(spec: Resources) -> dict[str, dict[str, str]]:
    return {
        "requests": {"cpu": spec.requests.cpu, "memory": spec.requests.memory},
        "limits": {"cpu": spec.limits.cpu, "memory": spec.limits.memory},
    }


def pod_security(uid: int, fs_group: int | None = None) -> dict[str, Any]:
    """Pod-level security context for Pod Security 'restricted' with a fixed high UID."""
    context: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if fs_group is not None:
        context["fsGroup"] = fs_group
        context["fsGroupChangePolicy"] = "OnRootMismatch"
    return context


def container_security(read_only_root: bool = True) -> dict[str, Any]:
    """Container-level security context for Pod Security 'restricted'."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only_root,
        "runAsNonRoot": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def http_probe(
    path: str, port: str | int, *, period: int = 10, failures: int = 3, initial_delay: int = 0
) -> dict[str, Any]:
    probe: dict[str, Any] = {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }
    if initial_delay:
        probe["initialDelaySeconds"] = initial_delay
    return probe


def exec_probe(command: Sequence[str], *, period: int = 10, failures: int = 3) -> dict[str, Any]:
    return {
        "exec": {"command": list(command)},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def secret_env(name: str, secret: pulumi.Input[str], key: str) -> dict[str, Any]:
    """An env var read from a Secret (never a literal)."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def checkov_skips(*reasons: tuple[str, str]) -> dict[str, str]:
    """Annotations documenting deliberate exceptions to checkov checks, inline on the object."""
    return {
        CHECKOV_SKIP + str(index + 1): f"{check}={reason}"
        for index, (check, reason) in enumerate(reasons)
    }


# --------------------------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------------------------


def namespace(
    platform: Platform,
    resource_name: str,
    name: str,
    *,
    parent: pulumi.Resource,
    component: str,
    enforce: str = "restricted",
    reason: str | None = None,
    gateway_access: bool = False,
    extra_labels: Mapping[str, str] | None = None,
    retain_on_delete: bool = False,
) -> k8s.core.v1.Namespace:
    """A namespace labelled for Pod Security admission (restricted unless a reason is given);
    ``retain_on_delete``: dropped from the program, it leaves the state and stays in the cluster."""
    if enforce != "restricted" and not reason:
        raise ValueError(f"namespace {name}: Pod Security '{enforce}' needs a documented reason")
    labels = {
        **platform.labels(component, name),
        "pod-security.kubernetes.io/enforce": enforce,
        "pod-security.kubernetes.io/enforce-version": versions.POD_SECURITY_VERSION,
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/warn-version": versions.POD_SECURITY_VERSION,
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/audit-version": versions.POD_SECURITY_VERSION,
        **(extra_labels or {}),
    }
    if gateway_access:
        labels[GATEWAY_ACCESS] = "true"
    annotations = {"mlplane.dev/pod-security-reason": reason} if reason else None
    return k8s.core.v1.Namespace(
        resource_name,
        metadata={"name": name, "labels": labels, "annotations": annotations},
        opts=pulumi.ResourceOptions(parent=parent, **({"retain_on_delete": True} if retain_on_delete else {})),
    )


def service(
    resource_name: str,
    *,
    name: str,
    namespace: pulumi.Input[str],
    labels: Mapping[str, str],
    selector: Mapping[str, str],
    ports: Sequence[tuple[str, int, int | str]],
    parent: pulumi.Resource,
    headless: bool = False,
) -> k8s.core.v1.Service:
    """A ClusterIP Service; ``ports`` are (name, port, targetPort).

    ``headless`` (``clusterIP: None``) is for the Service governing a StatefulSet (its
    ``serviceName``): its name resolves to the pod IPs, so every ``port`` must equal the
    container port its ``targetPort`` names. ``spec.clusterIP`` is immutable and replaces the
    Service in Pulumi (pulumi-kubernetes provider/pkg/provider/diff.go, ``forceNew`` for
    Service: ``.spec.clusterIP``, ``.spec.type``); it keeps its name, so the old one is deleted
    first.
    """
    spec: dict[str, Any] = {
        "type": "ClusterIP",
        "selector": dict(selector),
        "ports": [
            {"name": p_name, "port": port, "targetPort": target, "protocol": "TCP"}
            for p_name, port, target in ports
        ],
    }
    if headless:
        spec["clusterIP"] = "None"
    return k8s.core.v1.Service(
        resource_name,
        metadata={"name": name, "namespace": namespace, "labels": dict(labels)},
        spec=spec,
        opts=pulumi.ResourceOptions(parent=parent, delete_before_replace=headless or None),
    )


def http_route(
    resource_name: str,
    *,
    name: str,
    namespace: pulumi.Input[str],
    labels: Mapping[str, str],
    gateway: GatewayRef,
    host: str,
    backends: Sequence[tuple[str, int, int]],
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource] = (),
) -> k8s.apiextensions.CustomResource:
    """An HTTPRoute on the platform Gateway; ``backends`` are (service, port, weight)."""
    return k8s.apiextensions.CustomResource(
        resource_name,
        api_version="gateway.networking.k8s.io/v1",
        kind="HTTPRoute",
        metadata={"name": name, "namespace": namespace, "labels": dict(labels)},
        spec={
            "parentRefs": [
                {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "name": gateway.name,
                    "namespace": gateway.namespace,
                    "sectionName": listener,
                }
                for listener in gateway.listeners
            ],
            "hostnames": [host],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [
                        {"kind": "Service", "name": svc, "port": port, "weight": weight}
                        for svc, port, weight in backends
                    ],
                }
            ],
        },
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
    )


@dataclass
class Workload:
    """Collected pieces of one pod template, to keep Deployment/StatefulSet specs uniform."""

    containers: list[dict[str, Any]]
    uid: int
    fs_group: int | None = None
    volumes: list[dict[str, Any]] = field(default_factory=list)
    service_account: pulumi.Input[str] | None = None
    automount_token: bool = False
    init_containers: list[dict[str, Any]] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    #: Node placement fields of the pod spec (:meth:`Platform.place`); {}: none.
    placement: Mapping[str, Any] = field(default_factory=dict)

    def template(self, labels: Mapping[str, str]) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "automountServiceAccountToken": self.automount_token,
            "securityContext": pod_security(self.uid, self.fs_group),
            "containers": self.containers,
            "volumes": self.volumes,
            "enableServiceLinks": False,
        }
        if self.init_containers:
            spec["initContainers"] = self.init_containers
        if self.service_account is not None:
            spec["serviceAccountName"] = self.service_account
        spec.update(self.placement)
        metadata: dict[str, Any] = {"labels": dict(labels)}
        if self.annotations:
            metadata["annotations"] = self.annotations
        return {"metadata": metadata, "spec": spec}


def container(
    name: str,
    image: str,
    spec: Resources,
    *,
    args: Sequence[pulumi.Input[str]] | None = None,
    command: Sequence[str] | None = None,
    env: Sequence[Mapping[str, Any]] = (),
    ports: Sequence[tuple[str, int]] = (),
    liveness: Mapping[str, Any],
    readiness: Mapping[str, Any],
    mounts: Sequence[Mapping[str, Any]] = (),
    read_only_root: bool = True,
) -> dict[str, Any]:
    """A container with the security context, resources and probes the baseline requires."""
    body: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": "Always",
        "securityContext": container_security(read_only_root),
        "resources": resources(spec),
        "livenessProbe": dict(liveness),
        "readinessProbe": dict(readiness),
        "ports": [{"name": p, "containerPort": n, "protocol": "TCP"} for p, n in ports],
        "env": [dict(e) for e in env],
        "volumeMounts": [dict(m) for m in mounts],
    }
    if command is not None:
        body["command"] = list(command)
    if args is not None:
        body["args"] = list(args)
    return body


def ingress_only_on(
    resource_name: str,
    *,
    name: str,
    namespace: pulumi.Input[str],
    labels: dict[str, str],
    pods: dict[str, str],
    port: str,
    parent: pulumi.Resource,
    sources: Sequence[dict[str, Any]] = (),
) -> k8s.networking.v1.NetworkPolicy:
    """A NetworkPolicy admitting ingress to the selected pods on one named port only.

    ``sources`` are NetworkPolicy peers (e.g. :func:`namespace_peer`); none admits any source.
    """
    rule: dict[str, Any] = {"ports": [{"port": port, "protocol": "TCP"}]}
    if sources:
        rule["from"] = list(sources)
    return k8s.networking.v1.NetworkPolicy(
        resource_name,
        metadata={"name": name, "namespace": namespace, "labels": labels},
        spec={"podSelector": {"matchLabels": pods}, "policyTypes": ["Ingress"], "ingress": [rule]},
        opts=pulumi.ResourceOptions(parent=parent),
    )


def namespace_peer(namespace: str) -> dict[str, Any]:
    """A NetworkPolicy peer: every pod in one namespace (by its automatic name label)."""
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}


# --------------------------------------------------------------------------------------------
# Egress: default deny, and the allows each flow needs (platform and team namespaces share these)
# --------------------------------------------------------------------------------------------

#: Cloud instance metadata endpoints (AWS, GCP, Azure, OpenStack: 169.254.169.254; AWS IPv6:
#: fd00:ec2::254). Every rule that allows "anywhere" excepts them: a pod holding credentials must
#: not reach the node's cloud identity.
METADATA_CIDRS = ("169.254.169.254/32",)
METADATA_CIDRS_V6 = ("fd00:ec2::254/128",)
#: The Kubernetes API server as pods reach it: the `kubernetes` Service on 443, which kube-proxy
#: translates to the control plane's endpoint (kind: the control-plane node's IP, port 6443).
#: NetworkPolicy sees the translated address, a node IP no pod or namespace selector can name, and
#: the endpoint differs per cluster, so both ports are allowed to any address but the metadata one.
API_SERVER_PORTS = (443, 6443)


def tcp(*ports: int | str) -> list[dict[str, Any]]:
    return [{"port": port, "protocol": "TCP"} for port in ports]


def anywhere() -> list[dict[str, Any]]:
    """NetworkPolicy peers: every IPv4 and IPv6 address except the cloud metadata endpoints."""
    return [
        {"ipBlock": {"cidr": "0.0.0.0/0", "except": list(METADATA_CIDRS)}},
        {"ipBlock": {"cidr": "::/0", "except": list(METADATA_CIDRS_V6)}},
    ]


def pods_peer(namespace: str, selector: Mapping[str, str]) -> dict[str, Any]:
    """A NetworkPolicy peer: the selected pods in one namespace."""
    return {**namespace_peer(namespace), "podSelector": {"matchLabels": dict(selector)}}


def dns_egress() -> dict[str, Any]:
    """Egress rule: cluster DNS (kube-system, k8s-app=kube-dns; CoreDNS keeps that label)."""
    return {
        "to": [{**namespace_peer("kube-system"), "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
    }


def api_server_egress() -> dict[str, Any]:
    """Egress rule: the Kubernetes API server (see API_SERVER_PORTS)."""
    return {"to": anywhere(), "ports": tcp(*API_SERVER_PORTS)}


def internet_egress(*ports: int) -> dict[str, Any]:
    """Egress rule: any address but the metadata endpoints on ``ports`` (services with no fixed
    addresses, such as GitHub's, or an external S3, PostgreSQL or registry)."""
    return {"to": anywhere(), "ports": tcp(*ports)}


def default_deny_spec(ingress: bool = True) -> dict[str, Any]:
    """Every pod of the namespace: no egress (and no ingress) unless another policy allows it."""
    return {"podSelector": {}, "policyTypes": ["Ingress", "Egress"] if ingress else ["Egress"]}


def allow_dns_spec() -> dict[str, Any]:
    return {"podSelector": {}, "policyTypes": ["Egress"], "egress": [dns_egress()]}


def isolate_namespace(
    resource_prefix: str,
    *,
    namespace: pulumi.Input[str],
    labels: Mapping[str, str],
    parent: pulumi.Resource,
    ingress: bool = True,
) -> list[k8s.networking.v1.NetworkPolicy]:
    """``default-deny`` (ingress and egress, or egress only) and ``allow-dns`` for a namespace,
    as team namespaces have them; every other flow needs its own allow (:func:`egress_only_to`)."""
    return [
        k8s.networking.v1.NetworkPolicy(
            f"{resource_prefix}-default-deny",
            metadata={"name": "default-deny", "namespace": namespace, "labels": dict(labels)},
            spec=default_deny_spec(ingress),
            opts=pulumi.ResourceOptions(parent=parent),
        ),
        k8s.networking.v1.NetworkPolicy(
            f"{resource_prefix}-allow-dns",
            metadata={"name": "allow-dns", "namespace": namespace, "labels": dict(labels)},
            spec=allow_dns_spec(),
            opts=pulumi.ResourceOptions(parent=parent),
        ),
    ]


def egress_only_to(
    resource_name: str,
    *,
    name: str,
    namespace: pulumi.Input[str],
    labels: Mapping[str, str],
    pods: Mapping[str, str] | None,
    rules: Sequence[pulumi.Input[Mapping[str, Any]]],
    parent: pulumi.Resource,
) -> k8s.networking.v1.NetworkPolicy:
    """A NetworkPolicy allowing the selected pods (``None``: every pod of the namespace) egress
    by ``rules`` (NetworkPolicy egress rules: ``to`` peers and ``ports``)."""
    return k8s.networking.v1.NetworkPolicy(
        resource_name,
        metadata={"name": name, "namespace": namespace, "labels": dict(labels)},
        spec={
            "podSelector": {"matchLabels": dict(pods)} if pods else {},
            "policyTypes": ["Egress"],
            "egress": [dict(rule) if isinstance(rule, Mapping) else rule for rule in rules],
        },
        opts=pulumi.ResourceOptions(parent=parent),
    )
