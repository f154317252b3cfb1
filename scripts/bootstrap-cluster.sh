#!/usr/bin/env bash
# bootstrap-cluster.sh - the rest of a control plane with simulated nodes, for the cluster tests
# (pytest -m cluster, tests/cluster/): kube-controller-manager and kube-scheduler, kwok (simulated
# nodes and pod lifecycles) and the CRDs of the custom resources mlplane creates (Gateway API and
# Envoy Gateway). kube-apiserver and etcd come from scripts/bootstrap-apiserver.sh, run first.
#
# Everything is built from Go modules through the Go module proxy, cached per version under
# $MLPLANE_ENGINE_CACHE/<component>-<version>/ and linked into the engine's bin dir
# (scripts/bootstrap-engine.sh --print-bin-dir); a warm run takes well under a second.
#
# * kube-controller-manager, kube-scheduler: k8s.io/kubernetes at the version bootstrap-apiserver.sh
#   builds, through the same kind of wrapper module (each staging module k8s.io/X v0.0.0 replaced
#   by the published k8s.io/X v0.<minor>.<patch>) and the same Go build cache, so after
#   kube-apiserver little is left to compile.
# * kwok: sigs.k8s.io/kwok/cmd/kwok (`go list -m -versions sigs.k8s.io/kwok` lists v0.8.0).
# * CRDs: taken from the Go module zip of github.com/envoyproxy/gateway at the Envoy Gateway
#   chart version pinned in components/config/versions.py: charts/gateway-helm/charts/crds/crds/
#   gatewayapi-crds.yaml (the Gateway API CRDs that chart installs; its bundle-version must equal
#   versions.GATEWAY_API_VERSION) and generated/gateway.envoyproxy.io_*.yaml (generated upstream
#   by controller-gen from the api/v1alpha1 Go types of that tag). Exactly the files the chart
#   installs, so no controller-gen run is needed here.
#
# Usage: scripts/bootstrap-cluster.sh [--check | --print-bin-dir | --print-crd-dir | --print-kwok-stages | --help]
#   --check          exit 0 iff every binary and the CRDs are already present (builds nothing)
#   --print-bin-dir  print the directory to put on PATH, nothing else
#   --print-crd-dir  print the directory holding the CRD manifests, nothing else
#   --print-kwok-stages  print the directory holding kwok's default Stage manifests, nothing else
#
# Environment:
#   MLPLANE_ENGINE_CACHE       built binaries      (default: ~/.cache/mlplane/engine)
#   MLPLANE_ENGINE_BIN         bin dir (honoured through scripts/bootstrap-engine.sh --print-bin-dir)
#   GOMODCACHE, GOCACHE, GOPROXY, GOTOOLCHAIN are honoured (GOTOOLCHAIN defaults to "local").
set -euo pipefail
BUILD_TAG=cluster
GO_FOR="the control plane and kwok"
# log, die, go_setup, new_wrapper, run_step, link: shared with the other Go builds.
# shellcheck source=go-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-build.sh"

