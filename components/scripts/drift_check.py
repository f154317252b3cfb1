"""The drift job and the drift metrics exporter (run in the pinned MLflow image, by ``python``).

``check``: reads the logged requests of one model version for the last ``WINDOW_SECONDS`` from
``s3://$BUCKET/inference/<namespace>/<model>/<version>/date=*/``, downloads the reference
dataset logged with the model version's run in MLflow (``REFERENCE``, CSV or Parquet), compares
each shared numeric feature with the population stability index (10 reference-quantile bins)
and the two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``), categorical features
with PSI over the categories, and writes the result in the Prometheus text format to
``s3://$BUCKET/drift-metrics/<namespace>/<model>.prom`` (and the full report as JSON next to it).

``serve``: the exporter Prometheus scrapes: on ``/metrics`` it concatenates the ``.prom``
files of its namespace (cached for ``CACHE_SECONDS``). Each sample carries the job's run time,
so a stale result stays visible as old (``mlplane_model_drift_last_run_timestamp_seconds``).

Why not Evidently: docs/models.md (it pulls 36 more packages into an image that has numpy,
pandas and scipy already).
"""

from __future__ import annotations

import http.server
import io
import json
import math
import os
import sys
import time
from typing import Any

BINS = 10
#: Floor of a bin's share in the PSI sum (an empty bin would make it infinite).
EPSILON = 1e-4
METRICS_PREFIX = "drift-metrics"


# ------------------------------------------------------------------------------ statistics


def psi_numeric(reference: Any, current: Any, bins: int = BINS) -> float:
    """Population stability index of a numeric feature over reference-quantile bins."""
    import numpy as np

    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if ref.size == 0 or cur.size == 0:
        return float("nan")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    if edges.size < 2:  # a constant reference: one bin for it, one for anything else
        ref_share = np.array([1.0, 0.0])
        cur_share = np.array([np.mean(cur == edges[0]), np.mean(cur != edges[0])])
    else:
        inner = edges[1:-1]
        ref_share = np.bincount(np.searchsorted(inner, ref, side="right"), minlength=inner.size + 1) / ref.size
        cur_share = np.bincount(np.searchsorted(inner, cur, side="right"), minlength=inner.size + 1) / cur.size
    return _psi(ref_share, cur_share)


def psi_categorical(reference: Any, current: Any) -> float:
    import numpy as np

    ref = [str(v) for v in reference]
    cur = [str(v) for v in current]
    if not ref or not cur:
        return float("nan")
    categories = sorted(set(ref) | set(cur))
    ref_share = np.array([ref.count(c) for c in categories]) / len(ref)
    cur_share = np.array([cur.count(c) for c in categories]) / len(cur)
    return _psi(ref_share, cur_share)


