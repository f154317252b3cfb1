"""Run AWS backing components offline: the render harness's mocks, plus the computed outputs AWS
would return (ARNs, ids, endpoints) so policies and URIs resolve, and an AwsContext to build on."""

from __future__ import annotations

import json
from typing import Any, Callable

import pulumi
import pulumi_aws as aws
import pytest

from mlplane.config import parse_platform
from mlplane.targets.aws.context import AwsContext
from mlplane.tooling import render_engine
from mlplane.tooling.render import Capture, capture

ACCOUNT = "123456789012"
REGION = "eu-west-1"
KMS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0d4b1f9e-1111-2222-3333-444455556666"
MASTER_SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:rds!db-1234-AbCdEf"
MASTER_PASSWORD = "master-password-from-secrets-manager"
RAW = {
    "target": "aws",
    "aws": {"region": REGION},
    "routing": {"tls": {"plain_http": True}},
}


def computed(typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """The outputs AWS computes for the resource types the backing services create."""
    out: dict[str, Any] = {}
    if typ == "aws:s3/bucket:Bucket":
        out = {"arn": f"arn:aws:s3:::{inputs['bucket']}", "id": inputs["bucket"]}
    elif typ == "aws:iam/role:Role":
        out = {"arn": f"arn:aws:iam::{ACCOUNT}:role/{inputs['name']}", "id": inputs["name"]}
    elif typ == "aws:ecr/repository:Repository":
        out = {
            "arn": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{inputs['name']}",
            "repositoryUrl": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{inputs['name']}",
            "registryId": ACCOUNT,
        }
    elif typ == "aws:rds/instance:Instance":
        out = {
            "address": f"{inputs.get('identifier', name)}.abcdefghij.{REGION}.rds.amazonaws.com",
            "arn": f"arn:aws:rds:{REGION}:{ACCOUNT}:db:{inputs.get('identifier', name)}",
            "masterUserSecrets": [{"secretArn": MASTER_SECRET_ARN, "kmsKeyId": KMS_KEY, "secretStatus": "active"}],
        }
    elif typ.startswith("aws:"):
        out = {"arn": f"arn:aws:{typ.split(':')[1].split('/')[0]}:{REGION}:{ACCOUNT}:{name}"}
    return out


@pytest.fixture
def aws_mocks(monkeypatch: pytest.MonkeyPatch) -> None:
    original_new, original_call = render_engine._Mocks.new_resource, render_engine._Mocks.call

    def new_resource(self, args):  # type: ignore[no-untyped-def]
        resource_id, state = original_new(self, args)
        extra = computed(args.typ, args.name, state)
        return extra.pop("id", resource_id), {**state, **extra}

    def call(self, args):  # type: ignore[no-untyped-def]
        if args.token == "aws:secretsmanager/getSecretVersion:getSecretVersion":
            secret = json.dumps({"username": "mlplane_admin", "password": MASTER_PASSWORD})
            return {"arn": args.args.get("secretId"), "secretString": secret, "id": "x"}
        return original_call(self, args)

    monkeypatch.setattr(render_engine._Mocks, "new_resource", new_resource)
    monkeypatch.setattr(render_engine._Mocks, "call", call)


def context(raw: dict[str, Any] | None = None, *, protect: bool = True) -> AwsContext:
    config = parse_platform({**RAW, **(raw or {})})
    assert config.aws is not None
    provider = aws.Provider("aws", region=config.aws.region)
    return AwsContext(
        name=config.name,
        config=config.aws,
        provider=provider,
        protect=protect,
        kms_key_arn=pulumi.Output.from_input(KMS_KEY),
        vpc_id=pulumi.Output.from_input("vpc-0a1b2c3d4e5f67890"),
        vpc_cidr=pulumi.Output.from_input("10.40.0.0/16"),
        private_subnet_ids=pulumi.Output.from_input(["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"]),
        public_subnet_ids=pulumi.Output.from_input(["subnet-0a1b2c3d4e5f60003", "subnet-0a1b2c3d4e5f60004"]),
        cluster_name=pulumi.Output.from_input(f"{config.name}"),
        cluster_security_group_id=pulumi.Output.from_input("sg-0a1b2c3d4e5f67890"),
        tags={"mlplane.dev/platform": config.name},
    )


def run(build: Callable[[], dict[str, Any]]) -> tuple[Capture, dict[str, Any]]:
    """Run ``build`` offline (it creates the components); Outputs it returns are resolved."""
    box: dict[str, Any] = {}

    def program() -> None:
        box.update(build())
        for key, value in list(box.items()):
            if isinstance(value, pulumi.Output):
                pulumi.export(key, value)

    result = capture(program)
    return result, {k: result.outputs.get(k, v) for k, v in box.items()}


def of_type(result: Capture, token: str) -> list[Any]:
    return [r for r in result.resources if r.type == token]


def policy(record: Any, key: str = "policy") -> dict[str, Any]:
    """A resource's policy input, parsed."""
    value = record.inputs[key]
    return json.loads(value) if isinstance(value, str) else value


def allows_wildcard_on_wildcard(document: dict[str, Any]) -> bool:
    for statement in document["Statement"]:
        if statement.get("Effect") != "Allow":
            continue
        actions = statement.get("Action", [])
        resources = statement.get("Resource", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        if any(a == "*" or a.endswith(":*") for a in actions) and "*" in resources:
            return True
    return False