KWOK_VERSION=0.8.0 # sigs.k8s.io/kwok v0.8.0 (go 1.26.0, k8s.io/client-go v0.36.1)

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
# One Kubernetes version for the whole control plane: the one bootstrap-apiserver.sh builds.
KUBERNETES_VERSION=$(sed -n 's/^KUBERNETES_VERSION=\([0-9.]*\).*/\1/p' "$SCRIPT_DIR/bootstrap-apiserver.sh")
[[ -n "$KUBERNETES_VERSION" ]] || { echo "cannot read KUBERNETES_VERSION from bootstrap-apiserver.sh" >&2; exit 1; }
# The Envoy Gateway version mlplane pins (versions.py is plain Python with no imports of mlplane).
ENVOY_GATEWAY_VERSION=$(python3 - "$ROOT_DIR/components/config/versions.py" <<'EOF'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("mlplane_versions", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
print(module.CHARTS["envoy-gateway"].version, module.GATEWAY_API_VERSION)
EOF
)
GATEWAY_API_VERSION=${ENVOY_GATEWAY_VERSION#* }
ENVOY_GATEWAY_VERSION=${ENVOY_GATEWAY_VERSION%% *}

CACHE_DIR=${MLPLANE_ENGINE_CACHE:-$HOME/.cache/mlplane/engine}
BIN_DIR=$("$SCRIPT_DIR/bootstrap-engine.sh" --print-bin-dir)
CONTROL_DIR="$CACHE_DIR/kube-control-plane-$KUBERNETES_VERSION"
KWOK_DIR="$CACHE_DIR/kwok-$KWOK_VERSION"
CRD_DIR="$CACHE_DIR/crds-envoy-gateway-$ENVOY_GATEWAY_VERSION"

everything_present() {
  local name
  for name in kube-controller-manager kube-scheduler; do
    [[ -x "$BIN_DIR/$name" && "$BIN_DIR/$name" -ef "$CONTROL_DIR/$name" ]] || return 1
  done
  [[ -x "$BIN_DIR/kwok" && "$BIN_DIR/kwok" -ef "$KWOK_DIR/kwok" && -d "$KWOK_DIR/stages" ]] || return 1
  [[ -f "$CRD_DIR/gatewayapi-crds.yaml" && -f "$CRD_DIR/gateway.envoyproxy.io_envoyproxies.yaml" ]]
}

case "${1:-}" in
  "") ;;
  --check) everything_present; exit $? ;;
  --print-bin-dir) echo "$BIN_DIR"; exit 0 ;;
  --print-crd-dir) echo "$CRD_DIR"; exit 0 ;;
  --print-kwok-stages) echo "$KWOK_DIR/stages"; exit 0 ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument '$1' (try --help)" ;;
esac

WORK_DIR="$CACHE_DIR/.work"
LOG_DIR="$CACHE_DIR/logs"
mkdir -p "$CACHE_DIR" "$BIN_DIR" "$WORK_DIR" "$LOG_DIR"

