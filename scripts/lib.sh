# Shared helpers for the scripts in this folder (sourced, not run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MLPLANE_VENV:-$ROOT/.venv}"
# The local stack keeps its state in the checkout (no Pulumi Cloud account) and encrypts its
# secrets with the well-known passphrase `mlplane-local` unless you set your own. That default is
# only for state on this machine (a file:// backend): for any other backend, require_secrets_provider
# refuses to go on without PULUMI_CONFIG_PASSPHRASE(_FILE) or a key-management secrets provider
# (the same rule as components/tooling/secrets_provider.py).
export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://$ROOT/.state}"
if [[ -z "${PULUMI_CONFIG_PASSPHRASE+set}" && -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" && "$PULUMI_BACKEND_URL" == file://* ]]; then
  export PULUMI_CONFIG_PASSPHRASE=mlplane-local
fi
export PULUMI_SKIP_UPDATE_CHECK=true

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Exits with how to set one up unless the secrets of STACK's state can be encrypted safely: a
# passphrase you set, a file backend on this machine (default passphrase), Pulumi Cloud (https://,
# its own keys) or a key-management `secretsprovider:` in stacks/Pulumi.STACK.yaml.
require_secrets_provider() {
  local stack="$1"
  [[ -n "${PULUMI_CONFIG_PASSPHRASE+set}" || -n "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]] && return 0
  [[ "$PULUMI_BACKEND_URL" == file://* || "$PULUMI_BACKEND_URL" == https://* ]] && return 0
  grep -qE '^secretsprovider:[[:space:]]*"?(awskms|gcpkms|azurekeyvault|hashivault)://' \
    "$ROOT/stacks/Pulumi.$stack.yaml" 2>/dev/null && return 0
  die "the state backend $PULUMI_BACKEND_URL is not on this machine, so the well-known default passphrase 'mlplane-local' is not used for it (the state holds the cluster-admin kubeconfig): set PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) to a strong secret kept out of git, or create the stack with a key-management secrets provider: pulumi stack init $stack --secrets-provider awskms://alias/mlplane (gcpkms://, azurekeyvault://, hashivault:// work too)"
}

# Install the Python side into $VENV: the library and CLI, plus the extras named in
# MLPLANE_EXTRAS (test.sh asks for test,servers; up.sh needs none). pip shows its progress unless
# MLPLANE_PIP_QUIET=1.
install_python() {
  local py="${PYTHON:-python3}"
  command -v "$py" >/dev/null || die "python3 (3.11+) is missing: install it from your OS packages or python.org"
  "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "python 3.11+ is needed, found $("$py" --version 2>&1)"
  if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating $VENV"
    "$py" -m venv "$VENV"
  fi
  local target="$ROOT" extras="${MLPLANE_EXTRAS:-}"
  [[ -z "$extras" ]] || target="$ROOT[$extras]"
  say "installing mlplane${extras:+ with extras [$extras]} into $VENV (first run: a few minutes, PyPI downloads)"
  local quiet=()
  [[ "${MLPLANE_PIP_QUIET:-0}" != 1 ]] || quiet=(--quiet)
  "$VENV/bin/python" -m pip install "${quiet[@]}" --disable-pip-version-check -e "$target" \
    || die "installing mlplane into $VENV failed (pip's error is above)"
  export PATH="$VENV/bin:$PATH"
}
