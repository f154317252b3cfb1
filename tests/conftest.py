"""Shared fixtures: run components against recording mocks (see mlplane.tooling.render)."""

from __future__ import annotations

from typing import Any, Callable

import pulumi
import pulumi_kubernetes as k8s
import pytest

from mlplane.core import kube
from mlplane.config import PlatformConfig, parse_platform
from mlplane.tooling.render import Capture, capture


class Root(pulumi.ComponentResource):
    """Stands in for the Platform component so children get a realistic parent and provider."""

    def __init__(self, provider: k8s.Provider):
        super().__init__("mlplane:index:Platform", "mlplane", None, pulumi.ResourceOptions(providers=[provider]))


def fake_secret(key: str) -> pulumi.Output[str]:
    return pulumi.Output.secret(f"value-of-{key}")


@pytest.fixture
def run_component() -> Callable[..., tuple[Capture, dict[str, Any]]]:
    """Run ``build(platform, config, root)`` offline; return the capture and what build returned.

    ``build`` returns a dict of things to inspect (components, outputs); Outputs in it are
    resolved after the run as ``(value, is_secret)``.
    """

    def run(build: Callable[[kube.Platform, PlatformConfig, pulumi.Resource], dict[str, Any]], raw: dict | None = None, *, protect: bool = True):
        config = parse_platform(raw or {})
        box: dict[str, Any] = {}

        def program() -> None:
            provider = k8s.Provider("k8s", render_yaml_to_directory="/nonexistent")
            platform = kube.Platform(
                name=config.name, provider=provider, protect_stateful=protect, secret=fake_secret,
                registry_mirror=config.images.registry_mirror,
            )
            root = Root(provider)
            box.update(build(platform, config, root))
            for key, value in list(box.items()):
                if isinstance(value, pulumi.Output):
                    pulumi.export(key, value)

        result = capture(program)
        resolved = {k: result.outputs.get(k, v) for k, v in box.items()}
        return result, resolved

    return run


def opts(root: pulumi.Resource) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=root)
