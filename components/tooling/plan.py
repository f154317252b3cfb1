"""``mlplane plan``: what a change would deploy and whether it breaks a guardrail, offline.

It runs the real stack program against recording mocks (:func:`mlplane.tooling.offline.offline_run`),
validates every rendered object strictly against each supported Kubernetes minor, runs the
policies of :mod:`mlplane.policies` (the ones the policy pack runs under the engine) and
measures the footprint. The report is Markdown fit for a pull-request comment, or JSON.

No cloud credentials, cluster or Pulumi CLI are needed, so it also runs for pull requests from
forks. Team stacks are planned against the offline render of their platform stack. Exit codes: 0
clean (advisory findings allowed), 1 on a mandatory policy violation or a schema finding, 2 on
invalid input (raised before anything is rendered or written).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlplane.tooling import checks, cost, footprint, progress
from mlplane import policies
from mlplane.config import versions
from mlplane.config import PlatformConfig
from mlplane.config.keys import TEAM_CONFIG_KEY
from mlplane.tooling.offline import offline_run, offline_team_run
from mlplane.tooling.render import Capture, Recorded
from mlplane.config.stack_files import Source, load_platform, read_stack_config
from mlplane.config.team_stacks import checked_stack

PLATFORM_TYPE = "mlplane:index:Platform"
#: Longest violation table in a report; the rest is counted (pull-request comments are capped).
MAX_VIOLATION_ROWS = 100
#: Hidden marker CI uses to find and update its own comment.
MARKER = "<!-- mlplane-plan:{stack} -->"
MIB = 2**20


def resource_view(record: Recorded) -> policies.Resource:
    """The policies' view of a recorded registration (everything is known offline)."""
    return policies.Resource(
        type=record.type,
        name=record.name,
        urn=record.urn,
        props=record.inputs,
        protect=record.protect,
        retain_on_delete=record.retain_on_delete,
        secret_paths=frozenset(record.secret_paths),
        property_dependencies={key: tuple(urns) for key, urns in record.property_dependencies.items()},
    )


def stack_view(source: Source, platform: PlatformConfig) -> policies.Stack:
    """The policies' view of the stack: its name, throwaway flag and which config keys are secure."""
    secure = policies.config_secure_keys(source.stack_config) if source.secure_keys is not None else None
    return policies.Stack(name=source.stack, throwaway=platform.lifecycle.throwaway, config_secure=secure)


@dataclass
class ComponentGroup:
    """The resources one component created (its nested components included)."""

    type: str
    name: str
    resources: list[Recorded] = field(default_factory=list)

    @property
    def title(self) -> str:
        return self.type.rsplit(":", 1)[-1]


def group_by_component(capture: Capture) -> list[ComponentGroup]:
    """Resources under each top-level component of the platform, sorted for stable reports."""
    by_urn = {r.urn: r for r in capture.resources}
    groups: dict[str, ComponentGroup] = {}

    def owner(record: Recorded) -> Recorded | None:
        found = None
        current = by_urn.get(record.parent or "")
        while current is not None and current.type != PLATFORM_TYPE:
            if current.type.startswith("mlplane:"):
                found = current
            current = by_urn.get(current.parent or "")
        return found

    for record in capture.resources:
        top = owner(record)
        if top is None:
            if record.type.startswith("mlplane:"):
                continue
            key, group_type, group_name = "", PLATFORM_TYPE, "(platform)"
        else:
            key, group_type, group_name = top.urn, top.type, top.name
        groups.setdefault(key, ComponentGroup(group_type, group_name)).resources.append(record)
    for group in groups.values():
        group.resources.sort(key=lambda r: (r.type, r.name))
    return sorted(groups.values(), key=lambda g: (g.title, g.name))


