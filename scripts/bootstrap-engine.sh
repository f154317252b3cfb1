#!/usr/bin/env bash
# bootstrap-engine.sh - provide the Pulumi engine that mlplane's Python code runs against:
#   * the Pulumi CLI (`pulumi`),
#   * the Python language host (`pulumi-language-python` + `pulumi-language-python-exec`),
#   * the resource plugins kubernetes, random and command, installed into Pulumi's plugin cache
#     so that PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true works.
#
# Two modes:
#   * A `pulumi` is already on PATH (a developer's machine with the official install) and
#     MLPLANE_ENGINE_BUILD != 1: use it; only `pulumi plugin install` missing plugins (needs internet).
#   * Otherwise (CI, sandboxes without GitHub): build every binary from its Go modules through the
#     Go module proxy, cache the binaries per version under $MLPLANE_ENGINE_CACHE/<component>-<version>/
#     (a second run takes seconds) and link them into one bin dir.
#
# Cost of a cold build on 2 cores: ~20 min and ~8 GB (Go module cache 2.3 GB, Go build cache 5.9 GB,
# binaries 0.3 GB); a warm run takes well under a second.
#
# Usage: scripts/bootstrap-engine.sh [--check | --print-bin-dir | --help]
#   --check          exit 0 iff everything is already present (builds/installs nothing)
#   --print-bin-dir  print the directory to put on PATH, nothing else
#
# Environment:
#   MLPLANE_ENGINE_BUILD=1     build from Go modules even if a pulumi is on PATH
#   MLPLANE_ENGINE_CACHE       built binaries      (default: ~/.cache/mlplane/engine)
#   MLPLANE_ENGINE_BIN         bin dir for PATH    (default: ~/.cache/mlplane/engine/bin)
#   MLPLANE_ENGINE_PROVIDERS   plugins to provide  (default: "kubernetes random command")
#   PULUMI_HOME                Pulumi's home; plugins go to $PULUMI_HOME/plugins (default: ~/.pulumi)
#   GOMODCACHE, GOCACHE, GOPROXY, GOTOOLCHAIN are honoured (GOTOOLCHAIN defaults to "local").
#
# Build mode needs go (>= 1.26.6, the CLI's go line) and, for the random provider only, python3.
# The Python SDK packages are installed by the project's own tooling (pins below).
set -euo pipefail
BUILD_TAG=engine
GO_FOR="the Pulumi engine"
# log, die, go_setup, new_wrapper, run_step, link: shared with the other Go builds.
# shellcheck source=go-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-build.sh"

# ---------------------------------------------------------------------------------------------
# Versions. The Python packages pinned in pyproject.toml must match these exactly:
#   pulumi==3.259.0  pulumi-kubernetes==4.25.0  pulumi-random==4.21.1  pulumi-command==1.2.1
# ---------------------------------------------------------------------------------------------
PULUMI_VERSION=3.259.0
KUBERNETES_VERSION=4.25.0
RANDOM_VERSION=4.21.1
COMMAND_VERSION=1.2.1

# Where each version comes from (Go module coordinates). pkg/v3 and sdk/v3 are tagged; the others
# are untagged sub-modules, required at the release commit (pseudo-version or commit hash).
#
# Python language host: its own module (sdk/python/cmd/pulumi-language-python/v3) is not served by
# the module proxy reachable here at any pulumi release, so the host is built from the last sdk/v3
# release that still contained it as a package (v3.79.0). The CLI no longer passes the project's
# runtime options to a language host as flags, so a small shim (written below) reads
# `runtime.options.virtualenv` from Pulumi.yaml and hands it to that host. The exec script
# (pulumi-language-python-exec) comes from sdk/v3@v$PULUMI_VERSION, matching the Python SDK.
PYTHON_HOST_SDK_VERSION=3.79.0
# kubernetes: github.com/pulumi/pulumi-kubernetes/provider/v4 has no tags, and the module proxy
# reachable from mlplane's sandbox serves it at one commit only: f47bc2d6f199 (2026-01-15), the
# source of PyPI's pre-release 4.25.0a1768448096 (the alpha number is the commit's Unix time), a
# day before the 4.25.0 release commit 144dd813d53e. Both Python SDKs are identical but for the
# plugin version, i.e. the schema did not change; the binary is stamped 4.25.0 so that the pin
# stays a release whose plugin `pulumi plugin install` can download (pre-release plugins are not
# published). Where the proxy serves it, the exact release is provider/v4@144dd813d53e.
KUBERNETES_PROVIDER_MODULE_VERSION=v4.0.0-20260115033456-f47bc2d6f199
KUBERNETES_SDK_MODULE_VERSION=v4.25.0
# random / command: release commits (tags v4.21.1 / v1.2.1 of the repositories). `go get` resolves
# a commit hash to the module's pseudo-version through a complete module proxy. NOTE: the proxy
# reachable from the project's sandbox serves no version of these two provider modules, so there
# this step fails with a clear message; see MLPLANE_ENGINE_PROVIDERS.
RANDOM_PROVIDER_COMMIT=f2d8b029d0f708bd14bad9479e016560de9c0b6d
COMMAND_PROVIDER_COMMIT=7f3eb6f3b77cd0fa3895ba437a695dd393f7dd25

