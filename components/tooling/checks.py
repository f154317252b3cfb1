"""Checks on rendered manifests: strict schema validation per Kubernetes minor, and checkov.

kubernetes-validate is used through its Python API (its CLI exits 0 on unknown schemas).
checkov pins old versions of packages mlplane uses, so it runs from its own virtual
environment: ``MLPLANE_CHECKOV`` names its executable, else ``checkov`` on PATH.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from mlplane.config import versions

#: checkov's Kubernetes checks from the security baseline.
CHECKOV_CHECKS = (
    *(f"CKV_K8S_{n}" for n in range(8, 24)),
    "CKV_K8S_28",
    "CKV_K8S_29",
    "CKV_K8S_30",
    "CKV_K8S_31",
    "CKV_K8S_37",
    "CKV_K8S_38",
    "CKV_K8S_39",
    "CKV_K8S_40",
    "CKV_K8S_43",
    "CKV2_K8S_6",
)

#: API groups of custom resources: no published schema in kubernetes-validate (Flagger's are
#: validated against its CRDs in tests/unit/services/test_progressive.py).
CUSTOM_GROUPS = ("gateway.networking.k8s.io/", "gateway.envoyproxy.io/", "flagger.app/")


@dataclass(frozen=True)
class Finding:
    """One failed check on one object."""

    check: str
    object: str
    message: str

    def __str__(self) -> str:
        return f"{self.check} {self.object}: {self.message}"


def object_id(manifest: dict[str, Any]) -> str:
    meta = manifest.get("metadata", {})
    namespace = meta.get("namespace")
    name = meta.get("name")
    return f"{manifest.get('kind')}/{namespace}/{name}" if namespace else f"{manifest.get('kind')}/{name}"


def is_custom(manifest: dict[str, Any]) -> bool:
    return str(manifest.get("apiVersion", "")).startswith(CUSTOM_GROUPS)


def validate_schemas(
    manifests: Iterable[dict[str, Any]], kubernetes_versions: Iterable[str] = versions.SUPPORTED_KUBERNETES
) -> list[Finding]:
    """Strict schema validation of every built-in object against each Kubernetes minor.

    Same verdicts and messages as ``kubernetes_validate.validate(manifest, minor, strict=True)``,
    but each minor's 1.5 MB ``_definitions.json`` is parsed once per process instead of once
    per object (that parse was 70 % of ``mlplane plan``'s time; see docs/performance.md).
    """
    import kubernetes_validate

    findings = []
    minors = list(kubernetes_versions)
    for manifest in manifests:
        if is_custom(manifest):
            continue
        for minor in minors:
            try:
                _strict_validate(manifest, minor)
            except kubernetes_validate.ValidationError as error:
                findings.append(Finding(f"schema-{minor}", object_id(manifest), _short(error)))
            except kubernetes_validate.SchemaNotFoundError as error:
                findings.append(Finding(f"schema-{minor}", object_id(manifest), f"no schema: {error}"))
    return findings


def _strict_validate(manifest: dict[str, Any], minor: str) -> None:
    """``kubernetes_validate.validate(manifest, minor, strict=True)`` with its loads cached.

    The version choice, file names and error types are those of kubernetes-validate 1.x
    (``kubernetes_validate/utils.py``, ``validate``): the newest bundled schema set that is not
    newer than the minor, ``<kind>-<group>-<version>.json`` next to ``_definitions.json``.
    """
    import jsonschema
    import referencing.exceptions
    from kubernetes_validate import utils

    wanted = minor[1:] if minor.startswith("v") else minor
    schema_dir, version = _schema_dir(utils.major_minor(wanted))
    api_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", manifest["apiVersion"])
    try:
        validator = _validator(schema_dir, f"{manifest['kind'].lower()}-{api_version}.json", wanted)
    except FileNotFoundError:
        raise utils.SchemaNotFoundError(
            version=utils.major_minor(wanted), kind=manifest["kind"], api_version=manifest["apiVersion"]
        ) from None
    try:
        validator.validate(manifest)
    except jsonschema.ValidationError as error:
        raise utils.ValidationError(error, version=utils.major_minor(version)) from None
    except referencing.exceptions.Unresolvable:
        raise


@functools.lru_cache(maxsize=None)
def _schema_dir(wanted: str) -> tuple[str, str]:
    """The strict schema directory kubernetes-validate uses for a minor, and its version."""
    from kubernetes_validate import utils

    every = utils.all_versions()
    if wanted > utils.major_minor(every[-1]):
        raise utils.VersionNotSupportedError(version=wanted)
    version = [v for v in every if utils.major_minor(v) <= wanted][-1]
    return f"v{version}-local-strict", version


@functools.lru_cache(maxsize=None)
def _definitions(schema_dir: str, wanted: str) -> Any:
    from kubernetes_validate import utils

    return utils.schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", wanted)


@functools.lru_cache(maxsize=None)
def _validator(schema_dir: str, filename: str, wanted: str) -> Any:
    import jsonschema
    from kubernetes_validate import utils
    from referencing import Registry, Resource

    schema = utils.schema_contents(f"kubernetes-json-schema/{schema_dir}/{filename}", wanted)
    registry = Resource.from_contents(_definitions(schema_dir, wanted)) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def _short(error: Exception) -> str:
    path = "/".join(str(p) for p in getattr(getattr(error, "caused_by", None), "path", []) or [])
    message = getattr(getattr(error, "caused_by", None), "message", None) or str(error)
    return f"{path}: {message}" if path else message


def checkov_executable() -> str | None:
    explicit = os.environ.get("MLPLANE_CHECKOV")
    if explicit:
        return explicit if Path(explicit).exists() else None
    return shutil.which("checkov")


def run_checkov(directory: Path, executable: str | None = None) -> list[Finding]:
    """Run the baseline's checkov checks over a directory of manifests (offline).

    Inline ``checkov.io/skip*`` annotations are honoured, so documented exceptions pass.
    """
    exe = executable or checkov_executable()
    if exe is None:
        raise FileNotFoundError("checkov not found: set MLPLANE_CHECKOV or put checkov on PATH")
    result = subprocess.run(
        [
            exe,
            "--directory",
            str(directory),
            "--framework",
            "kubernetes",
            "--check",
            ",".join(CHECKOV_CHECKS),
            "--skip-download",
            "--output",
            "json",
            "--quiet",
            "--compact",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
    )
    if result.returncode not in (0, 1):
        raise RuntimeError(f"checkov failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    text = result.stdout.strip()
    if not text:
        return []
    report = json.loads(text)
    reports = report if isinstance(report, list) else [report]
    findings = []
    for item in reports:
        for failed in item.get("results", {}).get("failed_checks", []):
            findings.append(
                Finding(failed["check_id"], failed.get("resource", "?"), failed.get("check_name", ""))
            )
    return findings
