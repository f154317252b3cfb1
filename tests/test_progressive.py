"""Flagger objects of a progressive canary, validated strictly against Flagger's own CRDs
(``artifacts/flagger/crd.yaml`` of github.com/fluxcd/flagger at the pinned version, fetched from
the Go module proxy)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mlplane import progressive
from mlplane.config import ConfigError, parse_platform

from test_routing_upstream import strict_errors


@pytest.fixture(scope="module")
def crds(tmp_path_factory) -> dict[str, dict]:
    if shutil.which("go") is None:
        pytest.skip("go is not on PATH (needed to fetch Flagger's CRDs from the module proxy)")
    gopath = tmp_path_factory.mktemp("gopath")
    done = subprocess.run(
        ["go", "mod", "download", "-json", f"github.com/fluxcd/flagger@{progressive.FLAGGER_VERSION}"],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "GOPATH": str(gopath), "GOFLAGS": "-mod=mod"}, cwd=gopath,
    )
    info = json.loads(done.stdout or "{}")
    assert info.get("Dir"), done.stderr
    documents = yaml.safe_load_all(Path(info["Dir"], "artifacts/flagger/crd.yaml").read_text())
    return {d["spec"]["names"]["kind"]: d for d in documents if d}


def _model(**canary):
    config = parse_platform({"serving": {"progressive": {"enabled": True}, "models": [
        {"name": "iris", "registered_model": "iris", "version": 4,
         "canary": {"mode": "progressive", "steps": [5, 20, 50], "interval": "2m",
                    "thresholds": {"error_rate": 0.02, "p99_latency_seconds": 0.3}, **canary}}]}})
    return config.serving.models[0]


def test_canary_and_metric_templates_validate_strictly_against_flaggers_crds(crds):
    model = _model()
    spec = progressive.canary_spec(model, "mlplane", "mlplane-gateway", "iris.mlplane.localhost", 80)
    document = {"apiVersion": progressive.API_VERSION, "kind": "Canary", "metadata": {"name": "iris"}, "spec": spec}
    assert strict_errors(document, crds["Canary"], "v1beta1") == []
    assert spec["analysis"]["stepWeights"] == [5, 20, 50] and spec["analysis"]["interval"] == "2m"
    assert [m["thresholdRange"]["max"] for m in spec["analysis"]["metrics"]] == [0.02, 0.3]
    for name, template in progressive.metric_templates("iris", "http://prometheus:9090").items():
        document = {"apiVersion": progressive.API_VERSION, "kind": "MetricTemplate", "metadata": {"name": name}, "spec": template}
        assert strict_errors(document, crds["MetricTemplate"], "v1beta1") == []
        assert 'envoy_cluster_name="httproute/{{ namespace }}/{{ target }}/rule/0"' in template["query"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"steps": [50, 20]}, "strictly increasing"),
        ({"steps": [0, 100]}, "strictly increasing"),
        ({"version": 5}, "remove the canary's version"),
    ],
)
def test_bad_progressive_canaries_are_refused(raw, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        _model(**raw)


def test_progressive_needs_the_controller_and_a_pinned_version():
    with pytest.raises((ConfigError, ValueError), match="serving.progressive.enabled"):
        parse_platform({"serving": {"models": [{"name": "iris", "registered_model": "iris", "version": 4,
                                                 "canary": {"mode": "progressive"}}]}})
    with pytest.raises((ConfigError, ValueError), match="pinned 'version'"):
        parse_platform({"serving": {"progressive": {"enabled": True}, "models": [
            {"name": "iris", "registered_model": "iris", "alias": "champion", "canary": {"mode": "progressive"}}]}})
