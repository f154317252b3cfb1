"""Teams on AWS (issue 11 item 8): the platform stack grants each team its S3 bucket and IAM roles
bound by EKS Pod Identity to the team's service accounts (and its ECR prefix for the runners'
job pods); no S3 key exists anywhere, and the team stack runs its pods as the bound accounts.

Rendered offline: the example AWS platform admitting two teams (the real stack program under the
render harness's mocks), and a team stack against that platform's outputs (its StackReference).
"""

from __future__ import annotations

import json
import os

import pytest
import yaml

from mlplane import cli
from mlplane.cli import offline_run, teams, write_render
from mlplane.config import parse_platform
from mlplane.config.team import parse_team
from mlplane.program import grant_of
from mlplane.services import admission, ci_runners, drift
from mlplane.tooling import checks

from aws_backing_mocks import allows_wildcard_on_wildcard
from test_render_stack import ROOT

KEYS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
AGENT = {"to": [{"ipBlock": {"cidr": "169.254.170.23/32"}}, {"ipBlock": {"cidr": "fd00:ec2::23/128"}}],
         "ports": [{"port": 80, "protocol": "TCP"}]}


def platform_raw() -> dict:
    raw = yaml.safe_load((ROOT / "stacks" / "Pulumi.aws.yaml").read_text())["config"]["mlplane:platform"]
    return {**raw, "ci_runners": {"github_config_url": "https://github.com/acme/models", "github_token_key": "githubToken"}}


def team_raw(name: str) -> dict:
    return {
        "name": name,
        "platform_stack": "aws",
        "network": {"allow_internet_https": True},
        "members": {"users": [f"{name}-lead@example.com"]},
        "ci_runners": {"github_config_url": f"https://github.com/acme/{name}", "github_token_key": f"{name}GithubToken"},
        "serving": {"models": [{
            "name": "scorer", "registered_model": f"{name}-scorer", "version": 3, "min_replicas": 2,
            "logging": {"sample_rate": 0.2}, "drift": {"schedule": "15 * * * *", "window": "6h"},
        }]},
    }


def checked(name: str) -> teams.CheckedTeam:
    raw = platform_raw()
    source = cli.Source(raw, "mlplane:platform", "aws", None, {})
    return teams.CheckedTeam(parse_team(team_raw(name)), source, parse_platform(raw), [])


@pytest.fixture(scope="module")
def platform():
    """The AWS platform admitting the teams fraud and risk."""
    os.chdir(ROOT)
    one = checked("fraud")
    grants = [grant_of(checked(name).team, one.platform) for name in ("fraud", "risk")]
    return offline_run(one.platform_source, one.platform, teams=grants)


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """The fraud team stack rendered against the AWS platform's outputs."""
    os.chdir(ROOT)
    one = checked("fraud")
    result = teams.offline_team_run(one, "team-fraud", teams.platform_stand_in(one))
    out = tmp_path_factory.mktemp("team-aws")
    write_render(result, out)
    return result, out


def team_roles(result, team: str) -> dict[str, dict]:
    """service account -> the parsed policy of the team's role bound to it."""
    found = {}
    prefix = f"mlplane-storage-team-{team}-"
    for record in result.resources:
        if record.type == "aws:iam/rolePolicy:RolePolicy" and record.name.startswith(prefix):
            value = record.inputs["policy"]
            found[record.name[len(prefix):-len("-policy")]] = json.loads(value) if isinstance(value, str) else value
    return found


def resources_of(document: dict) -> list[str]:
    return [r for s in document["Statement"] for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])]


def team_bucket(result, team: str) -> str:
    return result.named(f"mlplane-storage-team-{team}-bucket").inputs["bucket"]


# ------------------------------------------------------------------ the platform's grant


def test_each_team_gets_its_bucket_and_a_role_per_bound_account(platform):
    for name in ("fraud", "risk"):
        assert team_bucket(platform, name).startswith(f"team-{name}-")
        assert sorted(team_roles(platform, name)) == sorted([ci_runners.JOB_ACCOUNT, *drift.ACCOUNTS.values()])


@pytest.mark.parametrize("name", ["fraud", "risk"])
def test_team_roles_reach_their_own_bucket_and_ecr_prefix_only(platform, name):
    bucket = team_bucket(platform, name)
    for account, document in team_roles(platform, name).items():
        assert not allows_wildcard_on_wildcard(document), account
        for resource in resources_of(document):
            if resource == "*":  # ecr:GetAuthorizationToken takes no other resource
                continue
            if resource.startswith("arn:aws:s3:::"):
                assert resource in (f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"), (account, resource)
            elif resource.startswith("arn:aws:ecr:"):
                assert resource.endswith(f":repository/mlplane/{name}/*"), (account, resource)
            else:
                assert resource.startswith("arn:aws:kms:"), (account, resource)
        stars = [s for s in document["Statement"] if "*" in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])]
        assert all(s["Action"] == ["ecr:GetAuthorizationToken"] for s in stars), account


