"""`mlplane render --out DIR` never loses a file the user owns, and replaces a render atomically;
Ctrl-C anywhere prints one line and exits 130; `mlplane docs` writes only into the mlplane source tree.

The rules are in docs/render-output.md; the writer is components/tooling/render_output.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlplane.tooling import render_output as ro
from mlplane.tooling.reference import source_tree_problem

ROOT = Path(__file__).resolve().parents[3]


def mlplane(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlplane", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=180
    )


def snapshot(directory: Path) -> dict[str, bytes | None]:
    """Every entry under ``directory``: files with their bytes, directories as None."""
    if not directory.exists():
        return {}
    found: dict[str, bytes | None] = {}
    for path in sorted(directory.rglob("*")):
        relative = str(path.relative_to(directory))
        found[relative] = None if path.is_dir() and not path.is_symlink() else path.read_bytes()
    return found


def render(n: int, tag: str = "a") -> dict[str, bytes]:
    """A small synthetic render: ``n`` manifests and the two JSON documents."""
    files = {f"manifests/ns.configmap.{tag}-{i}.yaml": f"kind: ConfigMap\nname: {tag}-{i}\n".encode() for i in range(n)}
    files["resources.json"] = json.dumps({"render": tag}).encode()
    files["outputs.json"] = json.dumps({"outputs": tag}).encode()
    return files


def rendered_files(directory: Path) -> dict[str, bytes]:
    return {k: v for k, v in snapshot(directory).items() if v is not None and k != ro.INDEX}


@pytest.fixture
def minimal_config(tmp_path):
    path = tmp_path / "platform.yaml"
    path.write_text("name: demo\n")
    return path


# --------------------------------------------------------------------------------------------
# 1. A render never deletes or overwrites a file it did not write
# --------------------------------------------------------------------------------------------


def test_render_into_a_gitops_checkout_is_refused_and_deletes_nothing(tmp_path, minimal_config):
    checkout = tmp_path / "gitops"
    (checkout / "manifests" / "prod" / "apps").mkdir(parents=True)
    (checkout / "manifests" / "prod" / "apps" / "api.yaml").write_text("kind: Deployment\n")
    (checkout / "README.md").write_text("# our cluster\n")
    before = snapshot(checkout)
    result = mlplane("render", "--config", str(minimal_config), "--out", str(checkout))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "README.md" in result.stderr and "manifests/prod/apps/api.yaml" in result.stderr
    assert "--adopt-dir" in result.stderr
    assert snapshot(checkout) == before


def test_adopt_dir_writes_next_to_foreign_files_and_never_touches_them(tmp_path, minimal_config):
    checkout = tmp_path / "gitops"
    (checkout / "manifests" / "prod").mkdir(parents=True)
    (checkout / "manifests" / "prod" / "api.yaml").write_text("kind: Deployment\n")
    (checkout / "manifests" / "mine.yaml").write_text("kind: Service\n")
    (checkout / ".git").mkdir()
    (checkout / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    foreign = snapshot(checkout)
    result = mlplane("render", "--config", str(minimal_config), "--out", str(checkout), "--adopt-dir")
    assert result.returncode == 0, result.stderr
    assert "left untouched" in result.stdout
    after = snapshot(checkout)
    assert {k: after[k] for k in foreign} == foreign
    index = json.loads((checkout / ro.INDEX).read_text())["files"]
    assert "resources.json" in index and len([p for p in index if p.startswith("manifests/")]) > 30
    assert set(after) - set(foreign) - {ro.INDEX, "resources.json", "outputs.json"} == set(index) - {"resources.json", "outputs.json"}


def test_a_later_render_replaces_its_own_files_and_removes_the_stale_ones(tmp_path):
    out = tmp_path / "out"
    ro.write_files(out, render(4, "a"))
    written = ro.write_files(out, render(2, "b"))
    assert rendered_files(out) == render(2, "b")
    assert sorted(written.removed) == sorted(p for p in render(4, "a") if p.startswith("manifests/"))
    assert not written.others_left


def test_stale_files_are_removed_but_foreign_ones_next_to_them_stay(tmp_path):
    out = tmp_path / "out"
    ro.write_files(out, render(3, "a"))
    (out / "manifests" / "hand-written.yaml").write_text("kind: Secret\n")
    (out / "notes.txt").write_text("mine\n")
    with pytest.raises(ro.OutputRefused, match="hand-written.yaml, notes.txt"):
        ro.write_files(out, render(1, "b"))
    written = ro.write_files(out, render(1, "b"), adopt=True)
    assert written.others_left
    assert (out / "manifests" / "hand-written.yaml").read_text() == "kind: Secret\n"
    assert (out / "notes.txt").read_text() == "mine\n"
    assert sorted(p.name for p in (out / "manifests").iterdir()) == ["hand-written.yaml", "ns.configmap.b-0.yaml"]


def test_a_file_changed_since_the_render_is_kept_unless_forced(tmp_path):
    out = tmp_path / "out"
    ro.write_files(out, render(3, "a"))
    edited = out / "manifests" / "ns.configmap.a-2.yaml"
    edited.write_text("kind: ConfigMap\n# tuned by hand\n")
    before = snapshot(out)
    with pytest.raises(ro.OutputRefused) as refused:
        ro.write_files(out, render(1, "b"))  # a-2 is stale: removing it would lose the edit
    assert len(refused.value.problems) == 1
    assert str(edited) in refused.value.problems[0] and "--force" in refused.value.problems[0]
    assert snapshot(out) == before
    ro.write_files(out, render(1, "b"), force=True)
    assert rendered_files(out) == render(1, "b")


def test_a_foreign_file_in_the_way_is_never_replaced_even_when_adopting_and_forcing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "resources.json").write_text("{\"ours\": true}\n")
    with pytest.raises(ro.OutputRefused) as refused:
        ro.write_files(out, render(1), adopt=True, force=True)
    assert str(out / "resources.json") in refused.value.problems[0] and "never replaces" in refused.value.problems[0]
    assert snapshot(out) == {"resources.json": b"{\"ours\": true}\n"}


def test_a_link_at_a_recorded_path_is_not_followed_or_replaced(tmp_path):
    out = tmp_path / "out"
    ro.write_files(out, render(1))
    target = tmp_path / "elsewhere.json"
    target.write_text("precious\n")
    (out / "outputs.json").unlink()
    (out / "outputs.json").symlink_to(target)
    with pytest.raises(ro.OutputRefused, match="outputs.json"):
        ro.write_files(out, render(1), adopt=True, force=True)
    assert target.read_text() == "precious\n" and (out / "outputs.json").is_symlink()


@pytest.mark.parametrize(
    "index",
    [
        "not json",
        json.dumps({"files": {}}),
        json.dumps({"format": ro.INDEX_FORMAT, "files": {"../../home/user/.bashrc": "sha256:" + "0" * 64}}),
        json.dumps({"format": ro.INDEX_FORMAT, "files": {"manifests/../x.yaml": "sha256:" + "0" * 64}}),
        json.dumps({"format": ro.INDEX_FORMAT, "files": {"resources.json": "md5:abc"}}),
    ],
)
def test_an_index_mlplane_did_not_write_claims_nothing(tmp_path, index):
    out = tmp_path / "out"
    out.mkdir()
    (out / ro.INDEX).write_text(index)
    (out / "resources.json").write_text("user data\n")
    before = snapshot(out)
    with pytest.raises(ro.OutputRefused, match="is not an index written by mlplane render"):
        ro.write_files(out, render(1), adopt=True, force=True)
    assert snapshot(out) == before


def test_another_renders_subdirectory_is_left_alone(tmp_path):
    out = tmp_path / "out"
    ro.write_files(out, render(2, "platform"))
    ro.write_files(out / "vision", render(1, "team"))  # the README's `--out out/vision`
    ro.write_files(out, render(3, "platform"))
    assert rendered_files(out / "vision") == render(1, "team")


def test_a_render_already_writing_to_the_directory_blocks_a_second(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(ro.OutputRefused, match="another mlplane render is writing"):
            ro.write_files(out, render(1))
    finally:
        os.close(fd)
    assert snapshot(out) == {}


def test_the_cli_names_a_changed_file_in_one_line(tmp_path, minimal_config):
    out = tmp_path / "out"
    ro.write_files(out, render(2))
    (out / "outputs.json").write_text("{}\n")
    result = mlplane("render", "--config", str(minimal_config), "--out", str(out))
    assert result.returncode == 2
    assert result.stderr == f"error: --out: {out / 'outputs.json'} changed since the render that wrote it; copy your changes elsewhere, or pass --force to replace it with the new render (the changes are lost)\n"


# --------------------------------------------------------------------------------------------
# 2. Atomic: the directory holds the previous complete render or the new one, never a mix
# --------------------------------------------------------------------------------------------


def _interrupt_at(monkeypatch, name: str, n: int) -> list[int]:
    """Make the ``n``-th call of ``render_output.<name>`` raise KeyboardInterrupt."""
    real = getattr(ro, name)
    calls = [0]

    def patched(*args):
        calls[0] += 1
        if calls[0] == n:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(ro, name, patched)
    return calls


FILES = len(render(5, "b")) + 2  # the staging marker and the index are written too


@pytest.mark.parametrize("n", range(1, FILES + 1))
def test_an_interrupt_while_writing_leaves_the_old_render_exactly(tmp_path, monkeypatch, n):
    out = tmp_path / "out"
    ro.write_files(out, render(4, "a"))
    (out / "notes.txt").write_text("mine\n")
    before = snapshot(out)
    _interrupt_at(monkeypatch, "_write_file", n)
    with pytest.raises(KeyboardInterrupt):
        ro.write_files(out, render(5, "b"), adopt=True)
    assert snapshot(out) == before


@pytest.mark.parametrize("n", [1, 3, FILES])
def test_an_interrupted_first_render_leaves_no_directory_behind(tmp_path, monkeypatch, n):
    _interrupt_at(monkeypatch, "_write_file", n)
    with pytest.raises(KeyboardInterrupt):
        ro.write_files(tmp_path / "new" / "out", render(5, "b"))
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "two-renames"])
@pytest.mark.parametrize("adopt", [False, True], ids=["manifests-dir-swapped", "manifests-shared-per-file"])
def test_a_failure_during_the_renames_is_undone(tmp_path, monkeypatch, exchange, adopt):
    if not exchange:
        monkeypatch.setattr(ro, "_exchange", lambda first, second: False)
    out = tmp_path / "out"
    ro.write_files(out, render(4, "a"))
    if adopt:
        (out / "manifests" / "hand-written.yaml").write_text("kind: Secret\n")
    before = snapshot(out)
    n = 1
    while True:
        calls = _interrupt_at(monkeypatch, "_move", n)
        try:
            ro.write_files(out, render(5, "b"), adopt=adopt)
        except KeyboardInterrupt:
            assert snapshot(out) == before, f"interrupted at rename {n}"
            monkeypatch.undo()
            if not exchange:
                monkeypatch.setattr(ro, "_exchange", lambda first, second: False)
            n += 1
            continue
        assert calls[0] < n  # every rename was interrupted once
        break
    assert n > 3
    assert rendered_files(out) == {**render(5, "b"), **({"manifests/hand-written.yaml": b"kind: Secret\n"} if adopt else {})}


def test_a_render_killed_during_the_renames_is_finished_by_the_next_one(tmp_path, monkeypatch):
    """SIGKILL cannot be held back: the staging directory keeps the new index, and the next
    render treats the files of both indexes as its own (no false "changed since" refusal)."""
    out = tmp_path / "out"
    ro.write_files(out, render(4, "a"))
    monkeypatch.setattr(ro, "_exchange", lambda first, second: False)
    monkeypatch.setattr(ro._Swap, "rollback", lambda self: None)
    monkeypatch.setattr(ro.shutil, "rmtree", lambda *args, **kwargs: None)
    _interrupt_at(monkeypatch, "_move", 3)  # manifests swapped, resources.json not yet
    with pytest.raises(KeyboardInterrupt):
        ro.write_files(out, render(5, "b"))
    monkeypatch.undo()
    assert [p.name for p in out.iterdir() if p.name.startswith(ro.STAGING_PREFIX)]
    ro.write_files(out, render(6, "c"))
    assert rendered_files(out) == render(6, "c")
    assert not [p.name for p in out.iterdir() if p.name.startswith(ro.STAGING_PREFIX)]


# Ctrl-C from outside: the real handler, in a real process.

DRIVER = """
import os, signal, sys
from mlplane.tooling import render_output as ro
where, n = sys.argv[1], int(sys.argv[2])
real = getattr(ro, where)
calls = [0]
def patched(*args):
    calls[0] += 1
    if calls[0] == n:
        os.kill(os.getpid(), signal.SIGINT)
    return real(*args)
