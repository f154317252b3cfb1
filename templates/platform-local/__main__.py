"""${DESCRIPTION}: the mlplane platform built from the stack's `mlplane:platform` config."""

from mlplane.program import main

main()
