"""The Pulumi side of an offline render: a mock monitor that records every registration.

Kept apart from :mod:`mlplane.tooling.render` so that commands which never run a program (``--help``,
``validate``, ``schema``) do not import the Pulumi SDK (about 0.3 s); :func:`mlplane.tooling.render.capture`
imports this module when it runs a program.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import pulumi
from pulumi.runtime import mocks as _mocks
from pulumi.runtime import rpc

from mlplane.tooling.render_records import SECRET_MASK, Recorded, StackOutputs, stand_in_secret


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
                delete_before_replace=bool(request.deleteBeforeReplace),
                property_dependencies={
                    key: sorted(deps.urns) for key, deps in request.propertyDependencies.items() if deps.urns
                },
            )
        )
        return response


def _resolve_exports() -> dict[str, Any]:
    """Stack outputs (``pulumi.export``), secret ones masked."""
    root = pulumi.runtime.get_root_resource()
    resolved: dict[str, Any] = {}
    for key, value in sorted(getattr(root, "outputs", {}).items()):
        output = pulumi.Output.from_input(value)
        is_secret = _mocks._sync_await(output.is_secret())
        resolved[key] = SECRET_MASK if is_secret else _mocks._sync_await(output.future())
    return resolved



def run(
    program: Callable[[], Any],
    *,
    project: str,
    stack: str,
    config: dict[str, str] | None,
    secret_keys: list[str] | None,
    stack_references: Mapping[str, StackOutputs] | None,
) -> tuple[list[Recorded], dict[str, Any]]:
    """Run ``program`` against recording mocks: what it registered (sorted) and its outputs.

    Exceptions raised by the program propagate with ``recorded`` set to what was registered.
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
    try:
        _mocks._sync_await(_mocks.run_pulumi_func(program))
    except Exception as error:
        # Keep what was registered before the failure, for tests that prove it is nothing.
        error.recorded = list(monitor.recorded)  # type: ignore[attr-defined]
        raise
    outputs = _resolve_exports()
    # Registration order depends on when outputs resolve; sort for reproducible renders.
    return sorted(monitor.recorded, key=lambda r: r.urn), outputs