@dataclass
class Plan:
    """Everything ``mlplane plan`` found for one stack."""

    stack: str
    source: str
    capture: Capture
    schema_versions: tuple[str, ...]
    schema_findings: list[checks.Finding]
    evaluation: policies.Evaluation
    usage: dict[str, footprint.Usage]
    #: The estimated monthly cost; None for a stack without cloud resources (the local target).
    estimate: cost.Estimate | None = None

    @property
    def failed(self) -> bool:
        return bool(self.evaluation.mandatory or self.schema_findings)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    @property
    def total(self) -> footprint.Usage:
        return footprint.total(self.usage)

    def counts(self) -> dict[str, int]:
        resources = self.capture.resources
        return {
            "resources": len(resources),
            "kubernetes_objects": len(self.capture.kubernetes_objects()),
            "helm_charts": sum(1 for r in resources if r.type.startswith("kubernetes:helm.sh/")),
            "protected": sum(1 for r in resources if r.protect),
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "source": self.source,
            "result": "fail" if self.failed else "pass",
            "exit_code": self.exit_code,
            **self.counts(),
            "schema": {
                "kubernetes_versions": list(self.schema_versions),
                "findings": [{"check": f.check, "object": f.object, "message": f.message} for f in self.schema_findings],
            },
            "policies": [
                {
                    "name": item.name,
                    "enforcement": item.enforcement,
                    "scope": item.scope,
                    "not_applicable": self.evaluation.not_applicable.get(item.name),
                    "violations": len(self.evaluation.by_policy(item.name)),
                }
                for item in policies.POLICIES
            ],
            "violations": [v.as_json() for v in self.evaluation.violations],
            "footprint": {
                "components": {k: v.as_json() for k, v in sorted(self.usage.items())},
                "total": self.total.as_json(),
            },
            **({"cost": self.estimate.as_json()} if self.estimate is not None else {}),
            "components": [
                {
                    "type": group.type,
                    "name": group.name,
                    "resources": [_resource_row(r) for r in group.resources],
                }
                for group in group_by_component(self.capture)
            ],
        }

    def markdown(self) -> str:
        return _Report(self).render()


def _resource_row(record: Recorded) -> dict[str, Any]:
    row: dict[str, Any] = {"type": record.type, "name": record.name, "protect": record.protect}
    if record.is_kubernetes_object:
        row["object"] = checks.object_id(record.manifest())
    return row


def build(stack: str | None, config: Path | None) -> Plan:
    """Render a platform or team stack (or a platform config file) offline and check the result.

    Invalid input raises :class:`mlplane.config.stack_files.InputError` before anything is rendered.
    """
    if stack is not None and config is None and TEAM_CONFIG_KEY in read_stack_config(stack):
        return build_team(stack)
    source, platform = load_platform(stack, config)
    label = str(config) if config is not None else f"stacks/Pulumi.{source.stack}.yaml"
    return check(source.stack, label, offline_run(source, platform), stack_view(source, platform), platform)


def build_team(stack: str) -> Plan:
    """A team stack, rendered against the offline render of its platform stack (``mlplane.tooling.offline``)."""
    checked, values = checked_stack(stack)
    view = policies.Stack(
        name=stack,
        throwaway=checked.platform.lifecycle.throwaway,
        config_secure=policies.config_secure_keys(values),
    )
    return check(stack, f"stacks/Pulumi.{stack}.yaml", offline_team_run(checked, stack), view, checked.platform)


def check(stack: str, source_label: str, capture: Capture, view: policies.Stack, platform: PlatformConfig) -> Plan:
    """Strict schemas, the policies and the footprint of one offline render."""
    schema_versions = tuple(versions.SUPPORTED_KUBERNETES)
    rendered = {r.type.rsplit(":", 1)[-1] for r in capture.resources if r.type.startswith("mlplane:")}
    with progress.step(f"validating schemas (Kubernetes {schema_versions[0]}-{schema_versions[-1]})"):
        schema_findings = checks.validate_schemas(capture.manifests(), schema_versions)
    with progress.step(f"running {len(policies.POLICIES)} policies"):
        evaluation = policies.evaluate([resource_view(r) for r in capture.resources], view)
    return Plan(
        stack=stack,
        source=source_label,
        capture=capture,
        schema_versions=schema_versions,
        schema_findings=schema_findings,
        evaluation=evaluation,
        # Only components this render holds: a team render has none of the platform's charts.
        usage={k: v for k, v in footprint.measure(capture, platform).items() if k in rendered or k == "other"},
        estimate=_estimate(capture, platform),
    )


