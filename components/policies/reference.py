"""The reference of the policies (docs/policies.md), rendered from their definitions."""

from __future__ import annotations

from mlplane.policies.catalog import POLICIES


def reference_markdown() -> str:
    """docs/policies.md: every policy with its rationale, enforcement and coverage."""
    lines = [
        "# Policy reference",
        "",
        "<!-- Generated from components/policies/ by `mlplane docs`: do not edit by hand. -->",
        "",
        "mlplane's guardrails are defined once in `components/policies/` and run in two places:",
        "`mlplane plan` checks the offline render (no credentials, no cluster, no Pulumi CLI), and",
        "the policy pack `components/policypack` runs the same rules under the Pulumi engine",
        "(`pulumi preview --policy-pack components/policypack`). See [previewing changes in CI](ci-previews.md).",
        "",
        "The `aws-*` policies check the pulumi-aws resources of the AWS target (`target: aws`) by their",
        "type tokens and inputs; AWS settings a bucket gets from separate resources (its public-access",
        "block, its encryption configuration) are matched to it through the `bucket` input. For AWS",
        "stacks `mlplane plan` also estimates the monthly cost ([cost](cost.md)).",
        "",
        "- **mandatory** violations fail `mlplane plan` (exit 1) and block `pulumi preview`/`up`;",
        "- **advisory** violations are reported and do not fail.",
        "",
        "A deliberate exception to a rule part that matches a checkov check is documented on the",
        "object itself, the way checkov reads it: `kube.checkov_skips((\"CKV_K8S_22\", \"reason\"))`",
        "adds the annotation `checkov.io/skip1: CKV_K8S_22=reason`. Both checkov and these policies",
        "honour it, so there is one exception mechanism and every exception is visible in review.",
        "",
        "| policy | enforcement | scope | applies to |",
        "|---|---|---|---|",
    ]
    for item in POLICIES:
        lines.append(f"| [`{item.name}`](#{item.name}) | {item.enforcement} | {item.scope} | {item.applies_to} |")
    for item in POLICIES:
        lines += [
            "",
            f"## {item.name}",
            "",
            f"**{item.description}**",
            "",
            f"- Enforcement: **{item.enforcement}**",
            f"- Scope: {item.scope} ({'each resource' if item.scope == 'resource' else 'all resources of the stack together'})",
            f"- Applies to: {item.applies_to}",
        ]
        if item.checkov:
            lines.append(f"- Inline exceptions honoured: {', '.join(f'`{c}`' for c in item.checkov)}")
        lines += ["", item.rationale, "", f"Fix: {item.remediation}"]
        if item.engine_note:
            lines += ["", f"Under the engine: {item.engine_note}"]
    lines += [
        "",
        "## What the policy pack sees",
        "",
        "The pack adapts pulumi-policy's `ResourceValidationArgs` (type, inputs, name, URN,",
        "`opts.protect`) and `StackValidationArgs` to the same view `mlplane plan` builds from the",
        "render. The stack name, the throwaway flag (`lifecycle.throwaway` of the `mlplane:`",
        "config objects) and the config come from the `PULUMI_STACK`, `PULUMI_PROJECT` and",
        "`PULUMI_CONFIG` variables the engine sets for policy packs. During a preview, values",
        "computed by other resources can be unknown: the parts of a rule that need them are skipped",
        "instead of guessed. Helm charts are one resource each (`kubernetes:helm.sh/v4:Chart`): their",
        "chart version and the images in their values are checked, not the objects the chart renders.",
        "",
    ]
    return "\n".join(lines)
