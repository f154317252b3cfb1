"""`mlplane plan`: the offline plan, its Markdown and JSON reports, and its exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml
from typer.testing import CliRunner

from mlplane.tooling import checks, plan
from mlplane import cli, policies
from mlplane.config import versions
from mlplane.tooling.render import capture

ROOT = Path(__file__).resolve().parents[3]


class Component(pulumi.ComponentResource):
    def __init__(self, type_: str, name: str, parent: pulumi.Resource | None = None):
        super().__init__(type_, name, None, pulumi.ResourceOptions(parent=parent))


def tiny_program(image: str = "ghcr.io/acme/app:1.0", probes: bool = True) -> None:
    """A platform root, two components (one nested), a workload and a protected volume claim."""
    root = Component("mlplane:index:Platform", "mlplane")
    provider = k8s.Provider("mlplane-kubernetes", render_yaml_to_directory="/nonexistent", opts=pulumi.ResourceOptions(parent=root))
    serving = Component("mlplane:serving:Serving", "mlplane-serving", root)
    model = Component("mlplane:serving:Model", "mlplane-serving-iris", serving)
    container = {
        "name": "app",
        "image": image,
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
    }
    if probes:
        container.update(livenessProbe={"httpGet": {"path": "/", "port": 80}}, readinessProbe={"httpGet": {"path": "/", "port": 80}})
    k8s.apps.v1.Deployment(
        "mlplane-serving-iris-deployment",
        metadata={"name": "iris", "namespace": "mlplane-serving"},
        spec={
            "selector": {"matchLabels": {"app": "iris"}},
            "template": {
                "metadata": {"labels": {"app": "iris"}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                },
            },
        },
        opts=pulumi.ResourceOptions(parent=model, provider=provider),
    )
    k8s.core.v1.PersistentVolumeClaim(
        "mlplane-serving-cache",
        metadata={"name": "cache", "namespace": "mlplane-serving"},
        spec={"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        opts=pulumi.ResourceOptions(parent=serving, provider=provider, protect=True, retain_on_delete=True),
    )


def make_plan(program=tiny_program, findings: list[checks.Finding] | None = None, stack: policies.Stack | None = None) -> plan.Plan:
    result = capture(program)
    stack = stack or policies.Stack(name="ci", config_secure={})
    return plan.Plan(
        stack=stack.name,
        source="stacks/Pulumi.ci.yaml",
        capture=result,
        schema_versions=("1.35",),
        schema_findings=findings or [],
        evaluation=policies.evaluate([plan.resource_view(r) for r in result.resources], stack),
        usage={},
    )


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


def test_resource_view_carries_protect_retain_and_secret_paths():
    def program():
        k8s.core.v1.Secret("s", metadata={"name": "s", "namespace": "n"}, string_data={"password": pulumi.Output.secret("x")},
                           opts=pulumi.ResourceOptions(protect=True, retain_on_delete=True))

    record = capture(program).named("s")
    view = plan.resource_view(record)
    assert (view.type, view.name, view.urn) == ("kubernetes:core/v1:Secret", "s", record.urn)
    assert view.protect and view.retain_on_delete
    assert view.secret_paths == frozenset({"stringData"})
    assert view.props["stringData"] == {"password": "x"}


def test_stack_view_reads_throwaway_and_secure_keys():
    source = cli.Source(raw={}, root="mlplane:platform", stack="ci", secure_keys=frozenset({"githubToken"}),
                        stack_config={"mlplane:platform": {}, "mlplane:githubToken": {"secure": "v1:x"}})
    platform = cli.parse_platform({"lifecycle": {"throwaway": True}})
    stack = plan.stack_view(source, platform)
    assert stack == policies.Stack(name="ci", throwaway=True, config_secure={"mlplane:platform": False, "mlplane:githubToken": True})
    from_file = cli.Source(raw={}, root="platform", stack="render", secure_keys=None, stack_config={})
    assert plan.stack_view(from_file, platform).config_secure is None


def test_resources_are_grouped_under_their_top_level_component():
    groups = plan.group_by_component(capture(tiny_program))
    assert [(g.title, g.name, [r.name for r in g.resources]) for g in groups] == [
        ("Platform", "(platform)", ["mlplane-kubernetes"]),
        ("Serving", "mlplane-serving", ["mlplane-serving-iris-deployment", "mlplane-serving-cache", "mlplane-serving-iris"]),
    ]


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def test_clean_plan_exits_0_and_says_pass():
    report = make_plan()
    assert report.exit_code == 0
    text = report.markdown()
    assert text.startswith("<!-- mlplane-plan:ci -->\n## mlplane plan: stack `ci`")
    assert "**PASS**" in text and "### Violations" not in text


def test_mandatory_violation_exits_1_with_resource_problem_and_fix():
    report = make_plan(lambda: tiny_program(image="nginx"))
    assert report.exit_code == 1
    text = report.markdown()
    assert "**FAIL**: 1 mandatory policy violation must be fixed before merging." in text
    assert (
        "| mandatory | `pinned-images` | `Deployment/mlplane-serving/iris` | container 'app': image 'nginx' is not pinned "
        "to a tag or digest | use platform.image(key) (pins in versions.py), or a tag other than 'latest' |"
    ) in text


def test_advisory_findings_are_reported_without_failing():
    report = make_plan(lambda: tiny_program(probes=False))
    assert report.exit_code == 0
    text = report.markdown()
    assert "**PASS**" in text and "1 advisory finding to review" in text
    assert "| advisory | `health-probes` | `Deployment/mlplane-serving/iris` |" in text


def test_schema_findings_fail_the_plan():
    finding = checks.Finding("schema-1.35", "Deployment/mlplane-serving/iris", "spec/replicas: 'two' is not of type 'integer'")
    report = make_plan(findings=[finding])
    assert report.exit_code == 1
    text = report.markdown()
    assert "1 schema finding must be fixed" in text
    assert "| schema-1.35 | `Deployment/mlplane-serving/iris` | spec/replicas: 'two' is not of type 'integer' |" in text


def test_summary_policies_and_resources_sections():
    text = make_plan(stack=policies.Stack(name="ci", throwaway=True, config_secure={})).markdown()
    assert "| render | 6 resources: 2 Kubernetes objects, 0 Helm charts, 1 protected |" in text
    assert "| `stateful-protection` | mandatory | not applicable: throwaway stack" in text
    assert "<summary><b>Serving</b> <code>mlplane-serving</code>: 3 resources</summary>" in text
    assert "| `kubernetes:core/v1:PersistentVolumeClaim` | `mlplane-serving-cache` | `PersistentVolumeClaim/mlplane-serving/cache` | yes |" in text


def test_table_cells_escape_pipes_newlines_and_angle_brackets():
    assert plan._cell("a|b\nc") == "a\\|b c"
    assert plan._cell("pulumi config set --secret k <value>") == "pulumi config set --secret k &lt;value&gt;"


def test_long_violation_lists_are_cut_for_pull_request_comments(monkeypatch):
    monkeypatch.setattr(plan, "MAX_VIOLATION_ROWS", 1)
    report = make_plan(lambda: tiny_program(image="nginx", probes=False))
    assert "... and 1 more: run `mlplane plan --json` for all of them." in report.markdown()


def test_json_report_has_the_same_verdict_and_violations():
    document = make_plan(lambda: tiny_program(image="nginx")).as_json()
    assert document["result"] == "fail" and document["exit_code"] == 1
    assert [v["policy"] for v in document["violations"]] == ["pinned-images"]
    assert {p["name"] for p in document["policies"]} == {p.name for p in policies.POLICIES}
    serving = document["components"][1]["resources"]
    assert serving[0]["object"] == "Deployment/mlplane-serving/iris"
    assert serving[1]["object"] == "PersistentVolumeClaim/mlplane-serving/cache" and serving[1]["protect"] is True
    json.dumps(document)


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


def mlplane(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlplane", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=300)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--config", "{bad}"], "platform.name: must be a DNS-1123 label"),
        (["--stack", "nope"], "--stack: no stack 'nope'"),
        ([], "give exactly one of --stack NAME or --config FILE"),
    ],
)
def test_invalid_input_exits_2_and_writes_nothing(tmp_path, args, expected):
    config = tmp_path / "platform.yaml"
    config.write_text("name: Bad_Name\n")
    args = [str(config) if a == "{bad}" else a for a in args]
    out = tmp_path / "plan.md"
    result = mlplane("plan", *args, "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_out_never_overwrites_a_file_that_is_not_an_earlier_report(tmp_path):
    """`plan --out` replaces only a report it wrote; the user's file is refused before the render."""
    config = tmp_path / "platform.yaml"
    config.write_text("{}\n")
    notes = tmp_path / "notes.md"
    notes.write_text("# my release notes\n")
    result = mlplane("plan", "--config", str(config), "--out", str(notes))
    assert result.returncode == 2, result.stderr
    assert "is not an mlplane plan report" in result.stderr and "Traceback" not in result.stderr
    assert notes.read_text() == "# my release notes\n"
    # A directory or a link is never replaced either.
    (tmp_path / "dir").mkdir()
    assert mlplane("plan", "--config", str(config), "--out", str(tmp_path / "dir")).returncode == 2


