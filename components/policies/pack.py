"""The policy pack adapters: pulumi-policy's validation args as the neutral views
(``pulumi preview --policy-pack components/policypack``)."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import yaml

from mlplane.policies.model import Enforcement, MANDATORY, Policy, Problem, Resource, Stack, UNKNOWN
from mlplane.policies.catalog import POLICIES
from mlplane.policies.run import config_secure_keys, throwaway_from_config

if TYPE_CHECKING:
    import pulumi_policy


def _plain(value: Any) -> Any:
    """pulumi-policy's unknown-checking proxies as plain values, unknowns as UNKNOWN."""
    from pulumi_policy import proxy

    sentinels = {
        proxy.UNKNOWN_BOOLEAN_VALUE,
        proxy.UNKNOWN_NUMBER_VALUE,
        proxy.UNKNOWN_STRING_VALUE,
        proxy.UNKNOWN_ARRAY_VALUE,
        proxy.UNKNOWN_ASSET_VALUE,
        proxy.UNKNOWN_ARCHIVE_VALUE,
        proxy.UNKNOWN_OBJECT_VALUE,
    }

    def convert(node: Any) -> Any:
        if isinstance(node, str):
            return UNKNOWN if node in sentinels else node
        if isinstance(node, (proxy._DictProxy, proxy._ListProxy)):  # noqa: SLF001 (their escape hatch)
            node = node["__target"]
        if isinstance(node, Mapping):
            return {k: convert(v) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [convert(v) for v in node]
        return node

    return convert(value)


def resource_from_pack(
    resource_type: str, props: Any, urn: str, name: str, protect: bool, property_dependencies: Any = None
) -> Resource:
    """The neutral view of what the engine hands a policy (inputs, or outputs for stack policies).

    ``property_dependencies`` is a stack policy resource's map of property -> PolicyResources.
    """
    plain = _plain(props)
    dependencies = {
        key: tuple(getattr(item, "urn", "") for item in items)
        for key, items in (property_dependencies or {}).items()
    }
    return Resource(
        type=resource_type,
        name=name,
        urn=urn,
        props=plain if isinstance(plain, Mapping) else {},
        protect=protect,
        property_dependencies=dependencies,
    )


def stack_from_environment(environ: Mapping[str, str] | None = None) -> Stack:
    """The stack a policy pack runs for: the engine sets PULUMI_STACK, PULUMI_PROJECT, PULUMI_CONFIG."""
    env = os.environ if environ is None else environ
    try:
        config = json.loads(env.get("PULUMI_CONFIG") or "{}")
    except ValueError:
        config = {}
    stack = (env.get("PULUMI_STACK") or "").rsplit("/", 1)[-1]
    stack_config = read_stack_config_file(env.get("PULUMI_PROJECT", ""), stack, _search_roots(env))
    return Stack(
        name=stack,
        throwaway=throwaway_from_config(config if isinstance(config, Mapping) else {}),
        config_secure=config_secure_keys(stack_config) if stack_config is not None else None,
    )


def _search_roots(env: Mapping[str, str]) -> list[Path]:
    """Where the project may be: the directory `pulumi` was started in, then the pack's."""
    roots = [Path(env["PWD"])] if env.get("PWD") else []
    return [*roots, Path.cwd()]


def read_stack_config_file(project: str, stack: str, roots: Iterable[Path]) -> dict[str, Any] | None:
    """The ``config:`` of ``Pulumi.<stack>.yaml`` of the project named ``project``, None if not found."""
    if not project or not stack:
        return None
    for root in roots:
        for directory in [root.resolve(), *root.resolve().parents]:
            manifest = directory / "Pulumi.yaml"
            if not manifest.is_file():
                continue
            try:
                document = yaml.safe_load(manifest.read_text()) or {}
            except (OSError, yaml.YAMLError):
                break
            if not isinstance(document, Mapping) or document.get("name") != project:
                break
            config_dir = directory / str(document.get("stackConfigDir") or ".")
            path = config_dir / f"Pulumi.{stack}.yaml"
            try:
                stack_document = yaml.safe_load(path.read_text()) or {}
            except (OSError, yaml.YAMLError):
                return None
            config = stack_document.get("config") if isinstance(stack_document, Mapping) else None
            return dict(config) if isinstance(config, Mapping) else {}
    return None


def _enforcement_level(level: Enforcement) -> pulumi_policy.EnforcementLevel:
    from pulumi_policy import EnforcementLevel

    return EnforcementLevel.MANDATORY if level == MANDATORY else EnforcementLevel.ADVISORY


def _pack_message(problem: Problem) -> str:
    return f"{problem.message}. Fix: {problem.fix}."


@functools.lru_cache(maxsize=1)
def current_stack() -> Stack:
    """The stack of this policy pack process (the engine starts one process per operation)."""
    return stack_from_environment()


def resource_validation(item: Policy, stack: Callable[[], Stack] = current_stack) -> Callable[[Any, Callable[..., None]], None]:
    """The pulumi-policy validate callback of a resource policy."""
    check = item.resource_check
    assert check is not None

    def validate(args: Any, report_violation: Callable[..., None]) -> None:
        current = stack()
        if item.inapplicable(current) is not None:
            return
        resource = resource_from_pack(args.resource_type, args.props, args.urn, args.name, bool(args.opts.protect))
        for problem in check(resource, current):
            report_violation(_pack_message(problem))

    return validate


def stack_validation(item: Policy, stack: Callable[[], Stack] = current_stack) -> Callable[[Any, Callable[..., None]], None]:
    """The pulumi-policy validate callback of a stack policy."""
    check = item.stack_check
    assert check is not None

    def validate(args: Any, report_violation: Callable[..., None]) -> None:
        current = stack()
        reason = item.inapplicable(current)
        if reason is not None:
            args.not_applicable(reason)
        resources = [
            resource_from_pack(
                r.resource_type, r.props, r.urn, r.name, bool(r.opts.protect), getattr(r, "property_dependencies", None)
            )
            for r in args.resources
        ]
        for problem in check(resources, current):
            urn = problem.resource.urn if problem.resource is not None else None
            report_violation(_pack_message(problem), urn)

    return validate


def pack_policies(stack: Callable[[], Stack] = current_stack) -> list[pulumi_policy.Policy]:
    """The pulumi-policy policies of the pack, built from :data:`POLICIES` (no server started).

    ``stack`` gives the stack view; the default reads the engine's environment once.
    """
    from pulumi_policy import ResourceValidationPolicy, StackValidationPolicy

    built: list[pulumi_policy.Policy] = []
    for item in POLICIES:
        common = {
            "name": item.name,
            "description": item.description,
            "enforcement_level": _enforcement_level(item.enforcement),
            "remediation_steps": item.remediation,
            "tags": ["mlplane", item.scope],
        }
        if item.resource_check is not None:
            built.append(ResourceValidationPolicy(validate=resource_validation(item, stack), **common))
        else:
            built.append(StackValidationPolicy(validate=stack_validation(item, stack), **common))
    return built
