"""What an offline run records: each resource registration, the outputs of a referenced stack,
and the deterministic stand-ins for generated secrets.

Plain data shared by the offline harness (mlplane.tooling.render) and its Pulumi side
(mlplane.tooling.render_engine), so neither imports the other's module for it.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass, field
from typing import Any

SECRET_MASK = "[secret]"


#: Kubernetes resource types that are not objects in the cluster.
_NOT_OBJECTS = ("kubernetes:helm.sh/", "kubernetes:yaml", "kubernetes:kustomize", "pulumi:providers:")


class DuplicateUrnError(Exception):
    """Two registrations with one URN (same type, name and parent): the Pulumi engine refuses the
    second one ("Duplicate resource URN '<urn>'; try giving it a unique name", diagnostic 2001 in
    pulumi/pulumi ``pkg/diag/errors.go``), so an offline render refuses it too."""

    def __init__(self, urn: str):
        self.urn = urn
        super().__init__(f"Duplicate resource URN '{urn}'; try giving it a unique name")


@dataclass
class Recorded:
    """One resource registration."""

    type: str
    name: str
    urn: str
    parent: str | None
    custom: bool
    protect: bool
    retain_on_delete: bool
    provider: str | None
    depends_on: list[str]
    aliases: list[str]
    inputs: dict[str, Any]
    secret_paths: set[str] = field(default_factory=set)
    delete_before_replace: bool = False
    #: Input property -> URNs its value came from (what the engine replaces dependents by).
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)

    @property
    def is_kubernetes_object(self) -> bool:
        return self.type.startswith("kubernetes:") and not self.type.startswith(_NOT_OBJECTS)

    def manifest(self) -> dict[str, Any]:
        """The Kubernetes object as the provider would apply it (secrets in plain text)."""
        body = {k: v for k, v in self.inputs.items() if not k.startswith("__")}
        if "apiVersion" not in body or "kind" not in body:
            _, module, kind = self.type.split(":")
            group, version = module.split("/")
            body["apiVersion"] = version if group == "core" else f"{group}/{version}"
            body["kind"] = kind
        ordered = {"apiVersion": body.pop("apiVersion"), "kind": body.pop("kind")}
        ordered["metadata"] = body.pop("metadata", {})
        ordered.update(sorted(body.items()))
        return ordered

    def masked_inputs(self) -> dict[str, Any]:
        return _mask(self.inputs, self.secret_paths, "")

    def as_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "name": self.name,
            "urn": self.urn,
            "parent": self.parent,
            "custom": self.custom,
            "protect": self.protect,
            "retainOnDelete": self.retain_on_delete,
            "dependsOn": self.depends_on,
            "inputs": self.masked_inputs(),
        }


def _mask(value: Any, secrets: set[str], path: str) -> Any:
    if path in secrets:
        return SECRET_MASK
    if isinstance(value, dict):
        return {k: _mask(v, secrets, f"{path}.{k}" if path else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, secrets, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def stand_in_secret(seed: str, length: int = 32) -> str:
    """A deterministic value standing in for a generated secret in an offline render."""
    alphabet = string.ascii_letters + string.digits
    digest = hashlib.sha256(seed.encode()).digest()
    while len(digest) < length:
        digest += hashlib.sha256(digest).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:length])


@dataclass(frozen=True)
class StackOutputs:
    """What a ``pulumi.StackReference`` to another stack reads in an offline run."""

    outputs: dict[str, Any]
    #: Outputs the referenced stack holds as secrets.
    secret_names: tuple[str, ...] = ()


@dataclass
class Capture:
    """Everything one offline run registered."""

    resources: list[Recorded]
    outputs: dict[str, Any]

    def by_type(self, type_: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str) -> Recorded:
        matches = [r for r in self.resources if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}")
        return matches[0]

    def kubernetes_objects(self) -> list[Recorded]:
        return [r for r in self.resources if r.is_kubernetes_object]

    def manifests(self) -> list[dict[str, Any]]:
        return [r.manifest() for r in self.kubernetes_objects()]

    def parent_of(self, name: str) -> Recorded | None:
        child = self.named(name)
        return next((r for r in self.resources if r.urn == child.parent), None)
