"""The CI templates as the CI systems see them: linted, and every credential behind a protection.

- GitHub workflows are linted with actionlint (built by scripts/bootstrap-linters.sh) and zizmor
  (test extras; auditor persona: every audit, false positives included; offline): no finding, and
  every deliberate exception carries its reason next to the `zizmor: ignore[...]` comment.
- Trust boundary (issue 15): every job that can read stack credentials (PULUMI_CONFIG_PASSPHRASE,
  PULUMI_ACCESS_TOKEN, KUBECONFIG, AWS_*, or any `secrets.` other than the job token) is bound to a
  protected GitHub environment; on GitLab every job that runs the Pulumi engine or names those
  variables runs only on a protected ref, in an environment. Code from an unreviewed branch only
  ever runs offline (`mlplane plan`).
- GitLab: the YAML structure (stages, extends, anchors, rules) and the cache key rule (no `/` once
  variables are expanded).

With MLPLANE_REQUIRE_TOOLS=1 (set by .ci/run) a missing linter fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / "templates" / "ci" / "github"
GITLAB = ROOT / "templates" / "ci" / "gitlab" / ".gitlab-ci.yml"
WORKFLOWS = sorted(GITHUB.glob("*.yml"))
CREDENTIALS = re.compile(r"PULUMI_CONFIG_PASSPHRASE|PULUMI_ACCESS_TOKEN|KUBECONFIG|\bAWS_[A-Z_]+|GOOGLE_CREDENTIALS|ARM_CLIENT_SECRET")
SECRET_REFERENCE = re.compile(r"secrets\.(?!GITHUB_TOKEN\b)\w+")
#: GitLab jobs running the engine (anything but `mlplane ...`, which is offline).
ENGINE_COMMAND = re.compile(r"(^|[\s;&|(])pulumi\s+(preview|up|refresh|destroy|stack|config|import|state)\b")


def require_tool(what: str) -> None:
    message = f"{what} is not available: run scripts/bootstrap-linters.sh (test.sh does)"
    if os.environ.get("MLPLANE_REQUIRE_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def actionlint() -> str:
    candidates = [os.environ.get("MLPLANE_ACTIONLINT", "")]
    bootstrap = subprocess.run(["bash", str(ROOT / "scripts" / "bootstrap-linters.sh"), "--print-path"],
                               capture_output=True, text=True)
    candidates += [bootstrap.stdout.strip(), shutil.which("actionlint") or ""]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    require_tool("actionlint")
    raise AssertionError("unreachable")


def zizmor() -> str:
    for candidate in (Path(sys.executable).parent / "zizmor", shutil.which("zizmor")):
        if candidate and os.access(str(candidate), os.X_OK):
            return str(candidate)
    require_tool("zizmor (pip install -e '.[test]')")
    raise AssertionError("unreachable")


def run_actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    # -shellcheck= : shellcheck is not installed here; bash -n covers syntax in test_templates.py.
    return subprocess.run([actionlint(), "-no-color", "-shellcheck=", "-pyflakes=", *map(str, paths)],
                          capture_output=True, text=True, timeout=120)


# --------------------------------------------------------------------------------------------
# Linters
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_accepts_the_workflow(path):
    result = run_actionlint(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_rejects_the_runner_context_in_job_level_env(tmp_path):
    """The bug GitHub rejected the pull-request workflow for at queue time (issue 8, item 12)."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: pull_request\npermissions: {}\njobs:\n  plan:\n    runs-on: ubuntu-24.04\n"
        "    env:\n      PLAN_DIR: ${{ runner.temp }}/plan\n    steps:\n      - run: echo \"$PLAN_DIR\"\n"
    )
    result = run_actionlint(bad)
    assert result.returncode == 1 and 'context "runner" is not allowed here' in result.stdout


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_job_level_env_uses_a_step_only_context(path):
    """Without the linter too: job-level `env` may not use the runner, steps, job or env contexts."""
    document = yaml.safe_load(path.read_text())
    for name, job in document["jobs"].items():
        for key, value in (job.get("env") or {}).items():
            assert not re.search(r"\$\{\{[^}]*\b(runner|steps|job)\.", str(value)), (name, key, value)


