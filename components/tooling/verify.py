"""``mlplane verify``: prove a deployed platform (or team) works end to end, not only that pods run.

It reads the stack's outputs (the Automation API with the project's backend, or ``--outputs FILE``)
and runs one function per check; each is a row of a pass/fail table (``--json`` for CI). Exit 0
when every check passed, 1 when one failed, 2 for bad input. Everything it creates is named as a
verification artifact (experiment and registered model ``mlplane-verify-<timestamp>``, image
``mlplane-verify/probe``) and removed afterwards, also when a check failed. docs/verify.md.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mlplane.tooling import verify_aws
from mlplane.tooling.verify_http import CheckFailed, Http, s3_cause, s3_client, status_cause

PREFIX = "mlplane-verify"
PROBE_REPOSITORY = f"{PREFIX}/probe"
ARTIFACT_NAME = "mlplane-verify.txt"
ALIAS = "verify"
#: Grafana's admin user (components/services/monitoring.py ADMIN_USER) and the data source uid it provisions.
GRAFANA_USER = "admin"
GRAFANA_DATASOURCE_UID = "prometheus"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
#: On AWS the probe image goes to the ECR repository CI pushes to (``$MLPLANE_REGISTRY/models``:
#: mlplane.targets.aws.registry REPOSITORIES; ECR needs a repository before a push).
ECR_REPOSITORY = "models"
_ECR_HOST = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


class VerifyInputError(Exception):
    """The outputs cannot be verified (missing or malformed keys): exit 2."""

    def __init__(self, *problems: str):
        self.problems = list(problems)
        super().__init__("\n".join(problems))


@dataclass
class Target:
    """What verify talks to, read from a platform stack's (and a team stack's) outputs."""

    kind: str  # "platform" or "team"
    name: str
    mlflow_url: str
    mlflow_auth: tuple[str, str]
    s3_endpoint: str
    #: The stack's storage keys; None on AWS: the operator's identity (boto3's default chain).
    s3_credentials: tuple[str, str] | None
    s3_region: str = "us-east-1"
    #: Where the platform runs (its output ``platform.target``): "local" or "aws".
    platform_target: str = "local"
    #: The bucket MLflow's artifacts land in (a team's bucket); None: searched in every bucket.
    bucket: str | None = None
    workspace: str | None = None
    registry_url: str | None = None
    #: Basic credentials for the registry's token realm (outputs registryUsername/registryPassword).
    registry_auth: tuple[str, str] | None = None
    #: Sent as ``x-api-key`` to the models (serving.auth.mode 'api-key': output modelApiKey).
    model_api_key: str | None = None
    model_urls: dict[str, str] = field(default_factory=dict)
    prometheus_url: str | None = None
    grafana_url: str | None = None
    grafana_password: str | None = None
    #: The namespace the models are served in: a model's ``mlplane:model_info`` series is the one
    #: labelled with it (a team's and the platform's models may share a name). None: any.
    serving_namespace: str | None = None
    #: AWS: the ECR repository of the probe image (``<platform>/models``, ``<platform>/<team>/models``).
    registry_repository: str | None = None
    #: AWS: returns basic credentials for ECR (default: ``ecr:GetAuthorizationToken`` as the
    #: operator, verify_aws.ecr_login); tests inject their own.
    registry_login: Callable[[], tuple[str, str]] | None = None

    @property
    def aws(self) -> bool:
        return self.platform_target == "aws"


def probe_repository(target: Target) -> str:
    """The probe image's repository: a team may push only under ``<team>/`` (mlplane.backing.registry_auth);
    on AWS the ECR repository the platform created for it (it must exist before a push)."""
    if target.aws and target.registry_repository:
        return target.registry_repository
    return f"{target.name}/{PROBE_REPOSITORY}" if target.kind == "team" else PROBE_REPOSITORY


def platform_target(platform: dict[str, Any]) -> str:
    """'aws' or 'local' from a platform stack's outputs: ``platform.target`` (exported on AWS), or,
    for a stack deployed before it was, an ECR registry host in ``registryPushUrl``."""
    facts = platform.get("platform") if isinstance(platform.get("platform"), dict) else {}
    if facts.get("target") in ("aws", "local"):
        return str(facts["target"])
    push = platform.get("registryPushUrl")
    host = push.split("/", 1)[0] if isinstance(push, str) else ""
    return "aws" if _ECR_HOST.match(host) else "local"


def _get(outputs: dict[str, Any], path: str, where: str, required: bool = True) -> Any:
    value: Any = outputs
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            if required:
                raise VerifyInputError(f"{where}: output '{path}' is missing (is this an mlplane stack, deployed?)")
            return None
        value = value[part]
    if required and (value is None or value == "" or value == "[secret]"):
        shown = "a masked secret" if value == "[secret]" else repr(value)
        raise VerifyInputError(f"{where}: output '{path}' is {shown}; secrets must be read with --show-secrets")
    return value


def _url(value: str, where: str, key: str) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://[^/\s]+", value):
        raise VerifyInputError(f"{where}: output '{key}' is {value!r}, not an http(s) URL")
    return value.rstrip("/")


def _registry_url(urls: dict[str, Any], outputs: dict[str, Any]) -> str | None:
    catalog = urls.get("registry")
    if isinstance(catalog, str) and catalog.startswith(("http://", "https://")):
        return catalog.split("/v2/", 1)[0].rstrip("/")
    push = outputs.get("registryPushUrl")
    if not isinstance(push, str) or not push:
        return None
    if push.startswith(("http://", "https://")):
        return push.rstrip("/")
    host = push.split("/", 1)[0]
    local = host.split(":")[0] in ("localhost", "127.0.0.1")
    return f"{'http' if local else 'https'}://{host}"


def _ecr_repository(platform: dict[str, Any], facts: dict[str, Any], team: str | None) -> str | None:
    """The ECR repository of the probe image: the platform's ``models`` repository (its output
    ``platform.registryRepositories``), a team's ``<platform>/<team>/models`` (created by the
    platform when it admits the team, docs/components/aws-registry.md)."""
    repositories = facts.get("registryRepositories") if isinstance(facts.get("registryRepositories"), dict) else {}
    push = platform.get("registryPushUrl")
    prefix = push.split("/", 1)[1] if isinstance(push, str) and "/" in push else None
    if team is not None:
        return f"{prefix}/{team}/{ECR_REPOSITORY}" if prefix else None
    url = repositories.get(ECR_REPOSITORY)
    if isinstance(url, str) and "/" in url:
        return url.split("/", 1)[1]
    return f"{prefix}/{ECR_REPOSITORY}" if prefix else None


def target_from_outputs(outputs: Any, platform_outputs: Any = None, where: str = "outputs") -> Target:
    """The Target of a platform stack's outputs, or of a team stack's with its platform's."""
    if not isinstance(outputs, dict):
        raise VerifyInputError(f"{where}: expected a JSON object of stack outputs, got {type(outputs).__name__}")
    team = outputs.get("team")
    platform = outputs if team is None else platform_outputs
    if team is not None and not isinstance(platform, dict):
        raise VerifyInputError(
            f"{where}: this is team '{team.get('name') if isinstance(team, dict) else team}''s stack: its URLs come "
            "from the platform stack; pass the platform's outputs too (--platform-outputs FILE)"
        )
    pwhere = where if team is None else "platform outputs"
    urls = _get(platform, "urls", pwhere)
    if not isinstance(urls, dict):
        raise VerifyInputError(f"{pwhere}: output 'urls' must be an object, got {type(urls).__name__}")
    mlflow = _url(_get(platform, "urls.mlflow", pwhere), pwhere, "urls.mlflow")
    aws = platform_target(platform) == "aws"
    facts = platform.get("platform") if isinstance(platform.get("platform"), dict) else {}
    if aws:
        # S3 through the regional endpoint with the operator's identity: no keys, no urls.s3.
        region = str(_get(platform, "platform.region" if "region" in facts else "platform.s3Region", pwhere))
        s3 = _url(_get(platform, "platform.s3Endpoint", pwhere), pwhere, "platform.s3Endpoint")
    else:
        s3 = _url(_get(platform, "urls.s3", pwhere), pwhere, "urls.s3")
        region = facts.get("s3Region") or "us-east-1"
    # A team pushes with its own identity (its outputs), the platform with the platform's.
    registry_user = outputs.get("registryUsername") or platform.get("registryUsername")
    registry_password = outputs.get("registryPassword") or platform.get("registryPassword")
    if team is not None and outputs.get("registryUsername"):
        registry_password = outputs.get("registryPassword")
    common = dict(
        mlflow_url=mlflow, s3_endpoint=s3, s3_region=region, registry_url=_registry_url(urls, platform),
        registry_auth=(registry_user, registry_password) if registry_user and registry_password else None,
        model_api_key=(outputs.get("modelApiKey") or platform.get("modelApiKey")) or None,
        prometheus_url=_url(urls["prometheus"], pwhere, "urls.prometheus") if urls.get("prometheus") else None,
    )
    if aws:
        team_name = team.get("name") if isinstance(team, dict) else None
        common.update(platform_target="aws", registry_auth=None,
                      registry_repository=_ecr_repository(platform, facts, str(team_name) if team_name else None))
    if team is None:
        if aws and not facts.get("artifactsBucket"):
            raise VerifyInputError(
                f"{where}: output 'platform.artifactsBucket' is missing: an AWS platform exports its artifact bucket's "
                "name (run `pulumi up` with this mlplane version to refresh the outputs)"
            )
        platform_name = (outputs.get("platform") or {}).get("name")
        return Target(
            kind="platform",
            name=str(platform_name or "platform"),
            serving_namespace=f"{platform_name}-serving" if platform_name else None,
            mlflow_auth=(_get(outputs, "mlflowAdminUsername", where), _get(outputs, "mlflowAdminPassword", where)),
            s3_credentials=None if aws else (_get(outputs, "s3AccessKeyId", where), _get(outputs, "s3SecretAccessKey", where)),
            bucket=(outputs.get("platform") or {}).get("artifactsBucket"),
            model_urls={k.removeprefix("model-"): _url(v, where, f"urls.{k}") for k, v in urls.items() if k.startswith("model-")},
            grafana_url=_url(urls["grafana"], where, "urls.grafana") if urls.get("grafana") else None,
            grafana_password=outputs.get("grafanaAdminPassword"),
            **common,
        )
    if not isinstance(team, dict):
        raise VerifyInputError(f"{where}: output 'team' must be an object, got {type(team).__name__}")
    models = team.get("modelUrls") or {}
    return Target(
        kind="team",
        name=str(_get(team, "name", where)),
        mlflow_auth=(_get(outputs, "mlflowUsername", where), _get(outputs, "mlflowPassword", where)),
        s3_credentials=None if aws else (_get(outputs, "s3AccessKeyId", where), _get(outputs, "s3SecretAccessKey", where)),
        bucket=_get(team, "bucket", where),
        workspace=team.get("mlflowWorkspace") or None,
        model_urls={k: _url(v, where, f"team.modelUrls.{k}") for k, v in models.items()},
        serving_namespace=(team.get("namespaces") or {}).get("serving") or None,
        **common,
    )


