"""Which node group a pod of the platform (or of a team on it) runs on, on AWS.

A created cluster has managed node groups labelled ``mlplane.dev/node-group`` (``system``,
``serving`` and, with ``aws.eks.node_groups.gpu.enabled``, ``gpu`` tainted ``nvidia.com/gpu``:
:mod:`mlplane.targets.aws.eks`). Components pin their pods through
:meth:`mlplane.core.kube.Platform.place`: platform services to ``system``, models, their drift
jobs and CI job pods to ``serving``, a model asking for GPUs to ``gpu`` with the taint's
toleration. An adopted cluster's nodes carry none of these labels: no placement there.

This module imports no AWS SDK: the team stack uses it too.
"""

from __future__ import annotations

from mlplane.config import PlatformConfig
from mlplane.core import kube


def node_placement(config: PlatformConfig) -> kube.NodePlacement | None:
    """The node placement of a platform on AWS with a created cluster; None otherwise."""
    aws = config.aws
    if config.target != "aws" or aws is None or aws.eks.mode != "create":
        return None
    return kube.NodePlacement(gpu=aws.eks.node_groups.gpu.enabled)