def test_only_the_job_pods_push_and_the_exporter_only_reads(platform):
    roles = team_roles(platform, "fraud")
    pushers = {account for account, document in roles.items() if any("ecr:PutImage" in s["Action"] for s in document["Statement"])}
    assert pushers == {ci_runners.JOB_ACCOUNT}
    exporter = roles[drift.ACCOUNTS["exporter"]]
    assert not [a for s in exporter["Statement"] for a in s["Action"] if a in ("s3:PutObject", "s3:DeleteObject")]


def test_two_teams_get_disjoint_grants(platform):
    fraud = {r for d in team_roles(platform, "fraud").values() for r in resources_of(d)} - {"*"}
    risk = {r for d in team_roles(platform, "risk").values() for r in resources_of(d)} - {"*"}
    kms = {r for r in fraud | risk if r.startswith("arn:aws:kms:")}  # the platform's key, only through S3
    assert (fraud - kms) and (risk - kms) and not (fraud - kms) & (risk - kms)


def test_team_associations_bind_the_teams_namespaces(platform):
    bound = sorted(
        (r.inputs["namespace"], r.inputs["serviceAccount"]) for r in platform.resources
        if r.type == "aws:eks/podIdentityAssociation:PodIdentityAssociation" and "-team-fraud-" in r.name
    )
    assert bound == sorted([
        ("mlplane-team-fraud", ci_runners.JOB_ACCOUNT),
        *(("mlplane-team-fraud-serving", account) for account in drift.ACCOUNTS.values()),
    ])


def test_team_credentials_hold_no_s3_key_and_the_bucket_is_published(platform):
    assert sorted(platform.outputs["teamBuckets"]) == ["fraud", "risk"]
    assert platform.outputs["teamBuckets"]["fraud"] == team_bucket(platform, "fraud")


def test_no_s3_key_or_grant_job_for_teams_on_aws(platform):
    names = {r.name for r in platform.resources}
    assert not [n for n in names if "-s3-access-key-id" in n or "-s3-grant" in n]


def test_admission_allows_exactly_the_bound_accounts(platform):
    policy = next(m for m in platform.manifests() if m["kind"] == "ValidatingAdmissionPolicy"
                  and m["metadata"]["name"] == admission.pod_accounts_policy_name("mlplane"))
    expression = policy["spec"]["validations"][0]["expression"]
    for account in ("default", ci_runners.JOB_ACCOUNT, *drift.ACCOUNTS.values()):
        assert f"'{account}'" in expression
    assert "'team-runner'" not in expression and "'mlflow'" not in expression


# ------------------------------------------------------------------------ the team stack


def manifests(result, kind: str, namespace: str | None = None) -> list[dict]:
    return [m for m in result.manifests() if m["kind"] == kind and (namespace is None or m["metadata"].get("namespace") == namespace)]


def test_team_stack_writes_no_s3_key(team):
    result, _ = team
    secrets = {(m["metadata"]["namespace"], m["metadata"]["name"]) for m in manifests(result, "Secret")}
    assert ("mlplane-team-fraud", "s3-credentials") not in secrets
    assert ("mlplane-team-fraud-serving", drift.STORE_SECRET) not in secrets
    for m in result.manifests():
        assert "s3AccessKeyId" not in json.dumps(m) and "s3SecretAccessKey" not in json.dumps(m)
    assert "s3AccessKeyId" not in result.outputs and "s3SecretAccessKey" not in result.outputs