# --------------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------------


@dataclass
class Row:
    check: str
    status: str  # "pass", "fail" or "skip"
    detail: str
    cause: str = ""

    def as_json(self) -> dict[str, str]:
        return {"check": self.check, "status": self.status, "detail": self.detail, "cause": self.cause}


@dataclass
class Run:
    """State shared by the checks of one verification, and what to clean up."""

    target: Target
    timeout: float = 30.0
    metric_wait: float = 90.0
    inputs: dict[str, Any] = field(default_factory=dict)
    stamp: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
    rows: list[Row] = field(default_factory=list)
    experiment_id: str | None = None
    run_id: str | None = None
    artifact_path: str | None = None
    model_name: str | None = None
    probe_digest: str | None = None
    inferred: list[str] = field(default_factory=list)
    request_counts: dict[str, float | None] = field(default_factory=dict)
    model_info: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{PREFIX}-{self.stamp}"

    def mlflow(self) -> Http:
        headers = {"X-MLFLOW-WORKSPACE": self.target.workspace} if self.target.workspace else {}
        return Http(timeout=self.timeout, auth=self.target.mlflow_auth, headers=headers)

    def api(self, method: str, path: str, what: str, body: Any = None, ok: tuple[int, ...] = (200,)) -> Any:
        return self.mlflow().expect(method, f"{self.target.mlflow_url}{path}", what, ok=ok, body=body).json()


