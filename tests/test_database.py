"""The Database component: bundled PostgreSQL or an external server."""

from mlplane.database import Database, DatabaseArgs
from mlplane.render import SECRET_MASK

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
