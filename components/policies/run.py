"""Running the policies over an offline render (``mlplane plan``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from mlplane.policies.model import ADVISORY, MANDATORY, Policy, Problem, Resource, Stack, Violation
from mlplane.policies.objects import _at
from mlplane.policies.catalog import POLICIES


@dataclass
class Evaluation:
    """Violations of every policy over one stack, and which policies could not apply."""

    violations: list[Violation] = field(default_factory=list)
    #: Policy name -> why it could not be evaluated here.
    not_applicable: dict[str, str] = field(default_factory=dict)

    def by_policy(self, name: str) -> list[Violation]:
        return [v for v in self.violations if v.policy == name]

    @property
    def mandatory(self) -> list[Violation]:
        return [v for v in self.violations if v.enforcement == MANDATORY]

    @property
    def advisory(self) -> list[Violation]:
        return [v for v in self.violations if v.enforcement == ADVISORY]


def evaluate(resources: list[Resource], stack: Stack, policies: Iterable[Policy] = POLICIES) -> Evaluation:
    """Run every policy over the resources of one stack."""
    result = Evaluation()
    for item in policies:
        reason = item.inapplicable(stack)
        if reason is not None:
            result.not_applicable[item.name] = reason
        elif item.resource_check is not None:
            for resource in resources:
                result.violations += [_violation(item, p, resource) for p in item.resource_check(resource, stack)]
        else:
            assert item.stack_check is not None
            result.violations += [_violation(item, p, p.resource) for p in item.stack_check(resources, stack)]
    return result


def _violation(item: Policy, problem: Problem, resource: Resource | None) -> Violation:
    return Violation(
        policy=item.name,
        enforcement=item.enforcement,
        resource=resource.label if resource is not None else "stack",
        urn=resource.urn if resource is not None else None,
        message=problem.message,
        fix=problem.fix,
    )


def config_secure_keys(stack_config: Mapping[str, Any]) -> dict[str, bool]:
    """Top-level keys of a stack's ``config:`` mapping and whether each is ``secure:``."""
    return {key: isinstance(value, Mapping) and "secure" in value for key, value in stack_config.items()}


def throwaway_from_config(config: Mapping[str, Any]) -> bool:
    """Whether an mlplane config object of the stack sets ``lifecycle.throwaway: true``.

    Values are what the engine passes (JSON strings for objects) or what a stack file holds.
    """
    for key, value in config.items():
        if not key.startswith("mlplane:"):
            continue
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                continue
        if isinstance(value, Mapping) and _at(value, ("lifecycle", "throwaway")) is True:
            return True
    return False
