"""The team config: defaults, derived names, and bad input rejected with the field path."""

from __future__ import annotations

import pytest

from mlplane.config import ConfigError, parse_platform
from mlplane.config.team import TeamConfig, check_collisions, check_platform, parse_team

ROOT = "mlplane:team"
WORKSPACES = {"tracking": {"workspaces": True}}


def team(**extra) -> TeamConfig:
    return parse_team({"name": "fraud", "platform_stack": "local", **extra})


def problems(raw) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_team(raw)
    return caught.value.problems


def test_a_name_and_a_platform_stack_are_a_complete_team():
    config = team()
    assert config.services == ["tracking", "object_storage", "registry", "monitoring"]
    assert config.quota.work.requests_cpu == "4" and config.quota.work.gpus == 0
    assert not config.ci_runners.enabled
    assert config.members.users == [] and config.members.groups == []


def test_derived_names_follow_the_team_name():
    config = team(serving={"models": [{"name": "scorer", "registered_model": "fraud-scorer", "version": 2}]})
    assert config.stack == "team-fraud"
    assert config.namespaces("mlplane") == ("mlplane-team-fraud", "mlplane-team-fraud-serving")
    assert config.bucket == "team-fraud"
    assert config.identity == "team-fraud"
    assert config.runner_label == "team-fraud"
    assert config.hosts("mlplane.localhost") == ["scorer.fraud.mlplane.localhost"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"name": "Fraud_Team"}, f"{ROOT}.name: must be a DNS-1123 label"),
        ({"name": "-fraud"}, f"{ROOT}.name: must be a DNS-1123 label"),
        ({"name": "a" * 31}, f"{ROOT}.name: must be a DNS-1123 label of at most 30 characters"),
        ({"name": "a" * 64}, f"{ROOT}.name: must be a DNS-1123 label of at most 30 characters"),
        ({"name": "Fraud_Team"}, f"{ROOT}.name: must be a DNS-1123 label of at most 30 characters"),
        ({"name": "x-serving"}, f"{ROOT}.name: must not end in '-serving': the serving namespace of team 'x' is"),
        ({"platform_stack": "no spaces allowed"}, f"{ROOT}.platform_stack: must be a Pulumi stack name"),
        ({"quota": {"work": {"limits_cpu": "-1"}}}, f"{ROOT}.quota.work.limits_cpu: must be a CPU quantity such as '250m', '0.5' or '2' (given: '-1')"),
        ({"quota": {"work": {"requests_memory": "lots"}}}, f"{ROOT}.quota.work.requests_memory: must be a memory quantity"),
        ({"quota": {"serving": {"storage": "-5Gi"}}}, f"{ROOT}.quota.serving.storage: must be a memory quantity"),
        ({"quota": {"work": {"gpus": -1}}}, f"{ROOT}.quota.work.gpus: Input should be greater than or equal to 0 (given: -1)"),
        ({"quota": {"work": {"pods": 0}}}, f"{ROOT}.quota.work.pods: Input should be greater than or equal to 1"),
        ({"quota": {"work": {"requests_cpu": "16"}}}, f"{ROOT}.quota.work: requests_cpu (16) is above limits_cpu (8)"),
        ({"quota": {"gpu_resource": "gpu"}}, f"{ROOT}.quota.gpu_resource: must be an extended resource name"),
        ({"services": ["tracking", "kafka"]}, f"{ROOT}.services[1]: Input should be 'tracking', 'object_storage', 'registry' or 'monitoring' (given: 'kafka')"),
        ({"services": ["registry", "registry"]}, f"{ROOT}: services lists registry more than once"),
        ({"members": {"groups": ["system:authenticated"]}}, f"{ROOT}.members.groups[0]: names starting with 'system:'"),
        ({"members": {"users": ["a@x.io", "a@x.io"]}}, f"{ROOT}.members: users lists a@x.io more than once"),
        ({"limit_range": {"max": {"cpu": "16", "memory": "8Gi"}}}, f"{ROOT}: limit_range.max.cpu (16) is above quota.work.limits_cpu (8)"),
        ({"limit_range": {"default_request": {"cpu": "2", "memory": "128Mi"}}}, f"{ROOT}.limit_range: default_request.cpu (2) is above default_limit.cpu (1)"),
        ({"qouta": {}}, f"{ROOT}.qouta: unknown key; allowed keys here: ci_runners, limit_range, members, name"),
        ({"services": ["registry"], "serving": {"models": [{"name": "m", "registered_model": "m", "version": 1}]}},
         f"{ROOT}: serving.models download their model from MLflow: add 'tracking' to services"),
        ({"serving": {"models": [{"name": "m", "registered_model": "m", "version": 1}] * 2}}, "models[1].name 'm' is used twice"),
        ({"ci_runners": {"github_config_url": "https://github.com/acme/models", "github_token_key": "ghToken"}},
         f"{ROOT}: ci_runners reach GitHub over HTTPS: set network.allow_internet_https: true"),
        ({"ci_runners": {"github_config_url": "https://github.com/acme/models"}}, f"{ROOT}.ci_runners: 'github_config_url' is set but no credentials"),
        ({"ci_runners": {"container_mode": "dind"}}, f"{ROOT}.ci_runners.container_mode: Input should be 'kubernetes-novolume' or 'kubernetes'"),
        ({"object_storage": {"bucket": "Bad_Bucket"}}, f"{ROOT}.object_storage.bucket: must be an S3 bucket name"),
    ],
)
def test_bad_team_configs_are_rejected_with_the_field_path(extra, expected):
    found = problems({"name": "fraud", "platform_stack": "local", **extra})
    assert any(expected in line for line in found), found