def _estimate(capture: Capture, platform: PlatformConfig) -> cost.Estimate | None:
    """The cost estimate: for AWS stacks and the team stacks of an AWS platform (docs/cost.md)."""
    if platform.aws is None:
        return cost.estimate(capture)
    serving = platform.aws.eks.node_groups.serving.instance_types[0]
    return cost.estimate(capture, region=platform.aws.region, serving_type=serving, cloud=platform.target == "aws")


#: Keys every JSON report has: a file holding them is an earlier report, which may be replaced.
_JSON_REPORT_KEYS = frozenset({"stack", "source", "result", "exit_code", "policies", "footprint"})


def foreign_file(out: Path) -> str | None:
    """Why ``--out`` may not be written (it holds something that is not an earlier report), or None.

    ``plan --out`` replaces only a report it wrote before (Markdown starting with the report's
    marker, or a JSON report); anything else is the user's and is never overwritten.
    """
    if not out.exists() and not out.is_symlink():
        return None
    if out.is_symlink() or not out.is_file():
        return f"--out: {out} exists and is not a regular file; give a new file name"
    try:
        text = out.read_text()
    except (OSError, UnicodeDecodeError):
        text = ""
    if text.startswith(MARKER.split("{", 1)[0]):
        return None
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = None
    if isinstance(document, dict) and _JSON_REPORT_KEYS <= document.keys():
        return None
    return (
        f"--out: {out} exists and is not an mlplane plan report; it is left as it is "
        "(give another file, or --force to replace it)"
    )


def write(plan: Plan, out: Path | None, as_json: bool) -> str:
    """The report (Markdown or JSON), written to ``out`` when given; returns the text.

    The file is replaced atomically (a temporary file beside it, then a rename): an interrupted
    write leaves the earlier report, never half of one.
    """
    text = json.dumps(plan.as_json(), indent=2) + "\n" if as_json else plan.markdown()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        staged = out.with_name(f".{out.name}.mlplane-tmp")
        try:
            staged.write_text(text)
            os.replace(staged, out)
        finally:
            staged.unlink(missing_ok=True)
    return text


def summary_line(plan: Plan) -> str:
    """One line for the terminal when the report goes to a file."""
    mandatory, advisory = len(plan.evaluation.mandatory), len(plan.evaluation.advisory)
    return (
        f"plan {'FAIL' if plan.failed else 'PASS'} for stack {plan.stack}: {mandatory} mandatory and "
        f"{advisory} advisory policy violations, {len(plan.schema_findings)} schema findings"
    )


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    """A table cell: pipes escaped, one line, and no '<...>' that a renderer would take for HTML."""
    text = str(value).replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("\n", " ").strip()


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _gib(value: int) -> str:
    return f"{value / 2**30:.1f} GiB" if value >= 2**30 else f"{value // MIB} MiB"


