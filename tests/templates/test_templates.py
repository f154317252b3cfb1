"""CI templates (GitHub Actions, GitLab CI) and `pulumi new` templates.

CI templates are parsed and their structure asserted: required jobs, pinned actions and images,
least-privilege tokens, per-stack concurrency, no secrets in the offline plan job. Their shell
scripts are syntax-checked, the affected-stack logic is run against real git histories, and the
offline plan job's command line runs for real against stacks/Pulumi.local.yaml.

`pulumi new` templates are instantiated the way `pulumi new DIR --yes` does (placeholders
substituted, the `template:` section dropped, config defaults written to the stack file as
strings) and the new project's program is rendered offline with that stack config.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplane.tooling import checks
from mlplane import policies
from mlplane.config import versions
from mlplane.config import parse_platform
from mlplane.tooling.plan import resource_view
from mlplane.tooling.render import capture

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"
GITHUB = TEMPLATES / "ci" / "github"
GITLAB = TEMPLATES / "ci" / "gitlab" / ".gitlab-ci.yml"
VENV_BIN = Path(sys.executable).parent
PINNED_USES = re.compile(r"^\s*(?:-\s*)?uses:\s*[\w.-]+/[\w./-]+@[0-9a-f]{40}\s+#\s*v\d+(\.\d+){0,2}\s*$")
PLAN_COMMAND = 'mlplane plan --stack "$STACK" --out "$PLAN_DIR/$STACK.md"'


def workflow(name: str) -> dict[str, Any]:
    return yaml.safe_load((GITHUB / name).read_text())


def triggers(document: dict[str, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as the boolean True.
    return document.get("on", document.get(True))


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return job.get("steps", [])


def step(job: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(s for s in steps(job) if s.get("id") == step_id)


WORKFLOWS = {
    "mlplane-pull-request.yml": {"changes", "plan", "preview"},
    "mlplane-plan-comment.yml": {"comment"},
    "mlplane-deploy.yml": {"changes", "up", "up-teams"},
    "mlplane-drift.yml": {"stacks", "images", "drift"},
}


# --------------------------------------------------------------------------------------------
# GitHub Actions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "jobs"), WORKFLOWS.items())
def test_workflow_parses_and_has_its_jobs(name, jobs):
    document = workflow(name)
    assert set(document["jobs"]) == jobs
    assert triggers(document)


@pytest.mark.parametrize("name", WORKFLOWS)
def test_every_action_is_pinned_to_a_commit_with_its_version_noted(name):
    lines = [line for line in (GITHUB / name).read_text().splitlines() if re.match(r"^\s*(-\s*)?uses:", line)]
    assert lines
    for line in lines:
        assert PINNED_USES.match(line), line


def test_the_same_action_is_pinned_to_the_same_commit_everywhere():
    pins: dict[str, set[str]] = {}
    for name in WORKFLOWS:
        for action, sha in re.findall(r"uses:\s*([\w.-]+/[\w./-]+)@([0-9a-f]{40})", (GITHUB / name).read_text()):
            pins.setdefault(action, set()).add(sha)
    assert {a for a, shas in pins.items() if len(shas) > 1} == set()
    assert {"actions/checkout", "actions/setup-python", "pulumi/actions", "actions/github-script"} <= set(pins)


@pytest.mark.parametrize("name", WORKFLOWS)
def test_tokens_are_least_privilege(name):
    document = workflow(name)
    assert document["permissions"] == {}
    allowed = {"contents": {"read"}, "pull-requests": {"write"}, "issues": {"write"}, "actions": {"read"}}
    for job_name, job in document["jobs"].items():
        permissions = job["permissions"]
        assert permissions, job_name
        for scope, level in permissions.items():
            assert level in allowed[scope], (job_name, scope, level)


def test_checkouts_do_not_keep_credentials():
    for name in WORKFLOWS:
        for job in workflow(name)["jobs"].values():
            for item in steps(job):
                if item.get("uses", "").startswith("actions/checkout@"):
                    assert item["with"]["persist-credentials"] is False


def test_pull_request_workflow_previews_each_affected_stack_and_plans_without_secrets():
    document = workflow("mlplane-pull-request.yml")
    assert set(triggers(document)) == {"pull_request"}  # never pull_request_target: fork code never meets secrets
    jobs = document["jobs"]
    plan = jobs["plan"]
    assert plan["permissions"] == {"contents": "read"}
    assert "secrets." not in json.dumps(plan)
    assert plan["strategy"]["matrix"]["stack"] == "${{ fromJSON(needs.changes.outputs.stacks) }}"
    assert step(plan, "plan")["run"].splitlines()[-1] == PLAN_COMMAND
    assert any(s.get("uses", "").startswith("actions/upload-artifact@") for s in steps(plan))

    preview = jobs["preview"]
    assert "github.event.pull_request.head.repo.full_name == github.repository" in preview["if"]
    assert preview["needs"] == ["changes", "plan"]
    assert preview["environment"] == "preview-${{ matrix.stack }}"  # reviewers approve running PR code with keys
    assert preview["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert "matrix.stack" in preview["concurrency"]["group"]
    command = step(preview, "preview")["run"]
    assert "pulumi preview --stack \"$STACK\" --diff" in command
    assert '--policy-pack "$(mlplane policy-pack path)"' in command
    comment = next(s for s in steps(preview) if s.get("uses", "").startswith("actions/github-script@"))
    assert "updateComment" in comment["with"]["script"] and "createComment" in comment["with"]["script"]
    assert "<!-- pulumi-preview:${stack} -->" in comment["with"]["script"]


def test_plan_comments_are_posted_from_the_base_repository_for_forks_too():
    document = workflow("mlplane-plan-comment.yml")
    run = triggers(document)["workflow_run"]
    assert run["workflows"] == [workflow("mlplane-pull-request.yml")["name"]] and run["types"] == ["completed"]
    job = document["jobs"]["comment"]
    assert not any(s.get("uses", "").startswith("actions/checkout@") for s in steps(job))  # never runs PR code
    script = next(s for s in steps(job) if s.get("uses", "").startswith("actions/github-script@"))["with"]["script"]
    assert "p.head.sha === process.env.HEAD_SHA" in script  # the PR comes from the run, not from the artifact
    assert "<!-- mlplane-plan:${stack} -->" in script


def test_merges_to_main_deploy_one_stack_at_a_time_platforms_before_teams():
    document = workflow("mlplane-deploy.yml")
    assert triggers(document)["push"]["branches"] == ["main"]
    jobs = document["jobs"]
    up, teams = jobs["up"], jobs["up-teams"]
    assert up["strategy"]["matrix"]["stack"] == "${{ fromJSON(needs.changes.outputs.platforms) }}"
    assert teams["strategy"]["matrix"]["stack"] == "${{ fromJSON(needs.changes.outputs.teams) }}"
    assert teams["needs"] == ["changes", "up"]
    # Platform stacks check their images upstream before `pulumi up`; team stacks use their platform's.
    images = [s for s in steps(up) if s.get("run", "").startswith("mlplane images check")]
    assert len(images) == 1
    runs = [s.get("run", "") for s in steps(up)]
    assert runs.index(images[0]["run"]) < next(i for i, r in enumerate(runs) if r.startswith("pulumi up"))
    assert [s for s in steps(up) if s not in images] == steps(teams)
    for job in (up, teams):
        assert job["concurrency"] == {"group": "mlplane-stack-${{ matrix.stack }}", "cancel-in-progress": False}
        assert job["environment"] == "${{ matrix.stack }}"
    commands = "\n".join(s.get("run", "") for s in steps(up))
    assert "pulumi up --stack \"$STACK\" --yes" in commands and '--policy-pack "$(mlplane policy-pack path)"' in commands


def test_deploy_splits_affected_stacks_into_platforms_and_teams(repo, tmp_path):
    path, base = repo
    head = change(path, "stacks/Pulumi.dev.yaml")
    script = step(workflow("mlplane-deploy.yml")["jobs"]["changes"], "stacks")["run"]
    output = tmp_path / "github_output"
    subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=path, check=True,
                   env={**os.environ, "BASE": base, "HEAD": head, "GITHUB_OUTPUT": str(output)})
    assert output.read_text() == 'platforms=["dev"]\nteams=["team-a"]\n'


def test_drift_check_is_scheduled_and_flags_drift():
    document = workflow("mlplane-drift.yml")
    assert triggers(document)["schedule"] and "workflow_dispatch" in triggers(document)
    drift = document["jobs"]["drift"]
    assert "--refresh --expect-no-changes" in step(drift, "drift")["run"]
    assert drift["concurrency"]["group"] == "mlplane-drift-${{ matrix.stack }}"
    flag = next(s for s in steps(drift) if s.get("uses", "").startswith("actions/github-script@"))
    assert flag["if"] == "steps.drift.outputs.exit_code != '0'"
    assert 'labels: ["drift"]' in flag["with"]["script"]


def sdk_pin(package: str) -> str:
    """The version pyproject.toml pins a dependency to."""
    import tomllib

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(d.split("==", 1)[1] for d in dependencies if d.split("==", 1)[0] == package)


def test_ci_installs_the_pulumi_cli_the_sdk_is_pinned_to():
    for name in ("mlplane-pull-request.yml", "mlplane-deploy.yml", "mlplane-drift.yml"):
        assert workflow(name)["env"]["PULUMI_VERSION"] == sdk_pin("pulumi"), name
    assert gitlab()[".pulumi"]["image"].endswith(f":{sdk_pin('pulumi')}")


def test_versions_are_pinned_in_workflows():
    for name in ("mlplane-pull-request.yml", "mlplane-deploy.yml", "mlplane-drift.yml"):
        env = workflow(name)["env"]
        assert re.fullmatch(r"3\.\d+\.\d+", env["PULUMI_VERSION"])
        assert re.fullmatch(r"3\.\d+", env["PYTHON_VERSION"])
        for job in workflow(name)["jobs"].values():
            assert job["runs-on"] == "ubuntu-24.04"


def bash_syntax(script: str) -> None:
    result = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert result.returncode == 0, f"{result.stderr}\n{script}"


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_shell_scripts_parse(name):
    for job in workflow(name)["jobs"].values():
        for item in steps(job):
            if "run" in item:
                assert "${{" not in item["run"], "pass expressions through env, not into scripts"
                bash_syntax(item["run"])


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@t"}).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A git repository with two stacks; returns (path, commit) after the first commit."""
    path = tmp_path / "repo"
    (path / "stacks").mkdir(parents=True)
    for stack in ("dev", "prod", "team-a"):
        (path / "stacks" / f"Pulumi.{stack}.yaml").write_text("config: {}\n")
    (path / "__main__.py").write_text("x = 1\n")
    (path / "requirements.txt").write_text("mlplane\n")
    (path / "README.md").write_text("hi\n")
    git(path, "init", "-q")
    git(path, "add", ".")
    git(path, "commit", "-qm", "base")
    return path, git(path, "rev-parse", "HEAD")


