import base64
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

uri = os.environ["MLFLOW_TRACKING_URI"].rstrip("/")
admin = f"{os.environ['MLFLOW_TRACKING_USERNAME']}:{os.environ['MLFLOW_TRACKING_PASSWORD']}"
headers = {"Authorization": "Basic " + base64.b64encode(admin.encode()).decode(), "Content-Type": "application/json"}


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(uri + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


for _ in range(60):
    try:
        with urllib.request.urlopen(uri + "/health", timeout=5):
            break
    except OSError:
        time.sleep(5)
else:
    sys.exit(f"MLflow is unreachable at {uri}")

username, password = os.environ["READER_USERNAME"], os.environ["READER_PASSWORD"]
try:
    call("GET", "/api/2.0/mlflow/users/get?" + urllib.parse.urlencode({"username": username}))
except urllib.error.HTTPError as error:
    if error.code != 404:
        raise
    call("POST", "/api/2.0/mlflow/users/create", {"username": username, "password": password})
    print(f"created user {username}")
else:
    call("PATCH", "/api/2.0/mlflow/users/update-password", {"username": username, "password": password})
    print(f"reset the password of user {username}")
call("PATCH", "/api/2.0/mlflow/users/update-admin", {"username": username, "is_admin": False})
