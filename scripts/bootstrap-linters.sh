#!/usr/bin/env bash
# bootstrap-linters.sh - provide actionlint, the GitHub Actions workflow linter the CI-template
# tests (tests/templates/test_ci_templates.py) run on templates/ci/github/*.yml. It is built from its Go module
# github.com/rhysd/actionlint/cmd/actionlint through the Go module proxy (no prebuilt binary can be
# downloaded here) and cached per version under $MLPLANE_CACHE/actionlint-<version>/ (a warm run
# takes well under a second). zizmor, the other workflow linter, is a PyPI package in the test extras.
#
# Usage: scripts/bootstrap-linters.sh [--check | --print-path | --help]
#   --check       exit 0 iff actionlint is already built (builds nothing)
#   --print-path  print the path of the actionlint binary, nothing else
#
# Environment:
#   MLPLANE_CACHE      cache root (default: ~/.cache/mlplane)
#   GOMODCACHE, GOCACHE, GOPROXY, GOTOOLCHAIN are honoured (GOTOOLCHAIN defaults to "local").
set -euo pipefail

# Listed by `go list -m -versions github.com/rhysd/actionlint` (v1.6.27 ... v1.7.11 v1.7.12).
ACTIONLINT_VERSION=1.7.12

CACHE=${MLPLANE_CACHE:-$HOME/.cache/mlplane}
ACTIONLINT_DIR="$CACHE/actionlint-$ACTIONLINT_VERSION"
ACTIONLINT="$ACTIONLINT_DIR/actionlint"

log() { printf '[bootstrap-linters] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

case "${1:-}" in
  "") ;;
  --check) [[ -x "$ACTIONLINT" ]]; exit $? ;;
  --print-path) echo "$ACTIONLINT"; exit 0 ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument '$1' (try --help)" ;;
esac

if [[ -x "$ACTIONLINT" ]]; then
  exit 0
fi
command -v go >/dev/null || die "go is needed to build actionlint (https://go.dev/dl/)"
export GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"
log "building actionlint v$ACTIONLINT_VERSION from its Go module (once; cached in $ACTIONLINT_DIR)"
mkdir -p "$ACTIONLINT_DIR"
tmp=$(mktemp -d "$ACTIONLINT_DIR/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# `go install MODULE@VERSION` builds outside any module, exactly at the listed version.
GOBIN="$tmp" go install "github.com/rhysd/actionlint/cmd/actionlint@v$ACTIONLINT_VERSION" \
  || die "building actionlint v$ACTIONLINT_VERSION failed (see the go output above)"
"$tmp/actionlint" -version >/dev/null || die "the built actionlint does not run"
mv "$tmp/actionlint" "$ACTIONLINT"
log "actionlint v$ACTIONLINT_VERSION: $ACTIONLINT"
