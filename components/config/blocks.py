"""Shared blocks of the config: the base model, resource amounts, images and the lifecycle of
stateful resources."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from mlplane.config.scalars import (
    ChartKey,
    Cpu,
    cpu_millicores,
    Memory,
    memory_bytes,
    project_path,
    RegistryHost,
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# --------------------------------------------------------------------------------------------
# Shared blocks
# --------------------------------------------------------------------------------------------


class Amounts(_Model):
    """A CPU and memory amount."""

    cpu: Cpu = Field(description="CPU quantity, e.g. '100m'.")
    memory: Memory = Field(description="Memory quantity, e.g. '256Mi'.")


class Resources(_Model):
    """Requests and limits of one container. mlplane sets both on every workload."""

    requests: Amounts = Field(description="What the scheduler reserves for the container.")
    limits: Amounts = Field(description="The most the container may use.")

    @model_validator(mode="after")
    def _requests_within_limits(self) -> Resources:
        if cpu_millicores(self.requests.cpu) > cpu_millicores(self.limits.cpu):
            raise ValueError(
                f"requests.cpu ({self.requests.cpu}) is above limits.cpu ({self.limits.cpu}); "
                "requests must not exceed limits"
            )
        if memory_bytes(self.requests.memory) > memory_bytes(self.limits.memory):
            raise ValueError(
                f"requests.memory ({self.requests.memory}) is above limits.memory "
                f"({self.limits.memory}); requests must not exceed limits"
            )
        return self


def resources(req_cpu: str, req_mem: str, lim_cpu: str, lim_mem: str) -> Any:
    """A default factory for a :class:`Resources` field."""
    return lambda: Resources(
        requests=Amounts(cpu=req_cpu, memory=req_mem),
        limits=Amounts(cpu=lim_cpu, memory=lim_mem),
    )


class ImagesConfig(_Model):
    """Where container images come from."""

    registry_mirror: RegistryHost | None = Field(
        default=None,
        description=(
            "Pull every platform image through this registry host (and optional path) instead "
            "of its upstream registry, e.g. 'mirror.corp.example/upstream' for air-gapped "
            "installs. The repository path and pinned tag are kept. Default: upstream registries."
        ),
    )
    chart_mirror: RegistryHost | None = Field(
        default=None,
        description=(
            "Pull the Helm charts (Envoy Gateway, ARC) from this OCI registry host (and optional "
            "path) instead of their upstream registries, e.g. 'mirror.corp.example/charts'. The "
            "repository path and pinned version are kept. Default: upstream registries."
        ),
    )
    chart_paths: dict[ChartKey, str] = Field(
        default_factory=dict,
        description=(
            "Install these charts from a local chart directory or `.tgz` archive instead of a "
            "registry, for air-gapped clusters: chart key (`envoy-gateway`, `arc-controller`, "
            "`arc-scale-set`) -> path, relative to the project directory (the one holding "
            "Pulumi.yaml) or absolute. It must exist; use the version pinned in versions.py. "
            "Default: none (charts come from their registry or `chart_mirror`)."
        ),
    )
    lock_file: str | None = Field(
        default=None,
        description=(
            "Image lock written by `mlplane images lock` (path relative to the project "
            "directory, e.g. 'stacks/images.local.lock.json'). Locked images are pulled as "
            "`image:tag@sha256:...`, and those workloads no longer need the CKV_K8S_43 "
            "exception. A lock whose entries name other tags or another mirror than the stack "
            "uses is rejected: run `mlplane images lock` again. Default: images by tag."
        ),
    )
    _lock: dict[str, Any] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _local_sources(self) -> ImagesConfig:
        problems = []
        for key, value in self.chart_paths.items():
            if not str(value).strip():
                problems.append(f"chart_paths.{key}: must be a path (given: {value!r})")
            elif not project_path(value).exists():
                problems.append(f"chart_paths.{key}: {value} does not exist (resolved: {project_path(value)})")
        if problems:
            raise ValueError("; ".join(problems))
        if self.lock_file is not None:
            from mlplane.config.image_lock import LockError, read_lock

            try:
                self._lock = read_lock(project_path(self.lock_file), self.registry_mirror, self.chart_mirror)
            except LockError as error:
                raise ValueError(f"lock_file: {error}") from None
        return self

    def locked(self) -> dict[str, Any] | None:
        """The loaded lock (``images`` and ``charts`` entries), or None without ``lock_file``."""
        return self._lock


class LifecycleConfig(_Model):
    """How stateful resources are protected."""

    throwaway: bool = Field(
        default=False,
        description=(
            "A throwaway stack (a laptop or CI sandbox): stateful resources (database, object "
            "store, registry volume, cluster) are neither `protect`ed nor retained on delete, "
            "so `pulumi destroy` removes everything. Default false: stateful resources are "
            "protected and retained on delete."
        ),
    )
