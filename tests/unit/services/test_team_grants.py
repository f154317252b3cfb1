"""A team's grants, made by the platform stack (mlplane.services.team_grants).

The platform is rendered admitting two teams; everything a team needs in the platform's storage
and tracking namespaces (its S3 identity and bucket, its MLflow workspace and account, the Jobs
that make them, and their revocation) is the platform's, names that team only, and its
credentials leave the platform only through the secret output ``teamCredentials``.
"""

from __future__ import annotations

import pytest

from mlplane import cli
from mlplane.config import parse_platform
from mlplane.config.team import parse_team
from mlplane.program import grant_of
from mlplane.services.team_access import platform_rules
from mlplane.tooling import checks
from mlplane.tooling.render import SECRET_MASK, Capture

from test_team import PLATFORM, env, manifests, one, team_raw


def platform_with(*names: str, offboarding: dict[str, str] | None = None, raw_platform: dict = PLATFORM) -> Capture:
    """The platform rendered admitting teams ``names`` (``offboarding``: team -> mode)."""
    platform = parse_platform(raw_platform)
    grants = [grant_of(parse_team(team_raw(name)), platform, (offboarding or {}).get(name)) for name in names]
    return cli.offline_run(cli.Source(raw_platform, "mlplane:platform", "local", None, {}), platform, teams=grants)


def team_jobs(result: Capture, team: str) -> dict[str, dict]:
    """Namespace -> the one grant or revoke Job of ``team`` there."""
    jobs = [m for m in manifests(result, "Job") if m["spec"]["template"]["metadata"]["labels"].get("mlplane.dev/team") == team]
    found = {m["metadata"]["namespace"]: m for m in jobs}
    assert len(found) == len(jobs), [m["metadata"]["name"] for m in jobs]
    return found


@pytest.fixture(scope="module")
def two() -> Capture:
    return platform_with("fraud", "risk")


def test_grant_resources_are_children_of_the_teams_access_component(two):
    parent = "mlplane-teams-fraud"
    children = {r.name for r in two.resources if r.parent and r.parent.endswith(f"::{parent}")}
    assert {
        f"{parent}-s3-access-key-id", f"{parent}-s3-secret-access-key", f"{parent}-s3-grant-credentials",
        f"{parent}-s3-grant-job", f"{parent}-mlflow-password", f"{parent}-mlflow-setup-secret",
        f"{parent}-mlflow-setup-network-policy", f"{parent}-mlflow-grant-job",
    } <= children


@pytest.mark.parametrize("name", ["fraud", "risk"])
def test_each_grant_names_only_its_teams_bucket_identity_and_workspace(two, name):
    grants = [m for m in manifests(two, "Job", "mlplane-storage") if m["metadata"]["name"].startswith(f"s3-grant-team-{name}-")]
    assert len(grants) == 1
    grant_env = env(grants[0]["spec"]["template"]["spec"]["containers"][0])
    assert grant_env["S3_IDENTITY"] == f"team-{name}" and grant_env["S3_BUCKETS"] == f"team-{name}"
    assert grant_env["CREATE_BUCKETS"] == f"team-{name}"
    mlflow = [m for m in manifests(two, "Job", "mlplane-tracking") if m["metadata"]["name"].startswith(f"team-{name}-mlflow-grant-")]
    assert len(mlflow) == 1
    mlflow_env = env(mlflow[0]["spec"]["template"]["spec"]["containers"][0])
    assert mlflow_env["TEAM_WORKSPACE"] == mlflow_env["TEAM_USERNAME"] == f"team-{name}"
    assert mlflow_env["TEAM_ACTION"] == "grant"
    assert mlflow_env["TEAM_PASSWORD"] == {"secretKeyRef": {"name": f"team-{name}-mlflow-setup", "key": "team-password"}}
    setup = one(two, "Secret", "mlplane-tracking", f"team-{name}-mlflow-setup")
    # No copy of the MLflow admin credential: the Job reads the platform's own Secret.
    assert set(setup["stringData"]) == {"team-password"}


