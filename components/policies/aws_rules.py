"""AWS rules: the guardrails of the AWS target (public buckets, unencrypted or public databases, a
world-open EKS endpoint, mutable ECR tags, `*` on `*` IAM grants, world-open security groups).

They read pulumi-aws 7.x resources by their type tokens and camelCase inputs, as the offline render
records them (``mlplane plan``) and as the engine hands them to the policy pack. Tokens and input
names were read from the installed SDK (``pulumi_aws/<module>/<resource>.py``: the type token in
``super().__init__('aws:...')``, the argument names in its ``*Args`` class) and from what the offline
render records for each (tests/unit/policies/test_aws_rules.py registers the real SDK classes).

Defaults the rules assume when an input is absent are AWS's (API and pulumi-aws docstrings):
an EKS endpoint is public and open to 0.0.0.0/0, RDS storage is unencrypted and keeps 1 day of
backups, ECR tags are MUTABLE and not scanned on push, an RDS instance is not publicly accessible.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Iterator, Mapping

from mlplane.policies.model import Problem, Resource, Stack, Unknown
from mlplane.policies.objects import _at, number

# --------------------------------------------------------------------------------------------
# Type tokens (pulumi-aws 7.51.1)
# --------------------------------------------------------------------------------------------

BUCKETS = {"aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"}
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
ACCOUNT_PUBLIC_ACCESS_BLOCK = "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock"
SSE_CONFIGS = {
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
}
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
BUCKET_ACLS = {"aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2"}
RDS_INSTANCE = "aws:rds/instance:Instance"
RDS_CLUSTER = "aws:rds/cluster:Cluster"
RDS_CLUSTER_INSTANCE = "aws:rds/clusterInstance:ClusterInstance"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
ECR_REPOSITORY = "aws:ecr/repository:Repository"
IAM_ROLE = "aws:iam/role:Role"
IAM_POLICY_DOCUMENTS = {
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/policy:Policy",
    "aws:iam/userPolicy:UserPolicy",
    "aws:iam/groupPolicy:GroupPolicy",
}
IAM_ATTACHMENTS = {
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:iam/userPolicyAttachment:UserPolicyAttachment",
    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
    "aws:iam/policyAttachment:PolicyAttachment",
}
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
#: The VPC's default group, adopted by pulumi-aws: the same ``ingress`` shape.
DEFAULT_SECURITY_GROUP = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SECURITY_GROUP_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"

#: The four settings of an S3 public-access block (camelCase inputs).
PUBLIC_ACCESS_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
#: Canned ACLs that grant everyone (or every AWS account) access.
PUBLIC_CANNED_ACLS = {"public-read", "public-read-write", "authenticated-read"}
#: Grantee groups of public ACL grants.
PUBLIC_GRANTEE_GROUPS = ("acs.amazonaws.com/groups/global/AllUsers", "acs.amazonaws.com/groups/global/AuthenticatedUsers")
#: Condition keys that tie an Allow to `*` to a VPC, an account or an organisation: S3 does not
#: count such a statement as public (S3 user guide, "The meaning of 'public'").
NON_PUBLIC_CONDITION_KEYS = {
    "aws:sourceip",
    "aws:sourcearn",
    "aws:sourcevpc",
    "aws:sourcevpce",
    "aws:sourceowner",
    "aws:sourceaccount",
    "aws:principalaccount",
    "aws:principalarn",
    "aws:principalorgid",
    "aws:userid",
    "s3:dataaccesspointarn",
    "s3:dataaccesspointaccount",
}
KMS_ALGORITHMS = {"aws:kms", "aws:kms:dsse"}
#: The AWS-managed policy that grants `*` on `*`.
ADMINISTRATOR_ACCESS = ":policy/AdministratorAccess"
#: Ports a security group may open to the whole internet (HTTP, HTTPS), TCP or UDP (HTTP/3).
WORLD_PORTS = {80, 443}
_WORLD_PROTOCOLS = {"tcp", "udp", "6", "17"}
MIN_BACKUP_DAYS = 7


def _known(value: Any) -> bool:
    return not isinstance(value, Unknown)


def _text(value: Any) -> str:
    return "not set" if value is None else repr(value)


# --------------------------------------------------------------------------------------------
# S3: public access, encryption (stack rules: a bucket and its separate configuration resources)
# --------------------------------------------------------------------------------------------


def _refers_to(resource: Resource, bucket: Resource, key: str = "bucket") -> bool:
    """Whether ``resource``'s input ``key`` names ``bucket``: by dependency, or by the bucket's name."""
    if bucket.urn and bucket.urn in resource.property_dependencies.get(key, ()):
        return True
    value = resource.props.get(key)
    if not isinstance(value, str) or not value:
        return False
    return value in {bucket.props.get("bucket"), bucket.props.get("id")}


def _blocks_everything(block: Resource) -> list[str]:
    """The public-access settings a block leaves off (unknown values count as set)."""
    return [flag for flag in PUBLIC_ACCESS_FLAGS if block.props.get(flag) is not True and _known(block.props.get(flag))]


def check_s3_public_access_block(resources: list[Resource], stack: Stack) -> list[Problem]:
    """Every bucket has a public-access block with all four settings on (or the account has)."""
    fix = "add an s3.BucketPublicAccessBlock for the bucket with block_public_acls, block_public_policy, ignore_public_acls and restrict_public_buckets all true"
    problems: list[Problem] = []
    blocks = [r for r in resources if r.type == PUBLIC_ACCESS_BLOCK]
    for block in blocks:
        off = _blocks_everything(block)
        if off:
            problems.append(Problem(f"public-access block leaves {', '.join(off)} off: the bucket can be made public", fix, block))
    account_wide = any(r.type == ACCOUNT_PUBLIC_ACCESS_BLOCK and not _blocks_everything(r) for r in resources)
    if account_wide:
        return problems
    for bucket in (r for r in resources if r.type in BUCKETS):
        if not any(_refers_to(block, bucket) for block in blocks):
            problems.append(Problem(f"bucket {bucket.name} has no public-access block: a policy or ACL can make it public", fix, bucket))
    return problems


def _statements(document: Any) -> list[Mapping[str, Any]] | None:
    """The statements of an IAM policy document (JSON text or object); None when unknown or unreadable."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return None
    if not isinstance(document, Mapping):
        return None
    statements = document.get("Statement")
    if isinstance(statements, Mapping):
        statements = [statements]
    if not isinstance(statements, list):
        return None
    return [s for s in statements if isinstance(s, Mapping)]


