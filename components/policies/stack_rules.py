"""Stack rules: checks across every resource of a stack (team isolation and the like)."""

from __future__ import annotations

import re
from typing import Any, Mapping

from mlplane.config.serving import CANARY_MAX_STEP_WEIGHT, CANARY_MIN_INTERVAL_SECONDS
from mlplane.policies.model import Problem, Resource, Stack, TEAM_LABEL, Unknown
from mlplane.policies.objects import _at, looks_secret, number


def _namespace_of(resource: Resource) -> Any:
    return resource.metadata.get("namespace")


def check_team_isolation(resources: list[Resource], stack: Stack) -> list[Problem]:
    teams: dict[str, Resource] = {}
    for resource in resources:
        labels = resource.metadata.get("labels") if resource.kind == "Namespace" else None
        name = resource.metadata.get("name")
        if isinstance(labels, Mapping) and TEAM_LABEL in labels and isinstance(name, str):
            teams[name] = resource
    if not teams:
        return []
    problems = []
    for namespace, ns_resource in sorted(teams.items()):
        inside = [r for r in resources if _namespace_of(r) == namespace]
        if not any(_is_default_deny(r) for r in inside):
            problems.append(
                Problem(
                    "team namespace has no default-deny NetworkPolicy for ingress and egress",
                    "add a NetworkPolicy with podSelector: {} and policyTypes [Ingress, Egress] and no rules, "
                    "then explicit allows (DNS, the platform services the team uses)",
                    ns_resource,
                )
            )
        for kind, why in (("ResourceQuota", "caps the team's CPU, memory, storage and GPUs"), ("LimitRange", "gives every container default requests and limits")):
            if not any(r.kind == kind for r in inside):
                problems.append(Problem(f"team namespace has no {kind}", f"add a {kind} in the namespace: it {why}", ns_resource))
    members = _team_subjects(resources, set(teams))
    for resource in resources:
        if resource.kind != "ClusterRoleBinding":
            continue
        subjects = resource.props.get("subjects")
        for subject in subjects if isinstance(subjects, list) else []:
            if isinstance(subject, Mapping) and _subject_key(subject) in members:
                problems.append(
                    Problem(
                        f"binds team subject {subject.get('kind')} '{subject.get('name')}' cluster-wide",
                        "grant tenants namespaced Roles with RoleBindings in their namespace only",
                        resource,
                    )
                )
    return problems


def _is_default_deny(resource: Resource) -> bool:
    if resource.kind != "NetworkPolicy":
        return False
    spec = resource.props.get("spec")
    if not isinstance(spec, Mapping):
        return False
    selector = spec.get("podSelector")
    types = spec.get("policyTypes")
    return (
        isinstance(selector, Mapping)
        and not selector.get("matchLabels")
        and not selector.get("matchExpressions")
        and isinstance(types, list)
        and {"Ingress", "Egress"} <= set(types)
        and not spec.get("ingress")
        and not spec.get("egress")
    )


def _subject_key(subject: Mapping[str, Any]) -> tuple[Any, ...]:
    kind = subject.get("kind")
    if kind == "ServiceAccount":
        return (kind, subject.get("namespace"), subject.get("name"))
    return (kind, subject.get("name"))


def _team_subjects(resources: list[Resource], team_namespaces: set[str]) -> set[tuple[Any, ...]]:
    """Subjects belonging to a team: its namespaces' service accounts and whoever its RoleBindings bind."""
    found: set[tuple[Any, ...]] = set()
    for resource in resources:
        namespace = _namespace_of(resource)
        if namespace not in team_namespaces:
            continue
        if resource.kind == "ServiceAccount":
            found.add(("ServiceAccount", namespace, resource.metadata.get("name")))
        elif resource.kind == "RoleBinding":
            subjects = resource.props.get("subjects")
            for subject in subjects if isinstance(subjects, list) else []:
                if isinstance(subject, Mapping):
                    found.add(_subject_key(subject))
    return found


def _throwaway(stack: Stack) -> str | None:
    return "throwaway stack (lifecycle.throwaway): stateful resources may be deleted" if stack.throwaway else None


def _no_stack_config(stack: Stack) -> str | None:
    return "the stack's config file is not known (rendered from --config, or not found)" if stack.config_secure is None else None


def check_plain_secret_config(resources: list[Resource], stack: Stack) -> list[Problem]:
    if stack.config_secure is None:
        return []
    return [
        Problem(
            f"stack config key '{key}' looks like a secret but is stored in plain text",
            f"pulumi config set --secret {key} <value> --stack {stack.name} (and rotate the value: it is in git history)",
        )
        for key, secure in sorted(stack.config_secure.items())
        if not secure and looks_secret(key.split(":", 1)[-1])
    ]


def check_disruption_budgets(resources: list[Resource], stack: Stack) -> list[Problem]:
    budgets = [r for r in resources if r.kind == "PodDisruptionBudget"]
    scaled = {
        (_namespace_of(r), _at(r.props, ("spec", "scaleTargetRef", "name"))): _at(r.props, ("spec", "minReplicas"))
        for r in resources
        if r.kind == "HorizontalPodAutoscaler"
    }
    problems = []
    for resource in resources:
        if resource.kind not in ("Deployment", "StatefulSet"):
            continue
        key = (_namespace_of(resource), resource.metadata.get("name"))
        count = number(scaled.get(key, _at(resource.props, ("spec", "replicas"))))
        if count is None or count < 2:
            continue
        replicas = int(count)
        labels = _at(resource.props, ("spec", "template", "metadata", "labels"))
        labels = labels if isinstance(labels, Mapping) else {}
        matching = [b for b in budgets if _namespace_of(b) == key[0] and _selects(b, labels)]
        fix = "add a policy/v1 PodDisruptionBudget selecting the pods with minAvailable below the replicas"
        if not matching:
            problems.append(Problem(f"{replicas} replicas and no PodDisruptionBudget: a node drain may stop them all", fix, resource))
        elif not any(_allows_eviction(b, replicas) for b in matching):
            problems.append(Problem(f"its PodDisruptionBudget allows no eviction at {replicas} replicas: node drains block", fix, resource))
    return problems


