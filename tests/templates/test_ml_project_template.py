"""The retraining template (templates/ml-project): its pipeline scripts, its workflow, its DVC remote.

- The scripts run as the workflow runs them (subprocesses in a copy of the template) against the
  real MLflow of tests/servers/test_tracking_server_real.py: with no champion the new model is registered
  as `challenger` and proposed; a worse challenger registers nothing and moves no alias; a better
  one gets `challenger` (the `champion` alias stays) and the proposal edits the stack config, which
  still validates as a platform object.
- The proposal edit keeps the rest of the stack file (comments, order, other models, the JSON
  string form `pulumi new` writes) and refuses what it cannot do with exit 2; the pull request is
  opened through a local stand-in for GitHub's REST API.
- The workflow is linted with actionlint and zizmor (helpers of tests/templates/test_ci_templates.py) and its
  structure checked: the platform's runner label, `container:` jobs, triggers, least privilege,
  secrets only in environment-bound jobs, no pull_request trigger.
- `.dvc/config` points at the platform's datasets bucket and S3 endpoint (parsed; dvc itself is
  not installed here).
"""

from __future__ import annotations

import base64
import configparser
import http.server
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplane.config import parse_platform
from test_ci_templates import SECRET_REFERENCE, actionlint, github_credential_problems, zizmor
from test_tracking_server_real import servers  # noqa: F401 - the fixture (module scope: started here once)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "templates" / "ml-project"
WORKFLOW = TEMPLATE / ".github" / "workflows" / "retrain.yml"
MODEL = "iris-classifier"

STACK = """\
# The production platform: reviewed changes only.
config:
  mlplane:platform:
    name: mlplane
    serving:
      models:
        - name: iris          # the public iris endpoint
          registered_model: iris-classifier
          version: 1
          logging: {sample_rate: 0.1, exclude_fields: [email]}
        - name: other
          registered_model: other-model
          alias: champion
    routing:
      domain: ml.example.com   # keep this comment
  mlplane:note: 'quoted'
"""


# --------------------------------------------------------------------------------------------
# A copy of the template, with data and settings
# --------------------------------------------------------------------------------------------


