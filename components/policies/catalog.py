"""The policies: every rule with its name, enforcement, description and what the engine cannot check."""

from __future__ import annotations

from mlplane.policies.model import ADVISORY, MANDATORY, Policy, TEAM_LABEL
from mlplane.policies.baseline import (
    check_no_default_namespace,
    check_pod_security_admission,
    check_restricted_security_context,
    check_secrets_by_reference,
    check_service_account_token,
)
from mlplane.policies.platform_rules import (
    check_health_probes,
    check_pinned_images,
    check_read_only_root,
    check_requests_and_limits,
    check_stateful_protection,
)
from mlplane.policies.aws_rules import (
    check_ecr_immutable_tags,
    check_ecr_scan_on_push,
    check_eks_audit_logs,
    check_eks_endpoint,
    check_eks_secrets_encryption,
    check_iam_wildcards,
    check_rds_backups,
    check_rds_deletion_protection,
    check_rds_encrypted,
    check_rds_private,
    check_s3_encryption,
    check_s3_public_access_block,
    check_s3_public_grants,
    check_security_group_ingress,
    MIN_BACKUP_DAYS,
)
from mlplane.policies.stack_rules import (
    _no_stack_config,
    _throwaway,
    CANARY_MAX_ERROR_RATE,
    CANARY_MAX_WEIGHT,
    CANARY_MIN_INTERVAL_SECONDS,
    check_canary_analysis,
    check_disruption_budgets,
    check_plain_secret_config,
    check_team_isolation,
)


