"""The Pulumi side of an offline render: a mock monitor that records every registration.

Kept apart from :mod:`mlplane.tooling.render` so that commands which never run a program (``--help``,
``validate``, ``schema``) do not import the Pulumi SDK (about 0.3 s); :func:`mlplane.tooling.render.capture`
imports this module when it runs a program.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping

import pulumi
from pulumi.runtime import mocks as _mocks
from pulumi.runtime import rpc

from mlplane.tooling.render_records import SECRET_MASK, DuplicateUrnError, Recorded, StackOutputs, stand_in_secret


def _unwrap(value: Any, path: str, secrets: set[str]) -> Any:
    """Strip RPC secret wrappers, remembering where they were."""
    if rpc.is_rpc_secret(value):
        secrets.add(path)
        return _unwrap(rpc.unwrap_rpc_secret(value), path, set())
    if isinstance(value, dict):
        return {k: _unwrap(v, f"{path}.{k}" if path else k, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v, f"{path}[{i}]", secrets) for i, v in enumerate(value)]
    if isinstance(value, pulumi.Resource):
        return "<resource>"
    if isinstance(value, float) and value.is_integer():
        # The wire format carries every number as a double; providers write integral ones as ints.
        return int(value)
    return value


#: The account, partition and region an offline render of an AWS stack pretends to run in: AWS
#: computes ARNs, ids and endpoints at creation, and the stand-ins below keep them plausible (so
#: policies, URIs and kubeconfigs resolve); their values are not the real ones.
AWS_ACCOUNT = "123456789012"
AWS_PARTITION = "aws"
AWS_ZONE_SUFFIXES = ("a", "b", "c")


def _aws_region(inputs: dict[str, Any]) -> str:
    return str(inputs.get("region") or "us-east-1")


def _aws_computed(typ: str, name: str, inputs: dict[str, Any], region: str) -> dict[str, Any]:
    """Stand-ins for what AWS computes at creation (ARNs, ids, endpoints) per resource type."""
    account, service = AWS_ACCOUNT, typ.split(":")[1].split("/")[0]
    named = str(inputs.get("name") or name)
    if typ == "aws:s3/bucket:Bucket":
        bucket = str(inputs.get("bucket") or name)
        return {"arn": f"arn:aws:s3:::{bucket}", "id": bucket, "bucket": bucket}
    if typ == "aws:iam/role:Role":
        return {"arn": f"arn:aws:iam::{account}:role/{named}", "id": named, "name": named}
    if typ == "aws:kms/key:Key":
        return {"arn": f"arn:aws:kms:{region}:{account}:key/{name}", "keyId": name}
    if typ == "aws:ec2/vpc:Vpc":
        return {"arn": f"arn:aws:ec2:{region}:{account}:vpc/{name}", "cidrBlock": inputs.get("cidrBlock")}
    if typ == "aws:ec2/launchTemplate:LaunchTemplate":
        return {"arn": f"arn:aws:ec2:{region}:{account}:launch-template/{name}", "latestVersion": 1}
    if typ == "aws:eks/cluster:Cluster":
        return {
            "arn": f"arn:aws:eks:{region}:{account}:cluster/{named}",
            "name": named,
            "endpoint": f"https://{named.upper()}0000000000.gr7.{region}.eks.amazonaws.com",
            "certificateAuthority": {"data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="},
            "vpcConfig": {**(inputs.get("vpcConfig") or {}), "clusterSecurityGroupId": f"sg-{name}"},
        }
    if typ == "aws:ecr/repository:Repository":
        return {
            "arn": f"arn:aws:ecr:{region}:{account}:repository/{named}",
            "repositoryUrl": f"{account}.dkr.ecr.{region}.amazonaws.com/{named}",
            "registryId": account,
        }
    if typ == "aws:rds/parameterGroup:ParameterGroup" and inputs.get("namePrefix"):
        # name_prefix: the provider appends a 26-character unique suffix (a timestamp and a counter).
        generated = f"{inputs['namePrefix']}{'0' * 25}1"
        return {"name": generated, "id": generated, "arn": f"arn:aws:rds:{region}:{account}:pg:{generated}"}
    if typ == "aws:rds/instance:Instance":
        identifier = str(inputs.get("identifier") or name)
        return {
            "address": f"{identifier}.abcdefghij.{region}.rds.amazonaws.com",
            "endpoint": f"{identifier}.abcdefghij.{region}.rds.amazonaws.com:5432",
            "arn": f"arn:aws:rds:{region}:{account}:db:{identifier}",
            "masterUserSecrets": [
                {"secretArn": f"arn:aws:secretsmanager:{region}:{account}:secret:rds!{identifier}", "secretStatus": "active"}
            ],
        }
    if typ.startswith("aws:") and typ != "pulumi:providers:aws":
        return {"arn": f"arn:aws:{service}:{region}:{account}:{name}"}
    return {}


def _aws_call(token: str, args: dict[str, Any]) -> dict[str, Any] | None:
    """Stand-ins for the AWS data sources the AWS target reads (account, partition, adopted VPC
    and cluster, the database's managed secret); None: not an AWS call."""
    if token == "aws:index/getCallerIdentity:getCallerIdentity":
        return {"accountId": AWS_ACCOUNT, "arn": f"arn:aws:iam::{AWS_ACCOUNT}:user/offline-render", "userId": "OFFLINE", "id": AWS_ACCOUNT}
    if token == "aws:index/getPartition:getPartition":
        return {"partition": AWS_PARTITION, "dnsSuffix": "amazonaws.com", "id": AWS_PARTITION}
    if token == "aws:ec2/getVpc:getVpc":
        return {"id": args.get("id"), "cidrBlock": "10.0.0.0/16 (looked up at deployment)"}
    if token == "aws:eks/getCluster:getCluster":
        cluster = str(args.get("name"))
        return {
            "id": cluster,
            "name": cluster,
            "endpoint": f"https://{cluster.upper()}0000000000.eks.amazonaws.com (looked up at deployment)",
            "certificateAuthorities": [{"data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="}],
            "vpcConfig": {"clusterSecurityGroupId": f"sg-{cluster}-cluster (looked up at deployment)"},
        }
    if token == "aws:secretsmanager/getSecretVersion:getSecretVersion":
        return {
            "id": args.get("secretId"),
            "arn": args.get("secretId"),
            "secretString": json.dumps({"username": "mlplane_admin", "password": stand_in_secret(str(args.get("secretId")), 32)}),
        }
    return None


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self, stack_references: Mapping[str, StackOutputs] | None = None):
        #: Fully qualified stack name -> its outputs, for StackReferences.
        self.stack_references = dict(stack_references or {})
        #: The region of the last AWS provider registered (ARNs and endpoints name it).
        self.aws_region = "us-east-1"

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        inputs = _unwrap(args.inputs, "", set())
        state = dict(inputs)
        if args.typ == "pulumi:pulumi:StackReference":
            referenced = self.stack_references.get(inputs.get("name"))
            if referenced is None:
                known = ", ".join(sorted(self.stack_references)) or "none"
                raise KeyError(f"no outputs of stack {inputs.get('name')!r} in this offline run (known: {known})")
            state.update(outputs=referenced.outputs, secretOutputNames=list(referenced.secret_names))
        elif args.typ.startswith("random:index/random"):
            length = int(inputs.get("length", 32) or 32)
            value = stand_in_secret(f"{args.typ}:{args.name}", length)
            state.update(result=value, id=value)
        elif args.typ == "command:local:Command":
            state.update(stdout="", stderr="")
        elif args.typ.startswith("aws:"):
            computed = _aws_computed(args.typ, args.name, inputs, self.aws_region)
            resource_id = computed.pop("id", None)
            state.update(computed)
            if resource_id is not None:
                return str(resource_id), state
        elif args.typ == "pulumi:providers:aws":
            self.aws_region = _aws_region(inputs)
        elif args.typ.startswith("kubernetes:") and "metadata" in inputs:
            meta = dict(inputs.get("metadata") or {})
            meta.setdefault("name", args.name)
            state["metadata"] = meta
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list]:
        if args.token.startswith("aws:"):
            return _aws_call(args.token, _unwrap(args.args, "", set())) or {}, []
        return {}, []


