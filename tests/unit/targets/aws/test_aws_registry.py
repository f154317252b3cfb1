"""ECR on the AWS target: each repository's secure defaults, the lifecycle policy parsed, the push
statements scoped to the platform's (or a team's) repositories, protection."""

from __future__ import annotations

import json

import pytest

from mlplane.targets.aws import identity as iam
from mlplane.targets.aws.registry import AUTH_ACTION, PUSH_ACTIONS, AwsRegistry

from aws_backing_mocks import (  # noqa: F401 (aws_mocks: the fixture)
    ACCOUNT, KMS_KEY, REGION, allows_wildcard_on_wildcard, aws_mocks, context, of_type, run,
)

pytestmark = pytest.mark.usefixtures("aws_mocks")
NAME = "mlplane-registry"
REPOSITORY = "aws:ecr/repository:Repository"
HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"


def render(throwaway: bool = False):
    def build():
        registry = AwsRegistry(NAME, context(protect=not throwaway), throwaway)
        registry.team_credentials(f"{NAME}-teams-vision", "vision", "vision", "vision-serving", labels={}, parent=registry)
        return {
            "registry": registry, "push_url": registry.push_url, "pull_prefix": registry.pull_prefix,
            "cluster_push_url": registry.cluster_push_url, "api_url": registry.api_url,
            "push": iam.policy_document(registry.push_statements()),
            "team_push": iam.policy_document(registry.team_push_statements("vision")),
        }

    return run(build)


def test_platform_and_team_repositories():
    result, _ = render()
    assert sorted(r.inputs["name"] for r in of_type(result, REPOSITORY)) == ["mlplane/models", "mlplane/vision/models"]


def test_tags_are_immutable():
    result, _ = render()
    assert all(r.inputs["imageTagMutability"] == "IMMUTABLE" for r in of_type(result, REPOSITORY))


def test_scan_on_push():
    result, _ = render()
    assert all(r.inputs["imageScanningConfiguration"] == {"scanOnPush": True} for r in of_type(result, REPOSITORY))


def test_encrypted_with_the_platform_key():
    result, _ = render()
    for record in of_type(result, REPOSITORY):
        assert record.inputs["encryptionConfigurations"] == [{"encryptionType": "KMS", "kmsKey": KMS_KEY}]


def test_lifecycle_policy_on_every_repository():
    result, _ = render()
    policies = of_type(result, "aws:ecr/lifecyclePolicy:LifecyclePolicy")
    assert len(policies) == len(of_type(result, REPOSITORY))
    rules = json.loads(policies[0].inputs["policy"])["rules"]
    untagged, kept = sorted(rules, key=lambda r: r["rulePriority"])
    assert untagged["selection"] == {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 7}
    assert kept["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 50}
    assert {r["action"]["type"] for r in rules} == {"expire"}


def test_lifecycle_follows_the_config():
    def build():
        AwsRegistry(NAME, context({"aws": {"region": REGION, "registry": {"keep_images": 5, "untagged_days": 2}}}), False)
        return {}

    result, _ = run(build)
    rules = json.loads(result.named(f"{NAME}-models-lifecycle").inputs["policy"])["rules"]
    assert [r["selection"]["countNumber"] for r in sorted(rules, key=lambda r: r["rulePriority"])] == [2, 5]


def test_the_platforms_repositories_are_protected_outside_throwaway():
    result, _ = render()
    platform = [r for r in of_type(result, REPOSITORY) if "mlplane.dev/team" not in r.inputs["tags"]]
    assert [r.inputs["name"] for r in platform] == ["mlplane/models"]
    assert all(r.protect and r.retain_on_delete and r.inputs["forceDelete"] is False for r in platform)


def test_a_teams_repositories_are_retained_not_protected_outside_throwaway():
    """Removing a team must not stall the platform's update on a protected repository (review of
    issue 11, should-fix 6), nor delete its images: its repository and lifecycle policy are
    dropped from the state and kept in the account."""
    result, _ = render()
    repo = result.named(f"{NAME}-vision-models")
    assert repo.inputs["name"] == "mlplane/vision/models"
    assert (repo.protect, repo.retain_on_delete, repo.inputs["forceDelete"]) == (False, True, False)
    lifecycle = result.named(f"{NAME}-vision-models-lifecycle")
    assert (lifecycle.protect, lifecycle.retain_on_delete) == (False, True)


def test_throwaway_repositories_are_not_protected():
    result, _ = render(throwaway=True)
    assert all(not r.protect and not r.retain_on_delete and r.inputs["forceDelete"] is True for r in of_type(result, REPOSITORY))


def test_addresses_the_services_use():
    _, out = render()
    assert out["push_url"] == out["pull_prefix"] == out["cluster_push_url"] == f"{HOST}/mlplane"
    assert out["api_url"] == f"https://{HOST}/v2/"
    registry = out["registry"]
    assert registry.auth_secret is None
    assert registry.image_pull_secrets("x", "ns", parent=registry) == []
    assert registry.push_secret("x", "ns", parent=registry) is None


def test_push_is_scoped_to_the_platform_repositories():
    _, out = render()
    document = json.loads(out["push"])
    assert not allows_wildcard_on_wildcard(document)
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    assert by_sid["RegistryLogin"]["Action"] == [AUTH_ACTION]
    assert by_sid["RegistryPush"]["Action"] == list(PUSH_ACTIONS)
    assert by_sid["RegistryPush"]["Resource"] == [f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/mlplane/models"]


def test_the_platforms_push_does_not_reach_a_teams_repositories():
    """`<platform>/*` would match `<platform>/<team>/models` (IAM wildcards cross '/')."""
    _, out = render()
    resources = [r for s in json.loads(out["push"])["Statement"] for r in s["Resource"]]
    assert not any(r.endswith("*") and r != "*" for r in resources)
    assert not any("mlplane/vision" in r for r in resources)


def test_team_push_is_scoped_to_the_team_repositories():
    _, out = render()
    by_sid = {s["Sid"]: s for s in json.loads(out["team_push"])["Statement"]}
    assert by_sid["TeamRegistryPush"]["Resource"] == [f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/mlplane/vision/*"]
    assert "ecr:DeleteRepository" not in by_sid["TeamRegistryPush"]["Action"]


def test_resources_are_children_of_the_registry():
    result, _ = render()
    registry = result.named(NAME)
    assert all(r.parent == registry.urn for r in result.resources if r.type.startswith("aws:"))
    assert registry.type == "mlplane:aws:Registry"
