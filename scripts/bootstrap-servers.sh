#!/usr/bin/env bash
# bootstrap-servers.sh - build the real servers the `servers` tests run with mlplane's rendered
# settings (tests/servers/test_verify_servers.py): SeaweedFS `weed` and Prometheus 3, from their
# Go modules through the Go module proxy (no prebuilt binary can be downloaded here), cached per
# version under $MLPLANE_SERVERS_CACHE/<name>-<version>/ and niced (the machine is shared). A warm
# run takes well under a second.
#
# Versions (docs/verify.md):
# - Prometheus: mlplane deploys prom/prometheus v3.15.1 (components/config/versions.py); Prometheus 3
#   publishes its Go module as v0.<minor*100+...>: v3.15.1 is github.com/prometheus/prometheus
#   v0.315.1 (`go list -m -versions github.com/prometheus/prometheus`). Built without the
#   `builtinassets` tag, so without the web UI (the API and /metrics are all the tests need).
# - SeaweedFS: mlplane deploys chrislusf/seaweedfs 4.47; its repository tags releases as `4.47`
#   (not semver), so the module proxy serves pseudo-versions only, and here exactly one:
#   v0.0.0-20261109003541-7506e5f91cd6 (weed/util/version/constants.go says 4.53), the nearest
#   to 4.47 available (`curl https://proxy.golang.org/github.com/seaweedfs/seaweedfs/@v/list`).
# Both modules carry `replace` directives, so `go install mod@version` refuses them: each is built
# from a wrapper module that requires it and repeats its replaces.
#
# Usage: scripts/bootstrap-servers.sh [--check | --print-bin-dir | --help]
#   --check          exit 0 iff the binaries are already built (builds nothing)
#   --print-bin-dir  print the directory holding `weed`, `prometheus` and `promtool`, nothing else
#
# Environment:
#   MLPLANE_SERVERS_CACHE   built binaries (default: ~/.cache/mlplane/servers)
#   GOMODCACHE, GOCACHE, GOPROXY, GOTOOLCHAIN are honoured (GOTOOLCHAIN defaults to "local").
set -euo pipefail
BUILD_TAG=servers
GO_FOR="weed and prometheus"
RUN_STEP_NICE=1
# log, die, go_setup, new_wrapper, run_step, link: shared with the other Go builds.
# shellcheck source=go-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-build.sh"

PROMETHEUS_MODULE_VERSION=v0.315.1 # = Prometheus v3.15.1
PROMETHEUS_VERSION=3.15.1
SEAWEEDFS_MODULE_VERSION=v0.0.0-20261109003541-7506e5f91cd6
SEAWEEDFS_VERSION=4.53

CACHE_DIR=${MLPLANE_SERVERS_CACHE:-$HOME/.cache/mlplane/servers}
BIN_DIR="$CACHE_DIR/bin"
WEED_DIR="$CACHE_DIR/weed-$SEAWEEDFS_MODULE_VERSION"
# Only the service discovery the rendered configuration uses (kubernetes_sd_configs; static, file
# and http are always in): Prometheus' own build tags (plugins/plugin_*.go in the module:
# `//go:build !remove_all_sd || enable_<name>_sd`) leave out the cloud SDKs, about a sixth of the
# packages and most of the cold build time. The cache key carries the tags.
PROMETHEUS_TAGS=remove_all_sd,enable_kubernetes_sd
PROM_DIR="$CACHE_DIR/prometheus-$PROMETHEUS_MODULE_VERSION-${PROMETHEUS_TAGS//,/-}"

