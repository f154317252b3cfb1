#!/usr/bin/env bash
# Bring the local platform up: kind + Docker + Pulumi on this machine, state in ./.state.
# The Python side (the mlplane library and CLI, no test tools) is installed first, so the offline
# commands (mlplane validate/render/plan) work even on a machine without Docker, kind or Pulumi.
source "$(dirname "$0")/lib.sh"
STACK="${MLPLANE_STACK:-local}"

install_python
say "mlplane is installed in $VENV: to run it from your shell, source $VENV/bin/activate (or export PATH=\"$VENV/bin:\$PATH\")"

missing=()
command -v docker >/dev/null || missing+=("docker: install Docker Engine or Docker Desktop (https://docs.docker.com/get-docker/)")
command -v kind >/dev/null || missing+=("kind: install kind v0.33.0 (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)")
command -v pulumi >/dev/null || missing+=("pulumi: install the Pulumi CLI (curl -fsSL https://get.pulumi.com | sh)")
if ((${#missing[@]})); then
  printf 'error: missing tools to bring the platform up:\n' >&2
  printf '  - %s\n' "${missing[@]}" >&2
  printf 'The offline commands work without them: %s/bin/mlplane plan --stack %s (see README, "Try it offline").\n' "$VENV" "$STACK" >&2
  exit 1
fi
docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable: start Docker and retry"
require_secrets_provider "$STACK"

cd "$ROOT"
say "mlplane validate --stack $STACK"
mlplane validate --stack "$STACK"
mkdir -p "$ROOT/.state"
pulumi stack select "$STACK" 2>/dev/null || pulumi stack init "$STACK"
say "pulumi up --stack $STACK (state: $PULUMI_BACKEND_URL)"
pulumi up --yes --skip-preview --stack "$STACK"

say "the platform is up"
pulumi stack output urls --stack "$STACK" --json | python3 -c '
import json, sys
for key, url in sorted(json.load(sys.stdin).items()):
    print(f"  {key:<12} {url}")'
cat <<MSG

Credentials (generated, stored encrypted in the stack state):
  MLflow:  user \$(pulumi stack output mlflowAdminUsername)  password: pulumi stack output --show-secrets mlflowAdminPassword
  Grafana: user admin  password: pulumi stack output --show-secrets grafanaAdminPassword
  S3:      pulumi stack output --show-secrets s3AccessKeyId / s3SecretAccessKey
  kubectl: (umask 077 && mkdir -p ~/.kube && pulumi stack output --show-secrets kubeconfig > ~/.kube/mlplane) && export KUBECONFIG=~/.kube/mlplane
           (umask 077: the kubeconfig is cluster-admin, readable by you only, mode 0600)
Run these with PULUMI_BACKEND_URL=$PULUMI_BACKEND_URL and PULUMI_CONFIG_PASSPHRASE set (see README).
The mlplane CLI: source $VENV/bin/activate (or export PATH="$VENV/bin:\$PATH").
MSG