POLICIES: tuple[Policy, ...] = (
    Policy(
        name="pod-security-admission",
        description="Namespaces enforce Pod Security 'restricted' at a pinned version.",
        rationale=(
            "The admission controller is the last line of defence: it rejects privileged pods even "
            "when a manifest or a Helm chart forgets a security context. The enforce version is "
            "pinned so a cluster upgrade does not change what 'restricted' means under running "
            "workloads. A component that truly needs 'baseline' says why on the namespace; team "
            "namespaces never get less than 'restricted'."
        ),
        enforcement=MANDATORY,
        applies_to="Namespace",
        remediation="Create namespaces with kube.namespace(); give reason=... for anything but 'restricted'.",
        resource_check=check_pod_security_admission,
    ),
    Policy(
        name="restricted-security-context",
        description="Pods run as a fixed non-root user without privilege escalation, capabilities or host namespaces.",
        rationale=(
            "The Pod Security Standards 'restricted' profile: runAsNonRoot with a fixed UID, "
            "allowPrivilegeEscalation false, all capabilities dropped, the RuntimeDefault seccomp "
            "profile, no privileged containers, no host network, PID or IPC namespace and no "
            "hostPath volumes. Checked on the object so a violation shows in review, not as a pod "
            "that admission rejects after `pulumi up`."
        ),
        enforcement=MANDATORY,
        applies_to="Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob",
        remediation="Use kube.container() and kube.Workload; document a real exception with kube.checkov_skips().",
        resource_check=check_restricted_security_context,
        checkov=("CKV_K8S_16", "CKV_K8S_17", "CKV_K8S_18", "CKV_K8S_19", "CKV_K8S_20", "CKV_K8S_23", "CKV_K8S_25", "CKV_K8S_31", "CKV_K8S_37", "CKV_K8S_40"),
    ),
    Policy(
        name="service-account-token",
        description="Pods do not mount a service account token unless they talk to the Kubernetes API.",
        rationale=(
            "A mounted token lets anyone who gets code execution in the pod call the API as its "
            "service account. Pods that need the API get their own ServiceAccount bound to a "
            "namespaced Role; every other pod sets automountServiceAccountToken: false."
        ),
        enforcement=MANDATORY,
        applies_to="Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob",
        remediation="kube.Workload sets automountServiceAccountToken false; set service_account and automount_token for API clients.",
        resource_check=check_service_account_token,
        checkov=("CKV_K8S_38",),
    ),
    Policy(
        name="secrets-by-reference",
        description="Secrets reach pods only through Secret references, and Secret values are Pulumi secrets.",
        rationale=(
            "An env literal puts the secret in the Deployment object, readable by anyone who can "
            "read workloads, and in every `kubectl describe`. A Secret value written as a literal "
            "in the program is in git. Generated or configured secrets stay Pulumi secrets all the "
            "way, so the state file encrypts them."
        ),
        enforcement=MANDATORY,
        applies_to="workloads (env values with secret-looking names, Pulumi secrets in the pod template); Secret (data, stringData)",
        remediation="Use kube.secret_env() for env vars; generate values with RandomPassword or read them with Config.require_secret.",
        resource_check=check_secrets_by_reference,
        engine_note=(
            "The engine does not tell policy packs which inputs are secrets: under `pulumi preview` "
            "only env literals with secret-looking names are checked; `mlplane plan` also finds "
            "Pulumi secrets inlined into pod templates and Secret values that are not secrets."
        ),
    ),
    Policy(
        name="no-default-namespace",
        description="Namespaced objects are never created in the 'default' namespace.",
        rationale=(
            "Every component owns a namespace (`<platform>-<component>`) with its Pod Security "
            "labels, network policies and quotas; an object in 'default' escapes all of them."
        ),
        enforcement=MANDATORY,
        applies_to="every namespaced Kubernetes object",
        remediation="Set metadata.namespace to the component's namespace.",
        resource_check=check_no_default_namespace,
        checkov=("CKV_K8S_21",),
    ),
    Policy(
        name="pinned-images",
        description="Container images and Helm charts are pinned to exact versions.",
        rationale=(
            "A floating tag ('latest', or none) or a chart version range makes the same config "
            "deploy different software on different days, so a preview no longer says what `up` "
            "will run and a rollback does not roll back. Versions live in versions.py."
        ),
        enforcement=MANDATORY,
        applies_to="workload containers; Helm charts (chart version, image references in values)",
        remediation="Use platform.image(key) and versions.CHARTS.",
        resource_check=check_pinned_images,
        checkov=("CKV_K8S_14",),
    ),
    Policy(
        name="requests-and-limits",
        description="Every container sets CPU and memory requests and limits.",
        rationale=(
            "Requests let the scheduler place pods and keep the platform's footprint predictable "
            "(`mlplane footprint`); limits stop one workload from starving the others on a laptop "
            "or a shared cluster."
        ),
        enforcement=MANDATORY,
        applies_to="containers and init containers of workloads",
        remediation="Pass the component's `resources` config to kube.container().",
        resource_check=check_requests_and_limits,
        checkov=("CKV_K8S_10", "CKV_K8S_11", "CKV_K8S_12", "CKV_K8S_13"),
    ),
    Policy(
        name="stateful-protection",
        description="Stateful resources are protected and retained on delete outside throwaway stacks.",
        rationale=(
            "Volumes, databases, buckets, the registry volume and the local cluster hold data a "
            "delete cannot bring back. Outside a stack marked `lifecycle.throwaway`, `protect` "
            "stops `pulumi destroy` and accidental replacements, and `retain_on_delete` keeps the "
            "data if the resource leaves the program."
        ),
        enforcement=MANDATORY,
        applies_to=(
            "PersistentVolumeClaim, PersistentVolume, StatefulSet with volumeClaimTemplates, Docker "
            "volumes, the kind cluster; for the AWS target: S3 buckets, RDS, ECR repositories, EKS clusters"
        ),
        remediation="Create stateful children with platform.stateful(self).",
        resource_check=check_stateful_protection,
        not_applicable=_throwaway,
        engine_note="The engine does not pass retain_on_delete to policy packs: under `pulumi preview` only protect is checked.",
    ),
    Policy(
        name="team-namespace-isolation",
        description="Team namespaces come with default-deny networking, a quota and limits, and no cluster-wide grants.",
        rationale=(
            "Tenancy as Kubeflow profiles and deployKF do it: a namespace labelled "
            f"'{TEAM_LABEL}' starts closed (a NetworkPolicy denying all ingress and egress, "
            "explicit allows added next to it), is capped by a ResourceQuota and a LimitRange, and "
            "its people and service accounts get namespaced Roles only: a ClusterRoleBinding to a "
            "team subject would reach every other team (CIS 5.3.2)."
        ),
        enforcement=MANDATORY,
        applies_to=f"the whole stack: Namespaces labelled {TEAM_LABEL}, NetworkPolicy, ResourceQuota, LimitRange, ClusterRoleBinding",
        remediation="Create team environments with mlplane's team component; bind team subjects with RoleBindings.",
        stack_check=check_team_isolation,
    ),
    Policy(
        name="no-plain-secret-config",
        description="Stack config keys that look secret are stored encrypted (`secure:`).",
        rationale=(
            "A password, token or key set without --secret sits in plain text in "
            "Pulumi.<stack>.yaml, which is committed. mlplane itself names secrets through "
            "`*_key` fields and refuses plain values for them; this catches every other key, "
            "including other providers' (e.g. a cloud access key)."
        ),
        enforcement=MANDATORY,
        applies_to="top-level stack config keys whose name contains password, token, secret, key, private or credential",
        remediation="pulumi config set --secret <key> <value>, then rotate the exposed value.",
        stack_check=check_plain_secret_config,
        not_applicable=_no_stack_config,
        engine_note=(
            "The engine passes decrypted config to policy packs without saying which keys were "
            "secure, so the pack reads `Pulumi.<stack>.yaml` of the project (found from the "
            "working directory, matched by project name) and is not applicable when it cannot find it."
        ),
    ),
    Policy(
        name="health-probes",
        description="Long-running containers have liveness and readiness probes.",
        rationale=(
            "Without a readiness probe a pod receives traffic before it can serve; without a "
            "liveness probe a hung process is never restarted. Advisory: a few upstream programs "
            "have no health endpoint, and the exception is documented on the object."
        ),
        enforcement=ADVISORY,
        applies_to="containers of Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet (not Jobs)",
        remediation="Pass liveness= and readiness= probes to kube.container().",
        resource_check=check_health_probes,
        checkov=("CKV_K8S_8", "CKV_K8S_9"),
    ),
    Policy(
        name="read-only-root-filesystem",
        description="Containers run with a read-only root filesystem.",
        rationale=(
            "A read-only root stops an intruder from dropping tools into the image and makes the "
            "writable paths explicit (emptyDirs). Advisory because the baseline asks for it "
            "'where the program allows it'; exceptions are documented on the object."
        ),
        enforcement=ADVISORY,
        applies_to="containers and init containers of workloads",
        remediation="kube.container() sets it; mount an emptyDir on each path the program writes.",
        resource_check=check_read_only_root,
        checkov=("CKV_K8S_22",),
    ),
    Policy(
        name="progressive-delivery-analysis",
        description=(
            f"Progressive canaries are checked at least every {CANARY_MIN_INTERVAL_SECONDS}s, reach at most "
            f"{CANARY_MAX_WEIGHT}% of the requests and roll back above a {CANARY_MAX_ERROR_RATE:.0%} error rate."
        ),
        rationale=(
            "Flagger promotes a canary step by step and rolls it back when a check fails. A canary "
            "without metrics or with skipAnalysis is promoted blindly; a check window under "
            f"{CANARY_MIN_INTERVAL_SECONDS}s holds too few Prometheus samples for a rate; a step above "
            f"{CANARY_MAX_WEIGHT}% sends most users to a version not yet judged; an error-rate limit above "
            f"{CANARY_MAX_ERROR_RATE:.0%} accepts a version that fails most requests."
        ),
        enforcement=MANDATORY,
        applies_to="Canary (flagger.app): analysis metrics, stepWeights, stepWeight, maxWeight, interval, skipAnalysis",
        remediation="Set serving.models[].canary (mode 'progressive') steps, interval and thresholds within these limits.",
        resource_check=check_canary_analysis,
    ),
    Policy(
        name="disruption-budgets",
        description="Replicated workloads have a PodDisruptionBudget that still allows evictions.",
        rationale=(
            "With two or more replicas (or an HPA minimum of two or more), a node drain should "
            "keep some pods serving; a budget with minAvailable equal to the replicas blocks "
            "drains forever. Advisory: single-replica workloads on a laptop are expected."
        ),
        enforcement=ADVISORY,
        applies_to="the whole stack: Deployment, StatefulSet, HorizontalPodAutoscaler, PodDisruptionBudget",
        remediation="Add a policy/v1 PodDisruptionBudget with minAvailable below the replica count.",
        stack_check=check_disruption_budgets,
    ),
    # AWS (target 'aws'): pulumi-aws 7.x resources, read from their inputs (components/policies/aws_rules.py).
    Policy(
        name="aws-s3-block-public-access",
        description="Every S3 bucket has a public-access block with all four settings on.",
        rationale=(
            "The block is what stops a later bucket policy or ACL from making the bucket public, by "
            "mistake or by a compromised role (AWS FSBP S3.1/S3.8). A bucket is covered by its own "
            "`BucketPublicAccessBlock` (matched through its `bucket` input) or by an account-wide "
            "`AccountPublicAccessBlock` in the same stack with all four settings on."
        ),
        enforcement=MANDATORY,
        applies_to="the whole stack: aws:s3/bucket:Bucket (and BucketV2), aws:s3/bucketPublicAccessBlock, aws:s3/accountPublicAccessBlock",
        remediation="Create buckets with mlplane's AWS object storage; it adds the block with block_public_acls, block_public_policy, ignore_public_acls and restrict_public_buckets.",
        stack_check=check_s3_public_access_block,
    ),
    Policy(
        name="aws-s3-no-public-grants",
        description="No bucket policy or ACL grants access to everyone.",
        rationale=(
            "A policy statement allowing principal `*` (without a condition that ties it to a VPC "
            "endpoint, an account or an organisation, the keys S3 itself accepts as non-public) or "
            "an ACL granting AllUsers or AuthenticatedUsers publishes the bucket. A TLS-only Deny "
            "to `*` is not a grant and passes."
        ),
        enforcement=MANDATORY,
        applies_to="aws:s3/bucketPolicy:BucketPolicy, aws:s3/bucketAcl (and V2), the inline policy, acl and grants of aws:s3/bucket:Bucket",
        remediation="Grant named IAM roles (the object store contract's grant); keep ObjectOwnership BucketOwnerEnforced so ACLs are off.",
        resource_check=check_s3_public_grants,
    ),
    Policy(
        name="aws-s3-encryption",
        description="Every S3 bucket encrypts with a KMS key (SSE-KMS).",
        rationale=(
            "S3 encrypts new objects with an AWS-owned key (SSE-S3) when nothing is configured; with "
            "the platform's KMS key, reading an object also needs kms:Decrypt on the key, every use "
            "is in CloudTrail and the key can be disabled. The bucket's "
            "`BucketServerSideEncryptionConfiguration` is matched through its `bucket` input."
        ),
        enforcement=MANDATORY,
        applies_to="the whole stack: aws:s3/bucket:Bucket (and BucketV2), aws:s3/bucketServerSideEncryptionConfiguration (and V2)",
        remediation="Add a BucketServerSideEncryptionConfiguration with sse_algorithm 'aws:kms', the platform's key and bucket_key_enabled.",
        stack_check=check_s3_encryption,
    ),
    Policy(
        name="aws-rds-encrypted",
        description="RDS storage is encrypted.",
        rationale=(
            "Unencrypted storage leaves the database files, automated backups, snapshots and read "
            "replicas readable to whoever gets the volumes or a shared snapshot (AWS FSBP RDS.3). "
            "Encryption can only be chosen at creation."
        ),
        enforcement=MANDATORY,
        applies_to="aws:rds/instance:Instance, aws:rds/cluster:Cluster (not read replicas: they inherit it)",
        remediation="Set storage_encrypted=True with kms_key_id (mlplane's AWS database does).",
        resource_check=check_rds_encrypted,
    ),
    Policy(
        name="aws-rds-not-public",
        description="RDS databases are not publicly accessible.",
        rationale=(
            "A publicly accessible instance gets a public DNS name and address; one security group "
            "rule then exposes PostgreSQL to the internet (AWS FSBP RDS.2). The platform reaches it "
            "from the cluster's private subnets."
        ),
        enforcement=MANDATORY,
        applies_to="aws:rds/instance:Instance, aws:rds/clusterInstance:ClusterInstance",
        remediation="Set publicly_accessible=False and keep the database in private subnets.",
        resource_check=check_rds_private,
    ),
    Policy(
        name="aws-rds-deletion-protection",
        description="RDS databases have deletion protection and take a final snapshot, outside throwaway stacks.",
        rationale=(
            "`protect` guards against `pulumi destroy`; deletion protection also guards against the "
            "console, the CLI and a replacement, and the final snapshot keeps the data if the "
            "database is deleted anyway (AWS FSBP RDS.8)."
        ),
        enforcement=MANDATORY,
        applies_to="aws:rds/instance:Instance, aws:rds/cluster:Cluster",
        remediation="Set deletion_protection=True, skip_final_snapshot=False and a final_snapshot_identifier.",
        resource_check=check_rds_deletion_protection,
        not_applicable=_throwaway,
    ),
    Policy(
        name="aws-rds-backups",
        description=f"RDS keeps automated backups for at least {MIN_BACKUP_DAYS} days.",
        rationale=(
            "Automated backups give point-in-time recovery; RDS keeps 1 day when the retention is "
            f"not set. {MIN_BACKUP_DAYS} days cover a problem found after a weekend (AWS FSBP RDS.11)."
        ),
        enforcement=MANDATORY,
        applies_to="aws:rds/instance:Instance, aws:rds/cluster:Cluster (not read replicas)",
        remediation=f"Set backup_retention_period to {MIN_BACKUP_DAYS}-35 (aws.database.backup_retention_days).",
        resource_check=check_rds_backups,
    ),
    Policy(
        name="aws-eks-private-endpoint",
        description="The EKS API endpoint is private, or public only to listed CIDR blocks.",
        rationale=(
            "EKS makes the API endpoint public and open to 0.0.0.0/0 unless told otherwise: every "
            "credential leak or API server vulnerability is then reachable from the internet "
            "(AWS FSBP EKS.1). A public endpoint is allowed only with an allow-list that is not the "
            "whole internet."
        ),
        enforcement=MANDATORY,
        applies_to="aws:eks/cluster:Cluster (vpcConfig.endpointPublicAccess, vpcConfig.publicAccessCidrs)",
        remediation="Leave aws.eks.public_access_cidrs empty (private endpoint) or list your offices' or VPN's CIDR blocks.",
        resource_check=check_eks_endpoint,
    ),
    Policy(
        name="aws-eks-secrets-encryption",
        description="EKS encrypts Kubernetes Secrets with a KMS key.",
        rationale=(
            "Envelope encryption of Secrets in etcd with a customer-managed key (AWS FSBP EKS.3): "
            "the key's policy decides who can decrypt, and every use is in CloudTrail."
        ),
        enforcement=MANDATORY,
        applies_to="aws:eks/cluster:Cluster (encryptionConfig)",
        remediation="Set encryption_config with resources ['secrets'] and the platform's KMS key ARN.",
        resource_check=check_eks_secrets_encryption,
    ),
    Policy(
        name="aws-eks-audit-logs",
        description="EKS sends the API server's audit log to CloudWatch.",
        rationale=(
            "The audit log records who did what through the API: without it an incident cannot be "
            "reconstructed (AWS FSBP EKS.8, CIS EKS 2.1.1)."
        ),
        enforcement=MANDATORY,
        applies_to="aws:eks/cluster:Cluster (enabledClusterLogTypes)",
        remediation="Include 'audit' (with 'api' and 'authenticator') in enabled_cluster_log_types.",
        resource_check=check_eks_audit_logs,
    ),
    Policy(
        name="aws-ecr-immutable-tags",
        description="ECR repositories have immutable tags.",
        rationale=(
            "With mutable tags a push moves `v1.2.0` to another image: what a model server runs "
            "changes without a deployment, and a rollback to the tag does not roll back "
            "(AWS FSBP ECR.2). Exclusion filters (IMMUTABLE_WITH_EXCLUSION) reopen that hole and fail too."
        ),
        enforcement=MANDATORY,
        applies_to="aws:ecr/repository:Repository (imageTagMutability)",
        remediation="Set image_tag_mutability='IMMUTABLE' and push a new tag per build.",
        resource_check=check_ecr_immutable_tags,
    ),
    Policy(
        name="aws-ecr-scan-on-push",
        description="ECR repositories scan images on push.",
        rationale="Every pushed image is checked for known vulnerabilities before it is deployed (AWS FSBP ECR.1).",
        enforcement=MANDATORY,
        applies_to="aws:ecr/repository:Repository (imageScanningConfiguration.scanOnPush)",
        remediation="Set image_scanning_configuration={'scan_on_push': True}.",
        resource_check=check_ecr_scan_on_push,
        engine_note="A registry-level scanning configuration (enhanced scanning) is not looked at: the repository must say it.",
    ),
    Policy(
        name="aws-iam-no-wildcard-admin",
        description="No IAM policy allows every action on every resource.",
        rationale=(
            "A statement with Action `*` and Resource `*`, or the AdministratorAccess managed "
            "policy, gives full control of the account to whoever assumes the role: one leaked "
            "workload token becomes an account takeover (AWS FSBP IAM.1, IAM.21). Workload roles "
            "get the actions they call on the ARNs they use."
        ),
        enforcement=MANDATORY,
        applies_to=(
            "aws:iam/policy:Policy, aws:iam/rolePolicy, userPolicy, groupPolicy (policy), aws:iam/role:Role "
            "(inlinePolicies, managedPolicyArns), aws:iam/*PolicyAttachment (policyArn)"
        ),
        remediation="Scope the statement to the actions and ARNs needed (the object store contract's grant does).",
        resource_check=check_iam_wildcards,
        engine_note="A policy document computed from other resources is unknown during a preview and checked at `up`.",
    ),
    Policy(
        name="aws-security-group-open-ingress",
        description="Security groups open only HTTP and HTTPS (80, 443) to the whole internet.",
        rationale=(
            "An ingress rule from 0.0.0.0/0 or ::/0 to SSH, a database or every port is scanned and "
            "attacked within minutes (AWS FSBP EC2.18, EC2.19). Internet-facing traffic enters "
            "through the load balancer on 80/443; everything else is admitted from the VPC or from "
            "named security groups."
        ),
        enforcement=MANDATORY,
        applies_to=(
            "aws:ec2/securityGroup:SecurityGroup and defaultSecurityGroup (ingress), aws:ec2/securityGroupRule:SecurityGroupRule (type ingress), "
            "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
        ),
        remediation="Admit other ports from the VPC CIDR or a source security group; publish services through the load balancer.",
        resource_check=check_security_group_ingress,
    ),
)


def policy(name: str) -> Policy:
    """The policy with this name."""
    for item in POLICIES:
        if item.name == name:
            return item
    raise KeyError(name)
