"""The config of serving: models, canaries, inference logging, drift, auth, progressive delivery."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from mlplane.config.scalars import DnsLabel, Duration, Storage, duration_seconds
from mlplane.config.blocks import _Model, Resources, resources


#: Longest model name: it leaves room for the '-canary' suffix in a 63-character object name.
MODEL_NAME_MAX = 56


_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")

#: The most a progressive canary may receive before Flagger promotes it, in percent. One rule for
#: the config (``canary.steps``) and the mandatory policy 'progressive-delivery-analysis'
#: (mlplane.policies.stack_rules imports it): above half, a version not yet judged answers most
#: users, and Flagger promotes after the last step anyway (docs/models.md, "Canary steps").
CANARY_MAX_STEP_WEIGHT = 50
#: The shortest progressive check interval: a rate over a shorter window has too few samples at
#: the default 15s scrape interval. Shared with the policy like the weight.
CANARY_MIN_INTERVAL_SECONDS = 30


def _pinned_image(value: str) -> str:
    name, at, digest = value.partition("@")
    if at:
        # repo@sha256:<64 hex> or repo:tag@sha256:<64 hex> (the tag is then informational).
        if not _DIGEST.match(digest) or not name or "@" in digest:
            raise ValueError(
                f"digest '{digest}' is not 'sha256:' followed by 64 lowercase hex digits, "
                "e.g. 'localhost:5001/vision/serve@sha256:<64 hex>'"
            )
        return value
    last = value.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    if not tag or tag == "latest":
        raise ValueError(
            "must be an image reference pinned to a tag other than 'latest' or to a digest, "
            "e.g. 'localhost:5001/iris-serving:1.2.0'"
        )
    return value


PinnedImage = Annotated[str, AfterValidator(_pinned_image)]


#: Host name prefixes the platform's own UIs use on the Gateway (<prefix>.<domain>).
RESERVED_HOST_PREFIXES = ("mlflow", "grafana", "prometheus", "s3")


class ModelRef(_Model):
    """One model version in the MLflow registry: a version number or an alias."""

    version: int | None = Field(default=None, ge=1, description="Registered model version number.")
    alias: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$",
        description="Registered model alias, e.g. 'champion'.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelRef:
        if (self.version is None) == (self.alias is None):
            raise ValueError("set exactly one of 'version' or 'alias'")
        return self

    @property
    def uri_suffix(self) -> str:
        return f"@{self.alias}" if self.alias else f"/{self.version}"

    @property
    def label(self) -> str:
        return self.alias.lower().replace("_", "-") if self.alias else f"v{self.version}"


class CanaryThresholds(_Model):
    """Limits a progressive canary must stay within at every step (from the Gateway's route stats)."""

    error_rate: float = Field(
        default=0.01, gt=0, le=0.5, description="Highest share of 5xx answers on the model's route (0.01 = 1%)."
    )
    p99_latency_seconds: float = Field(
        default=0.5, gt=0, le=60, description="Highest p99 latency of the model's route, in seconds."
    )
    failed_checks: int = Field(
        default=3, ge=1, le=20,
        description="Failed checks (one per interval) after which the canary is rolled back (Flagger's analysis.threshold).",
    )


class CanaryConfig(ModelRef):
    """A second version receiving a share of the traffic.

    mode 'fixed' (the simple mode): the canary named by version or alias gets `weight` percent of
    the requests until the config changes. mode 'progressive': every change of the model's
    `version` is rolled out by Flagger step by step (`steps`, one per `interval`) while the route's
    error rate and p99 latency stay within `thresholds`, and rolled back automatically when not.
    """

    version: int | None = Field(default=None, ge=1, description="Registered model version number (mode 'fixed').")
    alias: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$",
        description="Registered model alias (mode 'fixed').",
    )
    mode: Literal["fixed", "progressive"] = Field(
        default="fixed",
        description=(
            "'fixed': a fixed share of requests goes to the canary version; 'progressive': Flagger "
            "rolls every change of the model's version out step by step and rolls it back on errors "
            "or latency (needs serving.progressive.enabled)."
        ),
    )
    weight: int = Field(default=10, ge=1, le=99, description="Percent of requests sent to the canary (mode 'fixed').")
    image: PinnedImage | None = Field(
        default=None,
        description=(
            "Image the canary runs (it must contain the `mlflow` CLI). Default: the model's image (mode 'fixed')."
        ),
    )
    steps: list[int] = Field(
        default_factory=lambda: [10, 25, 50],
        description=(
            "Canary weights in percent, one step per interval, strictly increasing, each at most 50 "
            "(mode 'progressive'; Flagger promotes after the last step)."
        ),
    )
    interval: Duration = Field(
        default="1m",
        description="Time between two steps and two metric checks, at least 30s (mode 'progressive').",
    )
    thresholds: CanaryThresholds = Field(
        default_factory=CanaryThresholds, description="Rollback limits (mode 'progressive')."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> CanaryConfig:
        if self.mode == "progressive":
            if self.version is not None or self.alias is not None or self.image is not None:
                raise ValueError(
                    "mode 'progressive' rolls out the model's own 'version': remove the canary's "
                    "version/alias/image and change the model's version instead"
                )
            most = CANARY_MAX_STEP_WEIGHT
            if not self.steps or any(not 1 <= s <= most for s in self.steps) or any(
                b <= a for a, b in zip(self.steps, self.steps[1:])
            ):
                raise ValueError(
                    f"steps {self.steps} must be strictly increasing percentages between 1 and {most}, "
                    f"e.g. [10, 25, 50]: Flagger promotes the canary after the last step, and a step above "
                    f"{most}% sends most requests to a version not yet judged"
                )
            if not re.fullmatch(r"[0-9]+[smh]", self.interval) or duration_seconds(self.interval) < CANARY_MIN_INTERVAL_SECONDS:
                raise ValueError(
                    f"interval '{self.interval}' must be at least {CANARY_MIN_INTERVAL_SECONDS}s in seconds, "
                    "minutes or hours (e.g. '30s', '1m', '2h'; Flagger reads a Go duration): a shorter "
                    "window holds too few Prometheus samples to judge the canary"
                )
            return self
        if (self.version is None) == (self.alias is None):
            raise ValueError("set exactly one of 'version' or 'alias' (or mode: progressive)")
        return self


class InferenceLoggingConfig(_Model):
    """A sample of requests and predictions written to the object store (a logging sidecar)."""

    sample_rate: float = Field(
        gt=0, le=1, description="Share of requests logged with their predictions, e.g. 0.1 for one in ten."
    )
    exclude_fields: list[str] = Field(
        default_factory=list,
        description="Input fields (columns) never logged, e.g. personal data: dropped before anything is written.",
    )
    flush_seconds: int = Field(
        default=60, ge=5, le=3600, description="Most seconds a logged record waits in memory before it is written."
    )
    resources: Resources = Field(
        default_factory=resources("10m", "64Mi", "250m", "128Mi"),
        description="Requests and limits of the logging sidecar (per model replica).",
    )


class DriftThresholds(_Model):
    """When a model counts as drifted."""

    psi: float = Field(
        default=0.2, gt=0, le=10,
        description="Population stability index above which a feature has drifted (0.2 is the usual 'significant shift').",
    )
    share: float = Field(
        default=0.3, gt=0, le=1,
        description="Share of drifted features at or above which the ModelDrift alert fires.",
    )


class DriftConfig(_Model):
    """A scheduled comparison of the logged inputs with the model version's reference dataset."""

    schedule: str = Field(
        default="0 * * * *",
        pattern=r"^(\S+\s+){4}\S+$",
        description="Cron schedule of the drift job (five fields, the cluster's time zone).",
    )
    window: Duration = Field(default="1d", description="How far back the logged requests are compared.")
    reference: str = Field(
        default="reference/data.csv",
        pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*\.(csv|parquet)$",
        description=(
            "Artifact path (CSV or Parquet), in the run that created the model version, of the "
            "reference inputs (usually the training or validation set)."
        ),
    )
    min_samples: int = Field(
        default=100, ge=10, le=1_000_000, description="Fewest logged rows in the window for a score."
    )
    thresholds: DriftThresholds = Field(default_factory=DriftThresholds, description="Drift thresholds.")
    resources: Resources = Field(
        default_factory=resources("50m", "256Mi", "1", "1Gi"),
        description="Requests and limits of the drift job while it runs.",
    )


class ModelConfig(ModelRef):
    """A model served from the MLflow registry."""

    name: DnsLabel = Field(description="Name of the deployment, service and route (a DNS label).")
    registered_model: str = Field(
        min_length=1, max_length=256, description="Name of the registered model in MLflow."
    )
    min_replicas: int = Field(default=1, ge=1, le=50, description="Fewest replicas the HPA keeps.")
    max_replicas: int = Field(default=3, ge=1, le=100, description="Most replicas the HPA scales to.")
    target_cpu_utilization: int = Field(
        default=70, ge=10, le=100, description="HPA target: average CPU use in percent of requests."
    )
    workers: int = Field(default=1, ge=1, le=8, description="Scoring server workers per replica.")
    resources: Resources = Field(
        default_factory=resources("100m", "384Mi", "1", "1Gi"),
        description="Requests and limits of each replica.",
    )
    canary: CanaryConfig | None = Field(
        default=None, description="Serve a second version to a share of requests. Default: none."
    )
    logging: InferenceLoggingConfig | None = Field(
        default=None, description="Log a sample of requests and predictions to the object store. Default: off."
    )
    drift: DriftConfig | None = Field(
        default=None, description="Scheduled drift check of the logged inputs (needs 'logging'). Default: off."
    )
    image: PinnedImage | None = Field(
        default=None,
        description=(
            "Image to serve the model with instead of the pinned MLflow image: one built FROM it "
            "with the model's extra Python dependencies and pushed to the platform registry. It "
            "must contain the `mlflow` CLI; pin a tag or digest. Default: the pinned MLflow image."
        ),
    )
    gpus: int = Field(
        default=0,
        ge=0,
        le=8,
        description=(
            "NVIDIA GPUs each replica requests (`nvidia.com/gpu`, request = limit). On target aws the "
            "replicas run on the GPU node group (`aws.eks.node_groups.gpu`, which must be enabled). "
            "0: none."
        ),
    )
    tmp_size: Storage = Field(
        default="2Gi",
        description="Size limit of the /tmp volume the model is downloaded and unpacked into.",
    )
    startup_timeout_seconds: int = Field(
        default=600,
        ge=30,
        le=3600,
        description=(
            "How long a replica may take to download and load the model before it is restarted "
            "(the startup probe's budget)."
        ),
    )

    @model_validator(mode="after")
    def _rules(self) -> ModelConfig:
        if not self.name[0].isalpha() or len(self.name) > MODEL_NAME_MAX:
            raise ValueError(
                f"name '{self.name}' must start with a letter and be at most {MODEL_NAME_MAX} "
                "characters: it names a Service (DNS-1035) and '<name>-canary' objects"
            )
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas})"
            )
        if self.canary is not None and self.canary.mode == "fixed" and (self.canary.version, self.canary.alias) == (
            self.version,
            self.alias,
        ):
            raise ValueError("canary must name a different version or alias than the model itself")
        if self.canary is not None and self.canary.mode == "progressive" and self.version is None:
            raise ValueError(
                f"canary mode 'progressive' needs a pinned 'version' (alias '{self.alias}' given): a "
                "rollout starts when the version changes, and an alias moves without any change Flagger sees"
            )
        if self.drift is not None and self.logging is None:
            raise ValueError("drift compares logged requests: set 'logging' (sample_rate) too")
        if self.name in RESERVED_HOST_PREFIXES:
            raise ValueError(
                f"name '{self.name}' is the host name of a platform UI ({self.name}.<domain>); "
                f"choose another (reserved: {', '.join(RESERVED_HOST_PREFIXES)})"
            )
        return self


