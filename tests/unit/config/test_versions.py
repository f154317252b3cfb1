"""Every pin in versions.py names its upstream evidence, and the pins are well-formed."""

from __future__ import annotations

import re

from mlplane.config import versions

DATE = re.compile(r"^20\d\d-[01]\d-[0-3]\d$")


def pin_keys() -> dict[str, str]:
    """Every pinned version, by evidence key."""
    keys = {f"image:{k}": image.tag for k, image in versions.IMAGES.items()}
    keys.update({f"chart:{k}": chart.version for k, chart in versions.CHARTS.items()})
    keys.update(
        {f"kind-node:{minor}": ref.split(":", 1)[1].split("@", 1)[0] for minor, ref in versions.KIND_NODE_IMAGES.items()}
    )
    keys["pypi:mlflow"] = versions.MLFLOW_VERSION
    return keys


def test_every_pin_has_an_evidence_record_naming_its_version():
    missing = [key for key in pin_keys() if key not in versions.EVIDENCE]
    assert missing == [], f"pins without evidence in versions.EVIDENCE: {missing}"
    wrong = {key: (version, versions.EVIDENCE[key].version) for key, version in pin_keys().items() if versions.EVIDENCE[key].version != version}
    assert wrong == {}, f"evidence records naming another version than the pin: {wrong}"


def test_no_evidence_record_without_a_pin():
    assert sorted(set(versions.EVIDENCE) - set(pin_keys())) == []


def test_evidence_records_have_a_release_a_date_and_a_source():
    for key, pin in versions.EVIDENCE.items():
        assert pin.release.strip(), key
        assert DATE.match(pin.date), (key, pin.date)
        assert len(pin.source) > 20, (key, pin.source)


def test_pins_are_exact_and_in_the_registries_tag_format():
    for key, image in versions.IMAGES.items():
        assert image.tag != "latest" and re.match(r"^v?\d+\.\d+(\.\d+)?(-[a-z]+)?$", image.tag), (key, image.tag)
    # Tags as the registries publish them: 'v' prefix for these projects, none for these.
    with_v = {"prometheus", "metrics-server", "envoy-gateway", "mlflow"}
    for key, image in versions.IMAGES.items():
        assert image.tag.startswith("v") == (key in with_v), (key, image.tag)
    for key, chart in versions.CHARTS.items():
        assert chart.chart.startswith("oci://") and re.match(r"^v?\d+\.\d+\.\d+$", chart.version), key


def test_charts_and_their_images_move_together():
    assert versions.CHARTS["envoy-gateway"].version == versions.IMAGES["envoy-gateway"].tag
    assert versions.CHARTS["arc-controller"].version == versions.IMAGES["arc-controller"].tag
    assert versions.CHARTS["arc-scale-set"].version == versions.IMAGES["arc-controller"].tag
    assert versions.IMAGES["mlflow"].tag == f"v{versions.MLFLOW_VERSION}-full"


def test_kind_node_images_are_pinned_by_digest_and_the_default_matches_kinds_source():
    for minor, ref in versions.KIND_NODE_IMAGES.items():
        assert re.match(rf"^kindest/node:v{re.escape(minor)}\.\d+@sha256:[0-9a-f]{{64}}$", ref), ref
    # sigs.k8s.io/kind v0.33.0 pkg/apis/config/defaults/image.go (module proxy source).
    assert versions.KIND_NODE_IMAGES["1.37"] == (
        "kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5"
    )


def test_chart_mirror_keeps_the_repository_path():
    chart = versions.CHARTS["envoy-gateway"]
    assert chart.registry == "docker.io" and chart.repository == "envoyproxy/gateway-helm"
    assert chart.ref() == "oci://docker.io/envoyproxy/gateway-helm"
    assert chart.ref("mirror.corp/hub/") == "oci://mirror.corp/hub/envoyproxy/gateway-helm"


def test_every_pin_is_matched_by_a_renovate_manager():
    """renovate.json's regex managers (JS named groups -> Python) find every pin in versions.py."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    config = json.loads((root / "renovate.json").read_text())
    text = (root / "components" / "config" / "versions.py").read_text()
    found: set[tuple[str, str]] = set()
    for manager in config["customManagers"]:
        assert manager["managerFilePatterns"] == ["/^components/config/versions\\.py$/"]
        for pattern in manager["matchStrings"]:
            for match in re.finditer(pattern.replace("(?<", "(?P<"), text):
                groups = match.groupdict()
                name = groups.get("depName") or manager.get("depNameTemplate")
                found.add((name, groups["currentValue"]))
    expected = {(image.repository, image.tag) for image in versions.IMAGES.values()}
    expected |= {(chart.chart.removeprefix("oci://"), chart.version) for chart in versions.CHARTS.values()}
    expected |= {("kindest/node", ref.split(":", 1)[1].split("@")[0]) for ref in versions.KIND_NODE_IMAGES.values()}
    expected.add(("mlflow", versions.MLFLOW_VERSION))
    assert expected - found == set()
