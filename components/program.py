"""The stack program: read and validate the config once, then build the platform.

``stacks/__main__.py`` calls :func:`main`; ``mlplane render`` runs the same function offline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

import pulumi
import pulumi_random as random

from .config import NO_PLATFORM_HINT, ConfigError, PlatformConfig, parse_platform, unknown_stack_keys
from .platform import Platform, PlatformArgs

CONFIG_NAMESPACE = "mlplane"
PLATFORM_KEY = "platform"
#: A stack whose config holds this key is a team stack (see mlplane.teams).
TEAM_KEY = "team"
#: Annotation on every Kubernetes object a stack creates: the stack instance that manages it.
OWNER_ANNOTATION = "mlplane.dev/owner"


def stack_config_keys() -> set[str]:
    """Every config key of the running stack (``namespace:key``).

    The engine passes the whole stack config to the program as JSON in ``PULUMI_CONFIG``;
    offline renders and mocks set it in the runtime's config map. Both are read.
    """
    from pulumi.runtime import config as runtime_config

    return set(runtime_config.get_config_env()) | set(runtime_config.CONFIG.get())


def load_platform_config() -> PlatformConfig:
    """The validated ``mlplane:platform`` object of the current stack; every other key of the
    ``mlplane`` namespace must be a secret key one of its ``*_key`` fields names."""
    root = f"{CONFIG_NAMESPACE}:{PLATFORM_KEY}"
    keys = stack_config_keys()
    raw = pulumi.Config(CONFIG_NAMESPACE).get_object(PLATFORM_KEY)
    if raw is None:
        # A misspelled object key is the likely cause: named first, with the closest known key.
        problems = unknown_stack_keys(keys, {root}, root, (root, f"{CONFIG_NAMESPACE}:{TEAM_KEY}"))
        raise ConfigError([*problems, f"{root}: {NO_PLATFORM_HINT}"])
    config = parse_platform(raw, root=root)
    known = {root, *(f"{CONFIG_NAMESPACE}:{key}" for _, key in config.secret_keys())}
    problems = unknown_stack_keys(keys, known, root, (f"{CONFIG_NAMESPACE}:{TEAM_KEY}",))
    if problems:
        raise ConfigError(problems)
    return config


def platform_program(config: PlatformConfig) -> Platform:
    """Build the platform and export what users and team stacks need."""
    stack_config = pulumi.Config(CONFIG_NAMESPACE)
    platform = Platform(config.name, PlatformArgs(config=config, secret=stack_config.require_secret))
    pulumi.export("urls", platform.urls)
    if platform.kubeconfig is not None:
        pulumi.export("kubeconfig", pulumi.Output.secret(platform.kubeconfig))
    pulumi.export("mlflowAdminUsername", platform.tracking.admin_username)
    pulumi.export("mlflowAdminPassword", platform.tracking.admin_password)
    pulumi.export("grafanaAdminPassword", platform.monitoring.grafana_admin_password)
    pulumi.export("s3AccessKeyId", platform.storage.admin_access_key_id)
    pulumi.export("s3SecretAccessKey", platform.storage.admin_secret_access_key)
    pulumi.export("registryPushUrl", platform.registry.push_url)
    pulumi.export(
        "platform",
        {
            "name": config.name,
            "domain": config.routing.domain,
            "gateway": {
                "name": platform.routing.gateway.name,
                "namespace": platform.routing.gateway.namespace,
                "httpPort": platform.routing.gateway.http_port,
            },
            "trackingUri": platform.tracking.internal_url,
            "s3Endpoint": platform.storage.endpoint,
            "s3Region": platform.storage.region,
            "registryPullPrefix": platform.registry.pull_prefix,
            "registryClusterPushUrl": platform.registry.cluster_push_url,
        },
    )
    return platform


def claim_objects() -> None:
    """Give every Kubernetes object of this stack an owner value that only this stack holds.

    The kubernetes provider creates objects with server-side apply, which upserts: a second stack
    declaring an object that already exists (a copy of the stack in another state backend, or
    one forced past the team CLI's collision checks) silently becomes a co-owner of it, and that
    stack's destroy then deletes it. With a value no other stack sets on a field every object
    has, the second stack's apply is a field conflict and fails before it owns anything
    (tests/cluster/test_cluster_up.py). The value is ``<stack>-<id>``, the id generated once
    and kept in this stack's state, so two backends' stacks of the same name differ too.
    """
    owner: list[pulumi.Output[str]] = []

    def owner_value() -> pulumi.Output[str]:
        # Created with the first Kubernetes object, so that a run that stops on invalid config
        # before registering any object creates nothing.
        if not owner:
            owner_id = random.RandomString("owner-id", length=12, special=False, upper=False)
            owner.append(pulumi.Output.concat(pulumi.get_stack(), "-", owner_id.result))
        return owner[0]

    pulumi.runtime.register_stack_transformation(partial(claim, owner_value))


def claim(
    owner: Callable[[], pulumi.Input[str]], args: pulumi.ResourceTransformationArgs
) -> pulumi.ResourceTransformationResult | None:
    """Stack transformation: the :data:`OWNER_ANNOTATION` on a Kubernetes object (not on patches
    of objects another stack owns, nor on components such as charts, which have no metadata)."""
    if not args.type_.startswith("kubernetes:") or args.type_.endswith("Patch"):
        return None
    meta = args.props.get("metadata")
    notes = meta.get("annotations") if isinstance(meta, Mapping) else None
    if not isinstance(meta, Mapping) or not isinstance(notes, (Mapping, type(None))):
        return None
    metadata = {**meta, "annotations": {**(notes or {}), OWNER_ANNOTATION: owner()}}
    return pulumi.ResourceTransformationResult(props={**args.props, "metadata": metadata}, opts=args.opts)


def main() -> None:
    """Run the platform program, or the team program when the stack holds ``mlplane:team``."""
    claim_objects()
    if pulumi.Config(CONFIG_NAMESPACE).get_object(TEAM_KEY) is not None:
        from .teams import run_team_stack

        run_team_stack()
        return
    try:
        config = load_platform_config()
    except ConfigError as error:
        # RunError is reported by the engine without a Python traceback; nothing is registered.
        raise pulumi.RunError("invalid mlplane config:\n  " + "\n  ".join(error.problems)) from None
    platform_program(config)