# Checksums for modules that the sandbox's checksum-database mirror does not know (the real
# sum.golang.org does); seeding go.sum with them keeps verification on instead of GONOSUMDB.
KUBERNETES_GO_SUM='github.com/pulumi/cloud-ready-checks v1.3.0 h1:sakLHDVOxw6xQQI61NV+sjZNlVbDOe3G6Ie+YQ7le38=
github.com/pulumi/cloud-ready-checks v1.3.0/go.mod h1:Qyyn9c1LftCgYmAHfPzR/f4NLR1j+F85cwDst8bXi18=
github.com/pulumi/pulumi-kubernetes/provider/v4 v4.0.0-20260115033456-f47bc2d6f199 h1:j2bphCf7c2YhnBrhwht2f3TNRRgcMImltUlAgzxr9H4=
github.com/pulumi/pulumi-kubernetes/provider/v4 v4.0.0-20260115033456-f47bc2d6f199/go.mod h1:61at6ZXhz4COFbTksqENrBzq5VUQ/LV8sdZ7WJt9KT4=
github.com/pulumi/pulumi/pkg/v3 v3.215.0 h1:/3HEWgLEa8QDqwQd6qv1A66c5+9azGaVtpCUXTkFnr0=
github.com/pulumi/pulumi/pkg/v3 v3.215.0/go.mod h1:5kx6//mZ6u6KtG3zPyvxgGnc17gZqUFQ5n+GeYY1gT8='

# pkg/v3's go.mod replaces atotto/clipboard by a fork; replaces of dependencies are ignored, so every
# wrapper that links pkg/v3 repeats it.
CLIPBOARD_REPLACE='github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e'

# ---------------------------------------------------------------------------------------------
CACHE_DIR=${MLPLANE_ENGINE_CACHE:-$HOME/.cache/mlplane/engine}
BIN_DIR=${MLPLANE_ENGINE_BIN:-$HOME/.cache/mlplane/engine/bin}
PROVIDERS=${MLPLANE_ENGINE_PROVIDERS:-kubernetes random command}
PLUGIN_DIR=${PULUMI_HOME:-$HOME/.pulumi}/plugins

provider_version() {
  case "$1" in
    kubernetes) echo "$KUBERNETES_VERSION" ;;
    random) echo "$RANDOM_VERSION" ;;
    command) echo "$COMMAND_VERSION" ;;
    *) die "unknown provider '$1' (known: kubernetes random command)" ;;
  esac
}

# A plugin counts as installed when Pulumi's cache holds its binary and no unfinished install.
plugin_installed() { # NAME VERSION
  [[ -x "$PLUGIN_DIR/resource-$1-v$2/pulumi-resource-$1" && ! -e "$PLUGIN_DIR/resource-$1-v$2.partial" ]]
}

# ---------------------------------------------------------------------------------------------
# Mode selection. Our own bin dir on PATH does not count as "a pulumi on PATH".
# ---------------------------------------------------------------------------------------------
ACTION=install
case "${1:-}" in
  "") ;;
  --check) ACTION=check ;;
  --print-bin-dir) ACTION=print-bin-dir ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument '$1' (try --help)" ;;
esac

for p in $PROVIDERS; do provider_version "$p" >/dev/null; done

