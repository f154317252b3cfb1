"""The typed config: defaults, and bad input rejected with the field path, the value and what is allowed."""

import pytest

from mlplane.config import ConfigError, PlatformConfig, cpu_millicores, memory_bytes, parse_platform


def problems(raw):
    with pytest.raises(ConfigError) as caught:
        parse_platform(raw)
    return caught.value.problems


def test_empty_config_is_the_default_local_platform():
    config = parse_platform({})
    assert config == PlatformConfig()
    assert config.cluster.mode == "kind"
    assert config.registry.mode == "bundled"
    assert not config.ci_runners.enabled


def test_a_missing_platform_object_is_an_error_not_the_defaults():
    """`{}` asks for every default; a missing object (None) says how to start."""
    with pytest.raises(ConfigError) as caught:
        parse_platform(None)
    assert caught.value.problems == [
        "mlplane:platform: the stack has no platform object: add `mlplane:platform: {}` under `config:` to "
        "ask for every default explicitly, or start from the repository's stacks/Pulumi.local.yaml "
        "(every key: docs/config-reference.md)"
    ]
    assert parse_platform({}) == PlatformConfig()


@pytest.mark.parametrize("minor", ["1.34", "1.35", "1.36", "1.37"])
def test_an_unquoted_kubernetes_version_is_accepted_when_the_number_keeps_its_digits(minor):
    """YAML reads `kubernetes_version: 1.35` as the float 1.35: it names the version exactly."""
    import yaml

    raw = yaml.safe_load(f"cluster: {{kind: {{kubernetes_version: {minor}}}}}")
    assert isinstance(raw["cluster"]["kind"]["kubernetes_version"], float)
    assert parse_platform(raw).cluster.kind.kubernetes_version == minor


@pytest.mark.parametrize(("text", "shown"), [("1.30", "1.3"), ("1.40", "1.4"), ("1.2", "1.2")])
def test_an_unquoted_version_that_lost_digits_explains_the_quoting(text, shown):
    import yaml

    raw = yaml.safe_load(f"cluster: {{kind: {{kubernetes_version: {text}}}}}")
    with pytest.raises(ConfigError) as caught:
        parse_platform(raw)
    assert caught.value.problems == [
        f"mlplane:platform.cluster.kind.kubernetes_version: YAML read an unquoted number here ({shown}), and a "
        "number drops trailing zeros (1.30 reads as 1.3): write the version in quotes, one of '1.34', '1.35', "
        f"'1.36', '1.37' (given: {float(text)!r})"
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"nmae": "x"}, "mlplane:platform.nmae: unknown key; allowed keys here: aws, ci_runners, cluster"),
        ({"cluster": {"kind": {"nam": "x"}}}, "mlplane:platform.cluster.kind.nam: unknown key; allowed keys here: http_port, kubernetes_version, name"),
        ({"name": "Bad_Name"}, "mlplane:platform.name: must be a DNS-1123 label"),
        ({"cluster": {"kind": {"kubernetes_version": "1.30"}}}, "mlplane:platform.cluster.kind.kubernetes_version: Input should be '1.34', '1.35', '1.36' or '1.37' (given: '1.30')"),
        ({"cluster": {"kind": {"http_port": 70000}}}, "mlplane:platform.cluster.kind.http_port: Input should be less than or equal to 65535 (given: 70000)"),
        ({"tracking": {"workers": "many"}}, "mlplane:platform.tracking.workers: Input should be a valid integer"),
        ({"tracking": {"resources": {"requests": {"cpu": "lots", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}},
         "mlplane:platform.tracking.resources.requests.cpu: must be a CPU quantity"),
        ({"database": {"bundled": {"storage_size": "-1Gi"}}}, "mlplane:platform.database.bundled.storage_size: must be a memory quantity"),
        ({"cluster": {"mode": "existing"}}, "mlplane:platform.cluster: mode 'existing' needs an 'existing' block"),
        ({"cluster": {"mode": "render", "render": {"directory": "/tmp/x"}}}, "registry.mode 'bundled' runs a Docker container on kind's network and needs cluster.mode 'kind'"),
        ({"object_storage": {"buckets": {"artifacts": "Bad_Bucket"}}}, "mlplane:platform.object_storage.buckets.artifacts: must be an S3 bucket name"),
        ({"object_storage": {"buckets": {"artifacts": "same", "datasets": "same"}}}, "bucket names must be distinct"),
        ({"serving": {"models": [{"name": "m", "registered_model": "m"}]}}, "mlplane:platform.serving.models[0]: set exactly one of 'version' or 'alias'"),
        ({"serving": {"models": [{"name": "m", "registered_model": "m", "version": 1, "min_replicas": 3, "max_replicas": 2}]}}, "min_replicas (3) is above max_replicas (2)"),
        ({"serving": {"models": [{"name": "m", "registered_model": "m", "version": 1}, {"name": "m", "registered_model": "n", "version": 1}]}}, "models[1].name 'm' is used twice"),
        ({"ci_runners": {"github_token_key": "tok"}}, "credentials are set but 'github_config_url' is not"),
        ({"ci_runners": {"github_config_url": "https://github.com/acme/models", "github_token_key": "tok", "container_mode": "dind"}}, "set allow_privileged_runners: true"),
        ({"monitoring": {"alerts": {"model_error_rate": 2}}}, "mlplane:platform.monitoring.alerts.model_error_rate: Input should be less than 1 (given: 2)"),
        ({"cluster": "kind"}, "mlplane:platform.cluster: Input should be a valid dictionary or instance of ClusterConfig (given: 'kind')"),
    ],
)
def test_bad_config_names_the_field_and_the_value(raw, expected):
    found = problems(raw)
    assert any(expected in line for line in found), found