def write_dataset(path: Path, rows: int = 600, seed: int = 3) -> None:
    """Three overlapping classes in four features: a depth-1 stump, a depth-2 tree and a forest
    score clearly apart (f1_macro about 0.47, 0.77 and 0.83 on the fixed holdout)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, rows)
    centers = np.array([[0, 0, 0, 0], [2, 1, 0, 1], [1, 3, 1, -1]])
    frame = pd.DataFrame(centers[labels] + rng.normal(0, 1.0, (rows, 4)), columns=["a", "b", "c", "d"])
    frame["species"] = np.array(["setosa", "versicolor", "virginica"])[labels]
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def make_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(TEMPLATE, project)
    write_dataset(project / "data" / "train.csv")
    return project


def set_settings(project: Path, **changes: Any) -> None:
    """Change retrain.yaml keys, given as dotted paths (``model.params``)."""
    path = project / "retrain.yaml"
    document = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        node = document
        for parent in parents:
            node = node[parent]
        node[key] = value
    path.write_text(yaml.safe_dump(document))


def script(project: Path, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(project), "LANG": "C.UTF-8",
                   **(env or {})}
    return subprocess.run([sys.executable, str(project / "pipeline" / f"{name}.py"), *args], cwd=project,
                          env=environment, capture_output=True, text=True, timeout=300)


def outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def platform_of(stack_text: str) -> dict[str, Any]:
    platform = yaml.safe_load(stack_text)["config"]["mlplane:platform"]
    return json.loads(platform) if isinstance(platform, str) else platform


# --------------------------------------------------------------------------------------------
# The scripts against real MLflow
# --------------------------------------------------------------------------------------------


@pytest.mark.servers
def test_champion_comparison_and_alias_moves_against_real_mlflow(servers, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    project = make_project(tmp_path)
    admin = servers.rendered.secret("mlflow-admin")
    env = {"MLFLOW_TRACKING_URI": servers.mlflow_url, "MLFLOW_TRACKING_USERNAME": admin["username"],
           "MLFLOW_TRACKING_PASSWORD": admin["password"]}
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", admin["username"])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", admin["password"])
    client = MlflowClient(servers.mlflow_url)
    out = tmp_path / "out"

    def cycle(name: str, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
        set_settings(project, model__params=params)
        github_output = out / f"{name}.github-output"
        github_output.parent.mkdir(exist_ok=True)
        github_output.touch()
        steps = [("train", "--out", str(out / f"{name}-run.json")),
                 ("evaluate", "--run", str(out / f"{name}-run.json"), "--out", str(out / f"{name}-decision.json")),
                 ("promote", "--decision", str(out / f"{name}-decision.json"), "--out", str(out / f"{name}-promotion.json"))]
        for step in steps:
            result = script(project, *step, env={**env, "GITHUB_OUTPUT": str(github_output)})
            assert result.returncode == 0, f"{step[0]}: {result.stdout}{result.stderr}"
        decision = json.loads((out / f"{name}-decision.json").read_text())
        promotion = json.loads((out / f"{name}-promotion.json").read_text())
        return decision, promotion, outputs(github_output)

    def aliases() -> dict[str, str]:
        return dict(client.get_registered_model(MODEL).aliases)

    # 1. No champion (no registered model yet): the new model is registered as challenger and proposed.
    decision, promotion, github = cycle("first", {"n_estimators": 1, "max_depth": 2})
    assert decision["champion"] is None and decision["champion_version"] is None and decision["wins"] is True
    assert promotion == {"promoted": True, "version": 1}
    assert github["promoted"] == "true" and github["version"] == "1"
    assert json.loads(github["decision"]) == decision
    assert aliases() == {"challenger": "1"}
    run = client.get_run(decision["run_id"])
    assert run.data.metrics["f1_macro"] == pytest.approx(decision["challenger"])
    assert "reference/data.csv" in [a.path for a in client.list_artifacts(run.info.run_id, "reference")]
    stack = tmp_path / "Pulumi.first.yaml"
    stack.write_text("config:\n  mlplane:platform:\n    name: mlplane\n")
    result = script(project, "propose", "--version", "1", "--stack-file", str(stack))
    assert result.returncode == 0, result.stderr
    assert platform_of(stack.read_text())["serving"]["models"] == [{"name": "iris", "registered_model": MODEL, "version": 1}]
    parse_platform(platform_of(stack.read_text()))

    # The canary proved itself: a person moves `champion` (README.md, "After the merge").
    client.set_registered_model_alias(MODEL, "champion", "1")

    # 2. A worse challenger: nothing registered, no alias moved, nothing to propose.
    decision, promotion, github = cycle("worse", {"n_estimators": 1, "max_depth": 1})
    assert decision["champion_version"] == "1" and decision["challenger"] < decision["champion"]
    assert decision["wins"] is False and promotion == {"promoted": False, "version": None}
    assert github["promoted"] == "false" and github["version"] == ""
    assert aliases() == {"champion": "1", "challenger": "1"}
    assert [v.version for v in client.search_model_versions(f"name='{MODEL}'")] == ["1"]

    # 3. A better challenger: registered as v2 with `challenger`; `champion` stays on v1.
    decision, promotion, github = cycle("better", {"n_estimators": 100, "max_depth": 4})
    assert decision["wins"] is True and decision["challenger"] > decision["champion"]
    assert promotion == {"promoted": True, "version": 2}
    assert aliases() == {"champion": "1", "challenger": "2"}
    tags = client.get_model_version(MODEL, "2").tags
    assert float(tags["evaluation.champion"]) == pytest.approx(decision["champion"])
    stack = tmp_path / "Pulumi.prod.yaml"
    stack.write_text(STACK)
    result = script(project, "propose", "--version", "2", "--stack-file", str(stack))
    assert result.returncode == 0 and "canaries model 'iris' v2 at 10%" in result.stdout, result.stderr
    edited = platform_of(stack.read_text())
    assert edited["serving"]["models"][0]["canary"] == {"version": 2, "weight": 10}
    config = parse_platform(edited)
    assert config.serving.models[0].canary.version == 2 and config.serving.models[0].version == 1

    # The same improvement with a higher bar (min_improvement) does not win.
    set_settings(project, evaluation__min_improvement=0.5)
    result = script(project, "evaluate", "--run", str(out / "better-run.json"), "--out", str(out / "bar.json"), env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "bar.json").read_text())["wins"] is False


# --------------------------------------------------------------------------------------------
# The proposal edit (no servers)
# --------------------------------------------------------------------------------------------


@pytest.fixture()
def project(tmp_path) -> Path:
    return make_project(tmp_path)


def propose(project: Path, text: str, version: int = 2) -> tuple[subprocess.CompletedProcess[str], str]:
    stack = project / "stack.yaml"
    stack.write_text(text)
    result = script(project, "propose", "--version", str(version), "--stack-file", str(stack))
    return result, stack.read_text()


def test_fixed_canary_edit_keeps_the_rest_of_the_stack_file(project):
    result, text = propose(project, STACK)
    assert result.returncode == 0, result.stderr
    added = ["          canary:", "            version: 2", "            weight: 10"]
    assert text.splitlines() == STACK.splitlines()[:10] + added + STACK.splitlines()[10:]
    # Running again changes nothing.
    result, again = propose(project, text)
    assert result.returncode == 0 and again == text and "nothing to change" in result.stdout


def test_fixed_canary_replaces_an_alias_canary_and_keeps_its_other_keys(project):
    stack = STACK.replace("          logging:", "          canary: {alias: challenger, weight: 5, image: 'r/x:1'}\n          logging:")
    result, text = propose(project, stack, version=3)
    assert result.returncode == 0, result.stderr
    model = platform_of(text)["serving"]["models"][0]
    assert model["canary"] == {"weight": 10, "image": "r/x:1", "version": 3}
    parse_platform(platform_of(text))


def test_progressive_mode_rolls_the_model_version_and_needs_flagger(project):
    set_settings(project, promotion__mode="progressive")
    result, text = propose(project, STACK)
    assert result.returncode == 2 and "serving.progressive.enabled" in result.stderr and text == STACK
    enabled = STACK.replace("    serving:\n", "    serving:\n      progressive: {enabled: true}\n")
    result, text = propose(project, enabled)
    assert result.returncode == 0 and "progressively" in result.stdout, result.stderr
    model = platform_of(text)["serving"]["models"][0]
    assert model["version"] == 2 and model["canary"] == {"mode": "progressive"}
    config = parse_platform(platform_of(text))
    assert config.serving.models[0].canary.mode == "progressive"


def test_json_string_platform_and_flush_sequences_are_kept(project):
    platform = {"name": "mlplane", "serving": {"models": [{"name": "iris", "registered_model": MODEL, "version": 1}]}}
    stack = f"config:\n  mlplane:platform: '{json.dumps(platform)}'\n  other:\n  - a\n  - b\n"
    result, text = propose(project, stack)
    assert result.returncode == 0, result.stderr
    assert text.endswith("  other:\n  - a\n  - b\n")
    assert platform_of(text)["serving"]["models"][0]["canary"] == {"version": 2, "weight": 10}
    parse_platform(platform_of(text))


@pytest.mark.parametrize(("stack", "message"), [
    (STACK.replace("registered_model: iris-classifier", "registered_model: someone-else"), "serves registered model 'someone-else'"),
    ("config:\n  aws:region: x\n", "has no config.mlplane:platform"),
    (STACK.replace("          version: 1\n", "          version: 1\n          canary: {mode: progressive}\n"), "set promotion.mode: progressive"),
])
def test_refused_edits_exit_2_and_leave_the_file(project, stack, message):
    result, text = propose(project, stack)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert text == stack


@pytest.mark.parametrize(("changes", "message"), [
    ({"evaluation__metric": "auc"}, "evaluation.metric is 'auc'; allowed: accuracy, f1_macro, log_loss"),
    ({"evaluation__direction": "up"}, "evaluation.direction is 'up'; allowed: maximize, minimize"),
    ({"promotion__weight": 100}, "promotion.weight is 100"),
    ({"promotion__weight": True}, "promotion.weight must be int"),
    ({"model__params": {"depth": 3}}, "model.params:"),
])
def test_bad_settings_exit_2_naming_the_key(project, tmp_path, changes, message):
    set_settings(project, **changes)
    result = script(project, "train", "--out", str(tmp_path / "run.json"))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_missing_dataset_says_to_pull_it(project, tmp_path):
    (project / "data" / "train.csv").unlink()
    result = script(project, "train", "--out", str(tmp_path / "run.json"))
    assert result.returncode == 2 and "run `dvc pull`" in result.stderr


class _FakeGitHub(http.server.BaseHTTPRequestHandler):
    """GitHub's REST endpoints propose.py calls, on one repository with one stack file."""

    files: dict[str, str] = {}
    calls: list[tuple[str, str, dict[str, Any] | None]] = []

    def log_message(self, *args):  # noqa: D401
        return

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.calls.append((self.command, self.path, body))
        if self.headers["Authorization"] != "Bearer t0ken":
            return self._reply(401, {"message": "Bad credentials"})
        base = "/repos/acme/infra"
        if (self.command, self.path) == ("GET", base):
            return self._reply(200, {"default_branch": "main"})
        if self.command == "GET" and self.path == f"{base}/contents/stacks/Pulumi.local.yaml?ref=main":
            return self._reply(200, {"sha": "blob1", "content": base64.b64encode(self.files["main"].encode()).decode()})
        if (self.command, self.path) == ("GET", f"{base}/git/ref/heads/main"):
            return self._reply(200, {"object": {"sha": "commit1"}})
        if (self.command, self.path) == ("POST", f"{base}/git/refs"):
            return self._reply(201, {})
        if (self.command, self.path) == ("PUT", f"{base}/contents/stacks/Pulumi.local.yaml"):
            self.files[body["branch"]] = base64.b64decode(body["content"]).decode()
            return self._reply(200, {})
        if (self.command, self.path) == ("POST", f"{base}/pulls"):
            return self._reply(201, {"html_url": "https://github.com/acme/infra/pull/7"})
        return self._reply(404, {"message": "Not Found"})

    do_GET = do_POST = do_PUT = _handle


