"""The package as a user gets it: built with `python -m build`, installed from its wheel.

- The sdist and the wheel carry every file the package reads at run time (the Grafana dashboards,
  the policy pack, py.typed), and the templates pin the version pyproject.toml declares.
- Each `pulumi new` template is instantiated the way `pulumi new --yes` does, and its CI templates'
  own install step (GitHub's for one template, GitLab's for the other) installs the project's
  requirements.txt into a fresh virtualenv (no system site packages) from the built wheel
  (`PIP_FIND_LINKS` to the dist directory; PyPI for the dependencies). Then the commands the CI
  jobs run: `mlplane plan` (the plan job's exact line), `mlplane render` and
  `mlplane policy-pack path`, all offline, with the installed `mlplane`, never this checkout.

Marked `packaging` (registered in pyproject.toml, run by scripts/test.sh): about two minutes cold.
Downloaded wheels are cached in ~/.cache/mlplane/pip (MLPLANE_CACHE).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from test_templates import NEW_TEMPLATES, PLAN_COMMAND, TEMPLATES, instantiate

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
#: Files the package reads at run time, relative to the package (components/ in the checkout).
DATA_FILES = sorted(
    [f"dashboards/{p.name}" for p in (ROOT / "components" / "dashboards").glob("*.json")]
    + [f"scripts/{p.name}" for p in (ROOT / "components" / "scripts").glob("*.sh")]
    + ["crds/flagger.yaml", "policypack/PulumiPolicy.yaml", "policypack/__main__.py", "pricing/aws.json", "py.typed"]
)
#: Every module of every subpackage (the scripts shipped into pods among them).
MODULES = sorted(
    p.relative_to(ROOT / "components").as_posix()
    for p in (ROOT / "components").rglob("*.py")
    if "policypack" not in p.parts and "__pycache__" not in p.parts
)
CACHE = Path(os.environ.get("MLPLANE_CACHE", Path.home() / ".cache" / "mlplane"))


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """`python -m build`: the sdist, then the wheel built from that sdist."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def test_dashboards_exist_to_be_packaged():
    assert [f for f in DATA_FILES if f.startswith("dashboards/")], "no dashboards found in components/dashboards"


