# Shared helpers for the scripts in this folder (sourced, not run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MLPLANE_VENV:-$ROOT/.venv}"
# The local stack keeps its state in the checkout (no Pulumi Cloud account) and encrypts its
# secrets with this passphrase unless you set your own.
export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://$ROOT/.state}"
export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE-mlplane-local}"
export PULUMI_SKIP_UPDATE_CHECK=true

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Install the Python side (library, CLI and test tools) into $VENV.
install_python() {
  local py="${PYTHON:-python3}"
  command -v "$py" >/dev/null || die "python3 (3.11+) is missing: install it from your OS packages or python.org"
  "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "python 3.11+ is needed, found $("$py" --version 2>&1)"
  if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating $VENV"
    "$py" -m venv "$VENV"
  fi
  say "installing mlplane and its test tools into $VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[test]"
  export PATH="$VENV/bin:$PATH"
}