def test_pull_request_through_the_rest_api(project, tmp_path):
    _FakeGitHub.files = {"main": STACK}
    _FakeGitHub.calls = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeGitHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    decision = tmp_path / "decision.json"
    decision.write_text(json.dumps({"metric": "f1_macro", "challenger": 0.83, "champion": 0.77, "champion_version": "1"}))
    github_output = tmp_path / "github-output"
    github_output.touch()
    try:
        env = {"GITHUB_API_URL": f"http://127.0.0.1:{server.server_port}", "GITHUB_OUTPUT": str(github_output)}
        args = ("--version", "2", "--github-repo", "acme/infra", "--decision", str(decision), "--reason", "repository_dispatch")
        result = script(project, "propose", *args, env={**env, "GITHUB_TOKEN": "t0ken"})
        assert result.returncode == 0, result.stderr
        assert outputs(github_output) == {"pull_request": "https://github.com/acme/infra/pull/7"}
        assert platform_of(_FakeGitHub.files["retrain/iris-v2"])["serving"]["models"][0]["canary"] == {"version": 2, "weight": 10}
        refs = next(body for method, path, body in _FakeGitHub.calls if path.endswith("/git/refs"))
        assert refs == {"ref": "refs/heads/retrain/iris-v2", "sha": "commit1"}
        pull = next(body for method, path, body in _FakeGitHub.calls if path.endswith("/pulls"))
        assert pull["base"] == "main" and pull["head"] == "retrain/iris-v2"
        assert "challenger 0.8300, champion v1: 0.7700" in pull["body"] and "repository_dispatch" in pull["body"]
        # A wrong token: exit 2 with GitHub's answer, no traceback.
        result = script(project, "propose", *args, env={**env, "GITHUB_TOKEN": "wrong"})
        assert result.returncode == 2 and "HTTP 401" in result.stderr and "Traceback" not in result.stderr
        result = script(project, "propose", *args, env=env)
        assert result.returncode == 2 and "GITHUB_TOKEN: not set" in result.stderr
    finally:
        server.shutdown()


