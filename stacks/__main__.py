"""Pulumi entry point (Pulumi.yaml `main: stacks/`). All logic lives in the mlplane package."""

from mlplane.program import main

main()