def test_every_problem_is_reported_at_once():
    found = problems({"name": "BAD", "tracking": {"workers": 0}, "extra": 1})
    assert len(found) == 3


def test_non_mapping_is_rejected():
    assert problems(["a"]) == ["mlplane:platform: must be a mapping of platform settings (given: ['a'])"]


def test_config_is_frozen():
    config = parse_platform({})
    with pytest.raises(Exception):
        config.name = "other"  # type: ignore[misc]


def test_every_field_has_a_description():
    from pydantic import BaseModel

    missing = []

    def walk(model: type[BaseModel], path: str) -> None:
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(f"{path}.{name}")
            for arg in [field.annotation, *getattr(field.annotation, "__args__", ())]:
                for inner in [arg, *getattr(arg, "__args__", ())]:
                    if isinstance(inner, type) and issubclass(inner, BaseModel):
                        walk(inner, f"{path}.{name}")

    walk(PlatformConfig, "platform")
    assert missing == []


def test_secret_keys_are_listed_with_their_paths():
    config = parse_platform({
        "database": {"mode": "external", "external": {"host": "db", "password_key": "dbPassword"}},
        "ci_runners": {"github_config_url": "https://github.com/acme/models", "github_token_key": "githubToken"},
    })
    assert ("database.external.password_key", "dbPassword") in config.secret_keys()
    assert ("ci_runners.github_token_key", "githubToken") in config.secret_keys()


@pytest.mark.parametrize(("text", "millicores"), [("250m", 250), ("0.5", 500), ("2", 2000)])
def test_cpu_quantities(text, millicores):
    assert cpu_millicores(text) == millicores


@pytest.mark.parametrize(("text", "size"), [("1Gi", 2**30), ("512Mi", 512 * 2**20), ("1G", 10**9), ("100", 100)])
def test_memory_quantities(text, size):
    assert memory_bytes(text) == size


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"serving": {"models": [{"name": "grafana", "registered_model": "x", "version": 1}]}}, "is the host name of a platform UI"),
        ({"images": {"registry_mirror": "http://bad mirror/"}}, "images.registry_mirror: must be a registry host"),
        ({"database": {"bundled": {"storage_size": "0"}}}, "storage_size: must be a storage size above zero"),
        ({"monitoring": {"alerts": {"fr": 1}}}, "allowed keys here: for, model_error_rate"),
    ],
)
def test_values_that_would_fail_at_apply_time_are_rejected(raw, expected):
    assert any(expected in line for line in problems(raw)), problems(raw)


def test_quantities_may_be_plain_numbers():
    config = parse_platform({"tracking": {"resources": {"requests": {"cpu": 0.5, "memory": "1Gi"}, "limits": {"cpu": 2, "memory": "2Gi"}}}})
    assert (config.tracking.resources.requests.cpu, config.tracking.resources.limits.cpu) == ("0.5", "2")