def test_out_replaces_its_own_reports_and_force_replaces_anything(tmp_path, monkeypatch):
    report = plan.write(make_plan(), tmp_path / "plan.md", as_json=False)
    assert plan.foreign_file(tmp_path / "plan.md") is None
    plan.write(make_plan(), tmp_path / "plan.json", as_json=True)
    assert plan.foreign_file(tmp_path / "plan.json") is None
    assert plan.foreign_file(tmp_path / "absent.md") is None
    (tmp_path / "other.json").write_text('{"stack": "x"}')
    assert "not an mlplane plan report" in plan.foreign_file(tmp_path / "other.json")
    assert not list(tmp_path.glob(".*mlplane-tmp"))  # the staged file is gone after the rename
    assert (tmp_path / "plan.md").read_text() == report


def test_force_replaces_a_users_file(tmp_path):
    config = tmp_path / "platform.yaml"
    config.write_text("{}\n")
    target = tmp_path / "notes.md"
    target.write_text("mine\n")
    result = mlplane("plan", "--config", str(config), "--out", str(target), "--force")
    assert result.returncode in (0, 1), result.stderr
    assert target.read_text().startswith("<!-- mlplane-plan:")


@pytest.fixture(scope="module")
def local_plan():
    """The plan of the local stack, schemas checked against one minor (test_render_stack.py and the
    CI template test, which runs the real command, cover every supported minor)."""
    os.chdir(ROOT)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(versions, "SUPPORTED_KUBERNETES", (versions.DEFAULT_KUBERNETES,))
        return plan.build("local", None)


