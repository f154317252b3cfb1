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

import pulumi
from pulumi.runtime import mocks as _mocks
from pulumi.runtime import rpc

SECRET_MASK = "[secret]"

#: True while a program runs under :func:`capture` (an offline render, not the engine).
_offline = False


def offline() -> bool:
    """Whether the running program is an offline render: no cluster, files or credentials."""
    return _offline

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
    delete_before_replace: bool = False
    #: Input property -> URNs its value came from (what the engine replaces dependents by).
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    aliases: list[str]
    inputs: dict[str, Any]
    secret_paths: set[str] = field(default_factory=set)

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


def _unwrap(value: Any, path: str, secrets: set[str]) -> Any:
    """Strip RPC secret wrappers, remembering where they were."""
    if rpc.is_rpc_secret(value):
        secrets.add(path)
        return _unwrap(rpc.unwrap_rpc_secret(value), path, set())
    if isinstance(value, dict):
        return {k: _unwrap(v, f"{path}.{k}" if path else k, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v, f"{path}[{i}]", secrets) for i, v in enumerate(value)]
    if isinstance(value, pulumi.Resource):
        return "<resource>"
    if isinstance(value, float) and value.is_integer():
        # The wire format carries every number as a double; providers write integral ones as ints.
        return int(value)
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


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self, stack_references: Mapping[str, StackOutputs] | None = None):
        #: Fully qualified stack name -> its outputs, for StackReferences.
        self.stack_references = dict(stack_references or {})

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        inputs = _unwrap(args.inputs, "", set())
        state = dict(inputs)
        if args.typ == "pulumi:pulumi:StackReference":
            referenced = self.stack_references.get(inputs.get("name"))
            if referenced is None:
                known = ", ".join(sorted(self.stack_references)) or "none"
                raise KeyError(f"no outputs of stack {inputs.get('name')!r} in this offline run (known: {known})")
            state.update(outputs=referenced.outputs, secretOutputNames=list(referenced.secret_names))
        elif args.typ.startswith("random:index/random"):
            length = int(inputs.get("length", 32) or 32)
            value = stand_in_secret(f"{args.typ}:{args.name}", length)
            state.update(result=value, id=value)
        elif args.typ == "command:local:Command":
            state.update(stdout="", stderr="")
        elif args.typ.startswith("kubernetes:") and "metadata" in inputs:
            meta = dict(inputs.get("metadata") or {})
            meta.setdefault("name", args.name)
            state["metadata"] = meta
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
        return {}, None


def _is_sdk_type_alias(alias: Any) -> bool:
    """pulumi-kubernetes registers type aliases for older API versions of every object itself."""
    spec = getattr(alias, "spec", None)
    return spec is not None and not spec.name and str(spec.type).startswith("kubernetes:")


def _alias_text(alias: Any) -> str:
    return alias.urn if getattr(alias, "urn", "") else " ".join(str(alias.spec).split())


class _Monitor(_mocks.MockMonitor):
    def __init__(self, mocks: _Mocks):
        super().__init__(mocks)
        self.recorded: list[Recorded] = []

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        secrets: set[str] = set()
        inputs = _unwrap(rpc.deserialize_properties(request.object), "", secrets)
        self.recorded.append(
            Recorded(
                type=request.type,
                name=request.name,
                urn=response.urn,
                parent=request.parent or None,
                custom=bool(request.custom),
                protect=bool(request.protect),
                retain_on_delete=bool(request.retainOnDelete),
                provider=request.provider or None,
                depends_on=sorted(request.dependencies),
                aliases=[_alias_text(a) for a in request.aliases if not _is_sdk_type_alias(a)],
                inputs=inputs,
                secret_paths=secrets,
            )
        )
        return response


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
    mocks = _Mocks(stack_references)
    monitor = _Monitor(mocks)
    pulumi.runtime.settings.SETTINGS.rpc_manager.clear()
    pulumi.runtime.settings.SETTINGS.outputs.clear()
    # A fresh root stack per run, so exports of an earlier run never leak into this one.
    pulumi.runtime.settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(
        {k if ":" in k else f"{project}:{k}": v for k, v in (config or {}).items()},
        [k if ":" in k else f"{project}:{k}" for k in (secret_keys or [])],
    )
    global _offline
    _offline = True
    try:
        _mocks._sync_await(_mocks.run_pulumi_func(program))
    except Exception as error:
        # Keep what was registered before the failure, for tests that prove it is nothing.
        error.recorded = list(monitor.recorded)  # type: ignore[attr-defined]
        raise
    finally:
        _offline = False
    outputs = _resolve_exports()
    # Registration order depends on when outputs resolve; sort for reproducible renders.
    return Capture(resources=sorted(monitor.recorded, key=lambda r: r.urn), outputs=outputs)


def _resolve_exports() -> dict[str, Any]:
    """Stack outputs (``pulumi.export``), secret ones masked."""
    root = pulumi.runtime.get_root_resource()
    resolved: dict[str, Any] = {}
    for key, value in sorted(getattr(root, "outputs", {}).items()):
        output = pulumi.Output.from_input(value)
        is_secret = _mocks._sync_await(output.is_secret())
        resolved[key] = SECRET_MASK if is_secret else _mocks._sync_await(output.future())
    return resolved


def resources_document(result: Capture) -> list[dict[str, Any]]:
    return [r.as_json() for r in result.resources]


def dumps(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, default=str) + "\n"