def _is_sdk_type_alias(alias: Any) -> bool:
    """pulumi-kubernetes registers type aliases for older API versions of every object itself, and
    pulumi-aws for the types it renamed (``aws:s3/bucketV2:BucketV2`` -> ``aws:s3/bucket:Bucket``)."""
    spec = getattr(alias, "spec", None)
    return spec is not None and not spec.name and str(spec.type).startswith(("kubernetes:", "aws:"))


def _alias_text(alias: Any) -> str:
    return alias.urn if getattr(alias, "urn", "") else " ".join(str(alias.spec).split())


class _Monitor(_mocks.MockMonitor):
    def __init__(self, mocks: _Mocks):
        super().__init__(mocks)
        self.recorded: list[Recorded] = []
        self._urns: set[str] = set()
        #: The first duplicate URN registered (the engine stops the update on it; so does the run).
        self.duplicate: str | None = None

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        if response.urn in self._urns and self.duplicate is None:
            self.duplicate = response.urn
        self._urns.add(response.urn)
        secrets: set[str] = set()
        inputs = _unwrap(rpc.deserialize_properties(request.object), "", secrets)
        self.recorded.append(
            Recorded(
                type=request.type,
                name=request.name,
                urn=response.urn,
                parent=request.parent or None,
                custom=bool(request.custom),
                protect=bool(request.protect),
                retain_on_delete=bool(request.retainOnDelete),
                provider=request.provider or None,
                depends_on=sorted(request.dependencies),
                aliases=[_alias_text(a) for a in request.aliases if not _is_sdk_type_alias(a)],
                inputs=inputs,
                secret_paths=secrets,
                delete_before_replace=bool(request.deleteBeforeReplace),
                property_dependencies={
                    key: sorted(deps.urns) for key, deps in request.propertyDependencies.items() if deps.urns
                },
            )
        )
        return response