def _values(node: Any) -> list[Any]:
    return list(node) if isinstance(node, list) else [node]


def _public_principal(principal: Any) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, Mapping):
        return any("*" in _values(principal.get(key)) for key in ("AWS", "CanonicalUser"))
    return False


def _scoped(condition: Any) -> bool:
    """Whether a statement's Condition ties it to a network, account or organisation."""
    if not isinstance(condition, Mapping):
        return False
    for operator in condition.values():
        if isinstance(operator, Mapping) and any(str(key).lower() in NON_PUBLIC_CONDITION_KEYS for key in operator):
            return True
    return False


def public_statements(document: Any) -> list[int]:
    """Indexes of statements that Allow anyone (`*`) without a condition scoping who."""
    return [
        index
        for index, statement in enumerate(_statements(document) or [])
        if statement.get("Effect") == "Allow" and _public_principal(statement.get("Principal")) and not _scoped(statement.get("Condition"))
    ]


def _public_grants(grants: Any) -> list[str]:
    found = []
    for grant in grants if isinstance(grants, list) else []:
        if not isinstance(grant, Mapping):
            continue
        grantee = grant.get("grantee") if isinstance(grant.get("grantee"), Mapping) else grant
        uri = grantee.get("uri") if isinstance(grantee, Mapping) else None
        if isinstance(uri, str) and uri.endswith(PUBLIC_GRANTEE_GROUPS):
            found.append(uri.rsplit("/", 1)[-1])
    return found


def check_s3_public_grants(resource: Resource, stack: Stack) -> list[Problem]:
    """A bucket policy or ACL that grants everyone (`*`, AllUsers, AuthenticatedUsers) access."""
    problems: list[Problem] = []
    if resource.type == BUCKET_POLICY or resource.type in BUCKETS:
        for index in public_statements(resource.props.get("policy")):
            problems.append(Problem(
                f"policy statement {index} allows principal '*' with no condition limiting it to a VPC, account or organisation: the bucket is public",
                "grant named roles (the object store contract's grant), or add a condition on aws:SourceVpce / aws:PrincipalOrgID",
            ))
    if resource.type in BUCKET_ACLS or resource.type in BUCKETS:
        acl = resource.props.get("acl")
        fix = "remove the ACL grant; with BucketOwnerEnforced ownership ACLs are disabled and access is granted by policy"
        if isinstance(acl, str) and acl in PUBLIC_CANNED_ACLS:
            problems.append(Problem(f"acl is '{acl}': everyone can read the bucket", fix))
        grants = _at(resource.props, ("accessControlPolicy", "grants")) if resource.type in BUCKET_ACLS else resource.props.get("grants")
        for group in _public_grants(grants):
            problems.append(Problem(f"ACL grants access to the {group} group", fix))
    return problems


