"""Building blocks every component may use: Kubernetes helpers (labels, security contexts, network
policy builders, the labelling context `kube.Platform`) and the run mode (offline render or engine)."""