def test_missing_name_and_platform_stack_are_each_reported():
    assert problems({}) == [f"{ROOT}.name: required field is missing", f"{ROOT}.platform_stack: required field is missing"]


@pytest.mark.parametrize("raw", [None, ["a"], "fraud"])
def test_a_team_must_be_a_mapping(raw):
    assert problems(raw)[0].startswith(f"{ROOT}: must be a mapping of team settings")


def test_a_long_team_name_is_refused_on_a_platform_whose_namespaces_would_overflow():
    platform = parse_platform({"name": "a" * 30, **WORKSPACES})
    found = check_platform(team(name="b" * 25), platform)
    assert found == [
        f"{ROOT}.name: namespace '{'a' * 30}-team-{'b' * 25}-serving' would be 69 characters (at most 63); "
        f"on platform '{'a' * 30}' team names may have at most 24"
    ]
    assert check_platform(team(name="b" * 19), platform) == []


def test_tracking_needs_platform_auth_and_workspaces():
    assert any("set tracking.workspaces: true" in p for p in check_platform(team(), parse_platform({})))
    no_auth = parse_platform({"tracking": {"auth": False, "workspaces": True}})
    assert any("needs tracking.auth on the platform" in p for p in check_platform(team(), no_auth))
    assert check_platform(team(services=["registry"]), parse_platform({})) == []


def test_object_storage_needs_the_bundled_store_and_a_bucket_of_its_own():
    external = parse_platform({
        **WORKSPACES,
        "object_storage": {"mode": "external", "external": {
            "endpoint": "https://s3.example.com", "access_key_id_key": "k", "secret_access_key_key": "s"}},
    })
    assert any("'object_storage' creates a bucket" in p for p in check_platform(team(), external))
    platform = parse_platform(WORKSPACES)
    taken = check_platform(team(object_storage={"bucket": "mlplane-artifacts"}), platform)
    assert taken == [f"{ROOT}.object_storage.bucket: 'mlplane-artifacts' is a platform bucket; choose another name"]


def test_team_runners_need_the_platform_runner_controller():
    runners = {"github_config_url": "https://github.com/acme/models", "github_token_key": "ghToken"}
    config = team(ci_runners=runners, network={"allow_internet_https": True})
    assert any("turn on the platform's ci_runners first" in p for p in check_platform(config, parse_platform(WORKSPACES)))


def test_collisions_with_other_teams_are_named():
    ours = team(ci_runners={"github_config_url": "https://github.com/acme/models", "github_token_key": "t", "runner_label": "ml"},
                network={"allow_internet_https": True})
    others = {
        "team-fraud2": parse_team({"name": "fraud", "platform_stack": "local"}),
        "team-risk": parse_team({"name": "risk", "platform_stack": "local", "object_storage": {"bucket": "team-fraud"}}),
        "team-ops": parse_team({"name": "ops", "platform_stack": "local", "network": {"allow_internet_https": True},
                                "ci_runners": {"github_config_url": "https://github.com/acme/models", "github_token_key": "t", "runner_label": "ml"}}),
    }
    assert check_collisions(ours, others) == [
        f"{ROOT}.name: team 'fraud' already exists (stack 'team-fraud2')",
        f"{ROOT}.ci_runners.runner_label: 'ml' is the runner label of team 'ops' (stack 'team-ops')",
        f"{ROOT}.object_storage.bucket: bucket 'team-fraud' belongs to team 'risk' (stack 'team-risk')",
    ]
    assert check_collisions(ours, {"team-fraud": ours}) == []


