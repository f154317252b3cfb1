"""``mlplane images check`` and ``mlplane images lock``: the images and charts a stack uses,
resolved tag -> digest through the OCI distribution API, and the lock file of those digests.

What a stack uses is read from its offline render (every container image, Helm chart and image
in chart values that matches a pin of :mod:`mlplane.config.versions`, through ``images.registry_mirror``
and ``images.chart_mirror``), so a component that is off is not checked. Resolution follows the
registries' anonymous token flow: a ``401`` with ``WWW-Authenticate: Bearer realm=...,service=...,
scope=...`` is answered by fetching a token from the realm and retrying the ``HEAD`` of the
manifest (``GET`` when the registry sends no ``Docker-Content-Digest``). Loopback registries are
spoken to over plain HTTP, everything else over HTTPS.

The lock file (JSON, written only by ``mlplane images lock``; default
``stacks/images.<stack>.lock.json``) records, per pin key, the reference it was resolved from
and its digest. ``images.lock_file`` points the stack at it; see docs/components/images.md.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer

from mlplane.config import versions
from mlplane.config.image_lock import DIGEST, GENERATOR, LOCK_VERSION, LockError, read_lock  # noqa: F401 (callers and tests)

#: Manifest media types asked for: OCI index and manifest, Docker manifest list and v2 manifest.
ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
#: Registry hosts whose API lives elsewhere.
API_HOSTS = {"docker.io": "registry-1.docker.io"}
EXIT_FAILED = 1


class RegistryError(Exception):
    """A reference that could not be resolved: ``kind`` is 'missing' (no such tag) or 'unavailable'."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(message)


# --------------------------------------------------------------------------------------------
# The registry client
# --------------------------------------------------------------------------------------------


def _challenge(header: str) -> dict[str, str]:
    """The parameters of a ``WWW-Authenticate: Bearer k="v",...`` challenge."""
    if not header.lower().startswith("bearer "):
        return {}
    return dict(re.findall(r'(\w+)="([^"]*)"', header[len("bearer ") :]))


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name in ("localhost", "[::1]") or name.startswith("127.")


class RegistryClient:
    """Resolves ``host/repository:reference`` to a manifest digest over the distribution API."""

    def __init__(self, timeout: float = 15.0):
        self.timeout = timeout
        self._tokens: dict[tuple[str, str], str] = {}

    def base_url(self, host: str) -> str:
        scheme = "http" if _is_loopback(host) else "https"
        return f"{scheme}://{API_HOSTS.get(host, host)}"

    def resolve(self, host: str, repository: str, reference: str) -> str:
        """The ``sha256:`` digest the registry serves for the reference (tag)."""
        url = f"{self.base_url(host)}/v2/{repository}/manifests/{urllib.parse.quote(reference)}"
        name = f"{host}/{repository}:{reference}"
        for method in ("HEAD", "GET"):
            status, headers, body = self._request(method, url, host, repository, name)
            if status == 404:
                raise RegistryError("missing", f"{name}: the registry has no such tag (404 {self._error_code(body)})".rstrip())
            if status != 200:
                raise RegistryError("unavailable", f"{name}: the registry answered {status} {self._error_code(body)}".rstrip())
            digest = headers.get("Docker-Content-Digest", "")
            if DIGEST.match(digest):
                return digest
            if method == "GET":
                return "sha256:" + hashlib.sha256(body).hexdigest()
        raise AssertionError("unreachable")

    @staticmethod
    def _error_code(body: bytes) -> str:
        try:
            errors = json.loads(body or b"{}").get("errors") or []
            return ", ".join(str(e.get("code")) for e in errors if isinstance(e, dict))
        except (ValueError, AttributeError):
            return ""

    def _request(self, method: str, url: str, host: str, repository: str, name: str) -> tuple[int, Any, bytes]:
        token = self._tokens.get((host, repository))
        for attempt in range(2):
            headers = {"Accept": ACCEPT, "User-Agent": "mlplane-images"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            status, response_headers, body = self._send(urllib.request.Request(url, method=method, headers=headers), name)
            if status == 401 and attempt == 0:
                token = self._token(response_headers.get("WWW-Authenticate", ""), repository, name)
                self._tokens[(host, repository)] = token
                continue
            if status == 401:
                raise RegistryError("unavailable", f"{name}: the registry refused the token it asked for (401)")
            return status, response_headers, body
        raise AssertionError("unreachable")

    def _token(self, header: str, repository: str, name: str) -> str:
        params = _challenge(header)
        realm = params.pop("realm", "")
        if not realm.startswith(("http://", "https://")):
            raise RegistryError("unavailable", f"{name}: the registry demands credentials without a Bearer token realm ({header or 'no WWW-Authenticate'})")
        params.setdefault("scope", f"repository:{repository}:pull")
        url = f"{realm}{'&' if '?' in realm else '?'}{urllib.parse.urlencode(params)}"
        status, _, body = self._send(urllib.request.Request(url, headers={"User-Agent": "mlplane-images"}), f"{name} (token from {realm})")
        if status != 200:
            raise RegistryError("unavailable", f"{name}: the token service {realm} answered {status}")
        try:
            document = json.loads(body)
            token = document.get("token") or document.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError("unavailable", f"{name}: the token service {realm} sent no token")
        return token

    def _send(self, request: urllib.request.Request, name: str) -> tuple[int, Any, bytes]:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (http(s) only)
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read() or b""
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise RegistryError("unavailable", f"{name}: registry unreachable ({reason})") from None


# --------------------------------------------------------------------------------------------
# What a stack uses
# --------------------------------------------------------------------------------------------


@dataclass
class Item:
    """One image or chart a stack uses, and what resolving it found."""

    kind: str  # image, chart, kind-node
    key: str
    host: str
    repository: str
    reference: str
    expected: str | None = None  # a digest the pin or the lock already names
    digest: str | None = None
    error: RegistryError | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        prefix = "oci://" if self.kind == "chart" else ""
        return f"{prefix}{self.host}/{self.repository}:{self.reference}"

    @property
    def ok(self) -> bool:
        return self.error is None and self.digest is not None and (self.expected is None or self.expected == self.digest)

    def status(self) -> str:
        if self.error is not None:
            return "missing" if self.error.kind == "missing" else "unavailable"
        if self.expected is not None and self.digest != self.expected:
            return "changed"
        return "ok"

    def message(self) -> str:
        if self.error is not None:
            return str(self.error)
        if self.expected is not None and self.digest != self.expected:
            return f"{self.ref}: digest is {self.digest}, but {self.expected} is pinned/locked (the tag moved)"
        return ""

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "key": self.key, "ref": self.ref, "digest": self.digest,
            "expected": self.expected, "status": self.status(), "error": self.message() or None,
        }