def change(path: Path, edit: str) -> str:
    if edit == "delete-prod":
        (path / "stacks" / "Pulumi.prod.yaml").unlink()
    else:
        target = path / edit
        target.write_text(target.read_text() + "# changed\n")
    git(path, "add", "-A")
    git(path, "commit", "-qm", edit)
    return git(path, "rev-parse", "HEAD")


AFFECTED_CASES = [
    ("stacks/Pulumi.dev.yaml", ["dev", "team-a"]),  # team stacks read their platform's stack file
    ("stacks/Pulumi.team-a.yaml", ["team-a"]),
    ("__main__.py", ["dev", "prod", "team-a"]),
    ("requirements.txt", ["dev", "prod", "team-a"]),  # a new mlplane release changes every stack
    ("README.md", []),
    ("delete-prod", ["team-a"]),  # its teams' plans now fail, which the reviewer must see
]


@pytest.mark.parametrize(("edit", "expected"), AFFECTED_CASES)
def test_github_affected_stacks(repo, tmp_path, edit, expected):
    path, base = repo
    head = change(path, edit)
    script = step(workflow("mlplane-pull-request.yml")["jobs"]["changes"], "stacks")["run"]
    output = tmp_path / "github_output"
    subprocess.run(["bash", "-e", "-c", script], cwd=path, check=True,
                   env={**os.environ, "BASE": base, "HEAD": head, "GITHUB_OUTPUT": str(output)})
    assert output.read_text() == f"stacks={json.dumps(expected)}\n"


