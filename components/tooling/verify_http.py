"""Small HTTP and S3 helpers for ``mlplane verify``: every failure becomes a :class:`CheckFailed`
naming what failed and its likely cause, never a traceback.

Only the standard library for HTTP (``urllib``); boto3 for S3 (``pip install 'mlplane[verify]'``).
"""

from __future__ import annotations

import base64
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Mapping


class CheckFailed(Exception):
    """One check failed: ``what`` failed, ``cause`` is the likely reason."""

    def __init__(self, what: str, cause: str):
        self.what, self.cause = what, cause
        super().__init__(f"{what}: {cause}")


@dataclass
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError:
            raise CheckFailed(f"{self.url} answered", f"not JSON: {self.body[:200]!r}") from None

    def text(self, limit: int = 300) -> str:
        return self.body[:limit].decode("utf-8", "replace").strip()


def unreachable_cause(error: BaseException, url: str, timeout: float) -> str:
    """Why a connection to ``url`` failed, in words (service down, timeout, DNS)."""
    reason: Any = getattr(error, "reason", error)
    if isinstance(reason, ConnectionRefusedError):
        return f"connection refused at {url}: the service is down or not exposed there"
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return f"no answer from {url} within {timeout:g}s: the service is down, hung or blocked"
    if isinstance(reason, socket.gaierror):
        host = urllib.parse.urlsplit(url).hostname
        return f"host name {host} does not resolve: wrong URL in the stack outputs, or DNS for the domain is not set up"
    if isinstance(reason, ConnectionResetError):
        return f"connection reset by {url}: the service crashed or a proxy dropped the request"
    return f"cannot reach {url}: {reason}"


def status_cause(status: int, body: str = "") -> str:
    """The likely cause of an HTTP error status."""
    detail = f" ({body[:200]})" if body else ""
    if status == 401:
        return f"HTTP 401: wrong credentials (or none sent){detail}"
    if status == 403:
        return f"HTTP 403: the credentials are valid but not allowed to do this{detail}"
    if status == 404:
        return f"HTTP 404: not found{detail}"
    if status == 405:
        return f"HTTP 405: the service refuses this method (read-only, or the operation is disabled){detail}"
    if status in (502, 503, 504):
        return f"HTTP {status}: the gateway is up but the service behind it is down or not ready{detail}"
    if status >= 500:
        return f"HTTP {status}: the service failed{detail}"
    return f"HTTP {status}{detail}"


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never carry the credentials to another host: ECR serves layers from
    pre-signed S3 URLs (ECR API reference, GetDownloadUrlForLayer), which refuse a second
    Authorization header, and a registry's password must not reach a host it redirects to."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


_OPENER = urllib.request.build_opener(_Redirects())


@dataclass
class Http:
    """A tiny client: basic auth, extra headers on every request, a timeout."""

    timeout: float = 10.0
    auth: tuple[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | dict | list | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None | bool = True,
        what: str | None = None,
    ) -> Response:
        """Send one request; HTTP errors come back as a Response, connection errors raise."""
        all_headers = dict(self.headers)
        credentials = self.auth if auth is True else (auth or None)
        if credentials is not None:
            token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
            all_headers["Authorization"] = f"Basic {token}"
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        all_headers.update(headers or {})
        request = urllib.request.Request(url, data=body, method=method, headers=all_headers)
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                return Response(response.status, dict(response.headers), response.read(), url)
        except urllib.error.HTTPError as error:
            return Response(error.code, dict(error.headers or {}), error.read(), url)
        except (urllib.error.URLError, OSError) as error:
            raise CheckFailed(what or f"{method} {url}", unreachable_cause(error, url, self.timeout)) from None

    def expect(self, method: str, url: str, what: str, ok: tuple[int, ...] = (200,), **kwargs: Any) -> Response:
        """Like :meth:`request`, but a status outside ``ok`` is a CheckFailed with its cause."""
        response = self.request(method, url, what=what, **kwargs)
        if response.status not in ok:
            raise CheckFailed(what, status_cause(response.status, response.text()))
        return response


# --------------------------------------------------------------------------------------------
# S3 (boto3)
# --------------------------------------------------------------------------------------------


def s3_client(endpoint: str, key_id: str, secret: str, region: str, timeout: float) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise CheckFailed("reading the bucket", "boto3 is not installed: pip install 'mlplane[verify]'") from None
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name=region,
        config=Config(
            connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1},
            s3={"addressing_style": "path"}, signature_version="s3v4",
        ),
    )


def s3_cause(error: BaseException, endpoint: str, bucket: str | None, timeout: float) -> str:
    """The likely cause of a failed S3 call."""
    try:
        from botocore.exceptions import ClientError, EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError
    except ImportError:  # pragma: no cover - s3_client already refused
        return str(error)
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            return f"missing bucket: {bucket} does not exist at {endpoint}"
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return f"wrong storage credentials ({code}) at {endpoint}"
        if code in ("AccessDenied", "403") or status == 403:
            return f"access denied on bucket {bucket}: the stack's storage credentials are not allowed there"
        if code in ("NoSuchKey", "404"):
            return f"the object is not in bucket {bucket}"
        return f"S3 error {code or status} at {endpoint}: {error}"
    if isinstance(error, (ConnectTimeoutError, ReadTimeoutError)):
        return f"no answer from {endpoint} within {timeout:g}s: the object store is down, hung or blocked"
    if isinstance(error, EndpointConnectionError):
        return f"connection refused at {endpoint}: the object store is down or not exposed there"
    return f"{type(error).__name__} at {endpoint}: {error}"
