"""Run a Pulumi program offline and record every resource it would register.

This is the engine behind ``mlplane render``, ``mlplane footprint``, ``mlplane plan`` and the unit
tests: the real program runs against a recording mock monitor (no Pulumi CLI, no cluster, no
credentials). Every registration is captured with its type token, name, parent, options and
inputs; Kubernetes objects are turned back into the manifests the provider would apply.

What an offline render cannot know is said plainly in the output: generated secrets get
deterministic stand-in values (derived from the resource name), command outputs are empty, and
Helm charts appear as one resource with their chart, version and values (their templates need
the chart itself, which is fetched at ``pulumi up``).
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .run_mode import offline, offline_render  # noqa: F401 (offline: callers ask the harness too)

SECRET_MASK = "[secret]"


#: Kubernetes resource types that are not objects in the cluster.
_NOT_OBJECTS = ("kubernetes:helm.sh/", "kubernetes:yaml", "kubernetes:kustomize", "pulumi:providers:")


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


def capture(
    program: Callable[[], Any],
    *,
    project: str = "mlplane",
    stack: str = "render",
    config: dict[str, str] | None = None,
    secret_keys: list[str] | None = None,
    stack_references: Mapping[str, StackOutputs] | None = None,
) -> Capture:
    """Run ``program`` against recording mocks and return what it registered.

    ``stack_references`` gives the outputs of the stacks the program references (by fully
    qualified name). Exceptions raised by the program (for example an invalid config) propagate
    after the runtime has been shut down, and nothing is returned.
    """
    from . import progress

    # "render" is the stack name of a run without a stack (`--config FILE`, tests).
    with progress.step("rendering the config offline" if stack == "render" else f"rendering stack {stack} offline"):
        from . import render_engine  # the Pulumi SDK: loaded only when a program runs

        # Components ask mlplane.run_mode whether they run offline (they never import this harness).
        with offline_render():
            resources, outputs = render_engine.run(
                program, project=project, stack=stack, config=config, secret_keys=secret_keys, stack_references=stack_references
            )
    return Capture(resources=resources, outputs=outputs)


def resources_document(result: Capture) -> list[dict[str, Any]]:
    return [r.as_json() for r in result.resources]


def dumps(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, default=str) + "\n"
