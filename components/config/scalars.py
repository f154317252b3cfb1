"""Scalar types of the config: validated strings (DNS names, buckets, quantities, durations,
ports) and their parsers."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from mlplane.config import versions


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_CONFIG_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_CPU = re.compile(r"^(?P<num>[0-9]+(\.[0-9]+)?)(?P<unit>m?)$")
_MEMORY = re.compile(r"^(?P<num>[0-9]+(\.[0-9]+)?)(?P<unit>Ki|Mi|Gi|Ti|k|M|G|T)?$")
_DURATION = re.compile(r"^[0-9]+(ms|s|m|h|d|w|y)$")
_MEMORY_FACTORS = {
    None: 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise ValueError(
            "must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending "
            "with a letter or digit, at most 63 characters"
        )
    return value


def _dns_name(value: str) -> str:
    if len(value) > 253 or not _DNS_NAME.match(value):
        raise ValueError("must be a DNS-1123 subdomain such as 'mlplane.localhost'")
    return value


def _config_key(value: str) -> str:
    if not _CONFIG_KEY.match(value):
        raise ValueError(
            "must name a Pulumi config key in the 'mlplane' namespace, such as 'githubToken' "
            "(letters, digits and '_', starting with a letter)"
        )
    return value


#: Prefixes and suffixes S3 reserves (S3 User Guide, "General purpose bucket naming rules"); the
#: same lists as `mlplane state bootstrap` (tooling/state_settings.py; a test keeps them equal).
BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def _bucket(value: str) -> str:
    if not _BUCKET.match(value) or ".." in value:
        raise ValueError(
            "must be an S3 bucket name: 3-63 lowercase letters, digits, '.' and '-', starting "
            "and ending with a letter or digit"
        )
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", value):
        raise ValueError("must be an S3 bucket name, which may not look like an IP address")
    for prefix in BUCKET_RESERVED_PREFIXES:
        if value.startswith(prefix):
            raise ValueError(
                f"the prefix '{prefix}' is reserved by S3 (reserved: {', '.join(BUCKET_RESERVED_PREFIXES)})"
            )
    for suffix in BUCKET_RESERVED_SUFFIXES:
        if value.endswith(suffix):
            raise ValueError(
                f"the suffix '{suffix}' is reserved by S3 (reserved: {', '.join(BUCKET_RESERVED_SUFFIXES)})"
            )
    return value


def cpu_millicores(value: str) -> int:
    """Parse a Kubernetes CPU quantity ('250m', '0.5', '2') into millicores."""
    match = _CPU.match(value)
    if not match:
        raise ValueError("must be a CPU quantity such as '250m', '0.5' or '2'")
    number = Decimal(match["num"])
    return int(number if match["unit"] == "m" else number * 1000)


def memory_bytes(value: str) -> int:
    """Parse a Kubernetes memory quantity ('512Mi', '1Gi', '1G') into bytes."""
    match = _MEMORY.match(value)
    if not match:
        raise ValueError("must be a memory quantity such as '256Mi', '1Gi' or '500M'")
    return int(Decimal(match["num"]) * _MEMORY_FACTORS[match["unit"]])


_DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def duration_seconds(duration: str) -> float:
    """Seconds in a Prometheus duration such as '30s' or '5m' (the config's Duration format)."""
    match = re.fullmatch(r"([0-9]+)(ms|s|m|h|d|w|y)", duration)
    if not match:
        raise ValueError(f"not a duration: {duration!r}")
    return int(match[1]) * _DURATION_SECONDS[match[2]]


def _cpu(value: str) -> str:
    cpu_millicores(value)
    return value


def _memory(value: str) -> str:
    memory_bytes(value)
    return value


def _storage(value: str) -> str:
    if memory_bytes(value) <= 0:
        raise ValueError("must be a storage size above zero, such as '1Gi'")
    return value


_REGISTRY_HOST = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9._-]+)*$")


def _registry_host(value: str) -> str:
    if not _REGISTRY_HOST.match(value):
        raise ValueError(
            "must be a registry host with an optional port and path, without a scheme, such as "
            "'mirror.corp.example/upstream' or 'localhost:5001'"
        )
    return value


def _number_as_text(value: Any) -> Any:
    """Accept 2 or 0.5 for a quantity, as `pulumi config set --path` stores numbers."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, "g")
    return value


def _duration(value: str) -> str:
    if not _DURATION.match(value):
        raise ValueError("must be a duration such as '30s', '5m', '7d'")
    return value


DnsLabel = Annotated[str, AfterValidator(_dns_label)]
DnsName = Annotated[str, AfterValidator(_dns_name)]
ConfigKey = Annotated[str, AfterValidator(_config_key)]
BucketName = Annotated[str, AfterValidator(_bucket)]
Cpu = Annotated[str, BeforeValidator(_number_as_text), AfterValidator(_cpu)]
Memory = Annotated[str, BeforeValidator(_number_as_text), AfterValidator(_memory)]
Storage = Annotated[str, BeforeValidator(_number_as_text), AfterValidator(_storage)]
Duration = Annotated[str, AfterValidator(_duration)]
Port = Annotated[int, Field(ge=1, le=65535)]
RegistryHost = Annotated[str, AfterValidator(_registry_host)]
#: The Helm charts mlplane installs (keys of versions.CHARTS).
ChartKey = Literal["envoy-gateway", "arc-controller", "arc-scale-set"]


def project_path(value: str) -> Path:
    """A path from the config: relative ones are relative to the project directory (the nearest
    directory holding Pulumi.yaml, from the working directory up), as the engine and CLI see it."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    here = Path.cwd().resolve()
    for candidate in [here, *here.parents]:
        if (candidate / "Pulumi.yaml").is_file():
            return candidate / path
    return here / path


def _minor_version_text(value: Any) -> Any:
    """Accept an unquoted ``1.35`` (YAML reads it as a float) when the float keeps every digit.

    ``1.30`` reads as the float 1.3, which no longer names the version: that is explained instead
    of guessed.
    """
    if isinstance(value, float):
        text = repr(value)
        if text in versions.SUPPORTED_KUBERNETES:
            return text
        raise ValueError(
            f"YAML read an unquoted number here ({text}), and a number drops trailing zeros "
            "(1.30 reads as 1.3): write the version in quotes, one of "
            + ", ".join(f"'{v}'" for v in versions.SUPPORTED_KUBERNETES)
        )
    return value


KubernetesMinor = Annotated[
    Literal["1.34", "1.35", "1.36", "1.37"], BeforeValidator(_minor_version_text)
]
