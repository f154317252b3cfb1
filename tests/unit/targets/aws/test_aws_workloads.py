"""CI job pods, inference logging and drift jobs of the platform on AWS: EKS Pod Identity, no keys.

The example AWS stack with the runners on and a logged, drift-checked model, rendered offline
(the real stack program under the render harness's mocks): the job pods run as ``ci-jobs``, bound to
a role limited to the datasets bucket and the platform's ECR repositories; the logger, the drift
job and the exporter run as their own accounts, each bound to a role limited to its key prefixes.
"""

from __future__ import annotations

import json
import os

import pytest
import yaml

from mlplane.cli import load_platform, offline_run, write_render
from mlplane.services import ci_runners, drift
from mlplane.tooling import checks

from aws_backing_mocks import allows_wildcard_on_wildcard
from test_render_stack import ROOT

RUNNERS = {"github_config_url": "https://github.com/acme/models", "github_token_key": "githubToken"}
MODEL = {
    "name": "scorer", "registered_model": "scorer", "version": 3,
    "logging": {"sample_rate": 0.2}, "drift": {"schedule": "15 * * * *", "window": "6h"},
}
AGENT = {"to": [{"ipBlock": {"cidr": "169.254.170.23/32"}}, {"ipBlock": {"cidr": "fd00:ec2::23/128"}}],
         "ports": [{"port": 80, "protocol": "TCP"}]}
KEYS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def aws_raw(**changes) -> dict:
    raw = yaml.safe_load((ROOT / "stacks" / "Pulumi.aws.yaml").read_text())["config"]["mlplane:platform"]
    return {**raw, **changes}


def render_raw(raw: dict, tmp_path_factory, name: str):
    path = tmp_path_factory.mktemp("cfg") / "platform.yaml"
    path.write_text(yaml.safe_dump(raw))
    source, platform = load_platform(None, path)
    result = offline_run(source, platform, teams=[])
    out = tmp_path_factory.mktemp(name)
    write_render(result, out)
    return result, out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    os.chdir(ROOT)
    return render_raw(aws_raw(ci_runners=RUNNERS, serving={"models": [MODEL]}), tmp_path_factory, "aws-workloads")


def manifest(result, kind: str, namespace: str, name: str) -> dict:
    found = [m for m in result.manifests() if m["kind"] == kind and m["metadata"]["name"] == name
             and m["metadata"].get("namespace") == namespace]
    assert len(found) == 1, (kind, namespace, name)
    return found[0]


def role_policy(result, name: str) -> dict:
    value = result.named(f"mlplane-storage-{name}-policy").inputs["policy"]
    return json.loads(value) if isinstance(value, str) else value


def association(result, name: str) -> dict:
    return result.named(f"mlplane-storage-{name}-pod-identity").inputs


def job_template(result) -> dict:
    data = manifest(result, "ConfigMap", "mlplane-ci-runners", ci_runners.JOB_TEMPLATE)["data"]
    return yaml.safe_load(data[ci_runners.JOB_TEMPLATE_FILE])


def env_names(container: dict) -> set[str]:
    return {e["name"] for e in container.get("env", [])}


# ------------------------------------------------------------------------------ CI job pods


def test_job_pods_run_as_the_bound_service_account(rendered):
    result, _ = rendered
    spec = job_template(result)["spec"]
    assert spec["serviceAccountName"] == ci_runners.JOB_ACCOUNT
    assert spec["automountServiceAccountToken"] is False
    account = manifest(result, "ServiceAccount", "mlplane-ci-runners", ci_runners.JOB_ACCOUNT)
    assert account["automountServiceAccountToken"] is False


def test_job_pods_hold_no_key_and_get_the_buckets_location(rendered):
    result, _ = rendered
    job = job_template(result)["spec"]["containers"][0]
    assert not KEYS & env_names(job)
    values = {e["name"]: e.get("value") for e in job["env"]}
    assert values["AWS_ENDPOINT_URL_S3"] == "https://s3.eu-west-1.amazonaws.com"
    assert values["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert values["MLPLANE_BUCKET"].startswith("mlplane-datasets-")
    # No push Secret either: ECR takes the role's token.
    assert "volumes" not in job_template(result)["spec"]
    secrets = [m["metadata"]["name"] for m in result.manifests() if m["kind"] == "Secret"
               and m["metadata"].get("namespace") == "mlplane-ci-runners"]
    assert ci_runners.S3_SECRET not in secrets


def test_job_role_is_the_datasets_bucket_read_only_and_the_platform_repositories(rendered):
    result, _ = rendered
    document = role_policy(result, ci_runners.JOB_ACCOUNT)
    assert not allows_wildcard_on_wildcard(document)
    resources = [r for s in document["Statement"] for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])]
    buckets = {r.split(":::")[1].split("/")[0] for r in resources if r.startswith("arn:aws:s3:::")}
    assert len(buckets) == 1 and buckets.pop().startswith("mlplane-datasets-")
    objects = next(s for s in document["Statement"] if s["Sid"] == "PlatformReadObjects")
    assert "s3:PutObject" not in objects["Action"]  # datasets_access: read-only (the default)
    push = next(s for s in document["Statement"] if s["Sid"] == "RegistryPush")
    assert push["Resource"] == ["arn:aws:ecr:eu-west-1:123456789012:repository/mlplane/models"]  # not the teams' ones
    login = next(s for s in document["Statement"] if s["Sid"] == "RegistryLogin")
    assert login["Action"] == ["ecr:GetAuthorizationToken"]


