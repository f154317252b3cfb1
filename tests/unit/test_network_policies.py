"""Every flow the platform needs is allowed by the rendered NetworkPolicies, and nothing else is.

A small NetworkPolicy evaluator (networking.k8s.io/v1 semantics: a pod selected by no policy of a
direction is open in that direction; otherwise the union of the rules of the policies selecting it
applies; a connection needs egress from its source and ingress at its destination) runs over the
objects of an offline render of the local stack with served models and CI runners on. Pods come
from the rendered workloads, plus the ones charts and controllers create at run time (ARC,
Envoy Gateway, CoreDNS, job pods, a team pod). Addresses outside the pod network stand in for the
API server (the kind control-plane node), the kubelet, GitHub, the bundled registry container and
the cloud metadata endpoint.

``ipBlock`` peers are matched against pod IPs too: implementations differ there (the API says
ipBlock "should" name cluster-external addresses), and matching them is the more permissive
reading, so a flow shown denied here is denied under either.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplane.core import kube
from mlplane.services import routing
from mlplane.cli import load_platform, offline_run

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {
    "serving": {"models": [{"name": "iris", "registered_model": "iris-classifier", "alias": "champion"}]},
    "ci_runners": {"github_config_url": "https://github.com/acme/models", "github_token_key": "githubToken"},
}
TEAM_NAMESPACE = "mlplane-team-vision"
#: Envoy's Prometheus endpoint (Envoy Gateway's proxy stats port).
ENVOY_METRICS_PORT = 19001


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: dict[str, str]
    ip: str
    ports: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Host:
    """An address outside the pod network."""

    name: str
    ip: str


API_SERVER = Host("API server (kind control-plane node)", "172.18.0.2")
KUBELET = Host("kubelet (kind node)", "172.18.0.2")
GITHUB = Host("github.com", "140.82.112.3")
REGISTRY = Host("bundled registry container", "172.18.0.3")
METADATA = Host("cloud metadata endpoint", "169.254.169.254")


# --------------------------------------------------------------------------------------------
# The evaluator
# --------------------------------------------------------------------------------------------


def _matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector; an empty one matches everything."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


class Cluster:
    def __init__(self, policies: list[dict], namespaces: dict[str, dict[str, str]]):
        self.policies = policies
        # Every namespace carries its immutable name label.
        self.namespaces = {ns: {**labels, "kubernetes.io/metadata.name": ns} for ns, labels in namespaces.items()}

    @staticmethod
    def _types(policy: dict) -> list[str]:
        spec = policy["spec"]
        return spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))

    def _selecting(self, pod: Pod, direction: str) -> list[dict]:
        return [
            p for p in self.policies
            if p["metadata"]["namespace"] == pod.namespace
            and direction in self._types(p)
            and _matches(p["spec"].get("podSelector"), pod.labels)
        ]

    def _peer(self, peer: dict, policy_namespace: str, other: Pod | Host) -> bool:
        if "ipBlock" in peer:
            block = peer["ipBlock"]
            address = ipaddress.ip_address(other.ip)
            network = ipaddress.ip_network(block["cidr"])
            if address.version != network.version or address not in network:
                return False
            return not any(
                address in ipaddress.ip_network(cidr)
                for cidr in block.get("except", [])
                if ipaddress.ip_network(cidr).version == address.version
            )
        if not isinstance(other, Pod):
            return False  # selectors name pods only
        if "namespaceSelector" in peer:
            if not _matches(peer["namespaceSelector"], self.namespaces[other.namespace]):
                return False
        elif other.namespace != policy_namespace:
            return False
        return _matches(peer.get("podSelector"), other.labels)

    @staticmethod
    def _port(rule: dict, target: Pod | Host, port: int, protocol: str) -> bool:
        ports = rule.get("ports")
        if not ports:
            return True
        for entry in ports:
            if entry.get("protocol", "TCP") != protocol:
                continue
            wanted = entry.get("port")
            if wanted is None:
                return True
            if isinstance(wanted, str):  # a named port of the destination pod
                if isinstance(target, Pod) and target.ports.get(wanted) == port:
                    return True
            elif wanted <= port <= entry.get("endPort", wanted):
                return True
        return False

    def _direction(self, pod: Pod, direction: str, other: Pod | Host, target: Pod | Host, port: int, protocol: str) -> bool:
        policies = self._selecting(pod, direction)
        if not policies:
            return True
        key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        for policy in policies:
            for rule in policy["spec"].get(key) or []:
                peers = rule.get(peers_key)
                if peers and not any(self._peer(p, policy["metadata"]["namespace"], other) for p in peers):
                    continue
                if self._port(rule, target, port, protocol):
                    return True
        return False

    def allowed(self, source: Pod, destination: Pod | Host, port: int, protocol: str = "TCP") -> bool:
        if not self._direction(source, "Egress", destination, destination, port, protocol):
            return False
        if isinstance(destination, Pod):
            return self._direction(destination, "Ingress", source, destination, port, protocol)
        return True


# --------------------------------------------------------------------------------------------
# The rendered platform
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> list[dict]:
    path = tmp_path_factory.mktemp("netpol") / "platform.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        source, platform = load_platform(None, path)
        return offline_run(source, platform).manifests()
    finally:
        os.chdir(cwd)


def _platform_pods(manifests: list[dict]) -> dict[str, Pod]:
    pods: dict[str, Pod] = {}
    for index, m in enumerate(m for m in manifests if m["kind"] in ("Deployment", "StatefulSet", "Job")):
        template = m["spec"]["template"]
        ports = {p["name"]: p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", []) if "name" in p}
        name = template["metadata"]["labels"].get(kube.NAME, m["metadata"]["name"])
        pods[name] = Pod(name, m["metadata"]["namespace"], dict(template["metadata"]["labels"]), f"10.244.0.{10 + index}", ports)
    # Pods that charts, controllers and other stacks create at run time.
    extra = [
        Pod("coredns", "kube-system", {"k8s-app": "kube-dns"}, "10.244.0.2", {"dns": 53, "dns-tcp": 53}),
        Pod("arc-controller", "mlplane-ci", {"app.kubernetes.io/name": "gha-rs-controller"}, "10.244.1.2"),
        Pod("arc-listener", "mlplane-ci", {"actions.github.com/scale-set-name": "mlplane"}, "10.244.1.3"),
        Pod("runner", "mlplane-ci-runners", {"actions-ephemeral-runner": "True"}, "10.244.1.4"),
        Pod("job-pod", "mlplane-ci-runners", {"runner-pod": "mlplane-x-runner-y"}, "10.244.1.5"),
        Pod("envoy-gateway", "mlplane-gateway", {"control-plane": "envoy-gateway"}, "10.244.1.6", {"grpc": 18000}),
        # Labels and metrics port as Envoy Gateway sets them (routing.proxy_selector, METRICS_PORT).
        Pod("envoy-proxy", "mlplane-gateway", routing.proxy_selector("mlplane", "mlplane-gateway"), "10.244.1.7",
            {routing.METRICS_PORT: ENVOY_METRICS_PORT}),
        Pod("team-model", TEAM_NAMESPACE, {kube.SCRAPE: "metrics"}, "10.244.2.2", {"metrics": 8080}),
    ]
    return {**pods, **{p.name: p for p in extra}}


@pytest.fixture(scope="module")
def cluster(rendered) -> Cluster:
    namespaces = {m["metadata"]["name"]: m["metadata"].get("labels", {}) for m in rendered if m["kind"] == "Namespace"}
    namespaces |= {"kube-system": {}, TEAM_NAMESPACE: {kube.TEAM_LABEL: "vision"}}
    return Cluster([m for m in rendered if m["kind"] == "NetworkPolicy"], namespaces)


@pytest.fixture(scope="module")
def pods(rendered) -> dict[str, Pod]:
    return _platform_pods(rendered)


# Every flow the platform needs: (source pod, destination pod or host, port).
REQUIRED = [
    ("mlflow", "postgres", 5432),
    ("mlflow", "seaweedfs", 8333),
    ("mlflow-reader", "mlflow", 5000),
    ("s3-grant", "seaweedfs", 9333),
    ("s3-grant", "seaweedfs", 19333),
    ("s3-grant", "seaweedfs", 8888),
    ("s3-grant", "seaweedfs", 18888),
    ("s3-grant", "seaweedfs", 8333),
    ("seaweedfs", "seaweedfs", 9340),
    ("prometheus", API_SERVER, 6443),
    ("prometheus", API_SERVER, 443),
    ("prometheus", "seaweedfs", 9327),
    ("prometheus", "mlflow", 9464),
    ("prometheus", "team-model", 8080),
    ("prometheus", "envoy-proxy", ENVOY_METRICS_PORT),
    ("grafana", "prometheus", 9090),
    ("iris", "mlflow", 5000),
    ("envoy-proxy", "mlflow", 5000),
    ("envoy-proxy", "grafana", 3000),
    ("envoy-proxy", "prometheus", 9090),
    ("envoy-proxy", "seaweedfs", 8333),
    ("envoy-proxy", "iris", 8080),
    ("envoy-proxy", "envoy-gateway", 18000),
    ("envoy-gateway", API_SERVER, 6443),
    ("certgen", API_SERVER, 6443),
    ("arc-controller", API_SERVER, 6443),
    ("arc-controller", GITHUB, 443),
    ("arc-listener", GITHUB, 443),
    ("arc-listener", API_SERVER, 443),
    ("runner", GITHUB, 443),
    ("runner", API_SERVER, 6443),
    ("runner", "mlflow", 5000),
    ("runner", REGISTRY, 5000),
    ("job-pod", GITHUB, 443),
    ("job-pod", "mlflow", 5000),
    ("job-pod", REGISTRY, 5000),
    # `dvc pull` from the datasets bucket (ci_runners.datasets_access, on by default).
    ("job-pod", "seaweedfs", 8333),
    ("metrics-server", API_SERVER, 6443),
    ("metrics-server", KUBELET, 10250),
]

# Flows that must stay closed.
DENIED = [
    ("iris", "postgres", 5432),
    ("iris", "seaweedfs", 8333),
    ("iris", GITHUB, 443),
    ("iris", METADATA, 80),
    ("s3-grant", METADATA, 80),
    ("s3-grant", METADATA, 443),
    ("s3-grant", GITHUB, 443),
    ("s3-grant", "mlflow", 5000),
    ("mlflow-reader", METADATA, 80),
    ("mlflow-reader", "postgres", 5432),
    ("mlflow-reader", GITHUB, 443),
    ("certgen", METADATA, 80),
    ("certgen", METADATA, 443),
    ("grafana", "seaweedfs", 8333),
    ("grafana", "postgres", 5432),
    ("grafana", GITHUB, 443),
    ("grafana", METADATA, 80),
    ("postgres", GITHUB, 443),
    ("postgres", "seaweedfs", 8333),
    ("postgres", METADATA, 80),
    ("mlflow", GITHUB, 443),
    ("mlflow", METADATA, 80),
    ("mlflow", API_SERVER, 6443),
    ("seaweedfs", GITHUB, 443),
    ("seaweedfs", METADATA, 80),
    ("prometheus", METADATA, 80),
    ("prometheus", METADATA, 443),
    ("prometheus", "postgres", 5432),
    ("prometheus", GITHUB, 80),
    ("runner", METADATA, 80),
    ("runner", METADATA, 443),
    ("runner", "postgres", 5432),
    ("runner", "seaweedfs", 9333),
    ("job-pod", METADATA, 80),
    # SeaweedFS's master, filer and volume ports have no authentication: grant Jobs only.
    ("job-pod", "seaweedfs", 8888),
    ("job-pod", "seaweedfs", 18888),
    ("job-pod", "seaweedfs", 9333),
    ("job-pod", "seaweedfs", 19333),
    ("job-pod", "seaweedfs", 9340),
    ("job-pod", "seaweedfs", 9327),
    ("job-pod", "postgres", 5432),
    ("arc-controller", METADATA, 443),
    ("arc-controller", "mlflow", 5000),
    ("envoy-proxy", "postgres", 5432),
    ("envoy-proxy", METADATA, 80),
    ("envoy-gateway", METADATA, 443),
    ("metrics-server", METADATA, 80),
    ("metrics-server", "postgres", 5432),
]


def _endpoint(pods: dict[str, Pod], item: str | Host) -> Pod | Host:
    return pods[item] if isinstance(item, str) else item


def _label(flow) -> str:
    source, destination, port = flow
    return f"{source}->{getattr(destination, 'name', destination)}:{port}"


@pytest.mark.parametrize("flow", REQUIRED, ids=_label)
def test_required_flow_is_allowed(cluster, pods, flow):
    source, destination, port = flow
    assert cluster.allowed(pods[source], _endpoint(pods, destination), port)


@pytest.mark.parametrize("flow", DENIED, ids=_label)
def test_other_flow_is_denied(cluster, pods, flow):
    source, destination, port = flow
    assert not cluster.allowed(pods[source], _endpoint(pods, destination), port)


def test_every_platform_pod_resolves_names(cluster, pods):
    for pod in pods.values():
        if pod.namespace == "kube-system" and pod.name == "coredns":
            continue
        for protocol in ("UDP", "TCP"):
            assert cluster.allowed(pod, pods["coredns"], 53, protocol), (pod.name, protocol)


#: Namespaces whose allows name every pod: their pods come from charts and controllers (ARC's
#: controller, listener, runners and job pods; Envoy Gateway's controller and proxies) whose
#: labels mlplane does not set.
NAMESPACE_WIDE = {"mlplane-ci", "mlplane-ci-runners", "mlplane-gateway"}


def test_every_platform_namespace_denies_egress_by_default(rendered, cluster, pods):
    """A pod no allow-rule names gets nowhere, in every namespace the platform creates."""
    for namespace in (m["metadata"]["name"] for m in rendered if m["kind"] == "Namespace"):
        stranger = Pod("stranger", namespace, {"app": "stranger"}, "10.244.9.9")
        if namespace not in NAMESPACE_WIDE:
            assert not cluster.allowed(stranger, GITHUB, 443), namespace
            assert not cluster.allowed(stranger, API_SERVER, 6443), namespace
        assert not cluster.allowed(stranger, METADATA, 80), namespace
        assert not cluster.allowed(stranger, METADATA, 443), namespace
        assert not cluster.allowed(stranger, pods["postgres"], 5432), namespace
        default_deny = [p for p in cluster.policies
                        if p["metadata"]["namespace"] == namespace and p["metadata"]["name"] == "default-deny"]
        assert len(default_deny) == 1 and default_deny[0]["spec"]["podSelector"] == {}, namespace
        assert "Egress" in default_deny[0]["spec"]["policyTypes"], namespace


def test_anywhere_always_excepts_the_metadata_endpoint(rendered):
    for policy in (m for m in rendered if m["kind"] == "NetworkPolicy"):
        for rule in policy["spec"].get("egress") or []:
            for peer in rule.get("to") or []:
                block = peer.get("ipBlock")
                if block and ipaddress.ip_network(block["cidr"]).prefixlen == 0:
                    wanted = kube.METADATA_CIDRS if block["cidr"] == "0.0.0.0/0" else kube.METADATA_CIDRS_V6
                    assert set(wanted) <= set(block.get("except", [])), policy["metadata"]


# The evaluator itself, on hand-made policies (so a bug in it cannot make the tables above pass).


def test_evaluator_open_without_policies_and_closed_by_default_deny():
    a = Pod("a", "ns", {"app": "a"}, "10.0.0.1")
    b = Pod("b", "ns", {"app": "b"}, "10.0.0.2", {"web": 80})
    open_cluster = Cluster([], {"ns": {}})
    assert open_cluster.allowed(a, b, 80)
    deny = {"metadata": {"namespace": "ns", "name": "d"}, "spec": kube.default_deny_spec()}
    closed = Cluster([deny], {"ns": {}})
    assert not closed.allowed(a, b, 80)
    allow_egress = {"metadata": {"namespace": "ns", "name": "e"}, "spec": {
        "podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "b"}}}], "ports": [{"port": "web"}]}]}}
    assert not Cluster([deny, allow_egress], {"ns": {}}).allowed(a, b, 80)  # b admits no ingress
    allow_ingress = {"metadata": {"namespace": "ns", "name": "i"}, "spec": {
        "podSelector": {"matchLabels": {"app": "b"}}, "policyTypes": ["Ingress"], "ingress": [{"ports": [{"port": 80}]}]}}
    both = Cluster([deny, allow_egress, allow_ingress], {"ns": {}})
    assert both.allowed(a, b, 80)
    assert not both.allowed(a, b, 81)
    assert not both.allowed(a, Host("x", "1.1.1.1"), 80)


def test_evaluator_ip_blocks_except_and_namespace_selectors():
    a = Pod("a", "ns", {}, "10.0.0.1")
    rule = {"metadata": {"namespace": "ns", "name": "e"}, "spec": {
        "podSelector": {}, "policyTypes": ["Egress"], "egress": [kube.internet_egress(443)]}}
    cluster = Cluster([rule], {"ns": {}, "other": {"team": "x"}})
    assert cluster.allowed(a, Host("gh", "140.82.112.3"), 443)
    assert not cluster.allowed(a, Host("gh", "140.82.112.3"), 80)
    assert not cluster.allowed(a, METADATA, 443)
    assert cluster.allowed(a, Host("v6", "2606:50c0:8000::153"), 443)
    assert not cluster.allowed(a, Host("aws-v6-metadata", "fd00:ec2::254"), 443)
    peer = {"metadata": {"namespace": "ns", "name": "p"}, "spec": {
        "podSelector": {}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]}}]}]}}
    other = Pod("o", "other", {}, "10.0.1.1")
    same = Pod("s", "ns", {}, "10.0.0.3")
    cluster = Cluster([peer], {"ns": {}, "other": {"team": "x"}})
    assert cluster.allowed(a, other, 1234)
    assert not cluster.allowed(a, same, 1234)