class MetricsServerConfig(_Model):
    """metrics-server, which feeds the HPAs."""

    enabled: bool = Field(
        default=True, description="Install metrics-server (turn off when the cluster already has one)."
    )
    kubelet_insecure_tls: bool = Field(
        default=True,
        description=(
            "Skip verifying kubelet serving certificates (--kubelet-insecure-tls): needed on kind, "
            "whose kubelets use self-signed certificates. Turn off on clusters whose kubelet "
            "certificates are signed by the cluster CA."
        ),
    )
    resources: Resources = Field(
        default_factory=resources("25m", "48Mi", "250m", "128Mi"),
        description="Requests and limits of metrics-server.",
    )


class JwtConfig(_Model):
    """JSON Web Tokens from your identity provider (Envoy Gateway SecurityPolicy ``jwt``)."""

    issuer: str = Field(description="Expected 'iss' claim, e.g. 'https://login.example.com/'.", min_length=1)
    jwks_uri: str = Field(
        description="HTTPS URL of the issuer's JSON Web Key Set.", pattern=r"^https://[^\s]+$"
    )
    audiences: list[str] = Field(default_factory=list, description="Accepted 'aud' claims (any, when empty).")


class ModelAuthConfig(_Model):
    """Who may call the models through the Gateway."""

    mode: Literal["api-key", "jwt", "none"] = Field(
        default="api-key",
        description=(
            "'api-key': requests carry a generated key in the 'x-api-key' header (the stack "
            "output modelApiKey; a team's in its own output); 'jwt': a bearer token from "
            "'jwt.issuer'; 'none': explicit opt-out, the models are open to anyone who reaches "
            "the Gateway."
        ),
    )
    jwt: JwtConfig | None = Field(default=None, description="The token issuer, with mode 'jwt'.")

    @model_validator(mode="after")
    def _jwt(self) -> ModelAuthConfig:
        if (self.mode == "jwt") != (self.jwt is not None):
            raise ValueError("jwt: set it exactly when mode is 'jwt' (issuer and jwks_uri)")
        return self