def check_mlflow(run: Run) -> str:
    t = run.target
    http = run.mlflow()
    http.expect("GET", f"{t.mlflow_url}/health", "MLflow /health", auth=False)
    search = f"{t.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1"
    anonymous = http.request("GET", search, auth=False, what="MLflow without credentials")
    if anonymous.status == 200:
        raise CheckFailed("MLflow", "answers API calls without credentials: basic auth is off")
    http.expect("GET", search, f"MLflow API as {t.mlflow_auth[0]}")
    where = f" in workspace {t.workspace}" if t.workspace else ""
    return f"{t.mlflow_url} answers; anonymous calls get {anonymous.status}, {t.mlflow_auth[0]} gets 200{where}"


def check_mlflow_run(run: Run) -> str:
    created = run.api("POST", "/api/2.0/mlflow/experiments/create", "creating the experiment", {"name": run.name})
    run.experiment_id = created["experiment_id"]
    info = run.api("POST", "/api/2.0/mlflow/runs/create", "creating a run",
                   {"experiment_id": run.experiment_id, "run_name": run.name, "start_time": int(time.time() * 1000)})["run"]["info"]
    run.run_id = info["run_id"]
    now = int(time.time() * 1000)
    run.api("POST", "/api/2.0/mlflow/runs/log-batch", "logging params and metrics", {
        "run_id": run.run_id, "params": [{"key": "probe", "value": run.stamp}],
        "metrics": [{"key": "probe_metric", "value": 1.0, "timestamp": now, "step": 0}],
    })
    root = info["artifact_uri"]
    if not root.startswith("mlflow-artifacts:"):
        raise CheckFailed("the run's artifact location", f"{root} is not served through MLflow's artifact proxy (--serve-artifacts)")
    path = urllib.parse.urlsplit(root).path.strip("/")
    run.artifact_path = f"{path}/{ARTIFACT_NAME}"
    url = f"{run.target.mlflow_url}/api/2.0/mlflow-artifacts/artifacts/{run.artifact_path}"
    body = f"{run.name}\n".encode()
    run.mlflow().expect("PUT", url, "uploading an artifact through MLflow's proxy", body=body)
    back = run.mlflow().expect("GET", url, "reading the artifact back through MLflow")
    if back.body != body:
        raise CheckFailed("the artifact read back through MLflow", "differs from what was uploaded")
    got = run.api("GET", f"/api/2.0/mlflow/runs/get?run_id={run.run_id}", "reading the run back")["run"]["data"]
    if not any(p.get("key") == "probe" for p in got.get("params", [])) or not got.get("metrics"):
        raise CheckFailed("the run read back", "lacks the logged param or metric")
    run.api("POST", "/api/2.0/mlflow/runs/update", "finishing the run", {"run_id": run.run_id, "status": "FINISHED"})
    return f"experiment {run.name}: run {run.run_id} with a param, a metric and {ARTIFACT_NAME}"


