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
# tests; the Pulumi engine, kube-apiserver/etcd, kube-controller-manager/kube-scheduler/kwok and
# the CRDs for the e2e and cluster tests. All cached by version (a warm run takes seconds). Cold,
# they are most of a CI run, so on a full run they build in the background while the unit tests
# run (the Go compiler keeps both cores busy while pytest uses one): docs/performance.md.
build_engine_tools() {
  if ! command -v pulumi >/dev/null; then
    # Built from Go modules: the module proxy reachable from CI serves the CLI and the
    # kubernetes provider but not pulumi-random or pulumi-command (docs/e2e.md); the e2e tests
    # use a stand-in random provider there and do not need command (no kind in CI).
    export MLPLANE_ENGINE_PROVIDERS="${MLPLANE_ENGINE_PROVIDERS:-kubernetes}"
  fi
  bash "$ROOT/scripts/bootstrap-engine.sh"
  # A real kube-apiserver + etcd for server-side dry runs and the cluster tests.
  bash "$ROOT/scripts/bootstrap-apiserver.sh"
  # kube-controller-manager, kube-scheduler, kwok and the Gateway/Envoy Gateway CRDs (docs/e2e.md).
  bash "$ROOT/scripts/bootstrap-cluster.sh"
}

cd "$ROOT"
if [[ $# -gt 0 || "${MLPLANE_SKIP_E2E:-0}" == 1 ]]; then
  bash "$ROOT/scripts/bootstrap-servers.sh"
  say "unit, render and real-server tests"
  "$VENV/bin/python" -m pytest "$@"
  exit 0
fi

BUILD_LOGS=$(mktemp -d)
BUILD_PIDS=()
trap 'kill "${BUILD_PIDS[@]}" 2>/dev/null || true; rm -rf "$BUILD_LOGS"' EXIT
say "building the tool cache in the background (logs: $BUILD_LOGS)"
bash "$ROOT/scripts/bootstrap-servers.sh" >"$BUILD_LOGS/servers.log" 2>&1 &
BUILD_PIDS+=($!)
build_engine_tools >"$BUILD_LOGS/engine.log" 2>&1 &
BUILD_PIDS+=($!)

# wait_for INDEX NAME: the background build's exit status; its log on failure.
wait_for() {
  local started=$SECONDS
  if wait "${BUILD_PIDS[$1]}"; then
    grep -h '^\[bootstrap' "$BUILD_LOGS/$2.log" | grep -v '^\[bootstrap-[a-z]*\] .*: cached$' || true
    say "$2 tools ready (waited $((SECONDS - started))s)"
  else
    tail -n 40 "$BUILD_LOGS/$2.log" >&2
    die "building the $2 tools failed (log above)"
  fi
}

say "unit, render and packaging tests"
# One worker per core (pytest-xdist), a test file's tests on one worker (module fixtures render
# once): 3.5 min instead of 6 on 2 cores (docs/performance.md). MLPLANE_TEST_WORKERS=0: in-process.
"$VENV/bin/python" -m pytest -m "not e2e and not cluster and not servers" -n "${MLPLANE_TEST_WORKERS:-auto}" --dist loadfile

wait_for 0 servers
say "real-server tests"
# Each test file starts its own servers on free ports: files run side by side (5 min instead of 7).
"$VENV/bin/python" -m pytest -m servers -n "${MLPLANE_TEST_WORKERS:-auto}" --dist loadfile

wait_for 1 engine
export MLPLANE_APISERVER=1
export PATH="$(bash "$ROOT/scripts/bootstrap-engine.sh" --print-bin-dir):$PATH"
say "end-to-end tests with the real Pulumi engine, and pulumi up against a real control plane with simulated nodes (kwok)"
# One run, a test file per worker: the cluster file (its steps in order, one control plane) runs
# beside the engine tests (their own API server), every server on free ports: 4.3 min instead of 5.9.
"$VENV/bin/python" -m pytest -m "e2e or cluster" -n "${MLPLANE_TEST_WORKERS:-auto}" --dist loadfile
