"""Tooling on top of the stack program: the offline render harness, the plan, footprint, checks,
the reference generator, the verifier and team deployments. No typer: the command line holds it."""