def _bucket_error(run: Run, error: Exception, action: str, bucket: str | None) -> str:
    """Why an S3 call failed: on AWS naming the permission ``action`` the operator's identity lacks."""
    t = run.target
    if t.aws:
        return verify_aws.aws_cause(error, action, f"bucket {bucket}" if bucket else "S3")
    return s3_cause(error, t.s3_endpoint, bucket, run.timeout)


def _bucket_client(run: Run) -> tuple[Any, str]:
    """An S3 client and who it acts as: the stack's keys, or on AWS the operator's identity."""
    t = run.target
    if t.aws:
        who = f"your AWS identity {verify_aws.caller(t.s3_region, run.timeout)}"
        return verify_aws.s3_client(t.s3_region, t.s3_endpoint, run.timeout), who
    assert t.s3_credentials is not None
    who = "the team's storage credentials" if t.kind == "team" else "the stack's storage credentials"
    return s3_client(t.s3_endpoint, *t.s3_credentials, t.s3_region, run.timeout), who


def check_artifact_in_bucket(run: Run) -> str:
    t = run.target
    if run.run_id is None:
        raise CheckFailed("the artifact", "no run was logged (see the row above)")
    client, who = _bucket_client(run)
    if t.kind == "team" and t.bucket:
        return _team_bucket_probe(run, client, t.bucket, who)
    suffix = f"{run.run_id}/artifacts/{ARTIFACT_NAME}"
    buckets = [t.bucket] if t.bucket else None
    action, bucket = "s3:ListAllMyBuckets", t.bucket
    try:
        if buckets is None:
            buckets = [b["Name"] for b in client.list_buckets().get("Buckets", [])]
        for bucket in buckets:
            action = verify_aws.S3_LIST
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"MaxItems": 20000}):
                for item in page.get("Contents", []):
                    if item["Key"].endswith(suffix):
                        action = verify_aws.S3_READ
                        data = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                        if data != f"{run.name}\n".encode():
                            raise CheckFailed("the artifact in the bucket", "differs from what MLflow was sent")
                        return f"s3://{bucket}/{item['Key']} read with {who}"
    except CheckFailed:
        raise
    except Exception as error:  # botocore's errors, explained
        raise CheckFailed("reading the bucket", _bucket_error(run, error, action, bucket)) from None
    raise CheckFailed("the artifact in the bucket", f"not found in {', '.join(buckets) or 'any bucket'}: MLflow stores artifacts elsewhere")


def _team_bucket_probe(run: Run, client: Any, bucket: str, who: str) -> str:
    """A team's row: MLflow's proxy keeps every workspace's artifacts in the platform's artifact
    store (``workspaces/<workspace>/...``), which the team's storage identity may not read; the
    team's own bucket is proven by writing, reading back and deleting a probe object in it. On AWS
    with the operator's identity: the team's pods reach it with their role (EKS Pod Identity), which
    cannot be assumed from outside the cluster."""
    key = f"{run.name}.txt"
    body = f"{run.name}\n".encode()
    action = verify_aws.S3_WRITE
    try:
        client.put_object(Bucket=bucket, Key=key, Body=body)
        try:
            action = verify_aws.S3_READ
            if client.get_object(Bucket=bucket, Key=key)["Body"].read() != body:
                raise CheckFailed(f"s3://{bucket}/{key} read back", "differs from what was written")
        finally:
            failed, action = action, verify_aws.S3_DELETE
            client.delete_object(Bucket=bucket, Key=key)
            action = failed
    except CheckFailed:
        raise
    except Exception as error:  # botocore's errors, explained
        raise CheckFailed(f"writing s3://{bucket}/{key}", _bucket_error(run, error, action, bucket)) from None
    roles = (" (not the team's pod role: EKS Pod Identity roles cannot be assumed from outside the cluster)"
             if run.target.aws else "")
    return (f"s3://{bucket}/{key} written, read back and deleted with {who}{roles}; the run's "
            f"artifact is in the platform's artifact store (read back through MLflow above)")


