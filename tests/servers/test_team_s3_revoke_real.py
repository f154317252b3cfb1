"""Offboarding a team's storage, run for real: the rendered S3 grant and revoke Jobs' scripts
(mlplane.services.team_grants) against SeaweedFS started with the rendered StatefulSet's command.

Three teams are granted by the platform's rendered grant Jobs and each writes an object with its
own key. The platform is then rendered offboarding 'fraud' with ``delete-data`` and 'risk' with
``keep-data`` (what `mlplane team destroy [--keep-data]` sets), and their revoke Jobs run:

- both identities are gone (their keys are refused), 'fraud''s bucket is deleted with its
  object, 'risk''s bucket and object stay;
- 'keep', not offboarded, keeps its key and its data;
- each revoke Job run again succeeds and changes nothing (the command is re-run after a failure);
- granting 'risk' again hands it the kept bucket with its object (docs/teams.md: re-creating a
  team with its data, and the warning that goes with it).

Kubernetes itself is not run (the Job's container command and env are run as a process, with
the in-cluster SeaweedFS address swapped for the local one).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from mlplane.tooling.render import Capture

from test_team_grants import platform_with

pytestmark = pytest.mark.servers

SERVERS_BIN = Path.home() / ".cache/mlplane/servers/bin"
WEED = SERVERS_BIN / "weed"
#: The in-cluster address of SeaweedFS' admin Service, as the rendered Jobs name it.
ADMIN_HOST = "seaweedfs-admin.mlplane-storage.svc.cluster.local"
TEAMS = ("fraud", "risk", "keep")

needs_weed = pytest.mark.skipif(not WEED.exists(), reason="weed is missing: run scripts/bootstrap-servers.sh")


def _pair_port() -> int:
    """A free port p with p + 10000 free too (SeaweedFS serves gRPC there)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair")


def _objects(result: Capture, kind: str) -> list[dict[str, Any]]:
    return [m for m in result.manifests() if m["kind"] == kind]


def _secret_value(result: Capture, name: str, key: str) -> str:
    [secret] = [m for m in _objects(result, "Secret") if m["metadata"]["name"] == name]
    return str(secret["stringData"][key])


def _container(result: Capture, kind: str, name_prefix: str) -> dict[str, Any]:
    [found] = [m for m in _objects(result, kind) if m["metadata"]["name"].startswith(name_prefix)]
    return found["spec"]["template"]["spec"]["containers"][0]


class Weed:
    """SeaweedFS on loopback, started with the rendered StatefulSet's arguments (ports and data
    directory swapped); runs rendered Job containers against it."""

    def __init__(self, work: Path, rendered: Capture):
        self.work = work
        self.ports = {"master": _pair_port(), "volume": _pair_port(), "filer": _pair_port(), "s3": _pair_port(),
                      "metrics": _pair_port()}
        container = _container(rendered, "StatefulSet", "seaweedfs")
        local = {"-dir": str(work / "data"), "-ip.bind": "127.0.0.1", "-master.port": self.ports["master"],
                 "-volume.port": self.ports["volume"], "-filer.port": self.ports["filer"],
                 "-s3.port": self.ports["s3"], "-metricsPort": self.ports["metrics"]}
        args = []
        for arg in container["args"]:
            flag, sep, _ = arg.partition("=")
            args.append(f"{flag}={local[flag]}" if sep and flag in local else arg)
        (work / "data").mkdir()
        self.admin = (_secret_value(rendered, "seaweedfs-admin-credentials", "access-key-id"),
                      _secret_value(rendered, "seaweedfs-admin-credentials", "secret-access-key"))
        env = {"PATH": os.environ["PATH"], "HOME": str(work), "AWS_ACCESS_KEY_ID": self.admin[0],
               "AWS_SECRET_ACCESS_KEY": self.admin[1]}
        self.log = work / "weed.log"
        self.process = subprocess.Popen([str(WEED), *args, "-ip=127.0.0.1"], env=env, cwd=work / "data",
                                        stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"
        self._wait_ready()

    def _wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"weed exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                self.client(*self.admin).list_buckets()
                return
            except Exception:  # noqa: BLE001 (not up yet: connection refused, 503, ...)
                time.sleep(1)
        pytest.fail(f"SeaweedFS' S3 API did not answer within {timeout}s:\n{self.log.read_text()[-3000:]}")

    def client(self, key_id: str, secret: str) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=key_id, aws_secret_access_key=secret,
                            region_name="us-east-1", config=Config(retries={"max_attempts": 1}))

    def run_job(self, rendered: Capture, name_prefix: str) -> subprocess.CompletedProcess[str]:
        """A rendered Job's container (command and env; secretKeyRefs resolved from the render,
        the admin Service's address swapped for the local master and filer)."""
        container = _container(rendered, "Job", name_prefix)
        env = {"PATH": f"{SERVERS_BIN}:{os.environ['PATH']}"}
        for item in container["env"]:
            if "valueFrom" in item:
                ref = item["valueFrom"]["secretKeyRef"]
                value = _secret_value(rendered, ref["name"], ref["key"])
            else:
                value = str(item["value"])
            value = value.replace(f"{ADMIN_HOST}:9333", f"127.0.0.1:{self.ports['master']}")
            env[item["name"]] = value.replace(f"{ADMIN_HOST}:8888", f"127.0.0.1:{self.ports['filer']}")
        home = self.work / f"home-{name_prefix}"
        home.mkdir(exist_ok=True)
        env["HOME"] = str(home)
        assert container["command"][:2] == ["/bin/sh", "-c"]
        return subprocess.run(container["command"], env=env, capture_output=True, text=True, timeout=300, check=False)

    def buckets(self) -> set[str]:
        return {b["Name"] for b in self.client(*self.admin).list_buckets()["Buckets"]}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _keys(result: Capture, team: str) -> tuple[str, str]:
    secret = f"s3-identity-team-{team}"
    return _secret_value(result, secret, "access-key-id"), _secret_value(result, secret, "secret-access-key")