def test_wheel_carries_every_module_and_data_file(dist):
    [wheel] = dist.glob(f"mlplane-{VERSION}-py3-none-any.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"mlplane/{name}" for name in DATA_FILES + MODULES} <= names
    assert f"mlplane-{VERSION}.dist-info/entry_points.txt" in names
    assert not [n for n in names if n.startswith("tests/")]


def test_sdist_carries_every_module_and_data_file(dist):
    [sdist] = dist.glob(f"mlplane-{VERSION}.tar.gz")
    prefix = f"mlplane-{VERSION}/"
    names = {n[len(prefix):] for n in tarfile.open(sdist).getnames()}
    assert {f"components/{name}" for name in DATA_FILES + MODULES} <= names
    assert {"pyproject.toml", "README.md"} <= names


@pytest.mark.parametrize("name", NEW_TEMPLATES)
def test_template_requirements_pin_the_version_in_pyproject(name):
    """Kept in sync by this test: bump both together (docs/release.md)."""
    lines = (TEMPLATES / name / "requirements.txt").read_text().splitlines()
    assert [line for line in lines if line.strip() and not line.startswith("#")] == [f"mlplane=={VERSION}"]


def base_python_dir(tmp_path: Path) -> Path:
    """A directory holding `python` for the base interpreter (the CI images have `python`)."""
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
    return shims


def user_env(tmp_path: Path, dist: Path) -> dict[str, str]:
    """A CI runner's environment: no virtualenv active, this checkout's venv off PATH."""
    own_bin = str(Path(sys.executable).parent)
    path = [p for p in os.environ["PATH"].split(os.pathsep) if p != own_bin]
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}}
    links = " ".join(filter(None, [str(dist), os.environ.get("PIP_FIND_LINKS", "")]))
    env.update({
        "PATH": os.pathsep.join([str(base_python_dir(tmp_path)), *path]),
        "PIP_FIND_LINKS": links,
        "PIP_CACHE_DIR": str(CACHE / "pip"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    })
    return env


def github_install_step() -> str:
    document = yaml.safe_load((TEMPLATES / "ci" / "github" / "mlplane-pull-request.yml").read_text())
    return next(s["run"] for s in document["jobs"]["plan"]["steps"] if s.get("name") == "install the project's requirements")


def gitlab_install_snippet() -> str:
    return yaml.safe_load((TEMPLATES / "ci" / "gitlab" / ".gitlab-ci.yml").read_text())[".install_requirements"]


def install_like_ci(project: Path, template: str, env: dict[str, str], tmp_path: Path) -> Path:
    """Runs a CI template's own install step in the project; returns the bin dir it put on PATH."""
    if template == "platform-local":
        github_path = tmp_path / "github_path"
        script, env = github_install_step(), {**env, "GITHUB_PATH": str(github_path)}
    else:
        script, env = gitlab_install_snippet() + '\necho "$PATH" | cut -d: -f1 > ci_path', {**env, "CI_PROJECT_DIR": str(project)}
    result = subprocess.run(["bash", "-e", "-c", script], cwd=project, env=env, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    bin_dir = Path((github_path if template == "platform-local" else project / "ci_path").read_text().strip())
    assert bin_dir == project / ".venv" / "bin"
    return bin_dir


@pytest.mark.parametrize("template", NEW_TEMPLATES)
def test_new_project_installs_from_the_wheel_and_plans_offline(template, dist, tmp_path):
    project = tmp_path / "acme-ml"
    stack = NEW_TEMPLATES[template]
    instantiate(TEMPLATES / template, project, stack=stack)
    env = user_env(tmp_path, dist)
    bin_dir = install_like_ci(project, template, env, tmp_path)

    # A fresh virtualenv, and mlplane in it comes from the wheel, not from this checkout.
    assert "include-system-site-packages = false" in (project / ".venv" / "pyvenv.cfg").read_text()
    where = subprocess.run([str(bin_dir / "python"), "-c", "import mlplane, importlib.metadata as m; "
                            "print(mlplane.__file__); print(m.version('mlplane'))"],
                           capture_output=True, text=True, check=True, cwd=project, env=env).stdout.split()
    assert Path(where[0]).is_relative_to(project / ".venv") and where[1] == VERSION

    run_env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}", "STACK": stack, "PLAN_DIR": str(tmp_path / "plan")}

    def sh(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-e", "-c", command], cwd=project, env=run_env, capture_output=True, text=True, timeout=900)

    plan = sh(PLAN_COMMAND)  # the plan job's exact line
    assert plan.returncode == 0, plan.stdout[-4000:] + plan.stderr[-4000:]
    report = (tmp_path / "plan" / f"{stack}.md").read_text()
    assert report.startswith(f"<!-- mlplane-plan:{stack} -->") and "**PASS**" in report

    render = sh(f'mlplane render --stack "$STACK" --out "{tmp_path / "out"}"')
    assert render.returncode == 0, render.stdout[-4000:] + render.stderr[-4000:]
    assert len(list((tmp_path / "out" / "manifests").glob("*.yaml"))) > 3

    pack = sh("mlplane policy-pack path")
    assert pack.returncode == 0, pack.stderr
    pack_dir = Path(pack.stdout.strip())
    assert pack_dir.is_relative_to(project / ".venv") and (pack_dir / "PulumiPolicy.yaml").is_file()
    manifest = yaml.safe_load((pack_dir / "PulumiPolicy.yaml").read_text())
    assert "virtualenv" not in manifest["runtime"].get("options", {})  # runs with the python3 on PATH


def test_policy_pack_path_points_at_the_pack():
    from mlplane.cli.policy_pack import pack_dir

    assert (pack_dir() / "PulumiPolicy.yaml").is_file() and (pack_dir() / "__main__.py").is_file()
    assert shutil.which("bash")
