"""The config of the MLflow tracking server."""

from __future__ import annotations

from pydantic import Field

from mlplane.config.blocks import _Model, Resources, resources


class TrackingConfig(_Model):
    """The MLflow tracking server and model registry."""

    workers: int = Field(
        default=1, ge=1, le=8, description="uvicorn workers (each needs ~400 MB; 1 fits a laptop)."
    )
    auth: bool = Field(
        default=True,
        description=(
            "MLflow basic auth with a generated admin password (users and permissions stored in "
            "PostgreSQL). Turning it off leaves the tracking server open to anyone who reaches it."
        ),
    )
    exporter_resources: Resources = Field(
        default_factory=resources("10m", "32Mi", "100m", "96Mi"),
        description=(
            "Requests and limits of the metrics sidecar that serves the tracking server's "
            "Prometheus metrics without MLflow credentials."
        ),
    )
    setup_job_resources: Resources = Field(
        default_factory=resources("10m", "32Mi", "200m", "96Mi"),
        description=(
            "Requests and limits of the Job that creates the read-only MLflow account through "
            "MLflow's auth REST API (only when `auth` is on)."
        ),
    )
    workspaces: bool = Field(
        default=False,
        description=(
            "MLflow workspaces (`--enable-workspaces`, experimental in MLflow): each team stack "
            "gets a workspace only its own account can see. Resources created before stay in the "
            "'default' workspace, which every account may still read (default_permission). "
            "Needed by team environments that use 'tracking'."
        ),
    )
    resources: Resources = Field(
        default_factory=resources("100m", "512Mi", "1", "1536Mi"),
        description="Requests and limits of the tracking server.",
    )
