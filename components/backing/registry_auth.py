"""Registry authentication: distribution's token auth with per-team repository scopes.

The bundled registry (distribution, ``registry:3``) runs with ``auth.token``: it refuses every
request without a bearer token signed by a key it trusts, and the token names the repositories
and actions it allows (distribution ``docs/content/spec/auth/token.md``, ``jwt.md``). The tokens
come from :data:`TOKEN_SERVER_SCRIPT`, mlplane's own token server (Python, standard library plus
``cryptography``, which the pinned MLflow image carries), with a static policy by identity:

============================  =====================================================
identity (Basic auth user)    what its tokens allow
============================  =====================================================
``platform``                  push and pull on every repository, the catalog
``push.<team>``               push and pull on ``<team>/*``, pull on ``platform.shared/*``
``pull.<team>``               pull on ``<team>/*``
anyone else / bad password    nothing (401)
============================  =====================================================

No identity is ever granted ``delete`` (and the registry runs with ``storage.delete.enabled:
false``). ``platform.shared`` contains a dot, so no team name (a DNS label) can own it.

Passwords are derived, not stored: ``HMAC-SHA256(auth secret, identity)`` (:func:`password`),
with the auth secret a ``pulumi-random`` password of the platform stack. The token server needs
only that secret to check any identity, and a team stack, which already reads the platform's
secret outputs, derives its own two passwords without the platform stack changing.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import re
from typing import Any, Sequence

#: Identity of the platform's CI (and the operator on the host).
PLATFORM_IDENTITY = "platform"
#: Repositories every team's push identity may pull (base images the platform publishes).
SHARED_PREFIX = "platform.shared"
#: ``service`` the registry names in its challenge and the tokens' audience.
SERVICE = "mlplane-registry"
#: ``iss`` of the tokens.
ISSUER = "mlplane-registry-auth"
#: Seconds a token is valid (distribution's own example token server uses 5 minutes).
TOKEN_TTL = 300
#: Port the token server listens on.
TOKEN_PORT = 5002
#: HMAC-SHA256 output in hex: a 64-character password.
_TEAM = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def push_identity(team: str) -> str:
    """The identity a team's runners push with."""
    return f"push.{team}"


def pull_identity(team: str) -> str:
    """The identity a team's model servers pull with."""
    return f"pull.{team}"


def password(secret: str, identity: str) -> str:
    """The password of ``identity``: HMAC-SHA256 of the identity under the auth secret, in hex."""
    return hmac.new(secret.encode(), identity.encode(), hashlib.sha256).hexdigest()


def allowed_actions(identity: str, kind: str, name: str) -> set[str]:
    """What the static policy lets ``identity`` do on resource ``kind:name`` (see module docstring).

    The token server embeds this very function (:data:`TOKEN_SERVER_SCRIPT`), so the policy the
    tests check is the policy that runs.
    """
    if identity == PLATFORM_IDENTITY:
        if kind == "registry" and name == "catalog":
            return {"*"}
        return {"pull", "push"} if kind == "repository" else set()
    role, _, team = identity.partition(".")
    if kind != "repository" or role not in ("push", "pull") or not _TEAM.match(team):
        return set()
    if name.startswith(team + "/"):
        return {"pull", "push"} if role == "push" else {"pull"}
    if role == "push" and name.startswith(SHARED_PREFIX + "/"):
        return {"pull"}
    return set()


def docker_config_json(hosts: Sequence[str], identity: str, secret: str) -> str:
    """A ``kubernetes.io/dockerconfigjson`` document: ``identity`` on each of ``hosts``."""
    token = password(secret, identity)
    auth = base64.b64encode(f"{identity}:{token}".encode()).decode()
    entry = {"username": identity, "password": token, "auth": auth}
    return json.dumps({"auths": {host: entry for host in hosts}}, sort_keys=True)