def check_model_registry(run: Run) -> str:
    if run.run_id is None:
        raise CheckFailed("registering a model", "no run was logged (see the rows above)")
    run.api("POST", "/api/2.0/mlflow/registered-models/create", "creating the registered model", {"name": run.name})
    run.model_name = run.name
    source = f"runs:/{run.run_id}/{ARTIFACT_NAME}"
    version = run.api("POST", "/api/2.0/mlflow/model-versions/create", "creating a model version",
                      {"name": run.name, "source": source, "run_id": run.run_id})["model_version"]["version"]
    run.api("POST", "/api/2.0/mlflow/registered-models/alias", "setting an alias",
            {"name": run.name, "alias": ALIAS, "version": str(version)})
    got = run.api("GET", f"/api/2.0/mlflow/registered-models/alias?name={run.name}&alias={ALIAS}", "reading the alias back")
    if str(got["model_version"]["version"]) != str(version):
        raise CheckFailed("the alias", f"points at version {got['model_version']['version']}, not {version}")
    return f"{run.name} version {version}, alias @{ALIAS}"


@dataclass
class RegistryHttp(Http):
    """The distribution token flow: on 401 with a ``Bearer`` challenge, get a token from its realm
    (basic auth with the registry credentials, if any) and retry once with it."""

    basic: tuple[str, str] | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, url: str, **kwargs: Any) -> Any:  # type: ignore[override]
        headers = dict(kwargs.pop("headers", None) or {})
        response = super().request(method, url, headers=headers, **kwargs)
        challenge = response.headers.get("WWW-Authenticate") or response.headers.get("Www-Authenticate") or ""
        if response.status != 401 or not challenge.startswith("Bearer "):
            return response
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        key = params.get("scope", "")
        if key not in self.tokens:
            query = urllib.parse.urlencode({k: v for k, v in params.items() if k in ("service", "scope")})
            got = Http(timeout=self.timeout).request("GET", f"{params.get('realm', '')}?{query}", auth=self.basic,
                                                     what="getting a registry token")
            if got.status != 200:
                who = f"as {self.basic[0]}" if self.basic else "without credentials (no registryUsername/registryPassword output)"
                raise CheckFailed(f"the registry's token realm {params.get('realm')} {who}", status_cause(got.status, got.text()))
            body = got.json()
            self.tokens[key] = body.get("token") or body.get("access_token") or ""
        headers["Authorization"] = f"Bearer {self.tokens[key]}"
        return super().request(method, url, headers=headers, **kwargs)


def _location(response: Any, base: str, what: str) -> str:
    location = response.headers.get("Location") or response.headers.get("location")
    if not location:
        raise CheckFailed(what, "the registry sent no Location header")
    return urllib.parse.urljoin(base + "/", location)


