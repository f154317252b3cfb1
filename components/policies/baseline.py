"""Rules of the security baseline (mandatory): pod security, restricted contexts, tokens, secrets by reference."""

from __future__ import annotations

from typing import Any, Mapping

from mlplane.policies.model import POD_SECURITY_REASON, Problem, PSS, Resource, Stack, TEAM_LABEL, Unknown
from mlplane.policies.objects import (
    _at,
    ALLOWED_CAPABILITIES,
    CLUSTER_SCOPED,
    containers,
    looks_secret,
    number,
    pod_spec,
    pod_spec_path,
)


def check_pod_security_admission(resource: Resource, stack: Stack) -> list[Problem]:
    if resource.kind != "Namespace":
        return []
    labels = resource.metadata.get("labels")
    annotations = resource.metadata.get("annotations")
    if isinstance(labels, Unknown):
        return []
    labels = labels if isinstance(labels, Mapping) else {}
    annotations = annotations if isinstance(annotations, Mapping) else {}
    enforce = labels.get(PSS + "enforce")
    version = labels.get(PSS + "enforce-version")
    problems = []
    fix_create = "create namespaces with kube.namespace(), which labels them for Pod Security 'restricted'"
    if enforce is None:
        return [Problem(f"no '{PSS}enforce' label: Pod Security admission does not apply", fix_create)]
    if isinstance(enforce, Unknown):
        return []
    if enforce != "restricted":
        if TEAM_LABEL in labels:
            problems.append(
                Problem(
                    f"team namespace enforces Pod Security '{enforce}'",
                    "team namespaces always enforce 'restricted': tenants get no privileged pods",
                )
            )
        elif not annotations.get(POD_SECURITY_REASON):
            problems.append(
                Problem(
                    f"enforces Pod Security '{enforce}' without saying why",
                    f"pass reason=... to kube.namespace() (annotation '{POD_SECURITY_REASON}'), or enforce 'restricted'",
                )
            )
    if version is None or version == "latest":
        problems.append(
            Problem(
                f"'{PSS}enforce-version' is {'missing' if version is None else 'latest'}: the level's meaning changes with the cluster",
                "pin it to versions.POD_SECURITY_VERSION (kube.namespace() does)",
            )
        )
    return problems


def _effective(container: Mapping[str, Any], pod: Mapping[str, Any], key: str) -> Any:
    """A security setting of the container, falling back to the pod's."""
    own = _at(container, ("securityContext", key))
    return own if own is not None else _at(pod, ("securityContext", key))


def check_restricted_security_context(resource: Resource, stack: Stack) -> list[Problem]:
    spec = pod_spec(resource)
    if spec is None:
        return []
    fix = "build containers with kube.container() and pods with kube.Workload (restricted security context)"
    problems: list[Problem] = []

    def report(check: str, message: str) -> None:
        if not resource.skips(check):
            problems.append(Problem(message, f"{fix}, or document an exception with kube.checkov_skips(('{check}', reason))"))

    for flag, check in (("hostNetwork", "CKV_K8S_19"), ("hostPID", "CKV_K8S_17"), ("hostIPC", "CKV_K8S_18")):
        if spec.get(flag) is True:
            report(check, f"pod sets {flag}: it shares the node's namespace")
    volumes = spec.get("volumes")
    for volume in volumes if isinstance(volumes, list) else []:
        if isinstance(volume, Mapping) and volume.get("hostPath") is not None:
            problems.append(Problem(f"volume '{volume.get('name')}' mounts a hostPath", "use an emptyDir, a PersistentVolumeClaim, a ConfigMap or a Secret"))
    for what, container in containers(spec):
        non_root = _effective(container, spec, "runAsNonRoot")
        if non_root is not True and not isinstance(non_root, Unknown):
            report("CKV_K8S_23", f"{what}: runAsNonRoot is not true")
        uid = _effective(container, spec, "runAsUser")
        if not isinstance(uid, Unknown) and not (number(uid) or 0) > 0:
            report("CKV_K8S_40", f"{what}: no fixed non-root runAsUser")
        if _at(container, ("securityContext", "allowPrivilegeEscalation")) is not False:
            report("CKV_K8S_20", f"{what}: allowPrivilegeEscalation is not false")
        if _at(container, ("securityContext", "privileged")) is True:
            report("CKV_K8S_16", f"{what}: runs privileged")
        drop = _at(container, ("securityContext", "capabilities", "drop"))
        if not isinstance(drop, Unknown) and not (isinstance(drop, list) and "ALL" in drop):
            report("CKV_K8S_37", f"{what}: does not drop ALL capabilities")
        add = _at(container, ("securityContext", "capabilities", "add"))
        extra = sorted(set(add) - ALLOWED_CAPABILITIES) if isinstance(add, list) else []
        if extra:
            report("CKV_K8S_25", f"{what}: adds capabilities {', '.join(map(str, extra))}")
        seccomp = _effective(container, spec, "seccompProfile")
        kind = _at(seccomp, ("type",)) if isinstance(seccomp, Mapping) else seccomp
        if not isinstance(kind, Unknown) and kind not in ("RuntimeDefault", "Localhost"):
            report("CKV_K8S_31", f"{what}: no RuntimeDefault seccomp profile")
    return problems