def _split(ref: str) -> tuple[str, str]:
    host, _, repository = ref.removeprefix("oci://").partition("/")
    return host, repository


def _strings_and_maps(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings_and_maps(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings_and_maps(value)


def used(result: Any, images_config: Any) -> tuple[list[Item], list[str]]:
    """The pinned images and charts an offline render uses, and notes (charts from local paths)."""
    mirror = images_config.registry_mirror
    strings: set[str] = set()
    pairs: set[tuple[str, str]] = set()
    charts: list[dict[str, Any]] = []
    for record in result.resources:
        if record.type.startswith("kubernetes:helm.sh/") and "chart" in record.inputs:
            charts.append(record.inputs)
        for node in _strings_and_maps(record.inputs):
            if isinstance(node, str):
                strings.add(node)
            elif isinstance(node, dict) and isinstance(node.get("repository"), str) and isinstance(node.get("tag"), str):
                pairs.add((node["repository"], node["tag"]))
    items: list[Item] = []
    for key, image in versions.IMAGES.items():
        ref = image.ref(mirror)
        repo_ref = ref.rsplit(":", 1)[0]
        if any(s == ref or s.startswith(f"{ref}@") for s in strings) or (repo_ref, image.tag) in pairs:
            host, repository = _split(repo_ref)
            items.append(Item("image", key, host, repository, image.tag))
    for minor, node_ref in versions.KIND_NODE_IMAGES.items():
        if node_ref in strings:
            name, digest = node_ref.split("@", 1)
            repository, tag = name.rsplit(":", 1)
            items.append(Item("kind-node", minor, "docker.io", repository, tag, expected=digest))
    notes = []
    for key, chart in versions.CHARTS.items():
        ref = chart.ref(images_config.chart_mirror)
        if any(c.get("chart") == ref for c in charts):
            host, repository = _split(ref)
            items.append(Item("chart", key, host, repository, chart.version))
        elif key in images_config.chart_paths and any(str(c.get("chart")) == str(images_config_path(images_config, key)) for c in charts):
            notes.append(f"chart {key}: local path {images_config.chart_paths[key]} (not resolved)")
    return items, notes


def images_config_path(images_config: Any, key: str) -> Path:
    from mlplane.config import project_path

    return project_path(images_config.chart_paths[key])


def resolve_all(items: list[Item], client: RegistryClient, lock: dict[str, Any] | None) -> None:
    for item in items:
        section = {"image": "images", "chart": "charts"}.get(item.kind)
        entry = (lock or {}).get(section or "", {}).get(item.key) if section else None
        if entry and entry.get("ref") == item.ref and item.expected is None:
            item.expected = entry["digest"]
        try:
            item.digest = client.resolve(item.host, item.repository, item.reference)
        except RegistryError as error:
            item.error = error


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------

images_app = typer.Typer(
    help="Resolve the stack's images and charts to digests (check) and pin them (lock).",
    no_args_is_help=True,
)
StackOpt = Annotated[Optional[str], typer.Option("--stack", help="Platform stack name: reads stacks/Pulumi.<NAME>.yaml.")]


def _load(stack: str | None) -> tuple[Any, Any, Any, dict[str, Any] | None, Path | None]:
    """Source, config (its lock ignored, so a stale lock can be replaced), render, lock, lock path."""
    from mlplane.tooling import offline
    from mlplane.config import stack_files
    from mlplane.config import ConfigError, parse_platform, project_path
    from mlplane.config.keys import TEAM_CONFIG_KEY

    if stack is None:
        raise stack_files.InputError("--stack: give the platform stack whose images to resolve")
    source = stack_files.load_source(stack, None)
    if TEAM_CONFIG_KEY in source.stack_config:
        raise stack_files.InputError(f"--stack: '{stack}' is a team stack; its images are its platform stack's: give that one")
    raw = copy.deepcopy(source.raw) if isinstance(source.raw, dict) else source.raw
    lock_file = None
    if isinstance(raw, dict) and isinstance(raw.get("images"), dict):
        lock_file = raw["images"].pop("lock_file", None)
    try:
        platform = parse_platform(raw, root=source.root)
    except ConfigError as error:
        raise stack_files.InputError(*error.problems) from None
    lock = None
    lock_path = None
    if lock_file is not None:
        if not isinstance(lock_file, str) or not lock_file.strip():
            raise stack_files.InputError(f"{source.root}.images.lock_file: must be a path (given: {lock_file!r})")
        lock_path = project_path(lock_file)
        if lock_path.exists():
            try:
                lock = read_lock(lock_path, platform.images.registry_mirror, platform.images.chart_mirror)
            except LockError as error:
                lock = None
                sys.stderr.write(f"note: images.lock_file: {error}\n")
    result = offline.offline_run(source, platform)
    return source, platform, result, lock, lock_path


def _report(items: list[Item], notes: list[str], as_json: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    if as_json:
        sys.stdout.write(json.dumps({"items": [i.as_json() for i in items], "notes": notes}, indent=2) + "\n")
        return
    table = Table(title="mlplane images (tag -> digest)")
    for column in ("kind", "key", "reference", "digest", "status"):
        table.add_column(column, overflow="fold")
    for item in items:
        table.add_row(item.kind, item.key, item.ref, item.digest or "-", item.status())
    Console(highlight=False, width=200).print(table)
    for note in notes:
        print(f"note: {note}")


@images_app.command("check")
def check_cmd(
    stack: StackOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Write JSON instead of a table.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each registry request.")] = 15.0,
) -> None:
    """Resolve every image and chart the stack uses to its digest.

    Exit 0 when all resolve (and match the pinned or locked digest), 1 when a tag is missing, a
    digest moved or a registry is down or refuses, 2 on invalid input.
    """
    _, platform, result, lock, _ = _load(stack)
    items, notes = used(result, platform.images)
    resolve_all(items, RegistryClient(timeout=timeout), lock)
    _report(items, notes, as_json)
    failed = [i for i in items if not i.ok]
    for item in failed:
        sys.stderr.write(f"error: {item.kind} {item.key}: {item.message()}\n")
    if failed:
        raise typer.Exit(EXIT_FAILED)


@images_app.command("lock")
def lock_cmd(
    stack: StackOpt = None,
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Lock file to write (default: images.lock_file, else stacks/images.<stack>.lock.json).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each registry request.")] = 15.0,
) -> None:
    """Resolve the stack's images and charts and write their digests to the lock file.

    Nothing is written unless every one resolves (exit 1). A file that is not an mlplane lock is
    never overwritten (exit 2). Set ``images.lock_file`` to the path to make the stack use it.
    """
    from mlplane.cli import support as cli_support
    from mlplane.config import stack_files

    source, platform, result, _, configured = _load(stack)
    target = out_file or configured or stack_files.stack_file(source.stack).parent / f"images.{source.stack}.lock.json"
    if target.exists():
        try:
            existing = json.loads(target.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            existing = None
        if not isinstance(existing, dict) or existing.get("generator") != GENERATOR:
            raise stack_files.InputError(f"--out: {target} exists and is not a lock written by `{GENERATOR}`; not overwritten")
    items, notes = used(result, platform.images)
    resolve_all(items, RegistryClient(timeout=timeout), None)
    failed = [i for i in items if not i.ok]
    if failed:
        for item in failed:
            sys.stderr.write(f"error: {item.kind} {item.key}: {item.message()}\n")
        sys.stderr.write(f"error: nothing written to {target}\n")
        raise typer.Exit(EXIT_FAILED)
    document = {
        "generator": GENERATOR,
        "version": LOCK_VERSION,
        "stack": source.stack,
        "images": {i.key: {"ref": i.ref, "digest": i.digest} for i in items if i.kind == "image"},
        "charts": {i.key: {"ref": i.ref, "digest": i.digest} for i in items if i.kind == "chart"},
    }
    cli_support.writing_to(target, lambda: target.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n"))
    print(f"wrote {target}: {len(document['images'])} images, {len(document['charts'])} charts")
    for note in notes:
        print(f"note: {note}")
    if configured is None:
        try:
            shown = target.resolve().relative_to(stack_files.project_dir())
        except ValueError:
            shown = target
        print(f"note: set images.lock_file: {shown} in the stack config to deploy these digests")
