"""``mlplane state bootstrap`` and ``mlplane state check``: the S3 bucket (and KMS key) behind Pulumi's
self-managed state backend; the logic lives in components/tooling/state_backend.py (docs/state.md).

Exit codes: 0 the bucket has every setting (or was just given them), 1 a setting is weaker than
expected (nothing changed without ``--fix``) or AWS refused a call, 2 bad input (nothing called).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from mlplane.cli.support import EXIT_INVALID, fail

EXIT_FAILED = 1

state_app = typer.Typer(
    help="The S3 bucket (and KMS key) for Pulumi's self-managed state backend: create it, check it.",
    no_args_is_help=True,
)

STYLE = {"ok": "green", "created": "green", "fixed": "green", "weak": "bold red", "missing": "bold red", "advice": "yellow"}

Bucket = Annotated[str, typer.Option("--bucket", help="The state bucket's name (3-63 lowercase letters, digits, hyphens).", show_default=False)]
Region = Annotated[Optional[str], typer.Option("--region", help="The bucket's region (default: AWS_REGION or AWS_DEFAULT_REGION).")]
KmsKey = Annotated[Optional[str], typer.Option(
    "--kms-key", help="KMS key for SSE-KMS and the stacks' secrets: alias/NAME (created with rotation on if missing), a key ID or "
    "a key ARN. Default: alias/<bucket>, or the key an existing bucket already uses.")]
NoKms = Annotated[bool, typer.Option("--no-kms", help="SSE-S3 (AES256) instead of SSE-KMS; stack secrets then need a passphrase.")]
Days = Annotated[int, typer.Option("--noncurrent-days", help="Days a replaced (noncurrent) state file version is kept before it expires.")]
Profile = Annotated[Optional[str], typer.Option("--profile", help="AWS profile to use (also written into the login URL).")]
AsJson = Annotated[bool, typer.Option("--json", help="Write the report as JSON.")]


def _request(bucket: str, region: Optional[str], kms_key: Optional[str], no_kms: bool, days: int, profile: Optional[str]):
    from mlplane.tooling.state_backend import StateInputError, request

    try:
        return request(bucket, region, kms_key=kms_key, no_kms=no_kms, noncurrent_days=days, profile=profile)
    except ImportError:
        fail(["boto3 is not installed: pip install 'mlplane[aws]'"], EXIT_FAILED)
    except StateInputError as error:
        fail(error.problems, EXIT_INVALID)


def _run(req, mode: str, fix: bool, as_json: bool) -> None:
    from mlplane.tooling.state_backend import StateBackendError, StateInputError, run

    try:
        report = run(req, mode, fix=fix)
    except StateInputError as error:
        fail(error.problems, EXIT_INVALID)
    except StateBackendError as error:
        fail([str(error)], EXIT_FAILED)
    if as_json:
        sys.stdout.write(json.dumps(report.as_json(), indent=2) + "\n")
    else:
        console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
        table = Table(title=f"mlplane state {mode}: s3://{req.bucket} ({req.region}, account {report.account})")
        for column in ("setting", "status", "found", "expected"):
            table.add_column(column, overflow="fold")
        for row in report.rows:
            table.add_row(row.setting, f"[{STYLE.get(row.status, '')}]{row.status}[/]", row.found, row.expected)
        console.print(table)
        console.print(report.summary(), markup=False)
        if not report.failed:
            console.print("\nNext:", markup=False)
            for step in report.next_steps():
                console.print(f"  {step}", markup=False)
    if report.failed:
        raise SystemExit(EXIT_FAILED)


@state_app.command("bootstrap")
def bootstrap(
    bucket: Bucket,
    region: Region = None,
    kms_key: KmsKey = None,
    no_kms: NoKms = False,
    noncurrent_days: Days = 90,
    profile: Profile = None,
    fix: Annotated[bool, typer.Option("--fix", help="On an existing bucket, apply the missing settings (the policy's and "
                                      "lifecycle's own statements and rules are kept). Without it nothing existing is changed.")] = False,
    as_json: AsJson = False,
) -> None:
    """Create the state bucket (versioned, encrypted, public access blocked, owner-enforced, TLS only,
    noncurrent versions expired) and its KMS key, or check an existing one. Idempotent: a re-run
    changes nothing. An existing bucket with weaker settings is reported and left unchanged (exit 1)
    unless --fix. Prints the `pulumi login` command and the secrets-provider to use."""
    _run(_request(bucket, region, kms_key, no_kms, noncurrent_days, profile), "bootstrap", fix, as_json)


@state_app.command("check")
def check(
    bucket: Bucket,
    region: Region = None,
    kms_key: KmsKey = None,
    no_kms: NoKms = False,
    noncurrent_days: Days = 90,
    profile: Profile = None,
    as_json: AsJson = False,
) -> None:
    """Check the state bucket (read only): exit 0 when it has every setting, 1 when one is weaker or
    the bucket does not exist, 2 on bad input."""
    _run(_request(bucket, region, kms_key, no_kms, noncurrent_days, profile), "check", False, as_json)
