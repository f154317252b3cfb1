"""The ``version`` of the platform and team config objects (docs/upgrading.md, Config versions)."""

from __future__ import annotations

import pytest

from mlplane.config import upgrades as config_upgrades
from mlplane.config import ConfigError, parse_platform
from mlplane.config.team import parse_team

TEAM = {"name": "vision", "platform_stack": "local"}


def test_an_object_without_version_is_version_1_so_existing_stacks_stay_valid():
    assert parse_platform({}).version == 1
    assert parse_team(dict(TEAM)).version == 1
    assert parse_platform({"version": 1}).version == 1


@pytest.mark.parametrize("given", [2, 0, -1, 99])
def test_an_unsupported_version_is_refused_naming_field_given_and_allowed(given):
    for parse, raw, root in (
        (parse_platform, {"version": given}, "mlplane:platform"),
        (parse_team, {**TEAM, "version": given}, "mlplane:team"),
    ):
        with pytest.raises(ConfigError) as caught:
            parse(raw, root=root)
        (problem,) = caught.value.problems
        assert problem.startswith(f"{root}.version: unsupported config version {given}: this mlplane reads version 1")
        assert f"(given: {given})" in problem
        assert ("upgrade mlplane" in problem) == (given > 1)


@pytest.mark.parametrize("given", [True, "1", 1.0, None, [1]])
def test_a_version_that_is_not_an_integer_is_refused(given):
    with pytest.raises(ConfigError) as caught:
        parse_platform({"version": given})
    assert caught.value.problems[0].startswith("mlplane:platform.version: Input should be a valid integer")


def test_the_registry_of_upgrade_steps_is_empty_while_there_is_one_version():
    assert config_upgrades.CONFIG_VERSION == 1
    assert config_upgrades.SUPPORTED_VERSIONS == (1,)
    assert config_upgrades.UPGRADE_STEPS == {}
    assert config_upgrades.upgrade("platform", {"name": "x"}) == {"name": "x"}


def test_upgrade_applies_each_step_in_order_from_the_objects_version():
    """How the next breaking change plugs in: one step per version, applied in order."""
    steps = {
        2: lambda kind, raw: {**{k: v for k, v in raw.items() if k != "old"}, "new": raw.get("old")},
        3: lambda kind, raw: {**raw, "kind_seen": kind},
    }
    assert config_upgrades.upgrade("team", {"old": 5}, steps) == {"new": 5, "kind_seen": "team", "version": 3}
    assert config_upgrades.upgrade("team", {"version": 2, "new": 5}, steps) == {"new": 5, "version": 3, "kind_seen": "team"}
    assert config_upgrades.upgrade("team", {"version": 3, "x": 1}, steps) == {"version": 3, "x": 1}
    # Not an integer: left as is for the config's validation to name.
    assert config_upgrades.upgrade("team", {"version": "2"}, steps) == {"version": "2"}
