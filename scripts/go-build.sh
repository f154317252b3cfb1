# go-build.sh - what the bootstrap scripts that build Go modules share (sourced, not run):
# bootstrap-engine.sh, bootstrap-apiserver.sh, bootstrap-cluster.sh, bootstrap-servers.sh.
#
# The sourcing script sets, before it calls anything here:
#   BUILD_TAG  its short name: the log prefix ([bootstrap-<tag>]) and the wrapper modules' path
#   GO_FOR     what Go is needed for (named when `go` is missing)
#   LOG_DIR    where each build step's log goes
#   BIN_DIR    where `link` puts the built binaries
# and may set RUN_STEP_NICE=1 to build at a lower priority (the machine is shared).
# The helpers leave GO_VERSION, FAILED (the steps that failed) and TIMES (step -> wall and CPU
# time, or how it failed) for the script's summary.

log() { printf '[bootstrap-%s] %s\n' "$BUILD_TAG" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

GO_VERSION=""
FAILED=()
declare -A TIMES=()

# go_setup: Go is only needed when something has to be built (a warm run needs none). The same
# flags for every build keep the Go build cache shared between all of them.
go_setup() {
  [[ -z "$GO_VERSION" ]] || return 0
  command -v go >/dev/null || die "go is needed to build $GO_FOR (https://go.dev/dl/)"
  export GOFLAGS="-mod=mod -buildvcs=false"
  export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
  export CGO_ENABLED=0 # static binaries
  GO_VERSION=$(go env GOVERSION)
  GO_VERSION=${GO_VERSION#go}
}

# new_wrapper DIR: an empty module whose go.mod lines come on stdin ("require ..." / "replace ...").
# Its go line is the local Go version, so a dependency whose go line is newer than the local Go
# fails with an explicit "requires go >= X" instead of a silent toolchain download.
new_wrapper() {
  rm -rf "$1" && mkdir -p "$1"
  { printf 'module mlplane.local/%s-build\n\ngo %s\n\n' "$BUILD_TAG" "$GO_VERSION"; cat; } >"$1/go.mod"
}

# cpu_mark: CPU_NOW = user + system seconds of this shell's children so far.
cpu_mark() {
  times >"$LOG_DIR/.times"
  CPU_NOW=$(awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%d", u[1]*60 + u[2] + s[1]*60 + s[2] }' "$LOG_DIR/.times")
}

# run_step NAME FUNCTION: run FUNCTION with errexit on, its output in $LOG_DIR/NAME.log; on failure
# show the log's tail and record NAME in FAILED (the script goes on with the other steps).
run_step() {
  local name=$1 fn=$2 start=$SECONDS cpu0 rc
  go_setup
  log "$name: building (log: $LOG_DIR/$name.log)"
  cpu_mark && cpu0=$CPU_NOW
  # Not `if "$fn"`: errexit would be off inside the function. The subshell keeps it on.
  set +e
  (
    set -e
    [[ "${RUN_STEP_NICE:-0}" != 1 ]] || renice -n 10 -p $BASHPID >/dev/null 2>&1 || true
    "$fn"
  ) >"$LOG_DIR/$name.log" 2>&1
  rc=$?
  set -e
  cpu_mark
  if ((rc == 0)); then
    TIMES[$name]="$((SECONDS - start))s wall, $((CPU_NOW - cpu0))s CPU"
    log "$name: done (${TIMES[$name]})"
  else
    TIMES[$name]="failed after $((SECONDS - start))s"
    tail -n 20 "$LOG_DIR/$name.log" | sed 's/^/    /' >&2
    log "$name: FAILED after $((SECONDS - start))s (full log: $LOG_DIR/$name.log)"
    FAILED+=("$name")
  fi
}

# link SRC NAME: SRC (when built) as $BIN_DIR/NAME, hard-linked so `-ef` checks can tell which build it is.
link() {
  [[ -x "$1" ]] || return 0
  ln -f "$1" "$BIN_DIR/$2" 2>/dev/null || install -m 0755 "$1" "$BIN_DIR/$2"
}