def test_deploy_and_pull_request_use_the_same_affected_stack_logic():
    pr = step(workflow("mlplane-pull-request.yml")["jobs"]["changes"], "stacks")["run"]
    deploy = step(workflow("mlplane-deploy.yml")["jobs"]["changes"], "stacks")["run"]
    assert pr.splitlines()[4:12] == deploy.splitlines()[4:12]  # from "code changes affect every stack" on


# --------------------------------------------------------------------------------------------
# GitLab CI
# --------------------------------------------------------------------------------------------


def gitlab() -> dict[str, Any]:
    return yaml.safe_load(GITLAB.read_text())


def test_gitlab_pipeline_has_its_stages_and_jobs():
    document = gitlab()
    assert document["stages"] == ["plan", "preview", "deploy", "deploy-teams", "drift"]
    jobs = {name: job for name, job in document.items() if isinstance(job, dict) and "stage" in job}
    assert {name: job["stage"] for name, job in jobs.items()} == {
        "mlplane-plan": "plan", "pulumi-preview": "preview", "pulumi-up": "deploy",
        "pulumi-up-teams": "deploy-teams", "pulumi-drift": "drift",
    }
    for job in jobs.values():
        extends = job["extends"] if isinstance(job["extends"], list) else document[job["extends"]]["extends"]
        assert ".stacks" in extends