def test_zizmor_finds_nothing_and_every_exception_says_why():
    result = subprocess.run([zizmor(), "--offline", "--no-progress", "--persona=auditor", "--format=json",
                             *map(str, WORKFLOWS)], capture_output=True, text=True, timeout=300)
    findings = json.loads(result.stdout or "[]")
    assert findings == [], json.dumps([f.get("ident") for f in findings]) + result.stderr
    assert result.returncode == 0, result.stderr
    for path in WORKFLOWS:
        for line in path.read_text().splitlines():
            match = re.search(r"zizmor: ignore\[([\w,-]+)\](.*)$", line)
            if match:
                assert len(match.group(2).strip()) >= 10, f"{path.name}: give the reason for ignoring {match.group(1)}: {line}"


def test_zizmor_flags_repository_secrets_in_a_job_without_environment(tmp_path):
    """The linter catches the critical path of issue 15 (a preview reading repository secrets)."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "name: bad\non: pull_request\npermissions: {}\njobs:\n  preview:\n    name: preview\n    runs-on: ubuntu-24.04\n"
        "    permissions: {}\n    env:\n      PULUMI_CONFIG_PASSPHRASE: ${{ secrets.PULUMI_CONFIG_PASSPHRASE }}\n"
        "    steps:\n      - run: pulumi preview\n"
    )
    result = subprocess.run([zizmor(), "--offline", "--no-progress", "--persona=auditor", "--format=json", str(bad)],
                            capture_output=True, text=True, timeout=300)
    assert "secrets-outside-env" in {finding["ident"] for finding in json.loads(result.stdout)}


# --------------------------------------------------------------------------------------------
# GitHub: every credential behind a protected environment
# --------------------------------------------------------------------------------------------


def github_credential_problems(document: dict[str, Any]) -> list[str]:
    """Jobs that could read stack credentials without being bound to a GitHub environment."""
    problems = []
    top = json.dumps(document.get("env") or {})
    if CREDENTIALS.search(top) or SECRET_REFERENCE.search(top):
        problems.append("workflow-level env holds credentials: every job would get them")
    for name, job in document["jobs"].items():
        text = json.dumps(job)
        if (CREDENTIALS.search(text) or SECRET_REFERENCE.search(text)) and not job.get("environment"):
            problems.append(f"job {name} reads credentials without a protected environment")
    return problems


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_github_jobs_with_credentials_are_bound_to_environments(path):
    assert github_credential_problems(yaml.safe_load(path.read_text())) == []


def test_github_credential_check_catches_the_old_preview_job():
    document = {"jobs": {"preview": {"env": {"PULUMI_CONFIG_PASSPHRASE": "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"}},
                         "kube": {"steps": [{"run": "echo \"$KUBECONFIG_DATA\"", "env": {"K": "${{ secrets.KUBE }}"}}]},
                         "plan": {"steps": [{"run": "mlplane plan"}]}},
                "env": {"AWS_SECRET_ACCESS_KEY": "${{ secrets.AWS }}"}}
    assert github_credential_problems(document) == [
        "workflow-level env holds credentials: every job would get them",
        "job preview reads credentials without a protected environment",
        "job kube reads credentials without a protected environment",
    ]


def test_unreviewed_code_runs_only_offline_on_github():
    """Pull-request code: the plan job has no secrets; the preview needs a reviewer's approval."""
    document = yaml.safe_load((GITHUB / "mlplane-pull-request.yml").read_text())
    plan = document["jobs"]["plan"]
    assert "environment" not in plan and not SECRET_REFERENCE.search(json.dumps(plan)) and not CREDENTIALS.search(json.dumps(plan))
    preview = document["jobs"]["preview"]
    assert preview["environment"].startswith("preview-")  # required reviewers: docs/ci-previews.md
    deploy = yaml.safe_load((GITHUB / "mlplane-deploy.yml").read_text())
    assert {deploy["jobs"][job]["environment"] for job in ("up", "up-teams")} == {"${{ matrix.stack }}"}
    drift = yaml.safe_load((GITHUB / "mlplane-drift.yml").read_text())
    assert drift["jobs"]["drift"]["environment"] == "drift-${{ matrix.stack }}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_github_installs_only_the_projects_requirements(path):
    """No editable install, no test extras, no mlplane checkout: a template project's files only."""
    text = path.read_text()
    assert "pip install -e" not in text and "[test]" not in text and "components/" not in text
    for job in yaml.safe_load(text)["jobs"].values():
        for item in job.get("steps", []):
            if "pip install" in item.get("run", ""):
                assert "--require-hashes -r requirements.lock" in item["run"] and "-r requirements.txt" in item["run"]
            if item.get("uses", "").startswith("actions/setup-python@") and "cache" in item.get("with", {}):
                assert item["with"]["cache-dependency-path"] == "requirements.txt"