def _psi(ref_share: Any, cur_share: Any) -> float:
    import numpy as np

    ref_share = np.clip(ref_share, EPSILON, None)
    cur_share = np.clip(cur_share, EPSILON, None)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def compare(reference: Any, current: Any, psi_threshold: float, min_samples: int) -> dict[str, Any]:
    """Per-feature PSI and KS p-value, and the share of drifted features (PSI above threshold)."""
    from pandas.api.types import is_numeric_dtype
    from scipy.stats import ks_2samp

    features: dict[str, dict[str, float]] = {}
    result: dict[str, Any] = {"samples": int(len(current)), "reference_samples": int(len(reference)), "features": features}
    if len(current) < min_samples:
        result["share"] = None
        return result
    shared = [c for c in reference.columns if c in current.columns]
    for column in shared:
        ref, cur = reference[column].dropna(), current[column].dropna()
        if is_numeric_dtype(ref) and is_numeric_dtype(cur):
            score = psi_numeric(ref.to_numpy(), cur.to_numpy())
            pvalue = float(ks_2samp(ref.to_numpy(dtype=float), cur.to_numpy(dtype=float)).pvalue) if len(ref) and len(cur) else float("nan")
        else:
            score, pvalue = psi_categorical(ref.tolist(), cur.tolist()), float("nan")
        features[column] = {"psi": score, "ks_pvalue": pvalue, "drifted": float(score > psi_threshold)}
    scored = [f for f in features.values() if not math.isnan(f["psi"])]
    result["share"] = sum(f["drifted"] for f in scored) / len(scored) if scored else None
    return result


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def exposition(result: dict[str, Any], labels: dict[str, str], thresholds: dict[str, float], now: float) -> str:
    """The Prometheus text format of one drift result (gauges, no timestamps)."""
    base = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    lines = [
        "# HELP mlplane_model_drift_share Share of the model's features whose PSI is above the threshold.",
        "# TYPE mlplane_model_drift_share gauge",
    ]
    if result.get("share") is not None:
        lines.append(f"mlplane_model_drift_share{{{base}}} {result['share']:g}")
    lines += [
        "# TYPE mlplane_model_drift_share_threshold gauge",
        f"mlplane_model_drift_share_threshold{{{base}}} {thresholds['share']:g}",
        "# TYPE mlplane_model_drift_psi_threshold gauge",
        f"mlplane_model_drift_psi_threshold{{{base}}} {thresholds['psi']:g}",
        "# TYPE mlplane_model_drift_samples gauge",
        f"mlplane_model_drift_samples{{{base}}} {result['samples']}",
        "# TYPE mlplane_model_drift_last_run_timestamp_seconds gauge",
        f"mlplane_model_drift_last_run_timestamp_seconds{{{base}}} {now:.0f}",
        "# HELP mlplane_model_feature_drift_psi Population stability index of one feature against the reference.",
        "# TYPE mlplane_model_feature_drift_psi gauge",
    ]
    for name, feature in sorted(result["features"].items()):
        if not math.isnan(feature["psi"]):
            lines.append(f'mlplane_model_feature_drift_psi{{{base},feature="{_escape(str(name))}"}} {feature["psi"]:.6g}')
    lines.append("# TYPE mlplane_model_feature_drift_ks_pvalue gauge")
    for name, feature in sorted(result["features"].items()):
        if not math.isnan(feature["ks_pvalue"]):
            lines.append(f'mlplane_model_feature_drift_ks_pvalue{{{base},feature="{_escape(str(name))}"}} {feature["ks_pvalue"]:.6g}')
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ the job


def _s3() -> Any:
    import boto3

    return boto3.client("s3")


