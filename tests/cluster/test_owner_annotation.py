"""The owner annotation every Kubernetes object of a stack carries (mlplane.program.claim).

Unit tests (no marker); the behaviour it buys, a second stack failing instead of co-owning
another stack's objects, is tested for real in test_cluster_up.py (test_7).
"""

from __future__ import annotations

from types import SimpleNamespace

import pulumi

from mlplane.program import OWNER_ANNOTATION, claim


def _args(type_: str, props: dict) -> SimpleNamespace:
    return SimpleNamespace(type_=type_, props=props, opts=pulumi.ResourceOptions())


def test_objects_get_the_owner_and_keep_their_annotations():
    props = {"metadata": {"name": "x", "annotations": {"checkov.io/skip1": "why"}}, "spec": {"a": 1}}
    result = claim(lambda: "local-abc", _args("kubernetes:apps/v1:Deployment", props))
    assert result.props["metadata"] == {
        "name": "x", "annotations": {"checkov.io/skip1": "why", OWNER_ANNOTATION: "local-abc"},
    }
    assert result.props["spec"] == {"a": 1}
    assert props["metadata"]["annotations"] == {"checkov.io/skip1": "why"}  # input not mutated
    custom = claim(lambda: "o", _args("kubernetes:gateway.networking.k8s.io/v1:Gateway", {"metadata": {"name": "g"}}))
    assert custom.props["metadata"]["annotations"] == {OWNER_ANNOTATION: "o"}


def test_patches_components_and_other_providers_are_left_alone():
    meta = {"metadata": {"name": "grafana-dashboards"}}
    assert claim(lambda: "o", _args("kubernetes:core/v1:ConfigMapPatch", meta)) is None
    assert claim(lambda: "o", _args("kubernetes:helm.sh/v4:Chart", {"chart": "c"})) is None
    assert claim(lambda: "o", _args("random:index/randomString:RandomString", {"length": 12})) is None
    assert claim(lambda: "o", _args("pulumi:providers:kubernetes", {"kubeconfig": "k"})) is None


def test_the_owner_id_is_only_created_for_a_kubernetes_object():
    """A run stopping on invalid config before its first object creates nothing, not even the id."""
    def never() -> str:
        raise AssertionError("owner id created for a resource that is not a Kubernetes object")

    assert claim(never, _args("random:index/randomPassword:RandomPassword", {"length": 32})) is None
    assert claim(never, _args("mlplane:index:Platform", {})) is None