def pod_specs(result):
    for m in result.manifests():
        if m["kind"] == "Deployment":
            yield m, m["spec"]["template"]["spec"]
        elif m["kind"] == "CronJob":
            yield m, m["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_team_workloads_run_as_the_bound_accounts_without_keys(team):
    result, _ = team
    accounts = {m["metadata"]["name"]: spec.get("serviceAccountName") for m, spec in pod_specs(result)
                if m["metadata"]["namespace"] == "mlplane-team-fraud-serving"}
    assert accounts == {"scorer": drift.ACCOUNTS["logger"], "scorer-drift": drift.ACCOUNTS["drift"],
                        drift.TEAM_EXPORTER: drift.ACCOUNTS["exporter"]}
    for _, spec in pod_specs(result):
        for container in spec["containers"]:
            assert not KEYS & {e["name"] for e in container.get("env", [])}


def test_team_job_pods_run_as_ci_jobs_in_the_work_namespace(team):
    result, _ = team
    data = next(m for m in manifests(result, "ConfigMap", "mlplane-team-fraud-runners")
                if m["metadata"]["name"] == ci_runners.JOB_TEMPLATE)["data"]
    spec = yaml.safe_load(data[ci_runners.JOB_TEMPLATE_FILE])["spec"]
    assert spec["serviceAccountName"] == ci_runners.JOB_ACCOUNT
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert not KEYS & set(env) and env["MLPLANE_BUCKET"].startswith("team-fraud-")
    assert env["MLPLANE_REGISTRY"].endswith(".amazonaws.com/mlplane")
    assert "volumes" not in spec  # no registry push Secret: ECR takes the role's token
    accounts = {(m["metadata"]["namespace"], m["metadata"]["name"]) for m in manifests(result, "ServiceAccount")}
    assert ("mlplane-team-fraud", ci_runners.JOB_ACCOUNT) in accounts


def test_team_environment_names_the_physical_bucket(team):
    result, _ = team
    for namespace in ("mlplane-team-fraud", "mlplane-team-fraud-serving"):
        data = next(m for m in manifests(result, "ConfigMap", namespace) if m["metadata"]["name"] == "team-environment")["data"]
        assert data["MLPLANE_BUCKET"].startswith("team-fraud-") and data["AWS_DEFAULT_REGION"] == "eu-west-1"


def test_team_namespaces_reach_s3_over_https_and_the_agent(team):
    result, _ = team
    work = next(m for m in manifests(result, "NetworkPolicy", "mlplane-team-fraud") if m["metadata"]["name"] == "allow-platform-services")
    assert AGENT in work["spec"]["egress"]
    assert not [r for r in work["spec"]["egress"] for p in r.get("to", []) if "mlplane-storage" in json.dumps(p)]
    store = next(m for m in manifests(result, "NetworkPolicy", "mlplane-team-fraud-serving") if m["metadata"]["name"] == "inference-store-egress")
    assert AGENT in store["spec"]["egress"]


def test_team_models_use_no_pull_secret_on_aws(team):
    result, _ = team
    for _, spec in pod_specs(result):
        assert "imagePullSecrets" not in spec


def test_team_render_passes_strict_schemas_and_checkov(team):
    result, out = team
    assert [str(f) for f in checks.validate_schemas(result.manifests())] == []
    if checks.checkov_executable() is None:
        if os.environ.get("MLPLANE_REQUIRE_TOOLS") == "1":
            pytest.fail("checkov is required (MLPLANE_REQUIRE_TOOLS=1) but not found: set MLPLANE_CHECKOV")
        pytest.skip("checkov not installed: scripts/test.sh installs it into its own virtualenv")
    assert [str(f) for f in checks.run_checkov(out / "manifests")] == []


# ------------------------------------------------------------- the command line, offline


def test_mlplane_validates_renders_and_plans_a_team_on_aws_without_credentials(tmp_path):
    """`mlplane render --stack team-fraud` in a project whose platform stack is the AWS example."""
    import subprocess
    import sys

    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    (tmp_path / "stacks").mkdir()
    platform = {"mlplane:platform": platform_raw(), "mlplane:githubToken": {"secure": "v1:stand-in"}}
    (tmp_path / "stacks" / "Pulumi.aws.yaml").write_text(yaml.safe_dump({"config": platform}))
    team = {"mlplane:team": team_raw("fraud"), "mlplane:fraudGithubToken": {"secure": "v1:stand-in"}}
    (tmp_path / "stacks" / "Pulumi.team-fraud.yaml").write_text(yaml.safe_dump({"config": team}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "none")
    for command in (["validate"], ["render", "--out", str(tmp_path / "out")], ["plan", "--out", str(tmp_path / "plan.md")]):
        run = subprocess.run([sys.executable, "-m", "mlplane", *command, "--stack", "team-fraud"], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, (command, run.stdout, run.stderr)
    names = sorted(p.name for p in (tmp_path / "out" / "manifests").iterdir())
    assert "mlplane-team-fraud.serviceaccount.ci-jobs.yaml" in names
    assert not [n for n in names if n.endswith((".secret.s3-credentials.yaml", ".secret.inference-store.yaml"))]
    assert "Cost" in (tmp_path / "plan.md").read_text() or "cost" in (tmp_path / "plan.md").read_text()
