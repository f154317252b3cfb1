"""Which secrets provider the engine may use for a stack's state (issue 15: no well-known passphrase
outside the laptop).

Stack state holds the cluster-admin kubeconfig and every generated credential, encrypted by the
stack's secrets provider. The default passphrase ``mlplane-local`` is public (it is in this file), so
it is used only for state on this machine (a ``file://`` backend: the local laptop stack). Any other
backend (``s3://``, ``gs://``, ``azblob://``, ...) needs ``PULUMI_CONFIG_PASSPHRASE`` or
``PULUMI_CONFIG_PASSPHRASE_FILE``, or stacks created with a key-management secrets provider
(``secretsprovider: awskms://...`` in their stack file). A Pulumi Cloud backend (``https://``)
encrypts with its own per-stack service keys unless a stack asks for a passphrase, so the default is
never passed there either. scripts/lib.sh applies the same rule to scripts/up.sh.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

LOCAL_PASSPHRASE = "mlplane-local"
#: Secrets providers that are not a passphrase (pulumi stack init --secrets-provider ...).
KMS_PROVIDERS = ("awskms://", "gcpkms://", "azurekeyvault://", "hashivault://")
SERVICE_BACKENDS = ("https://",)

SETUP_HINT = (
    "set PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) to a strong secret kept out of git, "
    "or create the stacks with a key-management secrets provider, e.g. `pulumi stack init STACK "
    "--secrets-provider awskms://alias/mlplane` (gcpkms://, azurekeyvault://, hashivault:// work too)"
)


class SecretsProviderError(Exception):
    """No safe way to encrypt the stack's secrets: one line saying why and how to set one up."""


def stack_secrets_provider(stack_file: Path) -> str | None:
    """The ``secretsprovider`` a stack file declares (None when it declares none or cannot be read)."""
    try:
        document = yaml.safe_load(stack_file.read_text())
    except (OSError, yaml.YAMLError):
        return None
    value = document.get("secretsprovider") if isinstance(document, dict) else None
    return value if isinstance(value, str) else None


def passphrase_env(backend: str, stack_files: Iterable[Path], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The passphrase variables to hand the engine for stacks in ``backend``.

    Raises SecretsProviderError for a backend off this machine with neither a passphrase set nor
    key-management secrets providers on every stack.
    """
    env = os.environ if env is None else env
    if env.get("PULUMI_CONFIG_PASSPHRASE") is not None:
        return {"PULUMI_CONFIG_PASSPHRASE": env["PULUMI_CONFIG_PASSPHRASE"]}
    if env.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        return {"PULUMI_CONFIG_PASSPHRASE_FILE": env["PULUMI_CONFIG_PASSPHRASE_FILE"]}
    if backend.startswith("file://"):
        return {"PULUMI_CONFIG_PASSPHRASE": LOCAL_PASSPHRASE}
    if backend.startswith(SERVICE_BACKENDS):
        return {}
    providers = [stack_secrets_provider(path) for path in stack_files]
    if providers and all(p and p.startswith(KMS_PROVIDERS) for p in providers):
        return {}
    raise SecretsProviderError(
        f"the state backend {backend} is not on this machine, so the well-known default passphrase "
        f"'{LOCAL_PASSPHRASE}' is not used for it (the state holds the cluster-admin kubeconfig): {SETUP_HINT}"
    )