def logged_rows(s3: Any, bucket: str, prefix: str, since: float, until: float) -> Any:
    """The logged inputs under ``prefix`` (one partition per UTC day) between two times."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    day = since - since % 86400
    while day <= until:
        partition = f"{prefix}/date={time.strftime('%Y-%m-%d', time.gmtime(day))}/"
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=partition):
            for item in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
                for line in body.splitlines():
                    record = json.loads(line)
                    if since <= record.get("ts", 0) <= until and isinstance(record.get("inputs"), dict):
                        rows.append(record["inputs"])
        day += 86400
    return pd.DataFrame(rows)


def reference_frame(registered_model: str, ref: str, artifact: str) -> tuple[Any, str]:
    """The reference dataset of a model version (``ref``: a version number or ``@alias``)."""
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    client = MlflowClient()
    if ref.startswith("@"):
        version = client.get_model_version_by_alias(registered_model, ref[1:])
    else:
        version = client.get_model_version(registered_model, ref)
    if not version.run_id:
        raise SystemExit(f"model {registered_model} version {version.version} has no run: log '{artifact}' with the run that registers it")
    path = download_artifacts(run_id=version.run_id, artifact_path=artifact)
    frame = pd.read_parquet(path) if artifact.endswith(".parquet") else pd.read_csv(path)
    return frame, str(version.version)


def check(env: dict[str, str]) -> int:
    s3 = _s3()
    bucket, namespace, model, label = env["BUCKET"], env["NAMESPACE"], env["MODEL_NAME"], env["MODEL_VERSION"]
    thresholds = {"psi": float(env["PSI_THRESHOLD"]), "share": float(env["SHARE_THRESHOLD"])}
    now = float(env.get("NOW") or time.time())
    reference, version = reference_frame(env["REGISTERED_MODEL"], env["MODEL_REF"], env["REFERENCE"])
    current = logged_rows(s3, bucket, f"{env.get('LOG_PREFIX', 'inference')}/{namespace}/{model}/{label}",
                          now - float(env["WINDOW_SECONDS"]), now)
    result = compare(reference, current, thresholds["psi"], int(env["MIN_SAMPLES"]))
    labels = {"namespace": namespace, "model": model, "version": label, "registered_version": version}
    text = exposition(result, labels, thresholds, now)
    key = f"{METRICS_PREFIX}/{namespace}/{model}"
    s3.put_object(Bucket=bucket, Key=f"{key}.prom", Body=text.encode(), ContentType="text/plain; version=0.0.4")
    report = {**result, "labels": labels, "thresholds": thresholds, "time": now}
    s3.put_object(Bucket=bucket, Key=f"{key}.json", Body=json.dumps(report, default=str).encode())
    share = result["share"]
    print(f"drift {namespace}/{model} {label}: {result['samples']} samples, share "
          f"{'n/a (too few samples)' if share is None else f'{share:.2f}'} (threshold {thresholds['share']})")
    return 0


# ------------------------------------------------------------------------------ the exporter


def collect(s3: Any, bucket: str, namespace: str) -> str:
    """Every model's last result in ``namespace``, one exposition (TYPE lines once per name)."""
    seen: set[str] = set()
    out = io.StringIO()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{METRICS_PREFIX}/{namespace}/"):
        for item in sorted(page.get("Contents", []), key=lambda i: i["Key"]):
            if not item["Key"].endswith(".prom"):
                continue
            for line in s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode().splitlines():
                if line.startswith("#"):
                    if line in seen:
                        continue
                    seen.add(line)
                out.write(line + "\n")
    return out.getvalue()


def static_metrics(path: str | None) -> str:
    """The static exposition of ``INFO_FILE`` (a team's model info series), or ''."""
    if not path:
        return ""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    return text if not text or text.endswith("\n") else text + "\n"


def serve(env: dict[str, str]) -> int:
    """Serve the drift results of ``NAMESPACE`` in ``BUCKET`` (when set) and the static exposition
    of ``INFO_FILE`` (when set) on ``/metrics``."""
    bucket, namespace = env.get("BUCKET"), env["NAMESPACE"]
    s3 = _s3() if bucket else None
    info_file = env.get("INFO_FILE")
    cache_seconds = float(env.get("CACHE_SECONDS", "30"))
    cache: dict[str, Any] = {"at": 0.0, "text": "", "ok": 1}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/healthz":
                body = b"ok\n"
            elif self.path.split("?")[0] == "/metrics" and s3 is None:
                # Read on every scrape: a mounted ConfigMap changes in place.
                body = static_metrics(info_file).encode()
            elif self.path.split("?")[0] == "/metrics":
                if time.time() - cache["at"] > cache_seconds:
                    try:
                        cache["text"], cache["ok"] = collect(s3, bucket, namespace), 1
                    except Exception as error:  # noqa: BLE001 - report it as a metric, keep serving
                        print(f"drift-exporter: reading s3://{bucket}/{METRICS_PREFIX}/{namespace}/ failed: {error}", file=sys.stderr)
                        cache["ok"] = 0
                    cache["at"] = time.time()
                up = f"# TYPE mlplane_drift_exporter_store_up gauge\nmlplane_drift_exporter_store_up {cache['ok']}\n"
                body = (static_metrics(info_file) + cache["text"] + up).encode()
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    port = int(env.get("EXPORTER_PORT", "9108"))
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)
    source = f"s3://{bucket}/{METRICS_PREFIX}/{namespace}/" if bucket else "no store"
    print(f"drift-exporter: :{port}/metrics from {source}{' and ' + info_file if info_file else ''}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command not in ("check", "serve"):
        print("usage: drift_check.py check|serve", file=sys.stderr)
        sys.exit(2)
    sys.exit((check if command == "check" else serve)(dict(os.environ)))