def _sse_algorithms(node: Any) -> Iterator[Any]:
    """Every ``sseAlgorithm`` in an encryption configuration (inline or separate), at any depth."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "sseAlgorithm":
                yield value
            else:
                yield from _sse_algorithms(value)
    elif isinstance(node, list):
        for item in node:
            yield from _sse_algorithms(item)


def check_s3_encryption(resources: list[Resource], stack: Stack) -> list[Problem]:
    """Every bucket has a server-side encryption configuration with a KMS key (SSE-KMS)."""
    configs = [r for r in resources if r.type in SSE_CONFIGS]
    fix = "add an s3.BucketServerSideEncryptionConfiguration with sse_algorithm 'aws:kms' and the platform's KMS key (bucket_key_enabled)"
    problems = []
    for bucket in (r for r in resources if r.type in BUCKETS):
        mine = [c.props.get("rules") for c in configs if _refers_to(c, bucket)]
        algorithms = list(_sse_algorithms(mine)) + list(
            _sse_algorithms([bucket.props.get(k) for k in ("serverSideEncryptionConfiguration", "serverSideEncryptionConfigurations")])
        )
        if any(not _known(a) or a in KMS_ALGORITHMS for a in algorithms):
            continue
        if algorithms:
            shown = ", ".join(sorted({str(a) for a in algorithms}))
            message = f"bucket {bucket.name} is encrypted with {shown}, not a KMS key (SSE-KMS): key use is neither restricted nor audited"
        else:
            message = f"bucket {bucket.name} has no server-side encryption configuration: objects get only S3's default (SSE-S3), not the platform's KMS key"
        problems.append(Problem(message, fix, bucket))
    return problems


# --------------------------------------------------------------------------------------------
# RDS
# --------------------------------------------------------------------------------------------


def check_rds_encrypted(resource: Resource, stack: Stack) -> list[Problem]:
    if resource.type not in (RDS_INSTANCE, RDS_CLUSTER) or resource.props.get("replicateSourceDb"):
        return []
    value = resource.props.get("storageEncrypted")
    if value is True or not _known(value):
        return []
    return [Problem(
        f"storageEncrypted is {_text(value)}: the database, its backups and snapshots are stored unencrypted",
        "set storage_encrypted=True with the platform's kms_key_id (the storage is replaced: restore from a snapshot copy made with encryption)",
    )]


def check_rds_private(resource: Resource, stack: Stack) -> list[Problem]:
    if resource.type not in (RDS_INSTANCE, RDS_CLUSTER_INSTANCE) or resource.props.get("publiclyAccessible") is not True:
        return []
    return [Problem(
        "publiclyAccessible is true: the database gets a public address and is reachable from outside the VPC",
        "set publicly_accessible=False; reach it from the cluster (private subnets, security group from the nodes)",
    )]


def check_rds_deletion_protection(resource: Resource, stack: Stack) -> list[Problem]:
    if resource.type not in (RDS_INSTANCE, RDS_CLUSTER) or stack.throwaway:
        return []
    problems = []
    protection = resource.props.get("deletionProtection")
    if protection is not True and _known(protection):
        problems.append(Problem(
            f"deletionProtection is {_text(protection)}: a delete or a replacement drops the database",
            "set deletion_protection=True outside throwaway stacks (lifecycle.throwaway)",
        ))
    skip, identifier = resource.props.get("skipFinalSnapshot"), resource.props.get("finalSnapshotIdentifier")
    if skip is True:
        problems.append(Problem(
            "skipFinalSnapshot is true: deleting the database keeps no final snapshot",
            "set skip_final_snapshot=False and a final_snapshot_identifier outside throwaway stacks",
        ))
    elif _known(skip) and not identifier and _known(identifier):
        problems.append(Problem(
            "no finalSnapshotIdentifier: a delete cannot take the final snapshot (RDS refuses it, or it is skipped when forced)",
            "set final_snapshot_identifier (e.g. '<name>-final') with skip_final_snapshot=False",
        ))
    return problems


def check_rds_backups(resource: Resource, stack: Stack) -> list[Problem]:
    if resource.type not in (RDS_INSTANCE, RDS_CLUSTER) or resource.props.get("replicateSourceDb"):
        return []
    value = resource.props.get("backupRetentionPeriod")
    if not _known(value):
        return []
    days = number(value)
    if days is not None and days >= MIN_BACKUP_DAYS:
        return []
    shown = "not set (RDS keeps 1 day)" if value is None else f"{value:g} days" if days is not None else repr(value)
    return [Problem(
        f"backupRetentionPeriod is {shown}: fewer than {MIN_BACKUP_DAYS} days of point-in-time recovery",
        f"set backup_retention_period to {MIN_BACKUP_DAYS}-35 (aws.database.backup_retention_days)",
    )]


# --------------------------------------------------------------------------------------------
# EKS
# --------------------------------------------------------------------------------------------


def _world(cidr: Any) -> bool:
    if not isinstance(cidr, str):
        return False
    try:
        return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


def check_eks_endpoint(resource: Resource, stack: Stack) -> list[Problem]:
    if resource.type != EKS_CLUSTER:
        return []
    public = _at(resource.props, ("vpcConfig", "endpointPublicAccess"))
    cidrs = _at(resource.props, ("vpcConfig", "publicAccessCidrs"))
    if public is False or not _known(public) or not _known(cidrs):
        return []
    fix = "set vpc_config.endpoint_public_access=False (aws.eks.public_access_cidrs empty), or list your offices' or VPN's CIDR blocks"
    state = "true" if public is True else "not set (EKS defaults to a public endpoint)"
    if not cidrs:
        return [Problem(f"vpcConfig.endpointPublicAccess is {state} with no publicAccessCidrs: the API server is open to 0.0.0.0/0", fix)]
    world = [c for c in _values(cidrs) if _world(c)]
    if world:
        return [Problem(f"vpcConfig.publicAccessCidrs holds {', '.join(world)}: the API server is open to the whole internet", fix)]
    covering = _covering(_values(cidrs))
    if covering:
        return [Problem(f"vpcConfig.publicAccessCidrs {', '.join(covering)} together cover every address: the API server is open to the whole internet", fix)]
    return []


def _covering(cidrs: list[Any]) -> list[str]:
    """The blocks of one address family that together cover all of it (0.0.0.0/1 and
    128.0.0.0/1), or []."""
    for version in (4, 6):
        blocks = []
        for cidr in cidrs:
            try:
                network = ipaddress.ip_network(cidr, strict=False) if isinstance(cidr, str) else None
            except ValueError:
                network = None
            if network is not None and network.version == version:
                blocks.append((cidr, network))
        merged = list(ipaddress.collapse_addresses(n for _, n in blocks))  # type: ignore[type-var]
        if merged and merged[0].prefixlen == 0:
            return [c for c, _ in blocks]
    return []


def check_eks_secrets_encryption(resource: Resource, stack: Stack) -> list[Problem]:
    if resource.type != EKS_CLUSTER:
        return []
    config = resource.props.get("encryptionConfig")
    if not _known(config):
        return []
    resources = _at(config, ("resources",))
    key = _at(config, ("provider", "keyArn"))
    if isinstance(resources, list) and "secrets" in resources and key:
        return []
    return [Problem(
        "encryptionConfig does not encrypt 'secrets' with a KMS key: Kubernetes Secrets rest in etcd without envelope encryption",
        "set encryption_config={'resources': ['secrets'], 'provider': {'key_arn': <the platform's KMS key>}}",
    )]


def check_eks_audit_logs(resource: Resource, stack: Stack) -> list[Problem]:
    if resource.type != EKS_CLUSTER:
        return []
    types = resource.props.get("enabledClusterLogTypes")
    if not _known(types) or (isinstance(types, list) and "audit" in types):
        return []
    return [Problem(
        f"enabledClusterLogTypes is {_text(types)}, without 'audit': who did what through the API server is not recorded",
        "set enabled_cluster_log_types to include 'audit' (with 'api' and 'authenticator'), kept in CloudWatch",
    )]


# --------------------------------------------------------------------------------------------
# ECR
# --------------------------------------------------------------------------------------------


def check_ecr_immutable_tags(resource: Resource, stack: Stack) -> list[Problem]:
    if resource.type != ECR_REPOSITORY:
        return []
    value = resource.props.get("imageTagMutability")
    if value == "IMMUTABLE" or not _known(value):
        return []
    shown = "not set (ECR defaults to MUTABLE)" if value is None else f"'{value}'"
    return [Problem(
        f"imageTagMutability is {shown}: a pushed tag can be moved to another image, so a deployment pinned to it can change",
        "set image_tag_mutability='IMMUTABLE' (push a new tag for every build)",
    )]


def check_ecr_scan_on_push(resource: Resource, stack: Stack) -> list[Problem]:
    if resource.type != ECR_REPOSITORY:
        return []
    value = _at(resource.props, ("imageScanningConfiguration", "scanOnPush"))
    if value is True or not _known(value):
        return []
    return [Problem(
        f"imageScanningConfiguration.scanOnPush is {_text(value)}: pushed images are not scanned for known vulnerabilities",
        "set image_scanning_configuration={'scan_on_push': True}",
    )]


# --------------------------------------------------------------------------------------------
# IAM
# --------------------------------------------------------------------------------------------


def _everything(values: Any) -> bool:
    return any(v in ("*", "*:*") for v in _values(values))


def admin_statements(document: Any) -> list[int]:
    """Indexes of statements that Allow every action (`*`) on every resource (`*`)."""
    return [
        index
        for index, statement in enumerate(_statements(document) or [])
        if statement.get("Effect") == "Allow" and _everything(statement.get("Action")) and _everything(statement.get("Resource"))
    ]


def check_iam_wildcards(resource: Resource, stack: Stack) -> list[Problem]:
    fix = "grant the actions the workload calls on the ARNs it uses (the object store contract's grant does)"
    documents: list[tuple[str, Any]] = []
    if resource.type in IAM_POLICY_DOCUMENTS:
        documents.append(("policy", resource.props.get("policy")))
    elif resource.type == IAM_ROLE:
        inline = resource.props.get("inlinePolicies")
        for index, item in enumerate(inline if isinstance(inline, list) else []):
            if isinstance(item, Mapping):
                documents.append((f"inlinePolicies[{index}] '{item.get('name')}'", item.get("policy")))
        managed = resource.props.get("managedPolicyArns")
        for arn in managed if isinstance(managed, list) else []:
            if isinstance(arn, str) and arn.endswith(ADMINISTRATOR_ACCESS):
                documents.append(("managedPolicyArns", {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    elif resource.type in IAM_ATTACHMENTS:
        arn = resource.props.get("policyArn")
        if isinstance(arn, str) and arn.endswith(ADMINISTRATOR_ACCESS):
            return [Problem(f"attaches {arn}: every action on every resource", fix)]
        return []
    problems = []
    for where, document in documents:
        for index in admin_statements(document):
            problems.append(Problem(f"{where} statement {index} allows action '*' on resource '*': full control of the account", fix))
    return problems


# --------------------------------------------------------------------------------------------
# Security groups
# --------------------------------------------------------------------------------------------


def _open_port_problem(where: str, cidrs: list[Any], protocol: Any, low: Any, high: Any) -> Problem | None:
    world = [c for c in cidrs if _world(c)]
    if not world or not _known(protocol) or not _known(low) or not _known(high):
        return None
    proto = str(protocol).lower()
    start, end = number(low), number(high)
    if proto in _WORLD_PROTOCOLS and start is not None and start == end and int(start) in WORLD_PORTS:
        return None
    if proto in ("-1", "all"):
        ports = "all protocols and ports"
    elif start is None:
        ports = f"{proto} (every port)"
    else:
        ports = f"{proto} port {int(start)}" if start == end else f"{proto} ports {int(start)}-{int(end or start)}"
    return Problem(
        f"{where} opens {ports} to {', '.join(world)}",
        "allow only tcp 80/443 from anywhere; admit other ports from the VPC or named security groups",
    )


def check_security_group_ingress(resource: Resource, stack: Stack) -> list[Problem]:
    props = resource.props
    found: list[Problem | None] = []
    if resource.type in (SECURITY_GROUP, DEFAULT_SECURITY_GROUP):
        ingress = props.get("ingress")
        for index, rule in enumerate(ingress if isinstance(ingress, list) else []):
            if isinstance(rule, Mapping):
                cidrs = _values(rule.get("cidrBlocks") or []) + _values(rule.get("ipv6CidrBlocks") or [])
                found.append(_open_port_problem(f"ingress[{index}]", cidrs, rule.get("protocol"), rule.get("fromPort"), rule.get("toPort")))
    elif resource.type == SECURITY_GROUP_RULE and props.get("type") == "ingress":
        cidrs = _values(props.get("cidrBlocks") or []) + _values(props.get("ipv6CidrBlocks") or [])
        found.append(_open_port_problem("the rule", cidrs, props.get("protocol"), props.get("fromPort"), props.get("toPort")))
    elif resource.type == SECURITY_GROUP_INGRESS_RULE:
        cidrs = [props.get("cidrIpv4"), props.get("cidrIpv6")]
        protocol = props.get("ipProtocol")
        found.append(_open_port_problem("the rule", cidrs, protocol, props.get("fromPort"), props.get("toPort")))
    return [p for p in found if p is not None]