def check_service_account_token(resource: Resource, stack: Stack) -> list[Problem]:
    spec = pod_spec(resource)
    if spec is None or resource.skips("CKV_K8S_38"):
        return []
    automount = spec.get("automountServiceAccountToken")
    account = spec.get("serviceAccountName")
    if automount is False or isinstance(automount, Unknown) or isinstance(account, Unknown):
        return []
    if account in (None, "", "default"):
        return [
            Problem(
                "pod mounts the default service account's API token",
                "set automountServiceAccountToken: false (kube.Workload does), or give the pod its own "
                "ServiceAccount with a namespaced Role when it talks to the API",
            )
        ]
    return []


def check_secrets_by_reference(resource: Resource, stack: Stack) -> list[Problem]:
    problems: list[Problem] = []
    spec = pod_spec(resource)
    if spec is not None:
        fix = "read it from a Secret: env valueFrom.secretKeyRef (kube.secret_env) or a Secret volume"
        for what, container in containers(spec):
            env = container.get("env")
            for item in env if isinstance(env, list) else []:
                if not isinstance(item, Mapping):
                    continue
                name, value = item.get("name"), item.get("value")
                if isinstance(name, str) and isinstance(value, str) and value and looks_secret(name) and not value.startswith("/"):
                    problems.append(Problem(f"{what}: env {name} holds a literal value", fix))
        if resource.is_secret(pod_spec_path(resource)):
            problems.append(
                Problem(
                    "a Pulumi secret is written into the pod template (env value, args or command): "
                    "it shows in plain text in the object",
                    fix,
                )
            )
    if resource.kind == "Secret" and resource.secret_paths is not None:
        for block in ("stringData", "data"):
            values = resource.props.get(block)
            if not isinstance(values, Mapping) or resource.is_secret(block):
                continue
            for key, value in values.items():
                if looks_secret(key) and value:
                    problems.append(
                        Problem(
                            f"{block}.{key} is a literal in the program, not a Pulumi secret",
                            "generate it with pulumi_random.RandomPassword or read it with "
                            "Config.require_secret (a `*_key` field of the config)",
                        )
                    )
    return problems


def check_no_default_namespace(resource: Resource, stack: Stack) -> list[Problem]:
    kind = resource.kind
    if not kind or kind in CLUSTER_SCOPED or kind.startswith("Cluster") or resource.skips("CKV_K8S_21"):
        return []
    namespace = resource.metadata.get("namespace")
    if isinstance(namespace, Unknown):
        return []
    if namespace in (None, "", "default"):
        return [
            Problem(
                f"{kind} is created in the 'default' namespace",
                "set metadata.namespace to the component's namespace (f\"{platform.name}-<component>\")",
            )
        ]
    return []