class ProgressiveDeliveryConfig(_Model):
    """Flagger, the controller behind canaries in mode 'progressive'."""

    enabled: bool = Field(
        default=False,
        description=(
            "Install Flagger (Gateway API provider) in '<platform>-flagger': it promotes canaries "
            "in mode 'progressive' step by step and rolls them back. Default: off."
        ),
    )
    resources: Resources = Field(
        default_factory=resources("10m", "64Mi", "500m", "256Mi"),
        description="Requests and limits of the Flagger controller.",
    )


class ServingConfig(_Model):
    """Model serving with autoscaling."""

    models: list[ModelConfig] = Field(
        default_factory=list, description="Models to serve, each from a registered model version or alias."
    )
    metrics_server: MetricsServerConfig = Field(
        default_factory=MetricsServerConfig, description="metrics-server settings."
    )
    auth: ModelAuthConfig = Field(
        default_factory=ModelAuthConfig,
        description="Authentication on the model routes (Envoy Gateway SecurityPolicy): API keys by default.",
    )
    progressive: ProgressiveDeliveryConfig = Field(
        default_factory=ProgressiveDeliveryConfig,
        description="Progressive delivery controller (Flagger) for canaries in mode 'progressive'.",
    )

    @model_validator(mode="after")
    def _unique(self) -> ServingConfig:
        for index, model in enumerate(self.models):
            if model.canary is not None and model.canary.mode == "progressive" and not self.progressive.enabled:
                raise ValueError(
                    f"models[{index}] '{model.name}': canary mode 'progressive' needs the Flagger "
                    "controller: set serving.progressive.enabled: true"
                )
        seen: set[str] = set()
        for index, model in enumerate(self.models):
            if model.name in seen:
                raise ValueError(f"models[{index}].name '{model.name}' is used twice; names must be unique")
            seen.add(model.name)
        for index, model in enumerate(self.models):
            if model.canary is not None and model.canary.mode == "progressive" and f"{model.name}-primary" in seen:
                raise ValueError(
                    f"models[{index}] '{model.name}' has a progressive canary whose primary objects are "
                    f"named '{model.name}-primary', which is also a model name: rename one of them"
                )
            if model.canary is not None and f"{model.name}-canary" in seen:
                raise ValueError(
                    f"models[{index}] '{model.name}' has a canary whose objects are named "
                    f"'{model.name}-canary', which is also a model name: rename one of them"
                )
        return self
