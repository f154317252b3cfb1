"""The neutral views the rules read (a resource, the stack) and what they return (problems,
violations, policies)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping


#: The label marking a team's objects: the value of ``kube.TEAM_LABEL``, repeated rather than imported
#: because ``mlplane.core.kube`` loads the Pulumi SDK, which `mlplane validate` never needs
#: (tests/unit/cli/test_fast_paths.py pins that the two agree).
TEAM_LABEL = "mlplane.dev/team"

Enforcement = Literal["mandatory", "advisory"]
MANDATORY: Enforcement = "mandatory"
ADVISORY: Enforcement = "advisory"

#: Label that marks a namespace as a team's (its value is the team name).
#: Annotation explaining why a namespace enforces a Pod Security level other than 'restricted'.
POD_SECURITY_REASON = "mlplane.dev/pod-security-reason"
#: Prefixes of inline exception annotations (the ones checkov reads).
SKIP_PREFIXES = ("checkov.io/skip", "bridgecrew.io/skip")
PSS = "pod-security.kubernetes.io/"


class Unknown:
    """A value the engine cannot know yet (computed by another resource during a preview)."""

    def __repr__(self) -> str:
        return "<unknown>"


#: The one instance rules compare against: parts of a rule that need an unknown value are skipped.
UNKNOWN = Unknown()


@dataclass(frozen=True)
class Resource:
    """One resource as the rules see it, from an offline render or from the engine."""

    type: str
    name: str
    urn: str
    #: Inputs; Kubernetes objects carry camelCase ``apiVersion``, ``kind``, ``metadata``, ``spec``.
    props: Mapping[str, Any]
    protect: bool = False
    #: ``None`` when not known (the engine does not pass it to policy packs).
    retain_on_delete: bool | None = None
    #: Dotted paths of inputs that are Pulumi secrets; ``None`` when not known (policy packs).
    secret_paths: frozenset[str] | None = None
    #: Input property -> URNs of the resources its value came from (how a bucket's public-access
    #: block names its bucket); empty when not known (resource policies under the engine).
    property_dependencies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The Kubernetes kind (last part of the type token), '' for other resources."""
        return self.type.rsplit(":", 1)[-1] if self.is_kubernetes_object else ""

    @property
    def is_kubernetes_object(self) -> bool:
        if not self.type.startswith("kubernetes:") or self.type.startswith(
            ("kubernetes:helm.sh/", "kubernetes:yaml", "kubernetes:kustomize")
        ):
            return False
        return not self.type.endswith(("Patch", "List"))

    @property
    def metadata(self) -> Mapping[str, Any]:
        meta = self.props.get("metadata")
        return meta if isinstance(meta, Mapping) else {}

    @property
    def parent_type(self) -> str | None:
        """Type token of the parent, read from the URN's qualified type."""
        parts = self.urn.split("::")
        chain = parts[2].split("$") if len(parts) > 3 else []
        return chain[-2] if len(chain) > 1 else None

    @property
    def label(self) -> str:
        """How reports name the resource: ``Kind/namespace/name`` for Kubernetes objects."""
        if self.is_kubernetes_object:
            meta = self.metadata
            name, namespace = meta.get("name", self.name), meta.get("namespace")
            name = self.name if isinstance(name, Unknown) else name
            if namespace and not isinstance(namespace, Unknown):
                return f"{self.kind}/{namespace}/{name}"
            return f"{self.kind}/{name}"
        return f"{self.type.rsplit(':', 1)[-1]} {self.name}"

    def is_secret(self, path: str) -> bool | None:
        """Whether the input at ``path`` (or what contains it) is a Pulumi secret; None if unknown."""
        if self.secret_paths is None:
            return None
        return any(path == p or path.startswith(p + ".") or path.startswith(p + "[") or p == "" for p in self.secret_paths)

    def skips(self, check: str) -> bool:
        """Whether the object carries an inline exception for this checkov check."""
        annotations = self.metadata.get("annotations")
        if not isinstance(annotations, Mapping):
            return False
        return any(
            key.startswith(SKIP_PREFIXES) and isinstance(value, str) and value.split("=", 1)[0].strip() == check
            for key, value in annotations.items()
        )


@dataclass(frozen=True)
class Stack:
    """The stack the resources belong to."""

    name: str
    #: ``lifecycle.throwaway`` of the platform config: stateful resources may be deleted.
    throwaway: bool = False
    #: Every top-level config key and whether it is ``secure:``; ``None`` when not known.
    config_secure: Mapping[str, bool] | None = None


@dataclass(frozen=True)
class Problem:
    """What is wrong and how to fix it; stack rules also say which resource it is about."""

    message: str
    fix: str
    resource: Resource | None = None


@dataclass(frozen=True)
class Violation:
    """A problem reported by one policy, ready for a report."""

    policy: str
    enforcement: Enforcement
    resource: str
    urn: str | None
    message: str
    fix: str

    def as_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "enforcement": self.enforcement,
            "resource": self.resource,
            "urn": self.urn,
            "message": self.message,
            "fix": self.fix,
        }


ResourceCheck = Callable[[Resource, Stack], list[Problem]]
StackCheck = Callable[[list[Resource], Stack], list[Problem]]


@dataclass(frozen=True)
class Policy:
    """One guardrail: its check, why it exists, how strictly it is enforced and what it covers."""

    name: str
    description: str
    rationale: str
    enforcement: Enforcement
    applies_to: str
    remediation: str
    resource_check: ResourceCheck | None = None
    stack_check: StackCheck | None = None
    #: Inline checkov exceptions that switch off the matching part of the rule.
    checkov: tuple[str, ...] = ()
    #: What the policy pack (running under the engine) sees differently from ``mlplane plan``.
    engine_note: str = ""
    #: Why the policy cannot be evaluated for a stack (None: it can).
    not_applicable: Callable[[Stack], str | None] | None = None

    def __post_init__(self) -> None:
        if (self.resource_check is None) == (self.stack_check is None):
            raise ValueError(f"policy {self.name}: give exactly one of resource_check or stack_check")

    @property
    def scope(self) -> str:
        return "resource" if self.resource_check is not None else "stack"

    def inapplicable(self, stack: Stack) -> str | None:
        """Why the policy does not apply to this stack, or None."""
        return self.not_applicable(stack) if self.not_applicable is not None else None
