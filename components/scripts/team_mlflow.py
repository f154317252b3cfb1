import base64
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

uri = os.environ["MLFLOW_TRACKING_URI"].rstrip("/")
admin = f"{os.environ['MLFLOW_ADMIN_USERNAME']}:{os.environ['MLFLOW_ADMIN_PASSWORD']}"
auth = "Basic " + base64.b64encode(admin.encode()).decode()
workspace, username, role_name = os.environ["TEAM_WORKSPACE"], os.environ["TEAM_USERNAME"], os.environ["TEAM_ROLE"]


def call(method, path, body=None, query=None):
    url = uri + path + ("?" + urllib.parse.urlencode(query) if query else "")
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
    return json.loads(text) if text.strip() else {}


def exists(path, query=None):
    try:
        call("GET", path, query=query)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return False
        raise
    return True


for _ in range(60):
    try:
        with urllib.request.urlopen(uri + "/health", timeout=5):
            break
    except OSError:
        time.sleep(5)
else:
    sys.exit(f"MLflow is unreachable at {uri}")

user_exists = exists("/api/2.0/mlflow/users/get", {"username": username})
workspace_exists = exists(f"/api/3.0/mlflow/workspaces/{workspace}")
if os.environ["TEAM_ACTION"] == "revoke":
    delete_data = os.environ["TEAM_DELETE_DATA"] == "true"
    if user_exists:
        call("DELETE", "/api/2.0/mlflow/users/delete", {"username": username})
        print(f"deleted user {username}")
    if workspace_exists and delete_data:
        call("DELETE", f"/api/3.0/mlflow/workspaces/{workspace}", query={"mode": "CASCADE"})
        print(f"deleted workspace {workspace} and everything in it")
    if exists("/api/2.0/mlflow/users/get", {"username": username}):
        sys.exit(f"user {username} still exists")
    if delete_data and exists(f"/api/3.0/mlflow/workspaces/{workspace}"):
        sys.exit(f"workspace {workspace} still exists")
    sys.exit(0)

if not workspace_exists:
    call("POST", "/api/3.0/mlflow/workspaces", {"name": workspace, "description": os.environ["TEAM_DESCRIPTION"]})
    print(f"created workspace {workspace}")
password = os.environ["TEAM_PASSWORD"]
if user_exists:
    call("PATCH", "/api/2.0/mlflow/users/update-password", {"username": username, "password": password})
    print(f"reset the password of user {username}")
else:
    call("POST", "/api/2.0/mlflow/users/create", {"username": username, "password": password})
    print(f"created user {username}")
call("PATCH", "/api/2.0/mlflow/users/update-admin", {"username": username, "is_admin": False})
roles = call("GET", "/api/3.0/mlflow/roles/list", query={"workspace": workspace}).get("roles", [])
role = next((r for r in roles if r["name"] == role_name), None)
if role is None:
    role = call("POST", "/api/3.0/mlflow/roles/create", {"name": role_name, "workspace": workspace})["role"]
grant = {"resource_type": "workspace", "resource_pattern": "*", "permission": "MANAGE"}
if not any(all(p.get(k) == v for k, v in grant.items()) for p in role.get("permissions", [])):
    call("POST", "/api/3.0/mlflow/roles/permissions/add", {"role_id": role["id"], **grant})
assigned = call("GET", "/api/3.0/mlflow/users/roles/list", query={"username": username}).get("roles", [])
if not any(r["id"] == role["id"] for r in assigned):
    call("POST", "/api/3.0/mlflow/roles/assign", {"username": username, "role_id": role["id"]})
print(f"user {username} manages workspace {workspace} and nothing else")