def _blob_upload(http: Http, base: str, repo: str, data: bytes) -> str:
    """The chunked upload docker push does (POST, PATCH with the data, PUT ``?digest=``): the
    OCI distribution spec's "pushing a blob in chunks", which ECR maps to InitiateLayerUpload,
    UploadLayerPart and CompleteLayerUpload."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = http.expect("POST", f"{base}/v2/{repo}/blobs/uploads/", "starting a blob upload", ok=(202,))
    location = _location(start, base, "starting a blob upload")
    chunk = http.expect("PATCH", location, "uploading a blob", ok=(202,), body=data,
                        headers={"Content-Type": "application/octet-stream"})
    location = _location(chunk, base, "uploading a blob")
    sep = "&" if "?" in location else "?"
    http.expect("PUT", f"{location}{sep}digest={urllib.parse.quote(digest)}", "completing a blob upload", ok=(201,))
    return digest


def probe_tag(run: Run) -> str:
    """The probe image's tag: on AWS ``mlplane-verify-<timestamp>`` (it lands in the platform's
    ``models`` repository, whose tags are immutable), elsewhere the timestamp."""
    return run.name if run.target.aws else run.stamp


def _registry_http(run: Run) -> RegistryHttp:
    """The registry client: on AWS basic credentials from ECR's authorization token (the
    operator's identity), elsewhere the token flow with the outputs' registry identity."""
    t = run.target
    if t.aws:
        login = t.registry_login or (lambda: verify_aws.ecr_login(t.s3_region, run.timeout))
        return RegistryHttp(timeout=run.timeout, auth=login())
    return RegistryHttp(timeout=run.timeout, basic=t.registry_auth)


def check_registry(run: Run) -> str:
    base = run.target.registry_url
    repo = probe_repository(run.target)
    if base is None:
        raise CheckFailed("the registry", "the stack outputs name no registry (urls.registry / registryPushUrl)")
    tag = probe_tag(run)
    http = _registry_http(run)
    http.expect("GET", f"{base}/v2/", "the registry's /v2/ endpoint")
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                         "config": {"Labels": {"dev.mlplane.tooling.verify": run.stamp}}}).encode()
    layer = run.name.encode()
    config_digest = _blob_upload(http, base, repo, config)
    layer_digest = _blob_upload(http, base, repo, layer)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": len(layer)}],
    }).encode()
    http.expect("PUT", f"{base}/v2/{repo}/manifests/{tag}", "pushing the manifest", ok=(201,),
                body=manifest, headers={"Content-Type": OCI_MANIFEST})
    run.probe_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    got = http.expect("GET", f"{base}/v2/{repo}/manifests/{tag}", "pulling the manifest back",
                      headers={"Accept": OCI_MANIFEST})
    if got.body != manifest:
        raise CheckFailed("the manifest pulled back", "differs from what was pushed")
    blob = http.expect("GET", f"{base}/v2/{repo}/blobs/{layer_digest}", "pulling the layer back")
    if blob.body != layer:
        raise CheckFailed("the layer pulled back", "differs from what was pushed")
    who = " as your AWS identity (ECR authorization token)" if run.target.aws else ""
    return f"pushed and pulled {repo}:{tag} ({run.probe_digest[:19]}...) at {base}{who}"


# --- Serving and Prometheus -------------------------------------------------------------------


def _prometheus_query(run: Run, query: str) -> list[dict[str, Any]]:
    url = f"{run.target.prometheus_url}/api/v1/query?query={urllib.parse.quote(query)}"
    answer = Http(timeout=run.timeout).expect("GET", url, f"Prometheus query {query}").json()
    if answer.get("status") != "success":
        raise CheckFailed(f"Prometheus query {query}", str(answer.get("error")))
    return answer["data"]["result"]


def _request_count(run: Run, model: str) -> float | None:
    cluster = run.model_info.get(model, {}).get("envoy_cluster_name")
    if cluster is None:
        return None
    result = _prometheus_query(run, f'sum(envoy_cluster_upstream_rq_total{{envoy_cluster_name="{cluster}"}})')
    return float(result[0]["value"][1]) if result else 0.0


def _prepare_metrics(run: Run) -> None:
    """Before inference: each model's labels (mlplane:model_info) and request count, best effort."""
    if run.target.prometheus_url is None:
        return
    try:
        for series in _prometheus_query(run, "mlplane:model_info"):
            labels = series["metric"]
            # A team's models are recorded from its model exporter (prometheus_config.team_model_rules).
            if run.target.serving_namespace in (None, labels.get("namespace")):
                run.model_info[labels.get("model", "")] = labels
        for model in run.target.model_urls:
            run.request_counts[model] = _request_count(run, model)
    except CheckFailed:
        pass  # reported by the Prometheus rows


def _input_example(run: Run, model: str) -> bytes:
    if model in run.inputs:
        return run.inputs[model]
    info = run.model_info.get(model)
    if info is None:
        raise CheckFailed(f"an input for model {model}", "no mlplane:model_info series in Prometheus names its "
                          "registered model; pass --input MODEL=FILE")
    name, version = info["registered_model"], info["version"]
    if not version.isdigit():
        version = run.api("GET", f"/api/2.0/mlflow/registered-models/alias?name={urllib.parse.quote(name)}&alias={urllib.parse.quote(version)}",
                          f"resolving {name}@{version}")["model_version"]["version"]
    uri = run.api("GET", f"/api/2.0/mlflow/model-versions/get-download-uri?name={urllib.parse.quote(name)}&version={version}",
                  f"locating {name} version {version}")["artifact_uri"]
    path = urllib.parse.urlsplit(uri).path.strip("/")
    if not uri.startswith("mlflow-artifacts:"):
        raise CheckFailed(f"the input example of {name}", f"{uri} is not served by MLflow's proxy; pass --input MODEL=FILE")
    response = run.mlflow().request("GET", f"{run.target.mlflow_url}/api/2.0/mlflow-artifacts/artifacts/{path}/serving_input_example.json")
    if response.status != 200:
        raise CheckFailed(f"the input example of {name} v{version}", "the model was logged without an input_example "
                          f"({status_cause(response.status)}); pass --input MODEL=FILE")
    return response.body


