"""A team's model extras: inference logging to its own bucket, drift checks with its own MLflow
account, the model exporter the platform Prometheus scrapes, and progressive canaries.

Everything here runs in the team's serving namespace with the team's identities:

- inference logs and drift results go to the team's bucket (``Secret/inference-store`` holds the
  team's S3 key, limited to that bucket); pods labelled ``mlplane.dev/inference-store`` may reach
  the S3 port of the platform's SeaweedFS, nothing else;
- each drift CronJob reads the reference dataset with the team's MLflow account in the team's
  workspace (``MLFLOW_WORKSPACE``);
- ``Deployment/model-exporter`` (service 'monitoring') publishes ``mlplane_team_model_info`` per
  served model and, with drift, the drift results of the namespace; it is labelled
  ``mlplane.dev/scrape: metrics`` so the platform Prometheus' job 'team-pods' scrapes it and
  records the team models' metrics (services/prometheus_config.team_model_rules);
- canaries in mode 'progressive' are run by the team's own Flagger controller, which the platform
  stack runs in ``<platform>-flagger`` with a Role in the team's serving namespace only
  (services/progressive.py); the team stack creates the Canary and MetricTemplates.
"""

from __future__ import annotations

from typing import Any, Sequence

import pulumi
import pulumi_kubernetes as k8s

from mlplane.backing import object_storage
from mlplane.core import kube
from mlplane.services import drift, progressive, serving
from mlplane.services.prometheus_config import TEAM_MODEL_INFO
from mlplane.services.tracking import MLFLOW_TELEMETRY_ENV
from mlplane.team.names import MLFLOW_SECRET, SCRAPE_PORT

#: ConfigMap in the serving namespace with the exposition of the models' info series.
MODEL_INFO_CONFIG_MAP = "model-info"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def model_info_exposition(models: Sequence[serving.ServedModel]) -> str:
    """``mlplane_team_model_info`` of each served model, in the Prometheus text format. The
    namespace is not published: Prometheus sets it from the scraped pod."""
    lines = [
        f"# HELP {TEAM_MODEL_INFO} A model the team serves (value 1): its registered model, version and route.",
        f"# TYPE {TEAM_MODEL_INFO} gauge",
    ]
    for model in models:
        labels = {"model": model.name, "registered_model": model.registered_model, "version": model.version,
                  "route": model.route}
        if model.canary_version is not None:
            labels |= {"canary_version": model.canary_version, "canary_weight": str(model.canary_weight)}
        text = ",".join(f'{key}="{_escape(value)}"' for key, value in sorted(labels.items()))
        lines.append(f"{TEAM_MODEL_INFO}{{{text}}} 1")
    return "\n".join(lines) + "\n"


class ModelExtras:
    """The Team's inference logging, drift checks, model exporter and progressive canaries."""

    def _inference(self) -> drift.Inference | None:
        """The logging Secret, scripts and store egress in the serving namespace, when a model logs."""
        cfg, plat, out = self._args.config, self._args.platform, self._args.outputs
        if not cfg.serving.logging:
            return None
        if self._args.binds_workloads:
            # No key: the roles the platform bound to the serving namespace's accounts (Grants).
            accounts = {
                role: identity for role, account in drift.ACCOUNTS.items()
                if (identity := self._workload_account(self.serving.name, account)) is not None
            }
            store = drift.InferenceStore(
                endpoint=out.s3_endpoint, region=out.s3_region, bucket=self._bucket_name,
                access_key_id="", secret_access_key="",
                # S3 has no addresses a NetworkPolicy can name (the agent: Inference.create).
                egress=kube.internet_egress(443), accounts=accounts,
            )
            return self._inference_objects(store)
        # TeamConfig: logging needs 'object_storage', so the team's key exists (Grants).
        assert self.s3_access_key_id is not None and self.s3_secret_access_key is not None
        store = drift.InferenceStore(
            endpoint=out.s3_endpoint,
            region=out.s3_region,
            bucket=cfg.bucket,
            access_key_id=self.s3_access_key_id,
            secret_access_key=self.s3_secret_access_key,
            egress={
                "to": [self._platform_peer("storage", object_storage.SERVICE)],
                "ports": [{"port": object_storage.S3_PORT, "protocol": "TCP"}],
            },
        )
        return self._inference_objects(store)

    def _inference_objects(self, store: drift.InferenceStore) -> drift.Inference:
        cfg, plat, out = self._args.config, self._args.platform, self._args.outputs
        inference = drift.Inference(
            parent=self, prefix=f"{self._name}-serving", platform=self._team, namespace=self.serving.name,
            ns_name=self.serving.name, store=store, tracking_uri=out.tracking_uri, credentials_secret=MLFLOW_SECRET,
            labels=self._labels("inference"), extra_env=({"name": "MLFLOW_WORKSPACE", "value": cfg.identity},),
            monitoring_namespace=f"{plat.name}-monitoring",
        )
        # No exporter of its own: the team's model exporter serves the drift results too.
        inference.create(drift_models=False)
        return inference

    def _team_flagger(self) -> progressive.TeamFlagger | None:
        """The platform runs the team's controller (check_platform: serving.progressive.enabled)."""
        return progressive.TeamFlagger() if self._args.config.serving.progressive else None

    def _model_exporter(self, inference: drift.Inference | None) -> None:
        """``Deployment/model-exporter``: the models' info series and (with drift) the drift
        results, scraped by the platform Prometheus (service 'monitoring')."""
        cfg, plat = self._args.config, self._args.platform
        if not (cfg.uses("monitoring") and self.models):
            return
        labels = self._labels(MODEL_INFO_CONFIG_MAP)
        info = k8s.core.v1.ConfigMap(
            f"{self._name}-serving-model-info",
            metadata={"name": MODEL_INFO_CONFIG_MAP, "namespace": self.serving.name, "labels": labels},
            data={drift.INFO_FILE: model_info_exposition(self.models)},
            opts=self._child(),
        )
        after: list[pulumi.Resource] = [info]
        if inference is None:
            after.append(k8s.core.v1.ConfigMap(
                f"{self._name}-serving-inference-scripts",
                metadata={"name": drift.SCRIPTS_CONFIG_MAP, "namespace": self.serving.name,
                          "labels": self._labels("inference")},
                data={drift.DRIFT_SCRIPT: drift.script(drift.DRIFT_SCRIPT)},
                opts=self._child(),
            ))
        extra: dict[str, str] = {kube.SCRAPE: SCRAPE_PORT}
        env: list[dict[str, Any]] = [
            {"name": "NAMESPACE", "value": self.serving.name},
            {"name": "HOME", "value": "/tmp"},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
            *MLFLOW_TELEMETRY_ENV,
        ]
        account = None
        if inference is not None and cfg.serving.drift:
            # The drift results in the team's bucket: the exporter reads them with the team's key
            # (or, on AWS, as the read-only bound account).
            extra[drift.STORE_LABEL] = "true"
            env = inference.store_env()
            account = inference.account("exporter")
        drift.exporter(
            f"{self._name}-serving", self._team, self.serving.name, self,
            env=env, extra_labels=extra, monitoring_namespace=f"{plat.name}-monitoring",
            name=drift.TEAM_EXPORTER, info_config_map=info.metadata.name, depends_on=after,
            service_account=account,
        )