# --- kube-controller-manager, kube-scheduler -----------------------------------------------------
build_control_plane() {
  local w="$WORK_DIR/kube-control-plane-$KUBERNETES_VERSION" staging_version mod_file minor
  minor=${KUBERNETES_VERSION#*.}
  staging_version="v0.$minor"
  new_wrapper "$w" <<EOF
godebug default=go1.25

require k8s.io/kubernetes v$KUBERNETES_VERSION
EOF
  mod_file=$(cd "$w" && go mod download -json "k8s.io/kubernetes@v$KUBERNETES_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [[ -f "$mod_file" ]] || { echo "cannot download k8s.io/kubernetes@v$KUBERNETES_VERSION"; return 1; }
  local replaces=()
  while read -r m; do replaces+=(-replace "$m@v0.0.0=$m@$staging_version"); done < <(
    sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/src/.*#\1#p' "$mod_file")
  ((${#replaces[@]} > 20)) || { echo "unexpected: only ${#replaces[@]} staging replaces in $mod_file"; return 1; }
  echo "staging replaces: $((${#replaces[@]} / 2)) modules -> $staging_version"
  (cd "$w" && go mod edit "${replaces[@]}")
  rm -rf "$CONTROL_DIR.tmp" && mkdir -p "$CONTROL_DIR.tmp"
  local v=k8s.io/component-base/version
  (cd "$w" && go build -trimpath -ldflags "-s -w -X $v.gitVersion=v$KUBERNETES_VERSION \
      -X $v.gitMajor=${KUBERNETES_VERSION%%.*} -X $v.gitMinor=${minor%%.*} -X $v.gitTreeState=clean" \
    -o "$CONTROL_DIR.tmp/" k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler)
  rm -rf "$CONTROL_DIR" && mv "$CONTROL_DIR.tmp" "$CONTROL_DIR"
}

# --- kwok ----------------------------------------------------------------------------------------
build_kwok() {
  local w="$WORK_DIR/kwok-$KWOK_VERSION"
  new_wrapper "$w" <<EOF
require sigs.k8s.io/kwok v$KWOK_VERSION
EOF
  rm -rf "$KWOK_DIR.tmp" && mkdir -p "$KWOK_DIR.tmp"
  (cd "$w" && go build -trimpath -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=v$KWOK_VERSION" \
    -o "$KWOK_DIR.tmp/kwok" sigs.k8s.io/kwok/cmd/kwok)
  # The kwok binary runs only the Stages given with --config (kwokctl passes its defaults the
  # same way): keep the module's default node, pod and volume stages beside it.
  local src
  src=$(cd "$w" && go mod download -json "sigs.k8s.io/kwok@v$KWOK_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')/kustomize/stage
  mkdir -p "$KWOK_DIR.tmp/stages"
  cp "$src"/node/fast/node-initialize.yaml "$src"/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    "$src"/pod/fast/pod-{ready,complete,delete}.yaml \
    "$src"/volume/fast/{pv-bind,pv-delete,pvc-provision,pvc-delete,storage-class}.yaml "$KWOK_DIR.tmp/stages/"
  chmod -R u+w "$KWOK_DIR.tmp"
  rm -rf "$KWOK_DIR" && mv "$KWOK_DIR.tmp" "$KWOK_DIR"
}

# --- CRDs ----------------------------------------------------------------------------------------
fetch_crds() {
  local dir src
  dir=$(go mod download -json "github.com/envoyproxy/gateway@$ENVOY_GATEWAY_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  src="$dir/charts/gateway-helm/charts/crds/crds"
  [[ -f "$src/gatewayapi-crds.yaml" ]] || { echo "no $src/gatewayapi-crds.yaml in the module zip"; return 1; }
  grep -q "gateway.networking.k8s.io/bundle-version: $GATEWAY_API_VERSION\$" "$src/gatewayapi-crds.yaml" || {
    echo "Envoy Gateway $ENVOY_GATEWAY_VERSION bundles Gateway API" \
      "$(grep -m1 -o 'bundle-version: .*' "$src/gatewayapi-crds.yaml"), versions.py pins $GATEWAY_API_VERSION"
    return 1
  }
  rm -rf "$CRD_DIR.tmp" && mkdir -p "$CRD_DIR.tmp"
  cp "$src/gatewayapi-crds.yaml" "$src"/generated/gateway.envoyproxy.io_*.yaml "$CRD_DIR.tmp/"
  chmod -R u+w "$CRD_DIR.tmp"
  printf 'github.com/envoyproxy/gateway %s charts/gateway-helm/charts/crds/crds (Gateway API %s)\n' \
    "$ENVOY_GATEWAY_VERSION" "$GATEWAY_API_VERSION" >"$CRD_DIR.tmp/SOURCE"
  rm -rf "$CRD_DIR" && mv "$CRD_DIR.tmp" "$CRD_DIR"
}

TOTAL_START=$SECONDS
if [[ -f "$CRD_DIR/SOURCE" ]]; then log "CRDs (Envoy Gateway $ENVOY_GATEWAY_VERSION): cached"; else run_step crds fetch_crds; fi
if [[ -x "$KWOK_DIR/kwok" && -d "$KWOK_DIR/stages" ]]; then log "kwok $KWOK_VERSION: cached"; else run_step kwok build_kwok; fi
if [[ -x "$CONTROL_DIR/kube-controller-manager" && -x "$CONTROL_DIR/kube-scheduler" ]]; then
  log "kube-controller-manager, kube-scheduler $KUBERNETES_VERSION: cached"
else
  run_step kube-control-plane build_control_plane
fi

link "$CONTROL_DIR/kube-controller-manager" kube-controller-manager
link "$CONTROL_DIR/kube-scheduler" kube-scheduler
link "$KWOK_DIR/kwok" kwok

((${#FAILED[@]} == 0)) || die "failed: ${FAILED[*]} (logs in $LOG_DIR)"
log "ready in $((SECONDS - TOTAL_START))s: $BIN_DIR/{kube-controller-manager,kube-scheduler,kwok}, CRDs in $CRD_DIR"
echo "export PATH=$BIN_DIR:\$PATH"