def check_model(run: Run, model: str) -> str:
    url = run.target.model_urls[model]
    api_key = {"x-api-key": run.target.model_api_key} if run.target.model_api_key else {}
    http = Http(timeout=max(run.timeout, 30), headers=api_key)
    http.expect("GET", f"{url}/ping", f"model {model} /ping")
    payload = _input_example(run, model)
    answer = http.expect("POST", f"{url}/invocations", f"inference on model {model}", body=payload,
                         headers={"Content-Type": "application/json"}).json()
    run.inferred.append(model)
    predictions = answer.get("predictions", answer) if isinstance(answer, dict) else answer
    return f"{url}/invocations answered: {json.dumps(predictions)[:60]}"


def check_prometheus_targets(run: Run) -> str:
    url = f"{run.target.prometheus_url}/api/v1/targets?state=active"
    targets = Http(timeout=run.timeout).expect("GET", url, "Prometheus targets").json()["data"]["activeTargets"]
    if not targets:
        raise CheckFailed("Prometheus targets", "none discovered: the scrape config finds nothing (RBAC or selectors)")
    down = [t for t in targets if t.get("health") != "up"]
    if down:
        names = "; ".join(f"{t['labels'].get('job')}/{t['labels'].get('instance')} {t.get('health')}: {t.get('lastError') or 'not scraped yet'}"
                          for t in down[:5])
        raise CheckFailed(f"{len(down)} of {len(targets)} targets", f"target down: {names}")
    jobs = sorted({t["labels"].get("job", "?") for t in targets})
    return f"{len(targets)} targets up ({', '.join(jobs)})"


def check_model_metric(run: Run) -> str:
    model = next((m for m in run.inferred if run.model_info.get(m)), None)
    if model is None:
        raise CheckFailed("a model's request metric", "no model answered an inference, or none has mlplane:model_info")
    before = run.request_counts.get(model) or 0.0
    deadline = time.monotonic() + run.metric_wait
    while True:
        after = _request_count(run, model) or 0.0
        if after > before:
            return f"{model}: envoy_cluster_upstream_rq_total {before:g} -> {after:g}"
        if time.monotonic() >= deadline:
            raise CheckFailed(f"{model}'s request count", f"stayed at {after:g} for {run.metric_wait:g}s after the inference: "
                              "the gateway's metrics target is down or not scraped")
        time.sleep(2)


def check_grafana(run: Run) -> str:
    t = run.target
    health = Http(timeout=run.timeout).expect("GET", f"{t.grafana_url}/api/health", "Grafana /api/health").json()
    if health.get("database") != "ok":
        raise CheckFailed("Grafana /api/health", f"database is {health.get('database')!r}, not 'ok'")
    http = Http(timeout=run.timeout, auth=(GRAFANA_USER, t.grafana_password or ""))
    url = f"{t.grafana_url}/api/datasources/uid/{GRAFANA_DATASOURCE_UID}/health"
    answer = http.expect("GET", url, "Grafana's Prometheus data source").json()
    if answer.get("status") != "OK":
        raise CheckFailed("Grafana's Prometheus data source", f"{answer.get('status')}: {answer.get('message')}")
    return f"Grafana {health.get('version', '')} healthy; data source '{GRAFANA_DATASOURCE_UID}': {answer.get('message', 'OK')}"


# --------------------------------------------------------------------------------------------
# Cleanup and the whole run
# --------------------------------------------------------------------------------------------


