"""Targets: where the platform runs. A target builds the foundation (cluster, provider, kubeconfig,
registry) that the platform composes services on; `local` is the kind cluster and the registry
container. A new target (`aws`) is a sibling subpackage."""