def _resolve_exports() -> dict[str, Any]:
    """Stack outputs (``pulumi.export``), secret ones masked."""
    root = pulumi.runtime.get_root_resource()
    resolved: dict[str, Any] = {}
    for key, value in sorted(getattr(root, "outputs", {}).items()):
        output = pulumi.Output.from_input(value)
        is_secret = _mocks._sync_await(output.is_secret())
        resolved[key] = SECRET_MASK if is_secret else _mocks._sync_await(output.future())
    return resolved



def run(
    program: Callable[[], Any],
    *,
    project: str,
    stack: str,
    config: dict[str, str] | None,
    secret_keys: list[str] | None,
    stack_references: Mapping[str, StackOutputs] | None,
) -> tuple[list[Recorded], dict[str, Any]]:
    """Run ``program`` against recording mocks: what it registered (sorted) and its outputs.

    Exceptions raised by the program propagate with ``recorded`` set to what was registered.
    """
    mocks = _Mocks(stack_references)
    monitor = _Monitor(mocks)
    pulumi.runtime.settings.SETTINGS.rpc_manager.clear()
    pulumi.runtime.settings.SETTINGS.outputs.clear()
    # A fresh root stack per run, so exports of an earlier run never leak into this one.
    pulumi.runtime.settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(
        {k if ":" in k else f"{project}:{k}": v for k, v in (config or {}).items()},
        [k if ":" in k else f"{project}:{k}" for k in (secret_keys or [])],
    )
    try:
        _mocks._sync_await(_mocks.run_pulumi_func(program))
        if monitor.duplicate is not None:
            raise DuplicateUrnError(monitor.duplicate)
    except Exception as error:
        # Keep what was registered before the failure, for tests that prove it is nothing.
        error.recorded = list(monitor.recorded)  # type: ignore[attr-defined]
        raise
    outputs = _resolve_exports()
    # Registration order depends on when outputs resolve; sort for reproducible renders.
    return sorted(monitor.recorded, key=lambda r: r.urn), outputs