def cleanup(run: Run) -> str:
    """Remove what the checks created; returns what was left behind (and why), if anything."""
    left: list[str] = []
    t = run.target

    def attempt(what: str, action: Callable[[], Any]) -> None:
        try:
            action()
        except CheckFailed as error:
            left.append(f"{what} ({error.cause})")

    if run.model_name:
        attempt(f"registered model {run.model_name}",
                lambda: run.api("DELETE", "/api/2.0/mlflow/registered-models/delete", "deleting", {"name": run.model_name}))
    if run.artifact_path:
        attempt(f"artifact {run.artifact_path}", lambda: run.mlflow().expect(
            "DELETE", f"{t.mlflow_url}/api/2.0/mlflow-artifacts/artifacts/{run.artifact_path}", "deleting", ok=(200, 204)))
    if run.run_id:
        attempt(f"run {run.run_id}", lambda: run.api("POST", "/api/2.0/mlflow/runs/delete", "deleting", {"run_id": run.run_id}))
    if run.experiment_id is None and any(r.check == "mlflow run" for r in run.rows):
        # The create call may have timed out after MLflow created it: look it up by name.
        try:
            found = run.mlflow().request("GET", f"{t.mlflow_url}/api/2.0/mlflow/experiments/get-by-name?experiment_name={run.name}")
            if found.status == 200:
                run.experiment_id = found.json().get("experiment", {}).get("experiment_id")
        except CheckFailed as error:
            left.append(f"experiment {run.name}, if it was created ({error.cause})")
    if run.experiment_id:
        attempt(f"experiment {run.name}", lambda: run.api(
            "POST", "/api/2.0/mlflow/experiments/delete", "deleting", {"experiment_id": run.experiment_id}))
    if run.probe_digest and t.registry_url and t.aws:
        # ECR deletes by its API (ecr:BatchDeleteImage), as the operator.
        repo, digest = probe_repository(t), run.probe_digest
        attempt(f"image {repo}:{probe_tag(run)}", lambda: verify_aws.ecr_delete(t.s3_region, repo, digest, run.timeout))
    elif run.probe_digest and t.registry_url:
        # The bundled registry disables deletes and its tokens grant no "delete": the probe stays.
        repo = probe_repository(t)
        attempt(f"image {repo}:{run.stamp}: the registry refuses deletes", lambda: RegistryHttp(timeout=run.timeout, basic=t.registry_auth).expect(
            "DELETE", f"{t.registry_url}/v2/{repo}/manifests/{run.probe_digest}", "deleting", ok=(202,)))
    return "; ".join(left)


def checks_for(target: Target) -> list[tuple[str, Callable[[Run], str]]]:
    """The checks of a target, in order (later ones use what earlier ones created)."""
    checks: list[tuple[str, Callable[[Run], str]]] = [
        ("mlflow auth", check_mlflow),
        ("mlflow run", check_mlflow_run),
        ("artifact in bucket", check_artifact_in_bucket),
        ("model registry", check_model_registry),
        ("image registry push", check_registry),
    ]
    checks += [(f"model {m} inference", lambda run, m=m: check_model(run, m)) for m in target.model_urls]
    if target.prometheus_url:
        checks.append(("prometheus targets", check_prometheus_targets))
        if target.model_urls:
            checks.append(("model request metric", check_model_metric))
    if target.grafana_url:
        checks.append(("grafana", check_grafana))
    return checks


def verify(target: Target, *, timeout: float = 30.0, metric_wait: float = 90.0, inputs: dict[str, bytes] | None = None) -> list[Row]:
    """Run every check of ``target``, then clean up; one Row per check (and one for cleanup)."""
    run = Run(target=target, timeout=timeout, metric_wait=metric_wait, inputs=dict(inputs or {}))
    try:
        if target.model_urls:
            _prepare_metrics(run)
        for name, check in checks_for(target):
            try:
                run.rows.append(Row(name, "pass", check(run)))
            except CheckFailed as error:
                run.rows.append(Row(name, "fail", error.what, error.cause))
    finally:
        left = cleanup(run)
    if target.kind == "team":
        run.rows.append(Row("grafana", "skip", "a team stack holds no Grafana credentials: verify the platform stack"))
    run.rows.append(Row("cleanup", "pass", f"left behind: {left}" if left else "removed everything verify created"))
    return run.rows


# --------------------------------------------------------------------------------------------
# Reading outputs
# --------------------------------------------------------------------------------------------


def read_outputs_file(path: Path, flag: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise VerifyInputError(f"{flag} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise VerifyInputError(f"{flag} {path}: cannot read it ({error})") from None
    except ValueError as error:
        raise VerifyInputError(f"{flag} {path}: not JSON ({error}); expected `pulumi stack output --json --show-secrets`") from None


def stack_outputs(project: Path, stack: str) -> dict[str, Any]:
    """A deployed stack's outputs, secrets in plain text, through the Automation API."""
    from pulumi import automation as auto

    from mlplane.tooling.team_deployments import DeployError, backend_url, require_pulumi, workspace_env

    try:
        require_pulumi("preview")
        options = auto.LocalWorkspaceOptions(work_dir=str(project), env_vars=workspace_env(project))
        selected = auto.select_stack(stack_name=stack, work_dir=str(project), opts=options)
        return {key: item.value for key, item in selected.outputs().items()}
    except DeployError as error:
        raise VerifyInputError(str(error)) from None
    except auto.StackNotFoundError:
        raise VerifyInputError(f"--stack {stack}: no such stack in {backend_url(project)}; deploy it first (pulumi up)") from None
    except auto.CommandError as error:
        raise VerifyInputError(f"--stack {stack}: cannot read its outputs: {str(error).strip().splitlines()[-1]}") from None