def test_the_credentials_leave_the_platform_only_in_a_secret_output(two):
    assert two.outputs["teamCredentials"] == SECRET_MASK
    for name in ("mlplane-teams-fraud-s3-grant-credentials", "mlplane-teams-fraud-mlflow-setup-secret"):
        assert two.named(name).masked_inputs()["stringData"] == SECRET_MASK
    fraud = two.named("mlplane-teams-fraud-s3-grant-credentials").inputs["stringData"]
    risk = two.named("mlplane-teams-risk-s3-grant-credentials").inputs["stringData"]
    assert fraud["access-key-id"] != risk["access-key-id"] and fraud["secret-access-key"] != risk["secret-access-key"]


def test_a_team_identity_has_no_right_in_the_storage_and_tracking_namespaces():
    assert set(platform_rules("mlplane", "team-fraud")) == {"mlplane-monitoring"}


@pytest.mark.parametrize(("mode", "delete"), [("delete-data", "true"), ("keep-data", "false")])
def test_offboarding_replaces_the_grant_jobs_with_revoke_jobs_for_that_team_only(mode, delete):
    result = platform_with("fraud", "risk", offboarding={"fraud": mode})
    storage = {m["metadata"]["name"].rsplit("-", 1)[0]: m for m in manifests(result, "Job", "mlplane-storage")}
    assert "s3-revoke-team-fraud" in storage and "s3-grant-team-risk" in storage
    assert not any(name.startswith("s3-grant-team-fraud") for name in storage)
    s3 = env(storage["s3-revoke-team-fraud"]["spec"]["template"]["spec"]["containers"][0])
    assert s3["S3_IDENTITY"] == "team-fraud" and s3["DELETE_BUCKETS"] == delete
    tracking = {m["metadata"]["name"].rsplit("-", 1)[0]: m for m in manifests(result, "Job", "mlplane-tracking")}
    mlflow = env(tracking["team-fraud-mlflow-revoke"]["spec"]["template"]["spec"]["containers"][0])
    assert mlflow["TEAM_ACTION"] == "revoke" and mlflow["TEAM_DELETE_DATA"] == delete
    assert env(tracking["team-risk-mlflow-grant"]["spec"]["template"]["spec"]["containers"][0])["TEAM_ACTION"] == "grant"
    assert tracking["team-fraud-mlflow-revoke"]["spec"]["template"]["metadata"]["labels"]["mlplane.dev/team"] == "fraud"
    assert [str(f) for f in checks.validate_schemas(result.manifests(), ["1.34", "1.37"])] == []


def test_every_grant_job_runs_mlflow_with_telemetry_off(two):
    for job in manifests(two, "Job", "mlplane-tracking"):
        values = env(job["spec"]["template"]["spec"]["containers"][0])
        assert values["MLFLOW_DISABLE_TELEMETRY"] == "true" and values["DO_NOT_TRACK"] == "true"


def test_platform_manifests_with_teams_pass_strict_schema_validation(two):
    assert [str(f) for f in checks.validate_schemas(two.manifests(), ["1.34", "1.37"])] == []


@pytest.mark.parametrize("value", ['"keep-data"', '{"fraud": "shred"}', '["fraud"]'])
def test_a_malformed_offboarding_key_stops_the_platform_program_before_any_resource(value, monkeypatch):
    import json

    monkeypatch.setenv("MLPLANE_OFFBOARDING_RUN", "1")

    import pulumi

    from mlplane import program
    from mlplane.tooling.render import capture

    config = {"mlplane:platform": json.dumps(PLATFORM), "mlplane:offboardTeams": value}
    with pytest.raises(pulumi.RunError) as caught:
        capture(program.main, stack="local", config=config)
    assert "mlplane:offboardTeams: must map team names to one of delete-data, keep-data" in str(caught.value)
    assert caught.value.recorded == []  # type: ignore[attr-defined]


def test_the_offboarding_key_outside_team_destroy_is_refused(monkeypatch):
    """Set with `pulumi config set`, it would revoke a deployed team and delete its data."""
    import json

    import pulumi

    from mlplane import program
    from mlplane.tooling.render import capture

    monkeypatch.delenv("MLPLANE_OFFBOARDING_RUN", raising=False)
    config = {"mlplane:platform": json.dumps(PLATFORM), "mlplane:offboardTeams": '{"fraud": "delete-data"}'}
    with pytest.raises(pulumi.RunError) as caught:
        capture(program.main, stack="local", config=config)
    assert "mlplane:offboardTeams: set outside `mlplane team destroy`" in str(caught.value)
    assert caught.value.recorded == []  # type: ignore[attr-defined]