AMBIENT_PULUMI=""
if [[ "${MLPLANE_ENGINE_BUILD:-}" != 1 ]] && AMBIENT_PULUMI=$(command -v pulumi 2>/dev/null); then
  if [[ -d "$BIN_DIR" && "$(cd "$(dirname "$AMBIENT_PULUMI")" && pwd -P)" == "$(cd "$BIN_DIR" && pwd -P)" ]]; then
    AMBIENT_PULUMI="" # that is our own build: keep managing it
  fi
fi

# ---------------------------------------------------------------------------------------------
# Mode 1: use the pulumi that is already installed.
# ---------------------------------------------------------------------------------------------
if [[ -n "$AMBIENT_PULUMI" ]]; then
  case "$ACTION" in
    print-bin-dir) dirname "$AMBIENT_PULUMI"; exit 0 ;;
    check)
      for p in $PROVIDERS; do plugin_installed "$p" "$(provider_version "$p")" || exit 1; done
      exit 0 ;;
  esac
  log "using the installed pulumi: $AMBIENT_PULUMI ($("$AMBIENT_PULUMI" version 2>/dev/null || echo '?'))"
  [[ "$("$AMBIENT_PULUMI" version 2>/dev/null)" == "v$PULUMI_VERSION" ]] ||
    log "note: mlplane pins pulumi $PULUMI_VERSION; MLPLANE_ENGINE_BUILD=1 builds exactly that version"
  for p in $PROVIDERS; do
    v=$(provider_version "$p")
    if plugin_installed "$p" "$v"; then
      log "plugin $p $v: present"
    else
      log "plugin $p $v: installing"
      "$AMBIENT_PULUMI" plugin install resource "$p" "$v"
    fi
  done
  echo "export PATH=$(dirname "$AMBIENT_PULUMI"):\$PATH"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# Mode 2: build from Go modules.
# ---------------------------------------------------------------------------------------------
CLI_DIR="$CACHE_DIR/pulumi-$PULUMI_VERSION"
HOST_DIR="$CACHE_DIR/pulumi-language-python-$PYTHON_HOST_SDK_VERSION-exec-$PULUMI_VERSION"
provider_dir() { echo "$CACHE_DIR/pulumi-resource-$1-$(provider_version "$1")"; }

everything_present() {
  [[ -x "$BIN_DIR/pulumi" && -x "$BIN_DIR/pulumi-language-python" && -x "$BIN_DIR/pulumi-language-python-exec" ]] || return 1
  [[ "$("$BIN_DIR/pulumi" version 2>/dev/null)" == "v$PULUMI_VERSION" ]] || return 1
  grep -q "$HOST_DIR/" "$BIN_DIR/pulumi-language-python" || return 1
  for p in $PROVIDERS; do plugin_installed "$p" "$(provider_version "$p")" || return 1; done
}

case "$ACTION" in
  print-bin-dir) echo "$BIN_DIR"; exit 0 ;;
  check) everything_present; exit $? ;;
esac

WORK_DIR="$CACHE_DIR/.work"
LOG_DIR="$CACHE_DIR/logs"
mkdir -p "$CACHE_DIR" "$BIN_DIR" "$WORK_DIR" "$LOG_DIR"
# Same flags for every build so that the Go build cache is shared (pkg/v3, sdk/v3, grpc, ...).
BUILD_FLAGS=(-trimpath)

# json_field NAME < go-json: value of a top-level string field of `go mod download -json` output.
json_field() { sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}\$/\1/p" | head -n 1; }