def test_fork_plan_reports_are_posted_as_untrusted_text():
    document = yaml.safe_load((GITHUB / "mlplane-plan-comment.yml").read_text())
    job = document["jobs"]["comment"]
    assert "secrets." not in json.dumps(job)
    script = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/github-script@"))["with"]["script"]
    assert "HEAD_REPOSITORY !== `${owner}/${repo}`" in script and "untrusted" in script


# --------------------------------------------------------------------------------------------
# GitLab: structure, protected refs, the cache key rule
# --------------------------------------------------------------------------------------------

RESERVED = {"workflow", "stages", "variables", "default", "include", "image", "services", "cache", "before_script",
            "after_script"}


def gitlab() -> dict[str, Any]:
    return yaml.safe_load(GITLAB.read_text())


def resolved(document: dict[str, Any], name: str) -> dict[str, Any]:
    """A job with its `extends` merged the way GitLab does (deep merge of hashes, later wins)."""
    job = document[name]
    parents = job.get("extends", [])
    merged: dict[str, Any] = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        assert parent in document, f"{name} extends unknown {parent}"
        merged = deep_merge(merged, resolved(document, parent))
    return deep_merge(merged, {k: v for k, v in job.items() if k != "extends"})


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def gitlab_jobs(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: resolved(document, name) for name, job in document.items()
            if not name.startswith(".") and name not in RESERVED and isinstance(job, dict)}


def script_text(job: dict[str, Any]) -> str:
    return "\n".join(str(line) for key in ("before_script", "script", "after_script") for line in job.get(key, []))


def gitlab_credential_problems(document: dict[str, Any]) -> list[str]:
    problems = []
    if CREDENTIALS.search(json.dumps(document.get("variables") or {})):
        problems.append("global variables hold credentials")
    for name, job in gitlab_jobs(document).items():
        text = script_text(job) + json.dumps(job.get("variables") or {})
        if not (ENGINE_COMMAND.search(text) or CREDENTIALS.search(text)):
            continue
        rules = job.get("rules") or []
        if not rules or not all('$CI_COMMIT_REF_PROTECTED == "true"' in rule.get("if", "") and rule.get("when") != "always"
                                for rule in rules):
            problems.append(f"job {name} can read credentials on an unprotected ref")
        if not job.get("environment"):
            problems.append(f"job {name} can read credentials outside an environment")
    return problems


def test_gitlab_jobs_with_credentials_run_only_on_protected_refs_in_environments():
    document = gitlab()
    assert gitlab_credential_problems(document) == []
    engine_jobs = {name for name, job in gitlab_jobs(document).items() if ENGINE_COMMAND.search(script_text(job))}
    assert engine_jobs == {"pulumi-preview", "pulumi-up", "pulumi-up-teams", "pulumi-drift"}
    assert not ENGINE_COMMAND.search(script_text(gitlab_jobs(document)["mlplane-plan"]))