def test_models_that_could_never_schedule_are_rejected():
    from mlplane.config import ConfigError
    from mlplane.config.team import parse_team

    base = {"name": "big", "platform_stack": "local"}
    too_large = {"name": "m", "registered_model": "m", "version": 1,
                 "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "6", "memory": "1Gi"}}}
    with pytest.raises(ConfigError, match=r"serving.models\[0\].resources.limits .* exceed limit_range.max"):
        parse_team({**base, "serving": {"models": [too_large]}})
    too_many = {"name": "m", "registered_model": "m", "version": 1, "min_replicas": 30, "max_replicas": 40}
    with pytest.raises(ConfigError, match=r"serving.models\[0\]: 30 pods at its minimum scale .* above quota.serving"):
        parse_team({**base, "serving": {"models": [too_many]}})


def test_the_team_name_limit_is_stated_once_and_the_same_everywhere():
    from mlplane.config.team import TEAM_NAME_MAX

    for name in ("a" * (TEAM_NAME_MAX + 1), "a" * 64, "Bad_Name", "-x"):
        found = problems({"name": name, "platform_stack": "local"})
        assert found == [f"{ROOT}.name: must be a DNS-1123 label of at most {TEAM_NAME_MAX} characters: lowercase "
                         f"letters, digits and '-', starting and ending with a letter or digit (given: {name!r})"]
    assert parse_team({"name": "a" * TEAM_NAME_MAX, "platform_stack": "local"}).name == "a" * TEAM_NAME_MAX
    assert f"at most {TEAM_NAME_MAX} characters" in TeamConfig.model_fields["name"].description


# Adversarial pairs: names that share a prefix, a suffix, or differ by one derived-name suffix.
ADVERSARIAL = [
    ("x", "x-serving"),
    ("a-b", "a"),
    ("a", "a-b-serving"),
    ("team", "team-team"),
    ("fraud", "fraud-mlflow-setup"),
    ("a" * 30, "a" * 29),
    ("a" * 22 + "-serving", "a" * 22),
    ("serving", "s"),
    ("1", "1-1"),
]


@pytest.mark.parametrize(("first", "second"), ADVERSARIAL)
@pytest.mark.parametrize("platform_name", ["mlplane", "p", "team", "a-team-x"])
def test_no_two_valid_teams_share_a_derived_name(first, second, platform_name):
    """Collision-free by construction: either one of the pair is not a valid name, or every
    name derived from one differs from every name of the same kind derived from the other."""
    valid = []
    for name in (first, second):
        try:
            valid.append(parse_team({"name": name, "platform_stack": "local"}))
        except ConfigError:
            pass
    if len(valid) < 2:
        assert any(name.endswith("-serving") for name in (first, second))
        return
    one, two = (t.derived_names(platform_name) for t in valid)
    for kind in one:
        assert not one[kind] & two.get(kind, set()), kind
    assert check_collisions(valid[0], {valid[1].stack: valid[1]}, platform_name=platform_name) == []


def test_every_derived_name_of_a_pair_is_compared_not_only_the_team_name():
    """A bypass of the reserved suffix (a config built without validation) is still caught by
    check_collisions, through the namespaces both teams derive."""
    x = parse_team({"name": "x", "platform_stack": "local"})
    forged = TeamConfig.model_construct(**{**x.__dict__, "name": "x-serving"})
    found = check_collisions(x, {"team-x-serving": forged}, platform_name="mlplane")
    assert found == [
        f"{ROOT}.name: namespace 'mlplane-team-x-serving' is also a namespace of team 'x-serving' "
        "(stack 'team-x-serving'): two teams would own the same object; choose another team name"
    ]


def test_a_custom_bucket_may_not_take_another_teams_default_bucket():
    ours = parse_team({"name": "risk", "platform_stack": "local", "object_storage": {"bucket": "team-ops"}})
    ops = parse_team({"name": "ops", "platform_stack": "local", "services": ["registry"]})
    assert check_collisions(ours, {"team-ops": ops}) == [
        f"{ROOT}.object_storage.bucket: bucket 'team-ops' belongs to team 'ops' (stack 'team-ops')"
    ]


def test_existing_valid_team_names_keep_their_derived_names():
    fraud = parse_team({"name": "fraud", "platform_stack": "local"})
    assert fraud.derived_names("mlplane") == {
        "stack": {"team-fraud"},
        "namespace": {"mlplane-team-fraud", "mlplane-team-fraud-serving"},
        "model host domain": {"fraud.<domain>"},
        "S3 identity": {"team-fraud"},
        "MLflow workspace and account": {"team-fraud"},
        "Grafana dashboard": {"team-fraud"},
        "bucket": {"team-fraud"},
    }
