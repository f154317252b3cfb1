#!/usr/bin/env bash
# Tear the local platform down: deletes the kind cluster, the registry container and its volume.
source "$(dirname "$0")/lib.sh"
STACK="${MLPLANE_STACK:-local}"
command -v pulumi >/dev/null || die "pulumi is missing: install the Pulumi CLI"
cd "$ROOT"
pulumi destroy --yes --skip-preview --stack "$STACK"
say "destroyed; the empty stack remains (pulumi stack rm $STACK removes it)"