def test_local_stack_plan_is_clean(local_plan):
    assert local_plan.schema_versions == (versions.DEFAULT_KUBERNETES,)
    assert local_plan.schema_findings == []
    assert local_plan.evaluation.mandatory == [], local_plan.evaluation.mandatory
    assert local_plan.exit_code == 0
    # local is throwaway
    assert local_plan.evaluation.not_applicable.keys() == {"stateful-protection", "aws-rds-deletion-protection"}


def test_local_stack_has_no_cloud_cost(local_plan):
    assert local_plan.estimate is None
    assert "cost" not in local_plan.as_json()
    assert "Cost" not in local_plan.markdown()


def test_local_stack_report_covers_every_component(local_plan):
    text = local_plan.markdown()
    titles = {group.title for group in plan.group_by_component(local_plan.capture)}
    assert {"Cluster", "Routing", "ObjectStorage", "Database", "TrackingServer", "Registry", "Serving", "Monitoring"} <= titles
    assert "| config | valid (stacks/Pulumi.local.yaml) |" in text
    assert "<details><summary>Footprint</summary>" in text
    assert "[secret]" not in text and "stand-in" not in text.replace("are stand-ins", "")


def write_project(root: Path, stack_config: dict) -> Path:
    (root / "stacks").mkdir(parents=True)
    (root / "Pulumi.yaml").write_text("name: acme-ml\nruntime: python\nstackConfigDir: stacks\n")
    (root / "stacks" / "Pulumi.ci.yaml").write_text(yaml.safe_dump({"config": stack_config}))
    return root