def test_job_pods_association_and_account_order(rendered):
    result, _ = rendered
    bound = association(result, ci_runners.JOB_ACCOUNT)
    assert (bound["namespace"], bound["serviceAccount"]) == ("mlplane-ci-runners", ci_runners.JOB_ACCOUNT)
    account = result.named("mlplane-runners-job-account")
    assert result.named(f"mlplane-storage-{ci_runners.JOB_ACCOUNT}-pod-identity").urn in account.depends_on


def test_runner_namespace_may_reach_the_pod_identity_agent(rendered):
    result, _ = rendered
    rules = manifest(result, "NetworkPolicy", "mlplane-ci-runners", "runner-egress")["spec"]["egress"]
    assert AGENT in rules


def test_read_write_datasets_access_gives_put(tmp_path_factory):
    result, _ = render_raw(aws_raw(ci_runners={**RUNNERS, "datasets_access": "read-write"}), tmp_path_factory, "rw")
    objects = next(s for s in role_policy(result, ci_runners.JOB_ACCOUNT)["Statement"] if s["Sid"] == "PlatformReadWriteObjects")
    assert "s3:PutObject" in objects["Action"]


def test_no_datasets_access_leaves_the_registry_push_only(tmp_path_factory):
    result, _ = render_raw(aws_raw(ci_runners={**RUNNERS, "datasets_access": "none"}), tmp_path_factory, "none")
    document = role_policy(result, ci_runners.JOB_ACCOUNT)
    assert not [s for s in document["Statement"] if any("s3" in a for a in s["Action"])]
    job = job_template(result)["spec"]["containers"][0]
    assert "MLPLANE_BUCKET" not in env_names(job)


# ------------------------------------------------------------------ logging and drift


def test_no_inference_store_secret_and_no_key_in_logger_drift_or_exporter(rendered):
    result, _ = rendered
    names = {m["metadata"]["name"] for m in result.manifests() if m["kind"] == "Secret"
             and m["metadata"].get("namespace") == "mlplane-serving"}
    assert drift.STORE_SECRET not in names
    deployment = manifest(result, "Deployment", "mlplane-serving", "scorer")["spec"]["template"]["spec"]
    job = manifest(result, "CronJob", "mlplane-serving", "scorer-drift")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    exporter = manifest(result, "Deployment", "mlplane-serving", drift.EXPORTER)["spec"]["template"]["spec"]
    for spec in (deployment, job, exporter):
        for container in spec["containers"]:
            assert not KEYS & env_names(container), container["name"]


@pytest.mark.parametrize(("kind", "name", "role"), [
    ("Deployment", "scorer", "logger"), ("CronJob", "scorer-drift", "drift"), ("Deployment", drift.EXPORTER, "exporter"),
])
def test_each_role_runs_as_its_bound_account(rendered, kind, name, role):
    result, _ = rendered
    body = manifest(result, kind, "mlplane-serving", name)["spec"]
    spec = (body["jobTemplate"]["spec"] if kind == "CronJob" else body)["template"]["spec"]
    assert spec["serviceAccountName"] == drift.ACCOUNTS[role]
    bound = association(result, drift.ACCOUNTS[role])
    assert (bound["namespace"], bound["serviceAccount"]) == ("mlplane-serving", drift.ACCOUNTS[role])
    assert manifest(result, "ServiceAccount", "mlplane-serving", drift.ACCOUNTS[role])["automountServiceAccountToken"] is False


def prefixes(document: dict) -> tuple[set[str], set[str]]:
    """(object ARNs, listable prefixes) of a role's policy."""
    objects = {r for s in document["Statement"] if s["Sid"].endswith("Objects") for r in s["Resource"]}
    listing = next(s for s in document["Statement"] if s["Sid"].endswith("Buckets"))
    assert listing["Action"] == ["s3:ListBucket"]
    return objects, set(listing["Condition"]["StringLike"]["s3:prefix"])


def test_logger_role_writes_its_namespaces_inference_prefix_only(rendered):
    result, _ = rendered
    objects, listed = prefixes(role_policy(result, drift.ACCOUNTS["logger"]))
    assert len(objects) == 1 and objects.pop().endswith("/inference/mlplane-serving/*")
    assert listed == {"inference/mlplane-serving/*"}


