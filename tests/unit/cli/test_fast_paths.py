"""The shortcuts that make the CLI fast give the same answers as the slow paths they replace."""

from __future__ import annotations

import copy
import subprocess
import sys
import zlib

import kubernetes_validate
import pytest

from mlplane.tooling import checks
from mlplane.core import kube
from mlplane import policies
from mlplane.config import versions

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "apps"},
    "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]},
        },
    },
}


def _broken(path: list, value) -> dict:
    manifest = copy.deepcopy(DEPLOYMENT)
    node = manifest
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return manifest


MANIFESTS = [
    DEPLOYMENT,
    _broken(["spec", "replicas"], "three"),  # wrong type
    _broken(["spec", "template", "spec", "containers", 0, "imagePullPolicy"], "Sometimes"),  # not in the enum
    _broken(["spec", "template", "spec", "containers", 0, "colour"], "blue"),  # unknown field (strict)
    _broken(["spec", "selector"], None),  # required field given as null
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r"}, "rules": [{"verbs": 3}]},
    {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}},  # no schema
    {"apiVersion": "policy/v1beta1", "kind": "PodSecurityPolicy", "metadata": {"name": "gone"}},  # removed kind
]


def _reference(manifest: dict, minor: str) -> list[checks.Finding]:
    """What kubernetes-validate's own validate() reports, in plan's Finding form."""
    try:
        kubernetes_validate.validate(manifest, minor, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [checks.Finding(f"schema-{minor}", checks.object_id(manifest), checks._short(error))]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [checks.Finding(f"schema-{minor}", checks.object_id(manifest), f"no schema: {error}")]
    return []


@pytest.mark.parametrize("minor", [*versions.SUPPORTED_KUBERNETES, "1.33", "v1.35", "1.35.2"])
@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda m: f"{m['kind']}-{zlib.crc32(repr(m).encode()) % 1000}")
def test_cached_schema_validation_matches_kubernetes_validate(manifest, minor):
    assert checks.validate_schemas([manifest], [minor]) == _reference(manifest, minor)


def test_cached_schema_validation_finds_every_problem_of_a_batch_in_order():
    minors = list(versions.SUPPORTED_KUBERNETES)
    expected = [finding for manifest in MANIFESTS for minor in minors for finding in _reference(manifest, minor)]
    assert len(expected) >= 4 * 5
    assert checks.validate_schemas(MANIFESTS, minors) == expected


def test_an_unsupported_minor_is_refused_as_kubernetes_validate_does():
    with pytest.raises(kubernetes_validate.utils.VersionNotSupportedError):
        kubernetes_validate.validate(DEPLOYMENT, "1.99", strict=True)
    with pytest.raises(kubernetes_validate.utils.VersionNotSupportedError):
        checks.validate_schemas([DEPLOYMENT], ["1.99"])


def test_policies_team_label_is_the_one_components_set():
    assert policies.TEAM_LABEL == kube.TEAM_LABEL


def test_help_loads_neither_pulumi_nor_the_schema_validator():
    """`mlplane --help` must stay fast: the SDKs load only when a command runs a program."""
    script = (
        "import sys\n"
        "sys.argv = ['mlplane', '--help']\n"
        "from mlplane import cli\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "heavy = ('pulumi', 'pulumi_kubernetes', 'kubernetes_validate', 'jsonschema')\n"
        "print('loaded:', *sorted(m for m in sys.modules if m in heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "loaded:", result.stdout[-500:]
