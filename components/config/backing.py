"""The config of the backing services: the object store and the database, each bundled or external."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mlplane.config.scalars import BucketName, ConfigKey, Port, Storage
from mlplane.config.blocks import _Model, Resources, resources


class ObjectStoreBuckets(_Model):
    """Bucket names."""

    artifacts: BucketName = Field(
        default="mlplane-artifacts", description="MLflow artifacts (runs, logged models)."
    )
    datasets: BucketName = Field(default="mlplane-datasets", description="Training and evaluation data.")
    models: BucketName = Field(default="mlplane-models", description="Exported and packaged models.")

    @model_validator(mode="after")
    def _distinct(self) -> ObjectStoreBuckets:
        names = [self.artifacts, self.datasets, self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"bucket names must be distinct, got {names}")
        return self


class BundledObjectStoreConfig(_Model):
    """A single-node SeaweedFS S3 store inside the cluster."""

    storage_size: Storage = Field(default="10Gi", description="Size of the data volume.")
    setup_job_resources: Resources = Field(
        default_factory=resources("10m", "32Mi", "200m", "128Mi"),
        description=(
            "Requests and limits of the Job that creates the buckets and the S3 identities with "
            "`weed shell` (it runs once per change, then completes)."
        ),
    )
    resources: Resources = Field(
        default_factory=resources("50m", "128Mi", "1", "512Mi"),
        description="Requests and limits of the SeaweedFS server.",
    )


class ExternalObjectStoreConfig(_Model):
    """An existing S3-compatible endpoint whose buckets already exist."""

    endpoint: str = Field(
        description="S3 endpoint URL, e.g. 'https://s3.eu-west-1.amazonaws.com'.",
        pattern=r"^https?://[^\s/]+(/.*)?$",
    )
    region: str = Field(default="us-east-1", description="Region sent with S3 requests.")
    access_key_id_key: ConfigKey = Field(
        description="Secret config key holding the access key id MLflow uses."
    )
    secret_access_key_key: ConfigKey = Field(
        description="Secret config key holding the secret access key MLflow uses."
    )


class ObjectStorageConfig(_Model):
    """Object storage for artifacts, datasets and models."""

    mode: Literal["bundled", "external"] = Field(
        default="bundled", description="'bundled' runs SeaweedFS in the cluster; 'external' uses an existing S3 endpoint."
    )
    buckets: ObjectStoreBuckets = Field(
        default_factory=ObjectStoreBuckets, description="Bucket names (created when bundled)."
    )
    bundled: BundledObjectStoreConfig = Field(
        default_factory=BundledObjectStoreConfig, description="Settings for mode 'bundled'."
    )
    external: ExternalObjectStoreConfig | None = Field(
        default=None, description="Settings for mode 'external' (required there)."
    )

    @model_validator(mode="after")
    def _mode_settings(self) -> ObjectStorageConfig:
        if self.mode == "external" and self.external is None:
            raise ValueError("mode 'external' needs an 'external' block with 'endpoint' and credential keys")
        if self.mode == "bundled" and self.external is not None:
            raise ValueError("'external' is only used with mode 'external' (mode is 'bundled')")
        return self


class BundledDatabaseConfig(_Model):
    """A single PostgreSQL instance inside the cluster."""

    storage_size: Storage = Field(default="2Gi", description="Size of the data volume.")
    resources: Resources = Field(
        default_factory=resources("50m", "128Mi", "1", "512Mi"),
        description="Requests and limits of PostgreSQL.",
    )


class ExternalDatabaseConfig(_Model):
    """An existing PostgreSQL server and database."""

    host: str = Field(description="Host name of the PostgreSQL server.", min_length=1)
    port: Port = Field(default=5432, description="Port of the PostgreSQL server.")
    database: str = Field(default="mlflow", description="Database MLflow uses.", min_length=1)
    username: str = Field(default="mlflow", description="Role MLflow connects as.", min_length=1)
    password_key: ConfigKey = Field(description="Secret config key holding the role's password.")
    sslmode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] = Field(
        default="require", description="libpq sslmode for the connection."
    )


class DatabaseConfig(_Model):
    """The PostgreSQL database behind MLflow."""

    mode: Literal["bundled", "external"] = Field(
        default="bundled", description="'bundled' runs PostgreSQL in the cluster; 'external' uses an existing server."
    )
    bundled: BundledDatabaseConfig = Field(
        default_factory=BundledDatabaseConfig, description="Settings for mode 'bundled'."
    )
    external: ExternalDatabaseConfig | None = Field(
        default=None, description="Settings for mode 'external' (required there)."
    )

    @model_validator(mode="after")
    def _mode_settings(self) -> DatabaseConfig:
        if self.mode == "external" and self.external is None:
            raise ValueError("mode 'external' needs an 'external' block with 'host' and 'password_key'")
        if self.mode == "bundled" and self.external is not None:
            raise ValueError("'external' is only used with mode 'external' (mode is 'bundled')")
        return self