def signing_material(seed: str) -> tuple[str, str]:
    """The token signing key and its self-signed certificate (PEM), derived from ``seed``.

    Deterministic (an ECDSA P-256 key whose scalar comes from the seed, RFC 6979 signing, fixed
    serial and validity), so repeated ``pulumi up`` runs change nothing; the seed is the
    ``pulumi-random`` auth secret. The registry trusts the certificate (``rootcertbundle``); the
    token server puts it in each token's ``x5c`` header.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256 (SEC 2)
    digest = hashlib.sha256(b"mlplane-registry-token-key\0" + seed.encode()).digest()
    key = ec.derive_private_key(int.from_bytes(digest, "big") % (order - 1) + 1, ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    serial = int.from_bytes(hashlib.sha256(b"serial\0" + digest).digest()[:16], "big") >> 1
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))
        .not_valid_after(datetime.datetime(2126, 1, 1, tzinfo=datetime.timezone.utc))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


def registry_config(*, realm: str, rootcertbundle: str, data_dir: str, addr: str) -> dict[str, Any]:
    """distribution's configuration: filesystem storage, deletes off, token auth.

    Keys from distribution ``docs/content/about/configuration.md`` (``auth.token``: realm,
    service, issuer, rootcertbundle; ``storage.delete.enabled``); the same document runs in the
    registry container and, in the tests, in Debian's ``docker-registry`` 2.8.
    """
    return {
        "version": 0.1,
        "log": {"level": "info", "fields": {"service": "registry"}},
        "storage": {
            "filesystem": {"rootdirectory": data_dir},
            "delete": {"enabled": False},
        },
        "http": {"addr": addr, "headers": {"X-Content-Type-Options": ["nosniff"]}},
        "auth": {
            "token": {
                "realm": realm,
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": rootcertbundle,
            }
        },
    }


#: The token server (distribution's token protocol: GET ?service=&scope=... with Basic auth,
#: answer {"token", "access_token", "expires_in", "issued_at"}). Environment: TOKEN_SECRET,
#: TOKEN_KEY_PEM, TOKEN_CERT_PEM, TOKEN_PORT, TOKEN_ADDR (default 0.0.0.0). Prints no secret.
TOKEN_SERVER_SCRIPT = (
    '''\
import base64
import hashlib
import hmac
import http.server
import json
import os
import re
import sys
import time
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

'''
    + f"PLATFORM_IDENTITY = {PLATFORM_IDENTITY!r}\n"
    + f"SHARED_PREFIX = {SHARED_PREFIX!r}\n"
    + f"SERVICE = {SERVICE!r}\n"
    + f"ISSUER = {ISSUER!r}\n"
    + f"TOKEN_TTL = {TOKEN_TTL!r}\n"
    + f"_TEAM = re.compile({_TEAM.pattern!r})\n"
    + '''
SECRET = os.environ["TOKEN_SECRET"].encode()
KEY = serialization.load_pem_private_key(os.environ["TOKEN_KEY_PEM"].encode(), password=None)
CERT = x509.load_pem_x509_certificate(os.environ["TOKEN_CERT_PEM"].encode())
X5C = [base64.b64encode(CERT.public_bytes(serialization.Encoding.DER)).decode()]
SCOPE = re.compile(r"^([a-z]+)(?:\\([a-z0-9]+\\))?:([^:]+):([a-z*,]+)$")


'''
    + "\n"
)


def _policy_source() -> str:
    import inspect

    return inspect.getsource(allowed_actions)


TOKEN_SERVER_SCRIPT += (
    _policy_source()
    + '''

def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def authenticate(header):
    if not header.startswith("Basic "):
        return None
    try:
        user, _, given = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    expected = hmac.new(SECRET, user.encode(), hashlib.sha256).hexdigest()
    return user if user and hmac.compare_digest(given.encode(), expected.encode()) else None


def token(identity, scopes):
    access = []
    for scope in scopes:
        match = SCOPE.match(scope)
        if not match:
            continue
        kind, name, actions = match.groups()
        granted = sorted(set(actions.split(",")) & allowed_actions(identity, kind, name))
        if granted:
            access.append({"type": kind, "name": name, "actions": granted})
    now = int(time.time())
    header = {"typ": "JWT", "alg": "ES256", "x5c": X5C}
    claims = {
        "iss": ISSUER, "sub": identity, "aud": SERVICE, "exp": now + TOKEN_TTL, "nbf": now - 10,
        "iat": now, "jti": b64(os.urandom(16)), "access": access,
    }
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    r, s = decode_dss_signature(KEY.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big")), now, access


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "mlplane-registry-auth"

    def reply(self, code, body, extra=()):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in extra:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/healthz":
            return self.reply(200, {"status": "ok"})
        if url.path != "/token":
            return self.reply(404, {"error": "not found"})
        query = urllib.parse.parse_qs(url.query)
        if query.get("service", [SERVICE]) != [SERVICE]:
            return self.reply(400, {"error": "unknown service"})
        identity = authenticate(self.headers.get("Authorization", ""))
        if identity is None:
            return self.reply(401, {"error": "authentication required"}, [("WWW-Authenticate", 'Basic realm="mlplane-registry"')])
        signed, now, access = token(identity, query.get("scope", []))
        granted = ";".join(f"{a['type']}:{a['name']}:{','.join(a['actions'])}" for a in access) or "-"
        sys.stderr.write(f"token for {identity}: {granted}\\n")
        self.reply(200, {"token": signed, "access_token": signed, "expires_in": TOKEN_TTL,
                         "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))})

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer((os.environ.get("TOKEN_ADDR", "0.0.0.0"), int(os.environ["TOKEN_PORT"])), Handler)
server.daemon_threads = True
sys.stderr.write(f"mlplane registry token server on {server.server_address}\\n")
server.serve_forever()
'''
)
