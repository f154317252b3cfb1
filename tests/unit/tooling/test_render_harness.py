"""The offline render harness refuses what the Pulumi engine refuses: two registrations with one
URN (pulumi/pulumi pkg/diag/errors.go, "Duplicate resource URN '<urn>'; try giving it a unique name")."""

from __future__ import annotations

import pulumi
import pytest

from mlplane.tooling.render import capture
from mlplane.tooling.render_records import DuplicateUrnError


class Thing(pulumi.ComponentResource):
    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("test:index:Thing", name, None, opts)
        self.register_outputs({})


def test_two_resources_with_one_urn_fail_the_render_naming_it():
    def program() -> None:
        Thing("twice")
        Thing("twice")

    with pytest.raises(DuplicateUrnError) as caught:
        capture(program)
    urn = caught.value.urn
    assert urn.endswith("$test:index:Thing::twice")
    assert str(caught.value) == f"Duplicate resource URN '{urn}'; try giving it a unique name"
    assert len(caught.value.recorded) == 2  # type: ignore[attr-defined]


def test_one_name_under_two_parents_of_one_type_is_a_duplicate():
    """A URN holds the parents' types, not their names: hence children named `<parent>-<role>`."""

    def program() -> None:
        for parent in ("a", "b"):
            Thing("child", pulumi.ResourceOptions(parent=Thing(parent)))

    with pytest.raises(DuplicateUrnError) as caught:
        capture(program)
    assert caught.value.urn.endswith("::test:index:Thing$test:index:Thing::child")


def test_children_named_after_their_parent_are_distinct():
    def program() -> None:
        for parent in ("a", "b"):
            Thing(f"{parent}-child", pulumi.ResourceOptions(parent=Thing(parent)))

    result = capture(program)
    assert len({r.urn for r in result.resources}) == len(result.resources) == 4


def test_one_name_of_two_types_is_two_urns():
    class Other(Thing):
        def __init__(self, name: str):
            pulumi.ComponentResource.__init__(self, "test:index:Other", name, None, None)

    def program() -> None:
        Thing("same")
        Other("same")

    assert len(capture(program).resources) == 2


def test_the_cli_reports_a_duplicate_urn_in_one_line_and_exits_1(monkeypatch, capsys, tmp_path):
    from mlplane import cli
    from mlplane.cli import platform as platform_cmds

    def duplicate(*_args, **_kwargs):
        raise DuplicateUrnError("urn:pulumi:render::mlplane::test:index:Thing::twice")

    monkeypatch.setattr(platform_cmds, "offline_run", duplicate)
    monkeypatch.setattr("sys.argv", ["mlplane", "render", "--config", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "out")])
    (tmp_path / "p.yaml").write_text("{}\n")
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "error: Duplicate resource URN 'urn:pulumi:render::mlplane::test:index:Thing::twice'" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
