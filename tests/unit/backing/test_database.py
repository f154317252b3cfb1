"""The Database component: bundled PostgreSQL or an external server."""

from mlplane.backing.database import Database, DatabaseArgs
from mlplane.tooling.render import SECRET_MASK

from conftest import opts


def build(platform, config, root):
    db = Database("mlplane-database", DatabaseArgs(config.database, platform), opts(root))
    return {"db": db, "host": db.host, "password": db.password, "username": db.username}


def test_bundled_creates_namespace_secret_service_statefulset(run_component):
    result, _ = run_component(build)
    names = {r.name: r.type for r in result.resources if r.parent and r.parent.endswith("::mlplane-database")}
    assert names == {
        "mlplane-database-namespace": "kubernetes:core/v1:Namespace",
        "mlplane-database-password": "random:index/randomPassword:RandomPassword",
        "mlplane-database-credentials": "kubernetes:core/v1:Secret",
        "mlplane-database-service": "kubernetes:core/v1:Service",
        "mlplane-database-network-policy": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        "mlplane-database-default-deny": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        "mlplane-database-allow-dns": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        "mlplane-database-statefulset": "kubernetes:apps/v1:StatefulSet",
    }
    assert result.named("mlplane-database").type == "mlplane:database:Database"


def test_password_is_secret_and_never_an_env_literal(run_component):
    result, out = run_component(build)
    assert out["password"] == SECRET_MASK
    assert result.named("mlplane-database-credentials").masked_inputs()["stringData"] == SECRET_MASK
    sts = result.named("mlplane-database-statefulset").manifest()
    env = sts["spec"]["template"]["spec"]["containers"][0]["env"]
    assert all("value" not in e for e in env if e["name"].startswith("POSTGRES_"))


def test_stateful_set_is_protected_unless_throwaway(run_component):
    result, _ = run_component(build)
    sts = result.named("mlplane-database-statefulset")
    assert sts.protect and sts.retain_on_delete
    result, _ = run_component(build, {"lifecycle": {"throwaway": True}}, protect=False)
    sts = result.named("mlplane-database-statefulset")
    assert not sts.protect and not sts.retain_on_delete


def test_external_database_creates_nothing_in_cluster(run_component):
    raw = {"database": {"mode": "external", "external": {"host": "db.example.com", "password_key": "dbPassword"}}}
    result, out = run_component(build, raw)
    children = [r for r in result.resources if r.parent and r.parent.endswith("::mlplane-database")]
    assert children == []
    assert out["host"] == "db.example.com"
    assert out["password"] == SECRET_MASK


# ------------------------------------------------------------------------------------ probes


def probes(run_component) -> dict:
    result, _ = run_component(build)
    (container,) = result.named("mlplane-database-statefulset").manifest()["spec"]["template"]["spec"]["containers"]
    return {kind: container[f"{kind}Probe"] for kind in ("startup", "liveness", "readiness")}


def test_startup_probe_gives_crash_recovery_up_to_half_an_hour(run_component):
    found = probes(run_component)
    startup = found["startup"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert 10 * 60 <= budget <= 30 * 60
    # Liveness would kill a server that rejects connections for about a minute otherwise.
    assert found["liveness"]["periodSeconds"] * found["liveness"]["failureThreshold"] <= 120
    assert startup["exec"] == found["readiness"]["exec"]


def test_liveness_and_readiness_ask_different_questions(run_component):
    found = probes(run_component)
    assert found["liveness"]["exec"] != found["readiness"]["exec"]
    assert found["liveness"]["exec"]["command"][:2] == ["sh", "-c"]
    assert "test $? -le 1" in found["liveness"]["exec"]["command"][2]  # rejecting (1) is alive
    assert found["readiness"]["exec"]["command"][0] == "pg_isready"


def _postgres_bin():
    import glob
    import shutil
    from pathlib import Path

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def test_probes_against_a_real_server_that_is_recovering(run_component):
    """A real PostgreSQL that answers but rejects connections (a standby with hot standby off,
    as a server replaying WAL after a crash does): the rendered liveness command passes, the
    readiness/startup command fails; with the server gone, liveness fails too."""
    import os
    import pwd
    import shutil
    import socket
    import subprocess
    import tempfile
    import time
    from pathlib import Path

    import pytest

    bin_dir = _postgres_bin()
    if bin_dir is None or shutil.which("pg_isready") is None:
        pytest.skip("PostgreSQL server binaries not found: apt-get install -y postgresql")
    found = probes(run_component)
    user = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            user = pwd.getpwnam("nobody")
    as_user = {"user": user.pw_uid, "group": user.pw_gid} if user else {}
    # Not under pytest's tmp_path: its parents are private to root, and PostgreSQL refuses root.
    work = Path(tempfile.mkdtemp(prefix="mlplane-pg-probes-"))
    if user:
        os.chown(work, user.pw_uid, user.pw_gid)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PGPORT": str(port)}
    data = work / "data"

    def probe(kind: str) -> int:
        return subprocess.run(found[kind]["exec"]["command"], env=env, timeout=15, check=False).returncode

    def pg(*args: str) -> None:
        done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False, **as_user)
        assert done.returncode == 0, done.stderr

    try:
        pg(str(bin_dir / "initdb"), "-D", str(data), "-U", "mlflow", "--auth-local=trust", "--no-sync")
        assert probe("liveness") != 0  # nothing listens yet
        (data / "standby.signal").touch()
        if user:
            os.chown(data / "standby.signal", user.pw_uid, user.pw_gid)
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {work} -c hot_standby=off -c fsync=off"
        pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(work / "log"), "start")
        try:
            deadline = time.monotonic() + 30
            while subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"], env=env, check=False).returncode != 1:
                assert time.monotonic() < deadline, (work / "log").read_text()
                time.sleep(0.2)
            assert probe("liveness") == 0
            assert probe("readiness") != 0
            assert probe("startup") != 0
        finally:
            pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        assert probe("liveness") != 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