class _Report:
    """Renders a :class:`Plan` as a pull-request comment."""

    def __init__(self, plan: Plan):
        self.plan = plan

    def render(self) -> str:
        lines = [MARKER.format(stack=self.plan.stack), f"## mlplane plan: stack `{self.plan.stack}`", ""]
        lines += self.verdict() + [""]
        lines += self.summary() + [""]
        lines += self.violations()
        lines += self.schema()
        lines += cost.markdown(self.plan.estimate, _cell)
        lines += self.policy_table()
        lines += self.footprint()
        lines += self.components()
        lines += [
            "<sub>Rendered offline by `mlplane plan` from the same program `pulumi up` runs: no credentials, "
            "no cluster. Helm charts are checked through the values mlplane passes them. "
            "Generated secrets are stand-ins and never appear in this report.</sub>",
            "",
        ]
        return "\n".join(lines)

    def verdict(self) -> list[str]:
        evaluation = self.plan.evaluation
        mandatory, advisory = len(evaluation.mandatory), len(evaluation.advisory)
        schema = len(self.plan.schema_findings)
        if self.plan.failed:
            parts = []
            if mandatory:
                parts.append(_count(mandatory, "mandatory policy violation"))
            if schema:
                parts.append(_count(schema, "schema finding"))
            head = "**FAIL**: " + " and ".join(parts) + " must be fixed before merging."
        else:
            head = "**PASS**: no mandatory policy violation, every object valid."
        if advisory:
            head += f" {_count(advisory, 'advisory finding')} to review."
        return [head]

    def summary(self) -> list[str]:
        plan, counts = self.plan, self.plan.counts()
        evaluation = plan.evaluation
        inapplicable = len(evaluation.not_applicable)
        failing = {v.policy for v in evaluation.violations}
        passing = len(policies.POLICIES) - len(failing) - inapplicable
        total = plan.total
        schema = "pass" if not plan.schema_findings else f"{len(plan.schema_findings)} findings"
        rows = [
            ["config", f"valid ({plan.source})"],
            [
                "render",
                f"{_count(counts['resources'], 'resource')}: {_count(counts['kubernetes_objects'], 'Kubernetes object')}, "
                f"{_count(counts['helm_charts'], 'Helm chart')}, {counts['protected']} protected",
            ],
            [f"schemas (Kubernetes {', '.join(plan.schema_versions)})", schema],
            [
                f"policies ({len(policies.POLICIES)})",
                f"{passing} pass, {len(evaluation.mandatory)} mandatory and {len(evaluation.advisory)} advisory "
                f"violations, {inapplicable} not applicable",
            ],
            [
                "footprint (requests)",
                f"CPU {total.cpu_request_m}m, memory {_gib(total.memory_request)}, storage {_gib(total.storage)}",
            ],
        ]
        if plan.estimate is not None:
            rows.append(["cost (estimated)", plan.estimate.headline()])
        return _table(["check", "result"], rows)

    def violations(self) -> list[str]:
        found = sorted(
            self.plan.evaluation.violations,
            key=lambda v: (v.enforcement != policies.MANDATORY, v.policy, v.resource),
        )
        if not found:
            return []
        rows = [[v.enforcement, f"`{v.policy}`", f"`{v.resource}`", v.message, v.fix] for v in found[:MAX_VIOLATION_ROWS]]
        lines = ["### Violations", ""] + _table(["level", "policy", "resource", "problem", "fix"], rows)
        if len(found) > MAX_VIOLATION_ROWS:
            lines += ["", f"... and {len(found) - MAX_VIOLATION_ROWS} more: run `mlplane plan --json` for all of them."]
        return lines + [""]

    def schema(self) -> list[str]:
        findings = self.plan.schema_findings
        if not findings:
            return []
        rows = [[f.check, f"`{f.object}`", f.message] for f in findings[:MAX_VIOLATION_ROWS]]
        return ["### Schema findings", ""] + _table(["check", "object", "problem"], rows) + [""]

    def policy_table(self) -> list[str]:
        evaluation = self.plan.evaluation
        rows = []
        for item in policies.POLICIES:
            count = len(evaluation.by_policy(item.name))
            reason = evaluation.not_applicable.get(item.name)
            result = f"not applicable: {reason}" if reason else (_count(count, "violation") if count else "pass")
            rows.append([f"`{item.name}`", item.enforcement, result])
        body = _table(["policy", "level", "result"], rows)
        return ["<details><summary>Policies</summary>", "", *body, "", "See docs/policies.md for each rule.", "", "</details>", ""]

    def footprint(self) -> list[str]:
        rows = []
        for name, usage in sorted(self.plan.usage.items()):
            data = usage.as_json()
            rows.append([name, data["cpu_request"], data["cpu_limit"], data["memory_request"], data["memory_limit"], data["storage"]])
        data = self.plan.total.as_json()
        rows.append(["**total**", data["cpu_request"], data["cpu_limit"], data["memory_request"], data["memory_limit"], data["storage"]])
        body = _table(["component", "CPU req", "CPU lim", "mem req", "mem lim", "storage"], rows)
        return ["<details><summary>Footprint</summary>", "", *body, "", "</details>", ""]

    def components(self) -> list[str]:
        lines = ["### Resources by component", ""]
        for group in group_by_component(self.plan.capture):
            rows = []
            for record in group.resources:
                row = _resource_row(record)
                rows.append([f"`{row['type']}`", f"`{row['name']}`", f"`{row['object']}`" if "object" in row else "", "yes" if row["protect"] else ""])
            lines += [
                f"<details><summary><b>{group.title}</b> <code>{group.name}</code>: {_count(len(rows), 'resource')}</summary>",
                "",
                *_table(["type", "name", "object", "protected"], rows),
                "",
                "</details>",
                "",
            ]
        return lines
