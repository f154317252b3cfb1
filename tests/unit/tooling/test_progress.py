"""Progress lines: on stderr for the steps a user waits on, never on stdout, silenced by --quiet."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from mlplane.tooling import progress

ROOT = Path(__file__).resolve().parents[3]
STEPS = ("rendering stack local offline…", "validating schemas (Kubernetes", "running")


def mlplane(*args: str, force: str | None = "1") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != progress.ENV}
    if force is not None:
        env[progress.ENV] = force
    return subprocess.run(
        [sys.executable, "-m", "mlplane", *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=180
    )


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def terminal(monkeypatch) -> _Terminal:
    """stderr replaced by a terminal (in the test body: pytest's capture resets it between phases)."""
    monkeypatch.delenv(progress.ENV, raising=False)
    monkeypatch.setattr(progress, "_quiet", False)
    stream = _Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    return stream


def test_progress_is_written_to_a_terminal_stderr(monkeypatch):
    stderr_tty = terminal(monkeypatch)
    with progress.step("rendering stack local offline"):
        pass
    assert stderr_tty.getvalue() == "rendering stack local offline…\n"


def test_quiet_silences_progress_even_on_a_terminal(monkeypatch):
    stderr_tty = terminal(monkeypatch)
    progress.set_quiet(True)
    progress.note("running policies…")
    assert stderr_tty.getvalue() == ""


@pytest.mark.parametrize(("forced", "shown"), [("1", True), ("0", False), ("", False), ("nonsense", False)])
def test_the_environment_overrides_the_terminal_check(monkeypatch, forced, shown):
    monkeypatch.setattr(progress, "_quiet", False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    monkeypatch.setenv(progress.ENV, forced)
    assert progress.enabled() is shown


def test_a_closed_stderr_never_fails_the_command(monkeypatch):
    monkeypatch.setattr(progress, "_quiet", False)
    monkeypatch.setenv(progress.ENV, "1")
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)
    with progress.step("rendering stack local offline"):
        pass


def test_a_failing_step_reports_no_completion(monkeypatch):
    stderr_tty = terminal(monkeypatch)
    with pytest.raises(RuntimeError), progress.step("running policies"):
        raise RuntimeError("boom")
    assert stderr_tty.getvalue() == "running policies…\n"


def test_plan_json_shows_each_step_on_stderr_and_keeps_stdout_json():
    result = mlplane("plan", "--stack", "local", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)  # nothing but the report on stdout
    assert document["stack"] == "local"
    positions = [result.stderr.find(step) for step in STEPS]
    assert -1 not in positions and positions == sorted(positions), result.stderr
    assert "…" not in result.stdout


def test_quiet_silences_progress_when_forced(tmp_path):
    result = mlplane("--quiet", "render", "--stack", "local", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("rendered ")


def test_no_progress_when_stderr_is_not_a_terminal():
    result = mlplane("footprint", "--stack", "local", "--format", "json", force=None)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "total" in json.loads(result.stdout)


def test_footprint_and_schema_json_stay_clean_with_progress_forced():
    result = mlplane("footprint", "--stack", "local", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert "rendering stack local offline…" in result.stderr
    assert "total" in json.loads(result.stdout)
    schema = mlplane("schema")
    assert schema.returncode == 0 and "properties" in json.loads(schema.stdout)


def test_progress_reaches_a_real_terminal(tmp_path):
    """No override: stderr is a pseudo-terminal, as when a user runs the command."""
    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != progress.ENV}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "mlplane", "render", "--stack", "local", "--out", str(tmp_path / "out")],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=secondary, text=True, env=env, timeout=180,
        )
        os.close(secondary)
        secondary = -1
        seen = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the terminal has no writer left
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(primary)
        if secondary != -1:
            os.close(secondary)
    assert result.returncode == 0
    assert "rendering stack local offline…" in seen.decode()
    assert "…" not in result.stdout
