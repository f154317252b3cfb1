"""The well-known default passphrase only protects state on this machine (issue 15, item 6).

`mlplane-local` is public, and stack state holds the cluster-admin kubeconfig: it is used for a
file:// backend only. Any other backend needs PULUMI_CONFIG_PASSPHRASE(_FILE) or key-management
secrets providers on the stacks (Pulumi Cloud, https://, has its own keys). The same rule holds in
the team commands (mlplane.cli.teams.workspace_env) and in scripts/up.sh (scripts/lib.sh).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mlplane.cli import teams
from mlplane.tooling.secrets_provider import LOCAL_PASSPHRASE, SecretsProviderError, passphrase_env

ROOT = Path(__file__).resolve().parents[3]
REMOTE = ["s3://acme-state", "gs://acme-state", "azblob://state", "s3://bucket?region=eu-west-1&endpoint=minio:9000"]


def stack(tmp_path: Path, name: str, provider: str | None) -> Path:
    path = tmp_path / f"Pulumi.{name}.yaml"
    path.write_text((f"secretsprovider: {provider}\n" if provider else "") + "config: {}\n")
    return path


def test_file_backend_gets_the_local_default():
    assert passphrase_env("file:///home/me/mlplane/.state", [], env={}) == {"PULUMI_CONFIG_PASSPHRASE": LOCAL_PASSPHRASE}


@pytest.mark.parametrize("backend", REMOTE)
def test_remote_backends_refuse_without_a_passphrase(backend, tmp_path):
    with pytest.raises(SecretsProviderError) as error:
        passphrase_env(backend, [stack(tmp_path, "prod", None)], env={})
    message = str(error.value)
    assert backend in message and "PULUMI_CONFIG_PASSPHRASE" in message and "--secrets-provider awskms://" in message


@pytest.mark.parametrize("backend", REMOTE)
def test_a_passphrase_the_user_set_is_used_everywhere(backend):
    assert passphrase_env(backend, [], env={"PULUMI_CONFIG_PASSPHRASE": "s3cret"}) == {"PULUMI_CONFIG_PASSPHRASE": "s3cret"}
    assert passphrase_env(backend, [], env={"PULUMI_CONFIG_PASSPHRASE_FILE": "/run/pp"}) == {"PULUMI_CONFIG_PASSPHRASE_FILE": "/run/pp"}


def test_kms_secrets_providers_need_no_passphrase_but_every_stack_must_have_one(tmp_path):
    kms = [stack(tmp_path, "prod", "awskms://alias/mlplane"), stack(tmp_path, "team-a", "gcpkms://projects/p/keys/k")]
    assert passphrase_env("s3://state", kms, env={}) == {}
    with pytest.raises(SecretsProviderError):
        passphrase_env("s3://state", [*kms, stack(tmp_path, "dev", "passphrase")], env={})
    with pytest.raises(SecretsProviderError):
        passphrase_env("s3://state", [], env={})


def test_pulumi_cloud_uses_its_own_keys_and_never_the_default():
    assert passphrase_env("https://api.pulumi.com", [], env={}) == {}


def test_team_commands_refuse_a_remote_backend_without_a_passphrase(tmp_path, monkeypatch):
    (tmp_path / "stacks").mkdir()
    stack(tmp_path / "stacks", "local", None)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    monkeypatch.setenv("PULUMI_BACKEND_URL", "s3://acme-state")
    with pytest.raises(teams.DeployError) as error:
        teams.workspace_env(tmp_path)
    assert "s3://acme-state" in error.value.problems[0] and "nothing was written or deployed" in error.value.problems[0]
    monkeypatch.delenv("PULUMI_BACKEND_URL")
    env = teams.workspace_env(tmp_path)
    assert env["PULUMI_CONFIG_PASSPHRASE"] == LOCAL_PASSPHRASE and env["PULUMI_BACKEND_URL"].startswith("file://")


def lib_sh(backend: str | None, stack_name: str = "local", **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    if backend:
        env["PULUMI_BACKEND_URL"] = backend
    env.update(extra)
    script = f'source "{ROOT}/scripts/lib.sh"; require_secrets_provider {stack_name}; echo "OK ${{PULUMI_CONFIG_PASSPHRASE-unset}}"'
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)


def test_lib_sh_defaults_the_passphrase_only_for_the_file_backend():
    assert lib_sh(None).stdout.strip() == f"OK {LOCAL_PASSPHRASE}"
    refused = lib_sh("s3://acme-state")
    assert refused.returncode == 1 and refused.stdout == ""
    assert "s3://acme-state" in refused.stderr and "PULUMI_CONFIG_PASSPHRASE" in refused.stderr and "awskms://" in refused.stderr
    assert lib_sh("s3://acme-state", PULUMI_CONFIG_PASSPHRASE="s3cret").stdout.strip() == "OK s3cret"
    assert lib_sh("gs://acme-state", PULUMI_CONFIG_PASSPHRASE_FILE="/run/pp").stdout.strip() == "OK unset"
    assert lib_sh("https://api.pulumi.com").stdout.strip() == "OK unset"
