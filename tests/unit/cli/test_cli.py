"""The mlplane CLI: exit codes, one line per problem, never a traceback, nothing written on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def mlplane(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlplane", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )


def write(tmp_path: Path, text: str, name: str = "platform.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_validate_the_local_stack():
    result = mlplane("validate", "--stack", "local")
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout
    assert "ci_runners" in result.stdout  # says how to turn the runners on


def test_validate_a_file(tmp_path):
    result = mlplane("validate", "--config", str(write(tmp_path, "name: demo\n")))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: Bad_Name\n", "platform.name: must be a DNS-1123 label"),
        ("tracking: {workers: 0}\nnope: 1\n", "platform.nope: unknown key"),
        ("- a\n- b\n", "must hold a mapping of platform settings"),
        ("key: [unclosed\n", "is not valid YAML"),
    ],
)
def test_invalid_file_exits_2_with_the_field_path(tmp_path, text, expected):
    result = mlplane("validate", "--config", str(write(tmp_path, text)))
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_unreadable_file_exits_2(tmp_path):
    result = mlplane("validate", "--config", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_stack_lists_the_available_ones():
    result = mlplane("validate", "--stack", "nope")
    assert result.returncode == 2
    assert "available: " in result.stderr and "local" in result.stderr


def test_stack_and_config_are_exclusive(tmp_path):
    result = mlplane("validate", "--stack", "local", "--config", str(write(tmp_path, "{}")))
    assert result.returncode == 2
    assert "exactly one of --stack NAME or --config FILE" in result.stderr


def test_missing_secret_key_in_a_stack_is_reported(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: mlplane\nruntime: python\n")
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text(
        "config:\n  mlplane:platform:\n    database:\n      mode: external\n"
        "      external: {host: db.example.com, password_key: dbPassword}\n"
    )
    result = mlplane("validate", "--stack", "dev", cwd=tmp_path)
    assert result.returncode == 2
    assert "mlplane:platform.database.external.password_key: secret config key 'dbPassword' is not set" in result.stderr


def test_schema_is_json_schema_of_the_platform():
    result = mlplane("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "PlatformConfig"
    assert schema["additionalProperties"] is False
    assert "cluster" in schema["properties"]


def test_render_of_invalid_config_writes_nothing(tmp_path):
    out = tmp_path / "out"
    result = mlplane("render", "--config", str(write(tmp_path, "name: NOPE\n")), "--out", str(out))
    assert result.returncode == 2
    assert not out.exists()


def test_footprint_rejects_a_bad_budget(tmp_path):
    result = mlplane("footprint", "--config", str(write(tmp_path, "{}")), "--budget-cpu", "lots")
    assert result.returncode == 2
    assert "--budget-cpu: must be a CPU quantity" in result.stderr


def test_usage_errors_exit_2_without_traceback():
    result = mlplane("render", "--bogus")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_generated_docs_are_current():
    result = mlplane("docs", "--check")
    assert result.returncode == 0, result.stderr


def test_local_platform_fits_the_footprint_budget():
    result = mlplane("footprint", "--stack", "local", "--budget-cpu", "1.5", "--budget-memory", "2.5Gi", "--format", "json")
    assert result.returncode == 0, result.stderr
    total = json.loads(result.stdout)["total"]
    assert int(total["cpu_request"].rstrip("m")) <= 1500
    assert int(total["memory_request"].rstrip("Mi")) <= 2560


def test_footprint_over_budget_exits_1():
    result = mlplane("footprint", "--stack", "local", "--budget-cpu", "100m")
    assert result.returncode == 1
    assert "exceed the budget 100m" in result.stderr


def test_stack_config_written_as_a_json_string_is_accepted(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: mlplane\nruntime: python\n")
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text(
        "config:\n  mlplane:platform: '" + json.dumps({"name": "demo"}) + "'\n"
    )
    assert mlplane("validate", "--stack", "dev", cwd=tmp_path).returncode == 0
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text("config:\n  mlplane:platform: '{not json'\n")
    result = mlplane("validate", "--stack", "dev", cwd=tmp_path)
    assert result.returncode == 2
    assert "mlplane:platform: " in result.stderr and "not a JSON object" in result.stderr


def test_offline_commands_read_no_kubeconfig_for_an_existing_cluster(tmp_path):
    config = write(
        tmp_path,
        "cluster: {mode: existing, existing: {kubeconfig: /nonexistent/kubeconfig, context: prod}}\n"
        "registry: {mode: external, external: {url: ghcr.io/acme}}\n"
        "routing: {tls: {plain_http: true}}\n",
    )
    result = mlplane("render", "--config", str(config), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "resources.json").exists()


def test_unwritable_output_and_binary_input_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = mlplane("render", "--config", str(write(tmp_path, "{}")), "--out", str(blocker))
    assert result.returncode == 2 and "--out: cannot write" in result.stderr
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(bytes(range(256)))
    result = mlplane("validate", "--config", str(binary))
    assert result.returncode == 2 and "is not UTF-8 text" in result.stderr
    assert "Traceback" not in result.stderr
