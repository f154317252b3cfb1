"""The local target: a kind cluster (or an adopted one, or none for `render`) and the registry
container next to it."""