def test_drift_role_reads_the_logs_and_writes_its_results_only(rendered):
    result, _ = rendered
    objects, listed = prefixes(role_policy(result, drift.ACCOUNTS["drift"]))
    assert sorted(o.split("/", 1)[1] for o in objects) == ["drift-metrics/mlplane-serving/*", "inference/mlplane-serving/*"]
    assert listed == {"inference/mlplane-serving/*", "drift-metrics/mlplane-serving/*"}


def test_exporter_role_reads_the_drift_results_only(rendered):
    result, _ = rendered
    document = role_policy(result, drift.ACCOUNTS["exporter"])
    objects, listed = prefixes(document)
    assert [o.split("/", 1)[1] for o in objects] == ["drift-metrics/mlplane-serving/*"]
    assert "s3:PutObject" not in next(s for s in document["Statement"] if s["Sid"].endswith("Objects"))["Action"]


def test_store_pods_may_reach_the_pod_identity_agent(rendered):
    result, _ = rendered
    policy = manifest(result, "NetworkPolicy", "mlplane-serving", "inference-store-egress")["spec"]
    assert AGENT in policy["egress"]


def test_no_role_allows_a_wildcard_on_every_resource(rendered):
    result, _ = rendered
    for record in result.resources:
        if record.type == "aws:iam/rolePolicy:RolePolicy":
            value = record.inputs["policy"]
            assert not allows_wildcard_on_wildcard(json.loads(value) if isinstance(value, str) else value), record.name


def test_the_render_passes_strict_schemas_and_checkov(rendered):
    result, out = rendered
    assert [str(f) for f in checks.validate_schemas(result.manifests())] == []
    if checks.checkov_executable() is None:
        if os.environ.get("MLPLANE_REQUIRE_TOOLS") == "1":
            pytest.fail("checkov is required (MLPLANE_REQUIRE_TOOLS=1) but not found: set MLPLANE_CHECKOV")
        pytest.skip("checkov not installed: scripts/test.sh installs it into its own virtualenv")
    assert [str(f) for f in checks.run_checkov(out / "manifests")] == []


# ------------------------------------------------------------------- adversarial inputs


@pytest.mark.parametrize("prefix", ["inference", "", "inference/*/", "logs?/"])
def test_bind_refuses_a_prefix_that_is_not_a_plain_folder(prefix):
    from mlplane.backing.workload_identity import bind

    class Store:
        def bind(self, *args, **kwargs):  # pragma: no cover - never reached
            raise AssertionError("bound")

    with pytest.raises(ValueError, match="key prefix"):
        bind(Store(), "x", "ns", "sa", {"datasets": "read-only"}, prefixes=[prefix])


def _args(**extra):
    from mlplane.config import CiRunnersConfig
    from mlplane.core import kube

    from conftest import fake_secret

    platform = kube.Platform(name="mlplane", provider=None, protect_stateful=False, secret=fake_secret)  # type: ignore[arg-type]
    config = CiRunnersConfig(**RUNNERS, container_mode="kubernetes-novolume")
    return ci_runners.CiRunnersArgs(
        config=config, platform=platform, registry_pull_prefix="r", registry_push_url="r", tracking_uri="t",
        tracking_username="u", tracking_password="p", **extra,
    )


LOCATION = {"AWS_ENDPOINT_URL_S3": "https://s3.eu-west-1.amazonaws.com", "AWS_DEFAULT_REGION": "eu-west-1", "MLPLANE_BUCKET": "b"}


def test_s3_location_without_an_identity_is_refused():
    with pytest.raises(ValueError, match="goes with a job_identity"):
        ci_runners.s3_env(_args(s3_location=LOCATION))


def test_s3_location_with_keys_is_refused():
    from mlplane.backing.workload_identity import PodIdentity

    with pytest.raises(ValueError, match="s3_location needs exactly the keys"):
        ci_runners.s3_env(_args(job_identity=PodIdentity("ns", "ci-jobs"), s3_location={**LOCATION, "AWS_ACCESS_KEY_ID": "k"}))


def test_an_identity_template_names_the_account_and_no_key():
    from mlplane.backing.workload_identity import PodIdentity

    template = ci_runners.job_pod_template(_args(job_identity=PodIdentity("ns", "ci-jobs"), s3_location=LOCATION))
    assert template["spec"]["serviceAccountName"] == "ci-jobs"
    assert not KEYS & env_names(template["spec"]["containers"][0])


def test_an_inference_store_asked_for_an_unbound_role_says_which():
    from mlplane.backing.workload_identity import PodIdentity

    store = drift.InferenceStore("e", "r", "b", "", "", {}, {"logger": PodIdentity("ns", "inference-logger")})
    inference = drift.Inference(
        parent=None, prefix="p", platform=None, namespace="ns", ns_name="ns", store=store,  # type: ignore[arg-type]
        tracking_uri="t", credentials_secret="c", labels={},
    )
    assert inference.account("logger") == "inference-logger"
    with pytest.raises(ValueError, match="binds no identity for the drift"):
        inference.account("drift")
