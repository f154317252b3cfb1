"""The platform's guardrails, defined once and run in two places.

Every rule is a plain function over a neutral view of a resource (:class:`Resource`: type token,
name, URN, inputs, ``protect``) and of the stack (:class:`Stack`: name, throwaway or not, which
config keys are secure). It returns :class:`Problem` s, each with the fix.

- ``mlplane plan`` (``components/tooling/plan.py``) builds the views from an offline render
  (:class:`mlplane.tooling.render.Recorded`), where everything is known: inputs, ``protect``,
  ``retain_on_delete`` and which inputs are Pulumi secrets.
- The Pulumi policy pack (``components/policypack``, ``pulumi preview --policy-pack``) builds
  them from pulumi-policy's ``ResourceValidationArgs`` and ``StackValidationArgs``
  (:func:`pack_policies`). The engine does not tell a policy pack which inputs are secrets nor
  whether ``retain_on_delete`` is set, and values computed by other resources may be unknown
  during a preview: those parts of a rule are skipped there (each policy's ``engine_note``).

Deliberate exceptions use the mechanism checkov already honours: an inline
``checkov.io/skip<N>: <CHECK>=<reason>`` annotation on the object (``kube.checkov_skips``). A
rule part that corresponds to a checkov check is not reported on an object that skips it.

``reference_markdown()`` renders ``docs/policies.md`` from the definitions below.

The package is split by rule area: ``model`` (the views and results), ``objects`` (reading
Kubernetes objects), ``baseline`` (the security baseline), ``platform_rules``, ``stack_rules``,
``aws_rules`` (the AWS target's resources), ``catalog`` (every policy with its metadata), ``run`` (``mlplane plan``), ``pack`` (the policy
pack adapters) and ``reference`` (docs/policies.md). Everything is re-exported here.
"""

from __future__ import annotations

from mlplane.policies.model import (
    ADVISORY,
    Enforcement,
    MANDATORY,
    POD_SECURITY_REASON,
    Policy,
    Problem,
    PSS,
    Resource,
    ResourceCheck,
    SKIP_PREFIXES,
    Stack,
    StackCheck,
    TEAM_LABEL,
    UNKNOWN,
    Unknown,
    Violation,
)
from mlplane.policies.objects import (
    ALLOWED_CAPABILITIES,
    CLUSTER_SCOPED,
    containers,
    looks_secret,
    number,
    pinned_image,
    pod_spec,
    pod_spec_path,
    POD_SPEC_PATHS,
    RUN_TO_COMPLETION,
    words,
)
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
    CLUSTER_COMPONENT,
    is_stateful,
    STATEFUL_TYPES,
)
from mlplane.policies.stack_rules import (
    CANARY_MAX_ERROR_RATE,
    CANARY_MAX_WEIGHT,
    CANARY_MIN_INTERVAL_SECONDS,
    check_canary_analysis,
    check_disruption_budgets,
    check_plain_secret_config,
    check_team_isolation,
    go_duration_seconds,
)
from mlplane.policies.catalog import (
    POLICIES,
    policy,
)
from mlplane.policies.run import (
    config_secure_keys,
    evaluate,
    Evaluation,
    throwaway_from_config,
)
from mlplane.policies.pack import (
    current_stack,
    pack_policies,
    read_stack_config_file,
    resource_from_pack,
    resource_validation,
    stack_from_environment,
    stack_validation,
)
from mlplane.policies.reference import (
    reference_markdown,
)

__all__ = [
    "ADVISORY",
    "Enforcement",
    "MANDATORY",
    "POD_SECURITY_REASON",
    "Policy",
    "Problem",
    "PSS",
    "Resource",
    "ResourceCheck",
    "SKIP_PREFIXES",
    "Stack",
    "StackCheck",
    "TEAM_LABEL",
    "UNKNOWN",
    "Unknown",
    "Violation",
    "ALLOWED_CAPABILITIES",
    "CLUSTER_SCOPED",
    "containers",
    "looks_secret",
    "number",
    "pinned_image",
    "pod_spec",
    "pod_spec_path",
    "POD_SPEC_PATHS",
    "RUN_TO_COMPLETION",
    "words",
    "check_no_default_namespace",
    "check_pod_security_admission",
    "check_restricted_security_context",
    "check_secrets_by_reference",
    "check_service_account_token",
    "check_health_probes",
    "check_pinned_images",
    "check_read_only_root",
    "check_requests_and_limits",
    "check_stateful_protection",
    "CLUSTER_COMPONENT",
    "is_stateful",
    "STATEFUL_TYPES",
    "CANARY_MAX_ERROR_RATE",
    "CANARY_MAX_WEIGHT",
    "CANARY_MIN_INTERVAL_SECONDS",
    "check_canary_analysis",
    "check_disruption_budgets",
    "check_plain_secret_config",
    "check_team_isolation",
    "go_duration_seconds",
    "POLICIES",
    "policy",
    "config_secure_keys",
    "evaluate",
    "Evaluation",
    "throwaway_from_config",
    "current_stack",
    "pack_policies",
    "read_stack_config_file",
    "resource_from_pack",
    "resource_validation",
    "stack_from_environment",
    "stack_validation",
    "reference_markdown",
]
