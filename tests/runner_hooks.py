"""The job pod ARC's Kubernetes container hooks create in 'kubernetes-novolume' mode, for tests.

Copied in shape from actions/runner-container-hooks (the v0.8 'k8s-novolume' line the
actions-runner image ships under /home/runner/k8s-novolume):
- ``packages/k8s/src/k8s/index.ts`` ``createJobPod``: labels, the init container ``fs-init``
  (image ``$ACTIONS_RUNNER_IMAGE``, ``sudo mv /home/runner/externals/* /mnt/externals``, security
  context ``runAsGroup: 1001, runAsUser: 1001`` only), ``restartPolicy: Never``, emptyDir volumes
  ``externals`` and ``github``; then the template is merged in.
- ``packages/k8s/src/hooks/prepare-job.ts`` ``createContainerSpec``: the job container ``job``
  (``tail -f /dev/null``, ``GITHUB_ACTIONS``/``CI`` env, ``CONTAINER_VOLUMES`` mounts).
- ``packages/k8s/src/k8s/utils.ts`` ``mergePodSpecWithOptions`` (template ``containers`` not
  named ``$...`` are appended, ``volumes`` appended, every other key *replaces* the hook's, so
  ``initContainers`` replaces ``fs-init``) and ``mergeContainerWithOptions`` (the ``$job``
  container's ``env``/``volumeMounts``/``ports`` are appended, ``name``/``image`` kept, every
  other key replaces).
"""

from __future__ import annotations

import copy
from typing import Any

JOB_CONTAINER = "job"
EXTENSION_PREFIX = "$"


def hook_fs_init(runner_image: str) -> dict[str, Any]:
    return {
        "name": "fs-init",
        "image": runner_image,
        "command": ["sh", "-c", "sudo mv /home/runner/externals/* /mnt/externals"],
        "securityContext": {"runAsGroup": 1001, "runAsUser": 1001},
        "volumeMounts": [{"name": "externals", "mountPath": "/mnt/externals"}],
    }


def _job_container(image: str) -> dict[str, Any]:
    return {
        "name": JOB_CONTAINER,
        "image": image,
        "ports": [],
        "command": ["tail"],
        "args": ["-f", "/dev/null"],
        "env": [{"name": "GITHUB_ACTIONS", "value": "true"}, {"name": "CI", "value": "true"}],
        "volumeMounts": [{"name": "externals", "mountPath": "/__e"}, {"name": "github", "mountPath": "/github"}],
    }


def _merge_container(base: dict[str, Any], extension: dict[str, Any]) -> None:
    for key, value in extension.items():
        if key in ("name", "image"):
            continue
        if key in ("env", "volumeMounts", "ports") and value:
            base[key] = list(base.get(key) or []) + list(value)
        else:
            base[key] = value


def _merge_pod_spec(base: dict[str, Any], extension: dict[str, Any]) -> None:
    for key, value in extension.items():
        if key == "containers":
            base["containers"] += [c for c in value if not c.get("name", "").startswith(EXTENSION_PREFIX)]
        elif key == "volumes" and value:
            base["volumes"] = list(base.get("volumes") or []) + list(value)
        else:
            base[key] = value


def hook_job_pod(
    *, runner_pod: str, namespace: str, runner_image: str, job_image: str, template: dict[str, Any] | None
) -> dict[str, Any]:
    """The Pod the hooks submit for a job running in ``job_image``, with ``template`` (the
    ACTIONS_RUNNER_CONTAINER_HOOK_TEMPLATE document) merged in, or none."""
    template = copy.deepcopy(template or {})
    container = _job_container(job_image)
    extension_spec = template.get("spec", {})
    extension = next(
        (c for c in extension_spec.get("containers", []) if c.get("name") == EXTENSION_PREFIX + JOB_CONTAINER),
        None,
    )
    if extension:
        _merge_container(container, extension)
    spec: dict[str, Any] = {
        "containers": [container],
        "initContainers": [hook_fs_init(runner_image)],
        "restartPolicy": "Never",
        "volumes": [{"name": "externals", "emptyDir": {}}, {"name": "github", "emptyDir": {}}],
    }
    _merge_pod_spec(spec, extension_spec)
    # constants.ts: getJobPodName() and RunnerInstanceLabel.
    metadata = {
        "name": f"{runner_pod}-workflow", "namespace": namespace, "labels": {"runner-pod": runner_pod}, "annotations": {},
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
