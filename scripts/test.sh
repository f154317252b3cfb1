#!/usr/bin/env bash
# Run every test: unit tests with mocks, the offline render checked by schemas and checkov,
# tests against real servers (PostgreSQL, MLflow, moto S3, promtool), the CI templates linted
# (actionlint, zizmor), the package built and installed into fresh virtualenvs from its wheel
# (pytest marker `packaging`), and the end-to-end tests with the real Pulumi engine. Installs what
# it needs; expensive tools are cached by version.
#
#   ./scripts/test.sh            everything
#   ./scripts/test.sh -k render  extra arguments go to pytest (unit + servers run only)
source "$(dirname "$0")/lib.sh"

CACHE="${MLPLANE_CACHE:-$HOME/.cache/mlplane}"
CHECKOV_VERSION=3.3.30

MLPLANE_EXTRAS=test,servers MLPLANE_PIP_QUIET=1 install_python

# actionlint for the CI-template tests, built from its Go module (cached by version).
bash "$ROOT/scripts/bootstrap-linters.sh"
export MLPLANE_ACTIONLINT="$(bash "$ROOT/scripts/bootstrap-linters.sh" --print-path)"

# checkov pins old versions of packages mlplane uses: it gets its own virtualenv.
CHECKOV_VENV="$CACHE/checkov-$CHECKOV_VERSION"
if [[ ! -x "$CHECKOV_VENV/bin/checkov" ]]; then
  say "installing checkov $CHECKOV_VERSION into $CHECKOV_VENV"
  python3 -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
fi
export MLPLANE_CHECKOV="$CHECKOV_VENV/bin/checkov"

# Real servers from Debian: PostgreSQL and promtool (package prometheus).
need_apt=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need_apt+=(postgresql)
command -v promtool >/dev/null || need_apt+=(prometheus)
# distribution 2.8 for tests/unit/cli/test_images.py (registry on loopback).
[ -x /usr/bin/docker-registry ] || need_apt+=(docker-registry)
if ((${#need_apt[@]})); then
  if [[ $(id -u) == 0 ]]; then
    say "installing ${need_apt[*]} from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    # The Debian packages start their services; the tests start their own on free ports.
    (service postgresql stop; service prometheus stop; service docker-registry stop) >/dev/null 2>&1 || true
  else
    say "not root: ${need_apt[*]} missing, the tests that need them are skipped"
  fi
fi

# SeaweedFS `weed` and Prometheus 3 built from their Go modules for the `mlplane verify` server
# tests (cold: 32 min here with other builds running, see docs/performance.md; cached by version
# under ~/.cache/mlplane/servers, warm 0.01 s; docs/verify.md).
bash "$ROOT/scripts/bootstrap-servers.sh"

cd "$ROOT"
say "unit, render and real-server tests"
"$VENV/bin/python" -m pytest "$@"

if [[ $# -eq 0 && "${MLPLANE_SKIP_E2E:-0}" != 1 ]]; then
  say "providing the Pulumi engine (cached by version)"
  if ! command -v pulumi >/dev/null; then
    # Built from Go modules: the module proxy reachable from CI serves the CLI and the
    # kubernetes provider but not pulumi-random or pulumi-command (docs/e2e.md); the e2e tests
    # use a stand-in random provider there and do not need command (no kind in CI).
    export MLPLANE_ENGINE_PROVIDERS="${MLPLANE_ENGINE_PROVIDERS:-kubernetes}"
  fi
  bash "$ROOT/scripts/bootstrap-engine.sh"
  # A real kube-apiserver + etcd (cold ~9 min, cached by version) for server-side dry runs.
  bash "$ROOT/scripts/bootstrap-apiserver.sh"
  # kube-controller-manager, kube-scheduler, kwok and the Gateway/Envoy Gateway CRDs for the
  # cluster tests (cold ~N min after the API server, cached by version; docs/e2e.md).
  bash "$ROOT/scripts/bootstrap-cluster.sh"
  export MLPLANE_APISERVER=1
  export PATH="$(bash "$ROOT/scripts/bootstrap-engine.sh" --print-bin-dir):$PATH"
  say "end-to-end tests with the real Pulumi engine"
  "$VENV/bin/python" -m pytest -m e2e
  say "pulumi up against a real control plane with simulated nodes (kwok)"
  "$VENV/bin/python" -m pytest -m cluster
fi