# --------------------------------------------------------------------------------------------
# The workflow
# --------------------------------------------------------------------------------------------


def workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def test_actionlint_accepts_the_workflow_with_the_runner_label():
    result = subprocess.run([actionlint(), "-no-color", "-shellcheck=", "-pyflakes=",
                             "-config-file", str(TEMPLATE / ".github" / "actionlint.yaml"), str(WORKFLOW)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_finds_nothing_and_every_exception_says_why():
    result = subprocess.run([zizmor(), "--offline", "--no-progress", "--persona=auditor", "--format=json", str(WORKFLOW)],
                            capture_output=True, text=True, timeout=300)
    assert json.loads(result.stdout or "[]") == [] and result.returncode == 0, result.stdout + result.stderr
    for line in WORKFLOW.read_text().splitlines():
        if "zizmor: ignore[" in line:
            assert len(line.split("]", 1)[1].strip()) >= 10, line


def test_workflow_runs_on_the_platform_runners_in_container_jobs():
    from mlplane.config import CiRunnersConfig

    label = CiRunnersConfig().runner_labels[0]
    assert yaml.safe_load((TEMPLATE / ".github" / "actionlint.yaml").read_text())["self-hosted-runner"]["labels"] == [label]
    for name, job in workflow()["jobs"].items():
        assert job["runs-on"] == label, name
        assert "image" in job["container"], name  # kubernetes-novolume runs steps only in container jobs


def test_workflow_triggers_permissions_and_secrets():
    document = workflow()
    triggers = document.get("on", document.get(True))
    assert set(triggers) == {"schedule", "repository_dispatch", "workflow_dispatch"}
    assert triggers["repository_dispatch"] == {"types": ["model-drift"]}
    assert not {"pull_request", "pull_request_target", "workflow_run"} & set(triggers)
    assert document["permissions"] == {}
    jobs = document["jobs"]
    assert {name: job["permissions"] for name, job in jobs.items()} == {
        "retrain": {"contents": "read"}, "propose": {"contents": "read"}}
    assert github_credential_problems(document) == []
    assert {name: job["environment"] for name, job in jobs.items()} == {"retrain": "retrain", "propose": "promotion"}
    # Each job reads only its own secrets.
    assert set(SECRET_REFERENCE.findall(json.dumps(jobs["retrain"]))) == {
        "secrets.DATASETS_ACCESS_KEY_ID", "secrets.DATASETS_SECRET_ACCESS_KEY"}
    assert set(SECRET_REFERENCE.findall(json.dumps(jobs["propose"]))) == {"secrets.INFRA_REPO_TOKEN"}
    assert jobs["propose"]["needs"] == "retrain" and jobs["propose"]["if"] == "needs.retrain.outputs.promoted == 'true'"
    for job in jobs.values():
        for item in job["steps"]:
            if item.get("uses", "").startswith("actions/checkout@"):
                assert item["with"]["persist-credentials"] is False
            assert "${{" not in item.get("run", ""), item  # event data reaches scripts through env only
            if "pip install" in item.get("run", ""):
                assert "--require-hashes -r requirements.lock" in item["run"] and "-r requirements.txt" in item["run"]


def test_workflow_runs_the_scripts_that_exist():
    text = WORKFLOW.read_text()
    for name in ("train", "evaluate", "promote", "propose"):
        assert f"python pipeline/{name}.py" in text and (TEMPLATE / "pipeline" / f"{name}.py").is_file()


# --------------------------------------------------------------------------------------------
# DVC and requirements
# --------------------------------------------------------------------------------------------


def test_dvc_remote_is_the_platforms_datasets_bucket():
    parser = configparser.ConfigParser(inline_comment_prefixes=None)
    parser.read_string((TEMPLATE / ".dvc" / "config").read_text())
    assert parser["core"]["remote"] == "datasets"
    remote = parser['\'remote "datasets"\'']
    defaults = parse_platform({})
    assert remote["url"].startswith(f"s3://{defaults.object_storage.buckets.datasets}/")
    assert remote["endpointurl"] == "http://seaweedfs.mlplane-storage.svc.cluster.local:8333"
    assert remote["region"] == "us-east-1"
    assert not {"access_key_id", "secret_access_key"} & set(remote)


def test_dvc_endpoint_is_the_rendered_s3_endpoint(tmp_path):
    """The endpoint in .dvc/config is what a default platform's stack output s3Endpoint says."""
    config = tmp_path / "platform.yaml"
    config.write_text("{}\n")
    result = subprocess.run([str(Path(sys.executable).parent / "mlplane"), "render", "--config", str(config), "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    endpoint = json.loads((tmp_path / "out" / "outputs.json").read_text())["platform"]["s3Endpoint"]
    assert f"endpointurl = {endpoint}" in (TEMPLATE / ".dvc" / "config").read_text()


def test_requirements_are_pinned_and_match_the_tracking_server():
    lines = [line for line in (TEMPLATE / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert all("==" in line for line in lines), lines
    pins = dict(line.split("==") for line in lines)
    assert pins["dvc[s3]"] == "3.67.1"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"mlflow[auth]=={pins["mlflow"]}"' in pyproject
    assert f'"ruamel.yaml=={pins["ruamel.yaml"]}"' in pyproject  # the tests run propose.py with it