def test_gitlab_images_are_pinned_by_version_tag():
    document = gitlab()
    for hidden in (".python", ".pulumi"):
        image = document[hidden]["image"]
        repository, tag = image.rsplit(":", 1)
        assert re.fullmatch(r"\d+\.\d+\.\d+(-[\w.-]+)?", tag), image


def test_gitlab_plan_job_needs_no_secrets_and_runs_the_real_command():
    job = gitlab()["mlplane-plan"]
    assert job["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]
    assert PLAN_COMMAND in job["script"]
    assert job["variables"]["PLAN_DIR"] == "mlplane-plan"
    assert job["artifacts"]["when"] == "always"
    text = json.dumps(job)
    assert "PULUMI_ACCESS_TOKEN" not in text and "PASSPHRASE" not in text


def test_gitlab_preview_is_for_same_project_merge_requests_with_the_policy_pack():
    job = gitlab()["pulumi-preview"]
    assert "$CI_MERGE_REQUEST_SOURCE_PROJECT_ID == $CI_PROJECT_ID" in job["rules"][0]["if"]
    assert '$CI_COMMIT_REF_PROTECTED == "true"' in job["rules"][0]["if"]
    script = "\n".join(job["script"])
    assert "pulumi preview --stack \"$STACK\" --diff" in script and '--policy-pack "$(mlplane policy-pack path)"' in script
    assert "<!-- pulumi-preview:%s -->" in script


def test_gitlab_updates_run_one_at_a_time_per_stack_and_drift_is_scheduled():
    document = gitlab()
    up = document[".up"]
    assert up["resource_group"] == "pulumi-$STACK"
    assert 'CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH' in up["rules"][0]["if"]
    assert document["pulumi-up"]["extends"] == document["pulumi-up-teams"]["extends"] == ".up"
    assert '--policy-pack "$(mlplane policy-pack path)"' in document[".pulumi_up"]
    drift = document["pulumi-drift"]
    assert drift["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "schedule" && $CI_COMMIT_REF_PROTECTED == "true"'}]
    assert "--refresh --expect-no-changes" in "\n".join(drift["script"])


def test_gitlab_scripts_parse():
    document = gitlab()
    for name, job in document.items():
        if not isinstance(job, dict):
            continue
        for key in ("before_script", "script", "after_script"):
            for chunk in job.get(key, []):
                bash_syntax(chunk)


@pytest.mark.parametrize(("edit", "expected"), AFFECTED_CASES)
def test_gitlab_skips_unaffected_stacks(repo, edit, expected):
    path, base = repo
    head = change(path, edit)
    snippet = gitlab()[".skip_unaffected"]
    for stack in ("dev", "prod", "team-a"):
        result = subprocess.run(["bash", "-e", "-c", snippet + "\necho RUNS"], cwd=path, capture_output=True, text=True,
                                env={**os.environ, "BASE": base, "CI_COMMIT_SHA": head, "STACK": stack})
        assert result.returncode == 0, result.stderr
        assert ("RUNS" in result.stdout) is (stack in expected), (stack, result.stdout)


def test_gitlab_treats_an_unknown_base_as_affecting_every_stack(repo):
    path, _ = repo
    snippet = gitlab()[".skip_unaffected"]
    result = subprocess.run(["bash", "-e", "-c", snippet + "\necho RUNS"], cwd=path, capture_output=True, text=True,
                            env={**os.environ, "BASE": "0" * 40, "CI_COMMIT_SHA": "HEAD", "STACK": "dev"})
    assert "RUNS" in result.stdout


# --------------------------------------------------------------------------------------------
# The offline plan job, for real
# --------------------------------------------------------------------------------------------


def test_plan_job_command_runs_against_the_local_stack(tmp_path):
    """The exact command line of both templates' plan jobs, on stacks/Pulumi.local.yaml."""
    env = {**os.environ, "STACK": "local", "PLAN_DIR": str(tmp_path), "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-e", "-c", PLAN_COMMAND], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    report = (tmp_path / "local.md").read_text()
    assert report.startswith("<!-- mlplane-plan:local -->")
    assert "**PASS**" in report
    assert f"| schemas (Kubernetes {', '.join(versions.SUPPORTED_KUBERNETES)}) | pass |" in report


# --------------------------------------------------------------------------------------------
# `pulumi new` templates
# --------------------------------------------------------------------------------------------

#: Each template and the stack `pulumi new` creates for it (a team stack is named team-<name>).
NEW_TEMPLATES = {"platform-local": "dev", "team": "team-demo"}


def instantiate(template: Path, target: Path, stack: str = "dev", project: str = "acme-ml") -> dict[str, str]:
    """What `pulumi new TEMPLATE --yes --stack STACK` does offline; returns the stack config."""
    manifest = yaml.safe_load((template / "Pulumi.yaml").read_text())
    description = manifest["template"]["description"]
    shutil.copytree(template, target)
    for path in target.rglob("*"):
        if path.is_file():
            path.write_text(path.read_text().replace("${PROJECT}", project).replace("${DESCRIPTION}", description))
    project_file = yaml.safe_load((target / "Pulumi.yaml").read_text())
    config = {key: value["default"] for key, value in project_file.pop("template")["config"].items()}
    (target / "Pulumi.yaml").write_text(yaml.safe_dump(project_file, sort_keys=False))
    stack_dir = target / project_file.get("stackConfigDir", ".")
    stack_dir.mkdir(parents=True, exist_ok=True)
    (stack_dir / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": config}))
    return config


@pytest.mark.parametrize("name", NEW_TEMPLATES)
def test_template_manifest_has_placeholders_prompts_and_defaults(name):
    manifest = yaml.safe_load((TEMPLATES / name / "Pulumi.yaml").read_text())
    assert manifest["name"] == "${PROJECT}" and manifest["description"] == "${DESCRIPTION}"
    assert manifest["runtime"]["name"] == "python"
    assert manifest["template"]["description"]
    for key, prompt in manifest["template"]["config"].items():
        assert key.startswith("mlplane:")
        assert prompt["description"] and isinstance(prompt["default"], str)


@pytest.mark.parametrize("name", NEW_TEMPLATES)
def test_template_depends_on_this_mlplane_release(name):
    requirements = (TEMPLATES / name / "requirements.txt").read_text().splitlines()
    pins = [line for line in requirements if line and not line.startswith("#")]
    assert pins == [f"mlplane=={importlib.metadata.version('mlplane')}"]


def new_project(name: str, tmp_path: Path) -> tuple[Path, dict[str, Any], dict[str, str]]:
    """A project instantiated from a template: (directory, Pulumi.yaml, stack config)."""
    project = tmp_path / "acme-ml"
    config = instantiate(TEMPLATES / name, project, stack=NEW_TEMPLATES[name])
    manifest = yaml.safe_load((project / "Pulumi.yaml").read_text())
    assert manifest["name"] == "acme-ml" and "template" not in manifest
    assert "${" not in "".join(p.read_text() for p in project.rglob("*") if p.is_file())
    return project, manifest, config


def run_program(project: Path, manifest: dict[str, Any], stack: str, config: dict[str, str], **references: Any):
    """The new project's program as the engine runs it: config values are strings, objects JSON."""
    return capture(lambda: runpy.run_path(str(project / "__main__.py"), run_name="__main__"),
                   project=manifest["name"], stack=stack, config=config, stack_references=references or None)


def assert_guardrails_hold(result, stack: str, config: dict[str, str]) -> None:
    view = policies.Stack(name=stack, throwaway=True, config_secure=policies.config_secure_keys(config))
    evaluation = policies.evaluate([resource_view(r) for r in result.resources], view)
    assert evaluation.mandatory == []
    assert checks.validate_schemas(result.manifests(), (versions.DEFAULT_KUBERNETES,)) == []


def test_new_platform_project_validates_and_renders_offline(tmp_path):
    project, manifest, config = new_project("platform-local", tmp_path)
    platform = parse_platform(json.loads(config["mlplane:platform"]))
    assert platform.lifecycle.throwaway
    result = run_program(project, manifest, "dev", config)
    assert result.named(platform.name).type == "mlplane:index:Platform"
    assert len(result.kubernetes_objects()) > 20
    assert_guardrails_hold(result, "dev", config)


def test_new_team_project_validates_and_renders_offline(tmp_path, monkeypatch):
    from mlplane.cli import teams
    from mlplane.team import stack_reference_name
    from mlplane.config.team import parse_team

    project, manifest, config = new_project("team", tmp_path)
    monkeypatch.chdir(project)  # the team program reads the platform's stack file from its project
    team = parse_team(json.loads(config["mlplane:team"]))
    assert team.stack == NEW_TEMPLATES["team"]
    checked = teams.check_team(team, project)
    assert checked.platform.tracking.workspaces
    # The StackReference to the platform stack reads that stack's outputs, rendered offline.
    outputs = teams.platform_stand_in(checked)
    result = run_program(project, manifest, team.stack, config, **{stack_reference_name(team.platform_stack, manifest["name"]): outputs})
    assert result.named(team.stack).type == "mlplane:team:Team"
    # The platform stack creates the team's namespaces (mlplane.services.team_access); the team fills them.
    assert not result.by_type("kubernetes:core/v1:Namespace")
    namespaces = {m["metadata"].get("namespace") for m in result.manifests()}
    assert {"mlplane-team-demo", "mlplane-team-demo-serving"} <= namespaces
    assert_guardrails_hold(result, team.stack, config)


# --------------------------------------------------------------------------------------------
# Posting or updating one comment, for real
# --------------------------------------------------------------------------------------------

NODE_HARNESS = """
const calls = [];
const state = JSON.parse(process.env.HARNESS_STATE);
const record = (name) => async (args) => { calls.push([name, args]); return { data: {} }; };
const github = {
  rest: {
    issues: { listComments: "listComments", listForRepo: "listForRepo", updateComment: record("updateComment"),
              createComment: record("createComment"), update: record("updateIssue"), create: record("createIssue") },
    pulls: { list: "pulls" },
  },
  paginate: async (what) => state[what] || [],
};
const context = { repo: { owner: "acme", repo: "ml" }, payload: { pull_request: { number: 7 } },
                  serverUrl: "https://github.com", runId: 42 };
const core = { info: () => {} };
(async () => {
SCRIPT
})().then(() => console.log(JSON.stringify(calls)), (error) => { console.error(error); process.exit(1); });
"""


def run_github_script(script: str, state: dict[str, Any], env: dict[str, str]) -> list[list[Any]]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the github-script steps cannot be executed here")
    result = subprocess.run([node, "-"], input=NODE_HARNESS.replace("SCRIPT", script), text=True, capture_output=True,
                            env={**os.environ, "HARNESS_STATE": json.dumps(state), **env}, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def github_script(name: str, job: str) -> str:
    return next(s for s in steps(workflow(name)["jobs"][job]) if s.get("uses", "").startswith("actions/github-script@"))["with"]["script"]


def test_preview_comment_is_created_once_then_updated(tmp_path):
    (tmp_path / "preview.txt").write_text("+ kubernetes:core/v1:Namespace ml create\n")
    env = {"STACK": "prod", "RUNNER_TEMP": str(tmp_path), "EXIT_CODE": "0"}
    script = github_script("mlplane-pull-request.yml", "preview")
    [(call, args)] = run_github_script(script, {}, env)
    assert call == "createComment" and args["issue_number"] == 7
    assert args["body"].startswith("<!-- pulumi-preview:prod -->\n## pulumi preview: stack `prod`\n\n**PASS**")
    assert "+ kubernetes:core/v1:Namespace ml create" in args["body"]
    existing = [{"id": 1, "user": {"type": "User"}, "body": "<!-- pulumi-preview:prod --> quoted by a human"},
                {"id": 2, "user": {"type": "Bot"}, "body": "<!-- pulumi-preview:dev -->"},
                {"id": 3, "user": {"type": "Bot"}, "body": "<!-- pulumi-preview:prod -->\nold"}]
    [(call, args)] = run_github_script(script, {"listComments": existing}, {**env, "EXIT_CODE": "255"})
    assert call == "updateComment" and args["comment_id"] == 3 and "**FAIL**" in args["body"]


def test_plan_comment_goes_to_the_pull_request_of_the_run_commit(tmp_path):
    reports = tmp_path / "mlplane-plan"
    reports.mkdir()
    (reports / "local.md").write_text("<!-- mlplane-plan:local -->\n## mlplane plan: stack `local`\n")
    (reports / "forged.md").write_text("no marker: not a report\n")
    script = github_script("mlplane-plan-comment.yml", "comment")
    pulls = [{"number": 5, "head": {"sha": "aaa"}}, {"number": 9, "head": {"sha": "bbb"}}]
    calls = run_github_script(script, {"pulls": pulls}, {"RUNNER_TEMP": str(tmp_path), "HEAD_SHA": "bbb"})
    assert [(c, a["issue_number"], a["body"].splitlines()[0]) for c, a in calls] == [("createComment", 9, "<!-- mlplane-plan:local -->")]
    assert run_github_script(script, {"pulls": pulls}, {"RUNNER_TEMP": str(tmp_path), "HEAD_SHA": "ccc"}) == []


def test_drift_opens_one_issue_per_stack_then_updates_it(tmp_path):
    (tmp_path / "drift.txt").write_text("~ kubernetes:apps/v1:Deployment mlflow update\n")
    script = github_script("mlplane-drift.yml", "drift")
    env = {"STACK": "prod", "RUNNER_TEMP": str(tmp_path)}
    [(call, args)] = run_github_script(script, {}, env)
    assert call == "createIssue" and args["title"] == "Drift detected in stack prod" and args["labels"] == ["drift"]
    open_issues = {"listForRepo": [{"number": 12, "title": "Drift detected in stack prod"}]}
    [(call, args)] = run_github_script(script, open_issues, env)
    assert call == "updateIssue" and args["issue_number"] == 12


@pytest.fixture
def gitlab_notes_api():
    """A loopback stand-in for GitLab's merge request notes API; yields (base URL, received calls, notes)."""
    import http.server
    import threading

    calls: list[tuple[str, str, Any]] = []
    notes: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _reply(self, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

        def do_GET(self) -> None:  # noqa: N802
            calls.append(("GET", self.path, self.headers["PRIVATE-TOKEN"]))
            self._reply(notes)

        def do_POST(self) -> None:  # noqa: N802
            body = self._body()
            calls.append(("POST", self.path, body))
            notes.append({"id": len(notes) + 1, **body})
            self._reply(notes[-1])

        def do_PUT(self) -> None:  # noqa: N802
            body = self._body()
            calls.append(("PUT", self.path, body))
            self._reply(body)

        def log_message(self, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v4", calls, notes
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.servers
def test_gitlab_note_is_created_once_then_updated(gitlab_notes_api, tmp_path):
    url, calls, notes = gitlab_notes_api
    note = tmp_path / "note.md"
    note.write_text("<!-- mlplane-plan:local -->\n## mlplane plan: stack `local`\n")
    env = {**os.environ, "MLPLANE_GITLAB_TOKEN": "glpat-test", "CI_MERGE_REQUEST_IID": "3", "CI_PROJECT_ID": "11",
           "CI_API_V4_URL": url, "NOTE_FILE": str(note)}
    snippet = gitlab()[".upsert_note"]
    for _ in range(2):
        subprocess.run(["bash", "-e", "-c", snippet], env=env, check=True, timeout=60)
    assert [(method, path) for method, path, _ in calls] == [
        ("GET", "/api/v4/projects/11/merge_requests/3/notes?per_page=100&sort=asc"),
        ("POST", "/api/v4/projects/11/merge_requests/3/notes"),
        ("GET", "/api/v4/projects/11/merge_requests/3/notes?per_page=100&sort=asc"),
        ("PUT", "/api/v4/projects/11/merge_requests/3/notes/1"),
    ]
    assert calls[0][2] == "glpat-test" and len(notes) == 1


def test_gitlab_note_is_skipped_without_a_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLPLANE_GITLAB_TOKEN"}
    result = subprocess.run(["bash", "-e", "-c", gitlab()[".upsert_note"]], env={**env, "NOTE_FILE": str(tmp_path / "x")},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == ""


@pytest.mark.parametrize(("job", "deployed"), [("pulumi-up", {"dev"}), ("pulumi-up-teams", {"team-a"})])
def test_gitlab_deploys_platform_stacks_before_team_stacks(job, deployed):
    stage_filter = gitlab()[job]["script"][0]
    for stack in ("dev", "team-a"):
        result = subprocess.run(["bash", "-e", "-c", stage_filter + "\necho DEPLOYS"], capture_output=True, text=True,
                                env={**os.environ, "STACK": stack})
        assert ("DEPLOYS" in result.stdout) is (stack in deployed), (job, stack)


def test_scheduled_run_checks_every_platform_stacks_images_without_credentials():
    """Pins that vanish upstream are found on the schedule, by a job that holds no stack secrets."""
    document = workflow("mlplane-drift.yml")
    job = document["jobs"]["images"]
    assert "environment" not in job and "secrets." not in json.dumps(job)
    assert job["permissions"] == {"contents": "read"}
    run = "\n".join(s.get("run", "") for s in job["steps"])
    assert 'mlplane images check --stack "$STACK"' in run and "team-*)" in run


def test_gitlab_checks_platform_images_before_up_and_on_the_schedule():
    text = (ROOT / "templates/ci/gitlab/.gitlab-ci.yml").read_text()
    check = 'case "$STACK" in team-*) ;; *) mlplane images check --stack "$STACK";; esac'
    assert text.count(check) == 2
    assert text.index(check) < text.index('pulumi up --stack "$STACK" --yes')