def test_policy_violation_still_renders_the_report_and_exits_1(tmp_path, monkeypatch):
    project = write_project(tmp_path / "proj", {"mlplane:platform": {"name": "acme"}, "aws:secretKey": "AKIAPLAINTEXT"})
    monkeypatch.chdir(project)
    monkeypatch.setattr(versions, "SUPPORTED_KUBERNETES", ("1.35",))
    out = tmp_path / "reports" / "plan.md"
    result = CliRunner().invoke(cli.app, ["plan", "--stack", "ci", "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "plan FAIL for stack ci: 1 mandatory" in result.output
    text = out.read_text()
    assert "| mandatory | `no-plain-secret-config` | `stack` | stack config key 'aws:secretKey' looks like a secret" in text
    assert "AKIAPLAINTEXT" not in text
    # Not throwaway: stateful resources were checked, and they are protected.
    assert "| `stateful-protection` | mandatory | pass |" in text


def test_json_report_to_stdout(tmp_path, monkeypatch):
    project = write_project(tmp_path / "proj", {"mlplane:platform": {"name": "acme", "lifecycle": {"throwaway": True}}})
    monkeypatch.chdir(project)
    monkeypatch.setattr(versions, "SUPPORTED_KUBERNETES", ("1.35",))
    result = CliRunner().invoke(cli.app, ["plan", "--stack", "ci", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["stack"] == "ci" and document["result"] == "pass"
    assert document["schema"]["kubernetes_versions"] == ["1.35"]


def test_team_stack_is_planned_against_its_platform(tmp_path, monkeypatch):
    project = write_project(tmp_path / "proj", {"mlplane:platform": {"name": "acme", "tracking": {"workspaces": True}}})
    (project / "stacks" / "Pulumi.team-fraud.yaml").write_text(yaml.safe_dump(
        {"config": {"mlplane:team": {"name": "fraud", "platform_stack": "ci", "members": {"groups": ["fraud-ds"]}}}}
    ))
    monkeypatch.chdir(project)
    monkeypatch.setattr(versions, "SUPPORTED_KUBERNETES", ("1.35",))
    out = tmp_path / "team.md"
    result = CliRunner().invoke(cli.app, ["plan", "--stack", "team-fraud", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.startswith("<!-- mlplane-plan:team-fraud -->")
    assert "| config | valid (stacks/Pulumi.team-fraud.yaml) |" in text
    assert "<summary><b>Team</b> <code>team-fraud</code>:" in text
    assert "| `team-namespace-isolation` | mandatory | pass |" in text
    # Not throwaway: stateful resources are checked, and the platform's charts are not the team's footprint.
    assert "| `stateful-protection` | mandatory | pass |" in text
    assert "| Routing |" not in text


def test_team_stack_with_an_unknown_platform_exits_2(tmp_path, monkeypatch):
    project = write_project(tmp_path / "proj", {"mlplane:platform": {"name": "acme"}})
    (project / "stacks" / "Pulumi.team-fraud.yaml").write_text(yaml.safe_dump(
        {"config": {"mlplane:team": {"name": "fraud", "platform_stack": "nope"}}}
    ))
    monkeypatch.chdir(project)
    out = tmp_path / "team.md"
    result = CliRunner().invoke(cli.app, ["plan", "--stack", "team-fraud", "--out", str(out)])
    assert isinstance(result.exception, cli.InputError)  # main() turns it into exit 2, one line per problem
    assert "platform_stack: platform stack 'nope'" in str(result.exception)
    assert not out.exists()