def test_teams_whose_names_collide_stop_the_platform_instead_of_sharing_a_bucket(tmp_path, monkeypatch):
    import yaml

    from mlplane.config.stack_files import InputError
    from mlplane.program import admitted_team_configs

    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (tmp_path / "Pulumi.yaml").write_text("name: mlplane\nruntime: python\nmain: stacks/\nstackConfigDir: stacks\n")
    for name, extra in (("alpha", {}), ("beta", {"object_storage": {"bucket": "team-alpha"}})):
        body = {"name": name, "platform_stack": "local", **extra}
        (stacks / f"Pulumi.team-{name}.yaml").write_text(yaml.safe_dump({"config": {"mlplane:team": body}}))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as caught:
        admitted_team_configs(parse_platform(PLATFORM), "local", tmp_path)
    assert "Pulumi.team-beta.yaml: mlplane:team.object_storage.bucket: bucket 'team-alpha' belongs to team 'alpha'" in "\n".join(caught.value.problems)


def test_a_team_being_offboarded_only_has_to_parse(tmp_path, monkeypatch):
    """Its revoke must run even when its file no longer fits the platform (else it could never leave)."""
    import yaml

    from mlplane.config.stack_files import InputError
    from mlplane.program import admitted_team_configs

    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (tmp_path / "Pulumi.yaml").write_text("name: mlplane\nruntime: python\nmain: stacks/\nstackConfigDir: stacks\n")
    # Tracking without workspaces on the platform: not valid for a team that uses tracking.
    platform = parse_platform({**PLATFORM, "tracking": {"workspaces": False}})
    body = {"name": "alpha", "platform_stack": "local", "services": ["tracking"]}
    (stacks / "Pulumi.team-alpha.yaml").write_text(yaml.safe_dump({"config": {"mlplane:team": body}}))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError):
        admitted_team_configs(platform, "local", tmp_path)
    assert [t.name for t in admitted_team_configs(platform, "local", tmp_path, {"alpha": "keep-data"})] == ["alpha"]


@pytest.mark.parametrize(("throwaway", "offboarding", "retained"), [
    (False, None, True), (False, {"fraud": "keep-data"}, False), (True, None, False),
])
def test_a_teams_namespaces_are_retained_unless_it_is_offboarded_or_the_stack_is_throwaway(throwaway, offboarding, retained):
    """A team file removed or renamed by mistake must not take the team's volumes with it: outside
    throwaway stacks its namespaces leave the state and stay; the revoke update of `mlplane team
    destroy` records them as not retained, so its last update deletes them."""
    raw = {**PLATFORM, "lifecycle": {"throwaway": throwaway}}
    result = platform_with("fraud", offboarding=offboarding, raw_platform=raw)
    for role in ("work", "serving"):
        assert bool(result.named(f"mlplane-teams-fraud-{role}-namespace").retain_on_delete) is retained


def test_a_team_whose_file_asks_for_other_grants_than_the_platform_made_fails_clearly():
    """A renamed bucket (or a service added) takes effect only after the platform's update: until
    then the team's deploy stops naming what to run, instead of writing a bucket its identity
    cannot reach."""
    from mlplane.cli import teams
    from mlplane.tooling.render import StackOutputs

    from test_team import checked, platform_outputs

    outputs = platform_outputs()
    granted = {"fraud": {"services": ["monitoring", "object_storage", "registry", "tracking"], "bucket": "team-fraud"}}
    stale = StackOutputs({**outputs.outputs, "teamGrants": granted}, outputs.secret_names)
    raw = team_raw("fraud", object_storage={"bucket": "fraud-data"})
    with pytest.raises(Exception, match=r"granted team 'fraud' .*'bucket': 'team-fraud'.* but its file asks for .*'bucket': 'fraud-data'.*pulumi up --stack local"):
        teams.offline_team_run(checked(raw), "team-fraud", stale)


def test_the_platform_publishes_what_it_granted_each_team(two):
    assert two.outputs["teamGrants"]["fraud"] == parse_team(team_raw("fraud")).grant_summary()
    assert two.outputs["teamGrants"]["risk"]["bucket"] == "team-risk"