# fetch_module DIR MOD@REV: downloads MOD@REV (REV may be a commit) in wrapper DIR; INFO = its
# `go mod download -json` record (Version, Dir, GoMod). Explains a failure instead of dying silently.
fetch_module() {
  if ! INFO=$(cd "$1" && go mod download -json "$2"); then
    printf '%s\n' "$INFO"
    echo "cannot download $2 through GOPROXY=$(go env GOPROXY)"
    case "$2" in
      */pulumi-random/* | */pulumi-command/*)
        echo "(known: the module proxy reachable from mlplane's sandbox serves no version of it)" ;;
    esac
    return 1
  fi
}

# build_bin DIR OUT PKG LDFLAGS: go build with the shared flags, -s -w and the version stamp.
build_bin() {
  (cd "$1" && go build "${BUILD_FLAGS[@]}" -ldflags "-s -w $4" -o "$2" "$3")
}

# --- Pulumi CLI --------------------------------------------------------------------------------
# pkg/go.mod replaces sdk/v3 by ../sdk, so `go install pkg@v` cannot work: require both explicitly.
build_cli() {
  local w="$WORK_DIR/pulumi-$PULUMI_VERSION"
  new_wrapper "$w" <<EOF
require (
	github.com/pulumi/pulumi/pkg/v3 v$PULUMI_VERSION
	github.com/pulumi/pulumi/sdk/v3 v$PULUMI_VERSION
)

replace $CLIPBOARD_REPLACE
EOF
  rm -rf "$CLI_DIR.tmp" && mkdir -p "$CLI_DIR.tmp"
  build_bin "$w" "$CLI_DIR.tmp/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi \
    "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION"
  rm -rf "$CLI_DIR" && mv "$CLI_DIR.tmp" "$CLI_DIR"
}

# --- Python language host ------------------------------------------------------------------------
build_python_host() {
  local w="$WORK_DIR/pulumi-language-python-$PYTHON_HOST_SDK_VERSION" sdk_dir
  new_wrapper "$w" <<EOF
require github.com/pulumi/pulumi/sdk/v3 v$PYTHON_HOST_SDK_VERSION
EOF
  rm -rf "$HOST_DIR.tmp" && mkdir -p "$HOST_DIR.tmp"
  build_bin "$w" "$HOST_DIR.tmp/pulumi-language-python" \
    github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python \
    "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PYTHON_HOST_SDK_VERSION"
  # The host refuses to start without the exec script beside its own (resolved) executable.
  fetch_module "$w" "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION"
  sdk_dir=$(json_field Dir <<<"$INFO")
  [[ -f "$sdk_dir/python/cmd/pulumi-language-python-exec" ]] || { echo "exec script not found in $sdk_dir"; return 1; }
  install -m 0755 "$sdk_dir/python/cmd/pulumi-language-python-exec" "$HOST_DIR.tmp/"
  rm -rf "$HOST_DIR" && mv "$HOST_DIR.tmp" "$HOST_DIR"
}

# --- kubernetes provider -------------------------------------------------------------------------
# The module's only replace is sdk/v4 => ../sdk: require the sdk/v4 release instead. pkg/v3 stays
# at the provider's own v3.215.0 (it does not compile against the CLI's v3.259: codegen/schema API).
# main.go embeds schema-embed.json and terraform-mapping-embed.json, which `go generate` makes
# from schema.json / terraform-mapping.json and which the module zip lacks: the command's
# directory is copied into the (writable) wrapper and its generator is run there.
build_kubernetes() {
  local w="$WORK_DIR/pulumi-resource-kubernetes-$KUBERNETES_VERSION" src out
  out="$(provider_dir kubernetes)"
  new_wrapper "$w" <<EOF
require (
	github.com/pulumi/pulumi-kubernetes/provider/v4 $KUBERNETES_PROVIDER_MODULE_VERSION
	github.com/pulumi/pulumi-kubernetes/sdk/v4 $KUBERNETES_SDK_MODULE_VERSION
)

replace $CLIPBOARD_REPLACE
EOF
  printf '%s\n' "$KUBERNETES_GO_SUM" >"$w/go.sum"
  fetch_module "$w" "github.com/pulumi/pulumi-kubernetes/provider/v4@$KUBERNETES_PROVIDER_MODULE_VERSION"
  src=$(json_field Dir <<<"$INFO")/cmd/pulumi-resource-kubernetes
  mkdir -p "$w/cmd/pulumi-resource-kubernetes"
  cp "$src"/*.go "$src"/*.json "$w/cmd/pulumi-resource-kubernetes/"
  chmod -R u+w "$w/cmd"
  # == `go generate` (main.go: //go:generate go run ./generate.go), built with the shared flags.
  (cd "$w/cmd/pulumi-resource-kubernetes" && go build "${BUILD_FLAGS[@]}" -o "$w/generate" generate.go &&
    VERSION="$KUBERNETES_VERSION" "$w/generate")
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  build_bin "$w" "$out.tmp/pulumi-resource-kubernetes" ./cmd/pulumi-resource-kubernetes \
    "-X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$KUBERNETES_VERSION"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

# --- random provider (Terraform-bridged) ----------------------------------------------------------
# Untested here (module not served by the sandbox's proxy). provider/v4's go.mod replaces
# .../terraform-provider-random/shim => ./shim, a nested module absent from the zip: it is
# recreated (it only exposes the upstream provider); the other replaces are copied over.
build_random() {
  local w="$WORK_DIR/pulumi-resource-random-$RANDOM_VERSION" mod="github.com/pulumi/pulumi-random/provider/v4" out
  out="$(provider_dir random)"
  new_wrapper "$w" </dev/null
  # Resolve the commit to its pseudo-version and fetch the module's own go.mod first: its replaces
  # must be in place before its requirements (shim v0.0.0 exists nowhere but in ./shim) are loaded.
  fetch_module "$w" "$mod@$RANDOM_PROVIDER_COMMIT"
  (cd "$w" && go mod edit -json "$(json_field GoMod <<<"$INFO")") | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    old, new = r["Old"], r["New"]
    if new.get("Version"):  # module replaces; the directory replace (./shim) is recreated below
        print(old["Path"] + ("@" + old["Version"] if old.get("Version") else "") + "=" + new["Path"] + "@" + new["Version"])
' | while read -r rep; do (cd "$w" && go mod edit -replace "$rep"); done
  mkdir -p "$w/shim"
  printf 'module github.com/terraform-providers/terraform-provider-random/shim\n\ngo 1.21\n' >"$w/shim/go.mod"
  cat >"$w/shim/shim.go" <<'EOF'
package shim

import (
	tfpf "github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/terraform-providers/terraform-provider-random/internal/provider"
)

// NewProvider returns the upstream Terraform provider that pulumi-random bridges.
func NewProvider() tfpf.Provider { return provider.New() }
EOF
  (cd "$w" && go mod edit -replace github.com/terraform-providers/terraform-provider-random/shim=./shim \
    -require "$mod@$(json_field Version <<<"$INFO")")
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  build_bin "$w" "$out.tmp/pulumi-resource-random" "$mod/cmd/pulumi-resource-random" \
    "-X $mod/pkg/version.Version=$RANDOM_VERSION"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

# --- command provider ------------------------------------------------------------------------------
# Untested here (module not served by the sandbox's proxy). No replaces, nothing generated.
build_command() {
  local w="$WORK_DIR/pulumi-resource-command-$COMMAND_VERSION" mod="github.com/pulumi/pulumi-command/provider" out
  out="$(provider_dir command)"
  new_wrapper "$w" </dev/null
  fetch_module "$w" "$mod@$COMMAND_PROVIDER_COMMIT"
  (cd "$w" && go mod edit -require "$mod@$(json_field Version <<<"$INFO")")
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  build_bin "$w" "$out.tmp/pulumi-resource-command" "$mod/cmd/pulumi-resource-command" \
    "-X $mod/pkg/version.Version=$COMMAND_VERSION"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

# ---------------------------------------------------------------------------------------------
# Build what is missing. Builds run one after another: each `go build` already uses both cores,
# and sequential builds let later ones reuse packages the earlier ones compiled.
# ---------------------------------------------------------------------------------------------
TOTAL_START=$SECONDS
if [[ -x "$CLI_DIR/pulumi" ]]; then TIMES[pulumi]=cached; else run_step pulumi build_cli; fi
for p in $PROVIDERS; do
  if [[ "$p" == kubernetes && ! -x "$(provider_dir kubernetes)/pulumi-resource-kubernetes" ]]; then
    run_step "$p" build_kubernetes
  fi
done
if [[ -x "$HOST_DIR/pulumi-language-python" && -x "$HOST_DIR/pulumi-language-python-exec" ]]; then
  TIMES[pulumi-language-python]=cached
else
  run_step pulumi-language-python build_python_host
fi
for p in $PROVIDERS; do
  if [[ -x "$(provider_dir "$p")/pulumi-resource-$p" ]]; then
    TIMES[$p]=${TIMES[$p]:-cached}
  elif [[ "$p" != kubernetes ]]; then
    run_step "$p" "build_$p"
  fi
done

# ---------------------------------------------------------------------------------------------
# Bin dir. pulumi is hard-linked (copied if the link fails), not symlinked: the CLI looks for
# language hosts next to its own resolved executable, i.e. here.
# ---------------------------------------------------------------------------------------------
if [[ -x "$CLI_DIR/pulumi" ]]; then
  if ! [[ "$BIN_DIR/pulumi" -ef "$CLI_DIR/pulumi" ]]; then
    rm -f "$BIN_DIR/pulumi"
    ln "$CLI_DIR/pulumi" "$BIN_DIR/pulumi" 2>/dev/null || cp "$CLI_DIR/pulumi" "$BIN_DIR/pulumi"
  fi
fi
if [[ -x "$HOST_DIR/pulumi-language-python" ]]; then
  ln -sfn "$HOST_DIR/pulumi-language-python-exec" "$BIN_DIR/pulumi-language-python-exec"
  # Shim: the v3.79 host reads runtime options from flags, current CLIs send them over gRPC only.
  # Finds the project's Pulumi.yaml (cwd or above) and passes -root and -virtualenv on.
  cat >"$BIN_DIR/pulumi-language-python.tmp" <<EOF
#!/bin/sh
# Generated by mlplane's scripts/bootstrap-engine.sh: Python language host shim.
host="$HOST_DIR/pulumi-language-python"
dir=\$PWD
while :; do
  for f in "\$dir/Pulumi.yaml" "\$dir/Pulumi.yml"; do
    if [ -f "\$f" ]; then
      venv=\$(sed -n -E 's/^[[:space:]]+virtualenv:[[:space:]]*["'"'"']?([^"'"'"'#[:space:]]+).*\$/\\1/p' "\$f" | head -n 1)
      if [ -n "\$venv" ]; then exec "\$host" -root="\$dir" -virtualenv="\$venv" "\$@"; fi
      exec "\$host" -root="\$dir" "\$@"
    fi
  done
  [ "\$dir" = / ] && break
  dir=\$(dirname "\$dir")
done
exec "\$host" "\$@"
EOF
  chmod 0755 "$BIN_DIR/pulumi-language-python.tmp"
  mv -f "$BIN_DIR/pulumi-language-python.tmp" "$BIN_DIR/pulumi-language-python"
fi

# ---------------------------------------------------------------------------------------------
# Plugins: into Pulumi's plugin cache under the version the Python SDK asks for (idempotent).
# Provider binaries are deliberately not put on PATH: Pulumi would use an ambient
# pulumi-resource-* whatever its version.
# ---------------------------------------------------------------------------------------------
if [[ -x "$BIN_DIR/pulumi" ]]; then
  for p in $PROVIDERS; do
    v=$(provider_version "$p") bin="$(provider_dir "$p")/pulumi-resource-$p"
    if plugin_installed "$p" "$v"; then
      log "plugin $p $v: present in $PLUGIN_DIR"
    elif [[ -x "$bin" ]]; then
      log "plugin $p $v: installing into $PLUGIN_DIR"
      PULUMI_SKIP_UPDATE_CHECK=true "$BIN_DIR/pulumi" plugin install resource "$p" "$v" --file "$bin" >&2 ||
        FAILED+=("install:$p")
    fi
  done
fi

log "timings (cached = binary reused from $CACHE_DIR):"
for k in pulumi pulumi-language-python $PROVIDERS; do log "  $k: ${TIMES[$k]:-n/a}"; done
log "  total: $((SECONDS - TOTAL_START))s"
{
  printf '%s' "$(date -u +%FT%TZ)"
  for k in pulumi pulumi-language-python $PROVIDERS; do printf ' | %s: %s' "$k" "${TIMES[$k]:-n/a}"; done
  printf ' | total: %ss\n' "$((SECONDS - TOTAL_START))"
} >>"$LOG_DIR/timings.txt"

if ((${#FAILED[@]})); then
  log "not provided: ${FAILED[*]} (logs in $LOG_DIR). To go on without a provider, set e.g."
  log "  MLPLANE_ENGINE_PROVIDERS=\"kubernetes\""
  echo "export PATH=$BIN_DIR:\$PATH"
  exit 1
fi
echo "export PATH=$BIN_DIR:\$PATH"
