#!/usr/bin/env bash
# bootstrap-apiserver.sh - provide a real Kubernetes API server for the e2e test
# tests/e2e/test_e2e_apiserver.py: `kube-apiserver` and `etcd`, built from their Go modules through the
# Go module proxy (no prebuilt binary can be downloaded here), cached per version under
# $MLPLANE_ENGINE_CACHE/kube-apiserver-<version>/ and etcd-<version>/ and linked into the same bin
# dir as scripts/bootstrap-engine.sh (a warm run takes well under a second).
#
# kube-apiserver: k8s.io/kubernetes is not meant to be used as a module: its go.mod requires every
# staging module (k8s.io/api, k8s.io/apiserver, ...) at v0.0.0 and replaces it by ./staging/src/...
# Replaces of a dependency are ignored, so the wrapper module below replaces each `k8s.io/X v0.0.0`
# by the published `k8s.io/X v0.<minor>.<patch>` (the list is generated from kubernetes' go.mod).
#
# Usage: scripts/bootstrap-apiserver.sh [--check | --print-bin-dir | --help]
#   --check          exit 0 iff both binaries are already present (builds nothing)
#   --print-bin-dir  print the directory to put on PATH, nothing else
#
# Environment:
#   MLPLANE_ENGINE_CACHE       built binaries      (default: ~/.cache/mlplane/engine)
#   MLPLANE_ENGINE_BIN         bin dir (honoured through scripts/bootstrap-engine.sh --print-bin-dir)
#   GOMODCACHE, GOCACHE, GOPROXY, GOTOOLCHAIN are honoured (GOTOOLCHAIN defaults to "local").
set -euo pipefail
BUILD_TAG=apiserver
GO_FOR="kube-apiserver and etcd"
# log, die, go_setup, new_wrapper, run_step, link: shared with the other Go builds.
# shellcheck source=go-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-build.sh"

KUBERNETES_VERSION=1.35.0 # k8s.io/kubernetes v1.35.0; staging modules k8s.io/X v0.35.0
ETCD_VERSION=3.6.16       # go.etcd.io/etcd/server/v3 (its module root is the etcd main package)

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_DIR=${MLPLANE_ENGINE_CACHE:-$HOME/.cache/mlplane/engine}
BIN_DIR=$("$SCRIPT_DIR/bootstrap-engine.sh" --print-bin-dir)
APISERVER_DIR="$CACHE_DIR/kube-apiserver-$KUBERNETES_VERSION"
ETCD_DIR="$CACHE_DIR/etcd-$ETCD_VERSION"

everything_present() {
  [[ -x "$BIN_DIR/kube-apiserver" && -x "$BIN_DIR/etcd" ]] || return 1
  [[ "$BIN_DIR/kube-apiserver" -ef "$APISERVER_DIR/kube-apiserver" ]] || return 1
  [[ "$BIN_DIR/etcd" -ef "$ETCD_DIR/etcd" ]]
}

case "${1:-}" in
  "") ;;
  --check) everything_present; exit $? ;;
  --print-bin-dir) echo "$BIN_DIR"; exit 0 ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument '$1' (try --help)" ;;
esac

WORK_DIR="$CACHE_DIR/.work"
LOG_DIR="$CACHE_DIR/logs"
mkdir -p "$CACHE_DIR" "$BIN_DIR" "$WORK_DIR" "$LOG_DIR"

# --- kube-apiserver ----------------------------------------------------------------------------
build_apiserver() {
  local w="$WORK_DIR/kube-apiserver-$KUBERNETES_VERSION" staging_version mod_file minor
  minor=${KUBERNETES_VERSION#*.}
  staging_version="v0.$minor"
  new_wrapper "$w" <<EOF
godebug default=go1.25

require k8s.io/kubernetes v$KUBERNETES_VERSION
EOF
  mod_file=$(cd "$w" && go mod download -json "k8s.io/kubernetes@v$KUBERNETES_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [[ -f "$mod_file" ]] || { echo "cannot download k8s.io/kubernetes@v$KUBERNETES_VERSION"; return 1; }
  # Every `k8s.io/X => ./staging/src/k8s.io/X` of kubernetes' go.mod becomes a module replace.
  local replaces=()
  while read -r m; do replaces+=(-replace "$m@v0.0.0=$m@$staging_version"); done < <(
    sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/src/.*#\1#p' "$mod_file")
  ((${#replaces[@]} > 20)) || { echo "unexpected: only ${#replaces[@]} staging replaces in $mod_file"; return 1; }
  echo "staging replaces: $((${#replaces[@]} / 2)) modules -> $staging_version"
  (cd "$w" && go mod edit "${replaces[@]}")
  rm -rf "$APISERVER_DIR.tmp" && mkdir -p "$APISERVER_DIR.tmp"
  local v=k8s.io/component-base/version
  (cd "$w" && go build -trimpath -ldflags "-s -w -X $v.gitVersion=v$KUBERNETES_VERSION \
      -X $v.gitMajor=${KUBERNETES_VERSION%%.*} -X $v.gitMinor=${minor%%.*} -X $v.gitTreeState=clean" \
    -o "$APISERVER_DIR.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
  rm -rf "$APISERVER_DIR" && mv "$APISERVER_DIR.tmp" "$APISERVER_DIR"
}

# --- etcd --------------------------------------------------------------------------------------
build_etcd() {
  local w="$WORK_DIR/etcd-$ETCD_VERSION"
  new_wrapper "$w" <<EOF
require go.etcd.io/etcd/server/v3 v$ETCD_VERSION
EOF
  rm -rf "$ETCD_DIR.tmp" && mkdir -p "$ETCD_DIR.tmp"
  (cd "$w" && go build -trimpath -ldflags "-s -w" -o "$ETCD_DIR.tmp/etcd" go.etcd.io/etcd/server/v3)
  rm -rf "$ETCD_DIR" && mv "$ETCD_DIR.tmp" "$ETCD_DIR"
}

TOTAL_START=$SECONDS
if [[ -x "$ETCD_DIR/etcd" ]]; then log "etcd $ETCD_VERSION: cached"; else run_step etcd build_etcd; fi
if [[ -x "$APISERVER_DIR/kube-apiserver" ]]; then
  log "kube-apiserver $KUBERNETES_VERSION: cached"
else
  run_step kube-apiserver build_apiserver
fi

link "$ETCD_DIR/etcd" etcd
link "$APISERVER_DIR/kube-apiserver" kube-apiserver

((${#FAILED[@]} == 0)) || die "failed: ${FAILED[*]} (logs in $LOG_DIR)"
log "ready in $((SECONDS - TOTAL_START))s: $BIN_DIR/{kube-apiserver,etcd}"
echo "export PATH=$BIN_DIR:\$PATH"