setattr(ro, where, patched)
sys.argv = ["mlplane", *sys.argv[3:]]
from mlplane.__main__ import main
main()
"""


@pytest.mark.parametrize("n", [1, 20])
def test_ctrl_c_while_the_render_is_written_exits_130_with_the_old_render_intact(tmp_path, minimal_config, n):
    out = tmp_path / "out"
    ro.write_files(out, render(3, "old"))
    before = snapshot(out)
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, "_write_file", str(n), "render", "--config", str(minimal_config), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert (result.returncode, result.stderr) == (130, "interrupted\n")
    assert snapshot(out) == before


def test_ctrl_c_during_the_renames_completes_the_new_render_then_exits_130(tmp_path, minimal_config):
    out = tmp_path / "out"
    ro.write_files(out, render(3, "old"))
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, "_move", "2", "render", "--config", str(minimal_config), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert (result.returncode, result.stderr) == (130, "interrupted\n")
    index = json.loads((out / ro.INDEX).read_text())["files"]
    assert set(rendered_files(out)) == set(index)
    assert all(ro.digest(content) == index[path] for path, content in rendered_files(out).items())
    assert len(index) > 30


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="watches /proc/PID/maps")
def test_ctrl_c_while_the_command_line_loads_exits_130_with_one_line(tmp_path, minimal_config):
    """Sent once the process maps pydantic_core, a heavy import of the command line: before any
    output is written."""
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "mlplane", "render", "--config", str(minimal_config), "--out", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if "pydantic_core" in Path(f"/proc/{process.pid}/maps").read_text():
                break
        except OSError:
            pass
        time.sleep(0.002)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert (process.returncode, stderr) == (130, "interrupted\n"), stderr
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# 3. `mlplane docs` writes only into the mlplane source tree
# --------------------------------------------------------------------------------------------


def test_docs_refuses_a_project_made_from_the_team_template(tmp_path):
    """The project `pulumi new` makes from templates/team (its stacks/Pulumi.local.yaml is all the
    old `mlplane docs` needed to overwrite the project's docs/policies.md)."""
    project = tmp_path / "acme-ml"
    shutil.copytree(ROOT / "templates" / "team", project)
    (project / "docs").mkdir()
    (project / "components").mkdir()
    # Even a project that calls itself mlplane is not the source tree the package runs from.
    (project / "pyproject.toml").write_text('[project]\nname = "mlplane"\nversion = "0.0.1"\n')
    (project / "docs" / "policies.md").write_text("# Our policies\n\nHand-written.\n")
    before = snapshot(project)
    for args in (("docs",), ("docs", "--check")):
        result = mlplane(*args, cwd=project)
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.startswith(f"error: docs: {project} is not the mlplane source tree")
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert snapshot(project) == before


def test_the_source_tree_qualifies_and_a_copy_of_it_does_not(tmp_path):
    assert source_tree_problem(ROOT) is None
    (tmp_path / "components").mkdir()
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    assert source_tree_problem(tmp_path) is not None
