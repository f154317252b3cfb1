"""AWS for ``mlplane verify``: S3 and ECR reached with the operator's AWS identity.

On ``target: aws`` nothing holds storage keys or a registry password (workloads get roles through
EKS Pod Identity), so verify uses the identity of whoever runs it: boto3's default credential
chain (``AWS_PROFILE``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, an SSO session, an
instance or CI role). Every failure is a :class:`CheckFailed` naming the AWS permission the step
needs, never a traceback. boto3 comes with ``pip install 'mlplane[aws]'`` (or ``[verify]``).

ECR login: ``ecr:GetAuthorizationToken`` returns a base64 ``user:password`` (user ``AWS``) valid
for 12 hours, usable as basic credentials on any ECR registry the principal may access (ECR API
reference, GetAuthorizationToken: "decoded and used in a docker login command").
"""

from __future__ import annotations

import base64
from typing import Any

from mlplane.tooling.verify_http import CheckFailed

#: What verify asks of the operator's identity, by step (named in a failing row): the bucket
#: objects are encrypted with the platform's KMS key (docs/components/aws-storage.md).
S3_LIST = "s3:ListBucket"
S3_READ = "s3:GetObject and kms:Decrypt on the platform's key"
S3_WRITE = "s3:PutObject and kms:GenerateDataKey on the platform's key"
S3_DELETE = "s3:DeleteObject"
ECR_LOGIN = "ecr:GetAuthorizationToken"
ECR_DELETE = "ecr:BatchDeleteImage"

_CHAIN = ("verify uses boto3's default chain: set AWS_PROFILE (after `aws sso login` for an SSO profile), "
          "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")


def session(region: str) -> Any:
    """A boto3 session in ``region`` with the default credential chain."""
    try:
        import boto3
    except ImportError:
        raise CheckFailed("AWS", "boto3 is not installed: pip install 'mlplane[aws]'") from None
    try:
        return boto3.session.Session(region_name=region)
    except Exception as error:  # ProfileNotFound and its kin, raised when the session is made
        raise CheckFailed("your AWS credentials", aws_cause(error, "use AWS", region)) from None


def _config(timeout: float, **extra: Any) -> Any:
    from botocore.config import Config

    return Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 2}, **extra)


def caller(region: str, timeout: float) -> str:
    """The ARN of the operator's identity (``sts:GetCallerIdentity``, which needs no permission)."""
    try:
        return str(session(region).client("sts", config=_config(timeout)).get_caller_identity()["Arn"])
    except CheckFailed:
        raise
    except Exception as error:
        raise CheckFailed("your AWS identity (sts get-caller-identity)", aws_cause(error, "be identified", "AWS")) from None


def s3_client(region: str, endpoint: str, timeout: float) -> Any:
    """S3 at the regional endpoint the platform exports, virtual-hosted addressing, SigV4."""
    return session(region).client(
        "s3", endpoint_url=endpoint, config=_config(timeout, s3={"addressing_style": "virtual"}, signature_version="s3v4")
    )


def ecr_login(region: str, timeout: float) -> tuple[str, str]:
    """Basic credentials for ECR from ``ecr:GetAuthorizationToken`` (the operator's identity)."""
    try:
        data = session(region).client("ecr", config=_config(timeout)).get_authorization_token()["authorizationData"]
        user, sep, password = base64.b64decode(data[0]["authorizationToken"]).decode().partition(":")
    except CheckFailed:
        raise
    except Exception as error:
        raise CheckFailed("logging in to ECR", aws_cause(error, ECR_LOGIN, "*")) from None
    if not sep or not password:
        raise CheckFailed("logging in to ECR", "the authorization token is not 'user:password' once decoded")
    return user, password


def ecr_delete(region: str, repository: str, digest: str, timeout: float) -> None:
    """Delete the probe image by digest (``ecr:BatchDeleteImage``); ECR's failures raise CheckFailed."""
    try:
        answer = session(region).client("ecr", config=_config(timeout)).batch_delete_image(
            repositoryName=repository, imageIds=[{"imageDigest": digest}]
        )
    except CheckFailed:
        raise
    except Exception as error:
        raise CheckFailed("deleting", aws_cause(error, ECR_DELETE, repository)) from None
    failures = answer.get("failures") or []
    if failures:
        raise CheckFailed("deleting", f"{failures[0].get('failureCode')}: {failures[0].get('failureReason')}")


def aws_cause(error: BaseException, action: str, resource: str) -> str:
    """The likely cause of a failed AWS call, naming the permission ``action`` on ``resource``."""
    try:
        from botocore import exceptions as bx
    except ImportError:  # pragma: no cover - session() already refused
        return str(error)
    if isinstance(error, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return f"no AWS credentials found: {_CHAIN}, for an identity allowed {action}"
    if isinstance(error, bx.ProfileNotFound):
        return f"{error}: {_CHAIN}"
    if isinstance(error, (bx.TokenRetrievalError, bx.SSOTokenLoadError, bx.UnauthorizedSSOTokenError)):
        return f"the AWS SSO session is missing or expired: run `aws sso login` ({error})"
    if isinstance(error, bx.ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        message = str(error.response.get("Error", {}).get("Message", "")).strip()
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        said = f" (AWS: {message})" if message else ""
        if code in ("AccessDenied", "AccessDeniedException", "403", "Forbidden") or status == 403:
            return f"access denied: your AWS identity is not allowed {action} on {resource}{said}"
        if code in ("ExpiredToken", "ExpiredTokenException", "RequestExpired"):
            return f"your AWS credentials expired: renew them (aws sso login, or new keys){said}"
        if code in ("InvalidClientTokenId", "UnrecognizedClientException", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return f"AWS refuses your credentials ({code}): {_CHAIN}"
        if code == "NoSuchBucket":
            return f"missing bucket: {resource} does not exist in this account and region"
        if code in ("NoSuchKey", "404"):
            return f"the object is not in {resource}"
        if code == "RepositoryNotFoundException":
            return f"missing repository: {resource} does not exist in this account and region"
        return f"AWS error {code or status} on {resource}{said}"
    if isinstance(error, (bx.ConnectTimeoutError, bx.ReadTimeoutError)):
        return f"no answer from AWS for {resource}: network or proxy blocked ({error})"
    if isinstance(error, bx.EndpointConnectionError):
        return f"cannot reach the AWS endpoint: {error}"
    return f"{type(error).__name__}: {error}"