def test_gitlab_credential_check_catches_the_old_preview_rule():
    document = {
        "pulumi-preview": {"rules": [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}], "script": ["pulumi preview --stack x"]},
        "plan": {"script": ["mlplane plan --stack x"]},
    }
    assert gitlab_credential_problems(document) == [
        "job pulumi-preview can read credentials on an unprotected ref",
        "job pulumi-preview can read credentials outside an environment",
    ]


def test_gitlab_yaml_structure():
    document = gitlab()
    stages = document["stages"]
    jobs = gitlab_jobs(document)
    assert jobs
    for name, job in jobs.items():
        assert job["stage"] in stages, name
        assert isinstance(job["script"], list) and all(isinstance(line, str) for line in job["script"]), name
        for rule in job.get("rules", []):
            assert set(rule) <= {"if", "when", "changes", "exists", "variables", "allow_failure"}, (name, rule)
        for needed in job.get("needs", []):
            assert needed in jobs, (name, needed)
        environment = job.get("environment")
        if environment:
            assert set(environment) <= {"name", "action", "deployment_tier", "url"}, (name, environment)
            assert environment.get("action", "start") in {"start", "prepare"}, (name, environment)
        assert isinstance(job.get("image"), str), name
    for rule in document["workflow"]["rules"]:
        assert set(rule) == {"if"}


def expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), m.group(0)), value)


#: Predefined variables as a runner sets them, with the most awkward real values.
PREDEFINED = {
    "CI_JOB_IMAGE": "pulumi/pulumi-python-3.12:3.259.0",
    "CI_COMMIT_REF_SLUG": "feature-x",
    "CI_COMMIT_REF_NAME": "feature/x",
    "CI_JOB_NAME": "pulumi-up: [local]",
    "CI_PROJECT_PATH": "acme/ml",
    "STACK": "team-vision",
}


def cache_key_problems(job_name: str, cache: dict[str, Any]) -> list[str]:
    """GitLab refuses a cache key holding `/` (or its URL encoding) or equal to `.` / `..`."""
    key = cache.get("key", "default")
    if isinstance(key, dict):
        files = key.get("files", [])
        problems = [] if 1 <= len(files) <= 2 else [f"{job_name}: cache:key:files takes one or two files"]
        value = expand(str(key.get("prefix", "")), PREDEFINED) + "-" + "0" * 40  # GitLab appends a SHA of the files
    else:
        problems, value = [], expand(str(key), PREDEFINED)
    if "/" in value or "%2f" in value.lower() or value in {".", ".."}:
        problems.append(f"{job_name}: cache key {key!r} expands to {value!r}")
    return problems


def test_gitlab_cache_keys_never_contain_a_slash():
    document = gitlab()
    for name, job in gitlab_jobs(document).items():
        if "cache" in job:
            assert cache_key_problems(name, job["cache"]) == []
            assert "requirements.txt" in job["cache"]["key"]["files"]  # keyed on the project's requirements


def test_cache_key_rule_catches_the_old_key():
    assert cache_key_problems("mlplane-plan", {"key": "pip-$CI_JOB_IMAGE"}) == [
        "mlplane-plan: cache key 'pip-$CI_JOB_IMAGE' expands to 'pip-pulumi/pulumi-python-3.12:3.259.0'"
    ]
    assert cache_key_problems("x", {"key": {"files": ["a", "b", "c"], "prefix": "$CI_COMMIT_REF_NAME"}}) == [
        "x: cache:key:files takes one or two files",
        "x: cache key {'files': ['a', 'b', 'c'], 'prefix': '$CI_COMMIT_REF_NAME'} expands to 'feature/x-" + "0" * 40 + "'",
    ]


def test_gitlab_installs_only_the_projects_requirements():
    text = GITLAB.read_text()
    assert "pip install -e" not in text and "[test]" not in text and "components/" not in text
    install = gitlab()[".install_requirements"]
    assert "--require-hashes -r requirements.lock" in install and "-r requirements.txt" in install
    # The jobs that hold credentials use no cache another pipeline could have written.
    for name, job in gitlab_jobs(gitlab()).items():
        if ENGINE_COMMAND.search(script_text(job)):
            assert "cache" not in job, name