#: Limits of a progressive canary's analysis (policy 'progressive-delivery-analysis'). The weight
#: and interval limits are the config's own (serving.models[].canary), so a config that validates
#: never fails the policy.
CANARY_MAX_ERROR_RATE = 0.5
CANARY_MAX_WEIGHT = CANARY_MAX_STEP_WEIGHT
_GO_DURATION = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)?(?:ns|us|µs|ms|s|m|h))+$")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def go_duration_seconds(value: Any) -> float | None:
    """Seconds in a Go duration such as '1m30s' (Flagger's intervals), None when it is not one."""
    if not isinstance(value, str) or not _GO_DURATION.match(value):
        return None
    return sum(float(n) * _GO_UNITS[u] for n, u in re.findall(r"([0-9.]+)(ns|us|µs|ms|s|m|h)", value))


def check_canary_analysis(resource: Resource, stack: Stack) -> list[Problem]:
    """A Flagger Canary (flagger.app) whose analysis can roll a bad version back in time."""
    if resource.kind != "Canary" or not str(resource.props.get("apiVersion", "")).startswith("flagger.app/"):
        return []
    analysis = _at(resource.props, ("spec", "analysis"))
    if isinstance(analysis, Unknown):
        return []
    analysis = analysis if isinstance(analysis, Mapping) else {}
    problems: list[Problem] = []
    if _at(resource.props, ("spec", "skipAnalysis")) is True:
        problems.append(Problem("spec.skipAnalysis is true: every version is promoted without a check",
                                "remove skipAnalysis (a fixed-weight canary is the mode without analysis)"))
    metrics = analysis.get("metrics")
    if not isinstance(metrics, Unknown) and not metrics:
        problems.append(Problem("spec.analysis has no metrics: a failing version is promoted anyway",
                                "check the route's error rate and latency (progressive.canary_spec does)"))
    for index, metric in enumerate(metrics if isinstance(metrics, list) else []):
        if not isinstance(metric, Mapping):
            continue
        name = str(metric.get("name", ""))
        limit = _at(metric, ("thresholdRange", "max"))
        if "error" in name and number(limit) is not None and (number(limit) or 0) > CANARY_MAX_ERROR_RATE:
            problems.append(Problem(
                f"spec.analysis.metrics[{index}] '{name}' allows an error rate of {limit} (above {CANARY_MAX_ERROR_RATE})",
                f"set serving.models[].canary.thresholds.error_rate to at most {CANARY_MAX_ERROR_RATE}, e.g. 0.01"))
        if name == "request-success-rate" and number(_at(metric, ("thresholdRange", "min"))) is not None and (
            number(_at(metric, ("thresholdRange", "min"))) or 0
        ) < 100 * (1 - CANARY_MAX_ERROR_RATE):
            problems.append(Problem(
                f"spec.analysis.metrics[{index}] 'request-success-rate' accepts under "
                f"{100 * (1 - CANARY_MAX_ERROR_RATE):.0f}% successful requests",
                "raise thresholdRange.min, e.g. to 99"))
    weights = analysis.get("stepWeights")
    reached = [w for w in (weights if isinstance(weights, list) else []) if number(w) is not None]
    for key in ("maxWeight", "stepWeight"):
        if number(analysis.get(key)) is not None:
            reached.append(analysis[key])
    too_high = [w for w in reached if (number(w) or 0) > CANARY_MAX_WEIGHT]
    if too_high:
        problems.append(Problem(
            f"the canary reaches {max(number(w) or 0 for w in too_high):g}% of the requests before promotion "
            f"(above {CANARY_MAX_WEIGHT}%): a bad version answers most users before it is rolled back",
            f"keep serving.models[].canary.steps at or below {CANARY_MAX_WEIGHT}, e.g. [10, 25, 50]"))
    interval = analysis.get("interval")
    seconds = go_duration_seconds(interval)
    if not isinstance(interval, Unknown) and (seconds is None or seconds < CANARY_MIN_INTERVAL_SECONDS):
        problems.append(Problem(
            f"spec.analysis.interval {interval!r} is not a duration of at least {CANARY_MIN_INTERVAL_SECONDS}s: "
            "a rate over a shorter window has too few Prometheus samples to judge the canary",
            f"set serving.models[].canary.interval to {CANARY_MIN_INTERVAL_SECONDS}s or more, e.g. 1m"))
    return problems


def _selects(budget: Resource, labels: Mapping[str, Any]) -> bool:
    selector = _at(budget.props, ("spec", "selector", "matchLabels"))
    return isinstance(selector, Mapping) and bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _allows_eviction(budget: Resource, replicas: int) -> bool:
    spec = budget.props.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    min_available, max_unavailable = spec.get("minAvailable"), spec.get("maxUnavailable")
    if max_unavailable is not None:
        return number(max_unavailable) != 0 and max_unavailable != "0%"
    if number(min_available) is not None:
        return (number(min_available) or 0) < replicas
    if isinstance(min_available, str) and min_available.endswith("%"):
        needed = -(-int(min_available[:-1]) * replicas // 100)
        return needed < replicas
    return True