def _until(check: Any, what: str, timeout: float = 30) -> None:
    """SeaweedFS' S3 gateway picks identity changes up from the filer asynchronously."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as error:  # noqa: BLE001
            last = error
        time.sleep(0.5)
    pytest.fail(f"{what} within {timeout}s (last error: {last})")


def _refused(client: Any, bucket: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        client.list_objects_v2(Bucket=bucket)
    except ClientError as error:
        return error.response["Error"]["Code"] in ("InvalidAccessKeyId", "AccessDenied", "SignatureDoesNotMatch")
    return False


@pytest.fixture(scope="module")
def granted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Weed, Capture]]:
    """SeaweedFS with the three teams granted and one object written by each with its own key."""
    if shutil.which("timeout") is None:
        pytest.skip("coreutils' timeout is missing (the Job scripts call it)")
    pytest.importorskip("boto3")
    if not WEED.exists():
        pytest.skip("weed is missing: run scripts/bootstrap-servers.sh")
    rendered = platform_with(*TEAMS)
    weed = Weed(tmp_path_factory.mktemp("weed"), rendered)
    try:
        for team in TEAMS:
            done = weed.run_job(rendered, f"s3-grant-team-{team}")
            assert done.returncode == 0, done.stdout + done.stderr
        for team in TEAMS:
            client = weed.client(*_keys(rendered, team))
            _until(lambda: client.put_object(Bucket=f"team-{team}", Key="runs/1.json", Body=team.encode()),
                   f"team {team} writes its bucket with its key")
        yield weed, rendered
    finally:
        weed.stop()


@needs_weed
def test_the_revoke_jobs_remove_identities_and_delete_or_keep_the_data(granted: tuple[Weed, Capture]) -> None:
    weed, before = granted
    offboarding = platform_with(*TEAMS, offboarding={"fraud": "delete-data", "risk": "keep-data"})
    # Only the offboarded teams' grant Jobs became revoke Jobs.
    names = {m["metadata"]["name"].rsplit("-", 1)[0] for m in _objects(offboarding, "Job")}
    assert {"s3-revoke-team-fraud", "s3-revoke-team-risk", "s3-grant-team-keep"} <= names
    assert not names & {"s3-grant-team-fraud", "s3-grant-team-risk", "s3-revoke-team-keep"}
    for team in ("fraud", "risk"):
        done = weed.run_job(offboarding, f"s3-revoke-team-{team}")
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"identity team-{team} removed" in done.stdout

    admin = weed.client(*weed.admin)
    # Both identities are gone: their keys are refused, even on the bucket that stays.
    for team in ("fraud", "risk"):
        client = weed.client(*_keys(before, team))
        _until(lambda: _refused(client, f"team-{team}"), f"team {team}'s key is refused")
    # delete-data: the bucket and its object are gone; keep-data: both stay.
    assert "team-fraud" not in weed.buckets()
    assert "team-risk" in weed.buckets()
    assert admin.get_object(Bucket="team-risk", Key="runs/1.json")["Body"].read() == b"risk"
    # The team that is not offboarded keeps its key and its data.
    keep = weed.client(*_keys(before, "keep"))
    assert keep.get_object(Bucket="team-keep", Key="runs/1.json")["Body"].read() == b"keep"

    # Re-running a revoke (the command is re-run after a failed step) succeeds and changes nothing.
    for team in ("fraud", "risk"):
        done = weed.run_job(offboarding, f"s3-revoke-team-{team}")
        assert done.returncode == 0, done.stdout + done.stderr
    assert {"team-risk", "team-keep"} <= weed.buckets() and "team-fraud" not in weed.buckets()
    assert admin.get_object(Bucket="team-risk", Key="runs/1.json")["Body"].read() == b"risk"

    # A team admitted again under the kept name gets the kept bucket, with its data.
    again = platform_with(*TEAMS)
    done = weed.run_job(again, "s3-grant-team-risk")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bucket team-risk exists" in done.stdout
    risk = weed.client(*_keys(again, "risk"))
    _until(lambda: risk.get_object(Bucket="team-risk", Key="runs/1.json")["Body"].read() == b"risk",
           "the re-admitted team reads the kept object")
