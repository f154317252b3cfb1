"""Entry point of the mlplane policy pack (``pulumi preview --policy-pack components/policypack``).

Constructing a PolicyPack starts pulumi-policy's gRPC server and blocks, so it happens here only;
every rule and adapter lives in ``mlplane.policies`` and is unit-tested there.
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from mlplane.policies import pack_policies

PolicyPack(
    name="mlplane",
    policies=pack_policies(),
    enforcement_level=EnforcementLevel.MANDATORY,
    description="mlplane guardrails: the security baseline and platform rules of components/policies/",
)
