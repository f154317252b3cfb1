"""StatefulSets of the local stack are governed by headless Services, without being replaced.

``spec.serviceName`` must name a headless Service (Kubernetes StatefulSet docs: "you are
responsible for creating the Headless Service"). ``serviceName`` and ``volumeClaimTemplates`` are
immutable and replace the StatefulSet in Pulumi (pulumi-kubernetes ``forceNew`` for StatefulSet),
which would delete its volume claims in a throwaway stack: they must keep the values of the
previous release (below, from its golden snapshot). The Services themselves are replaced
(``spec.clusterIP`` is immutable), deleting the old one first since the name stays.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlplane.cli import load_platform, offline_run

ROOT = Path(__file__).resolve().parents[2]
#: (namespace, name) -> serviceName and claim templates, as the previous release rendered them.
PREVIOUS_RELEASE = {
    ("mlplane-database", "postgres"): ("postgres", ["data"]),
    ("mlplane-monitoring", "prometheus"): ("prometheus", ["data"]),
    ("mlplane-storage", "seaweedfs"): ("seaweedfs", ["data"]),
}


@pytest.fixture(scope="module")
def local():
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        source, platform = load_platform("local", None)
        return offline_run(source, platform)
    finally:
        os.chdir(cwd)


def _objects(result, kind):
    return {(r.manifest()["metadata"]["namespace"], r.manifest()["metadata"]["name"]): r
            for r in result.kubernetes_objects() if r.manifest()["kind"] == kind}


def test_statefulsets_keep_their_names_service_names_and_claims(local):
    statefulsets = _objects(local, "StatefulSet")
    assert {key: (r.inputs["spec"]["serviceName"], [c["metadata"]["name"] for c in r.inputs["spec"]["volumeClaimTemplates"]])
            for key, r in statefulsets.items()} == PREVIOUS_RELEASE


def test_every_statefulset_is_governed_by_a_headless_service_of_its_pods(local):
    services = _objects(local, "Service")
    for (namespace, name), statefulset in _objects(local, "StatefulSet").items():
        spec = statefulset.inputs["spec"]
        governing = services[(namespace, spec["serviceName"])]
        assert governing.inputs["spec"]["clusterIP"] == "None", name
        assert governing.inputs["spec"]["selector"] == spec["selector"]["matchLabels"], name
        # Clients reach the pod IP directly: every Service port is the container port it names.
        container_ports = {p["name"]: p["containerPort"] for c in spec["template"]["spec"]["containers"]
                           for p in c.get("ports", [])}
        for port in governing.inputs["spec"]["ports"]:
            assert container_ports[port["targetPort"]] == port["port"], (name, port)
        # Replaced in place of the old one of the same name (clusterIP is immutable).
        assert governing.delete_before_replace, name


def test_no_statefulset_input_depends_on_its_service(local):
    """An input computed from the Service would be unknown while it is replaced, and an unknown
    serviceName plans a replacement of the StatefulSet (and of its claims)."""
    services = _objects(local, "Service")
    for (namespace, name), statefulset in _objects(local, "StatefulSet").items():
        service = services[(namespace, statefulset.inputs["spec"]["serviceName"])]
        for key, urns in statefulset.property_dependencies.items():
            assert service.urn not in urns, (name, key)
        assert not statefulset.delete_before_replace


def test_only_governing_services_are_headless(local):
    governing = {(ns, r.inputs["spec"]["serviceName"]) for (ns, _), r in _objects(local, "StatefulSet").items()}
    headless = {key for key, r in _objects(local, "Service").items() if r.inputs["spec"].get("clusterIP") == "None"}
    assert headless == governing