everything_present() {
  [[ -x "$BIN_DIR/weed" && -x "$BIN_DIR/prometheus" && -x "$BIN_DIR/promtool" ]] || return 1
  [[ "$BIN_DIR/weed" -ef "$WEED_DIR/weed" ]] || return 1
  [[ "$BIN_DIR/promtool" -ef "$PROM_DIR/promtool" ]] || return 1
  [[ "$BIN_DIR/prometheus" -ef "$PROM_DIR/prometheus" ]]
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

# module_wrapper DIR MODULE VERSION: a module requiring MODULE@VERSION with MODULE's own replaces.
module_wrapper() {
  local dir=$1 module=$2 version=$3 mod_file
  rm -rf "$dir" && mkdir -p "$dir"
  printf 'module mlplane.local/servers-build\n\ngo %s\n\nrequire %s %s\n' \
    "$GO_VERSION" "$module" "$version" >"$dir/go.mod"
  mod_file=$(cd "$dir" && go mod download -json "$module@$version" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [[ -f "$mod_file" ]] || { echo "cannot download $module@$version"; return 1; }
  # Only replaces by another module version (`=> path vX`), never by a local directory.
  sed -n 's#^[[:space:]]*\(replace[[:space:]]\)\{0,1\}\([^/[:space:]][^[:space:]]*\)\( v[^[:space:]]*\)\{0,1\} => \([^./[:space:]][^[:space:]]*\) \(v[^[:space:]]*\)$#\2=\4@\5#p' \
    "$mod_file" | while read -r r; do (cd "$dir" && go mod edit -replace "$r"); done
  echo "wrapper go.mod:" && cat "$dir/go.mod"
}

build_weed() {
  local w="$WORK_DIR/weed-$SEAWEEDFS_MODULE_VERSION"
  module_wrapper "$w" github.com/seaweedfs/seaweedfs "$SEAWEEDFS_MODULE_VERSION"
  rm -rf "$WEED_DIR.tmp" && mkdir -p "$WEED_DIR.tmp"
  (cd "$w" && go build -trimpath -ldflags "-s -w" -o "$WEED_DIR.tmp/weed" \
    github.com/seaweedfs/seaweedfs/weed)
  "$WEED_DIR.tmp/weed" version
  rm -rf "$WEED_DIR" && mv "$WEED_DIR.tmp" "$WEED_DIR"
}

build_prometheus() {
  local w="$WORK_DIR/prometheus-$PROMETHEUS_MODULE_VERSION" v=github.com/prometheus/common/version
  module_wrapper "$w" github.com/prometheus/prometheus "$PROMETHEUS_MODULE_VERSION"
  rm -rf "$PROM_DIR.tmp" && mkdir -p "$PROM_DIR.tmp"
  (cd "$w" && go build -trimpath -tags "$PROMETHEUS_TAGS" \
    -ldflags "-s -w -X $v.Version=$PROMETHEUS_VERSION -X $v.Branch=module" \
    -o "$PROM_DIR.tmp/prometheus" github.com/prometheus/prometheus/cmd/prometheus)
  # promtool of the same release (Debian's 2.42 lacks Kubernetes discovery): ~12 s more, warm.
  (cd "$w" && go build -trimpath -tags "$PROMETHEUS_TAGS" \
    -ldflags "-s -w -X $v.Version=$PROMETHEUS_VERSION -X $v.Branch=module" \
    -o "$PROM_DIR.tmp/promtool" github.com/prometheus/prometheus/cmd/promtool)
  "$PROM_DIR.tmp/prometheus" --version
  rm -rf "$PROM_DIR" && mv "$PROM_DIR.tmp" "$PROM_DIR"
}

TOTAL_START=$SECONDS
if [[ -x "$PROM_DIR/prometheus" && -x "$PROM_DIR/promtool" ]]; then
  log "prometheus $PROMETHEUS_VERSION: cached"
else
  run_step prometheus build_prometheus
fi
if [[ -x "$WEED_DIR/weed" ]]; then
  log "weed $SEAWEEDFS_VERSION: cached"
else
  run_step weed build_weed
fi

link "$WEED_DIR/weed" weed
link "$PROM_DIR/prometheus" prometheus
link "$PROM_DIR/promtool" promtool

((${#FAILED[@]} == 0)) || die "failed: ${FAILED[*]} (logs in $LOG_DIR)"
log "ready in $((SECONDS - TOTAL_START))s: $BIN_DIR/{weed,prometheus,promtool}"
