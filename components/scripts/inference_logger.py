"""Inference logging sidecar: a small HTTP proxy in front of ``mlflow models serve``.

Runs in the model pod (the pinned MLflow image: Python 3 with boto3), on the pod's ``http``
port; the model server listens on ``UPSTREAM_PORT`` in the same pod. Every request is forwarded
unchanged; a sample (``SAMPLE_RATE``) of successful ``POST /invocations`` is turned into one JSON
line per input row (its inputs without ``EXCLUDE_FIELDS``, and the prediction) and written in
batches to ``s3://$BUCKET/inference/<namespace>/<model>/<version>/date=<YYYY-MM-DD>/<pod>-<ms>-<n>.jsonl``
(``mlflow models serve`` has no request hook of its own: docs/models.md). Standard library only,
plus boto3 when writing; mlplane ships this file into a ConfigMap and runs it with ``python``.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import random
import socketserver
import sys
import threading
import time
from typing import Any

#: Hop-by-hop headers a proxy must not forward (RFC 9110 7.6.1).
HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
#: Records kept in memory at most while the object store is unreachable; older ones are dropped.
MAX_BUFFER = 10_000
#: The sidecar's own health endpoint (everything else goes to the model).
HEALTH_PATH = "/-/logger/healthz"


def rows(payload: Any) -> list[dict[str, Any]]:
    """The input rows of an MLflow scoring request, as dicts (the formats of ``/invocations``)."""
    if not isinstance(payload, dict):
        return []
    if "dataframe_split" in payload:
        split = payload["dataframe_split"]
        columns = split.get("columns") or [str(i) for i in range(len((split.get("data") or [[]])[0]))]
        return [dict(zip(columns, row)) for row in split.get("data") or []]
    if "dataframe_records" in payload:
        return [r for r in payload["dataframe_records"] if isinstance(r, dict)]
    for key in ("inputs", "instances"):
        if key in payload:
            value = payload[key]
            if isinstance(value, dict):  # columnar: {"a": [1, 2], "b": [3, 4]}
                names = list(value)
                columns = [v if isinstance(v, list) else [v] for v in value.values()]
                return [dict(zip(names, row)) for row in zip(*columns)]
            if isinstance(value, list):
                return [r if isinstance(r, dict) else {"input": r} for r in value]
    return []


def predictions(payload: Any) -> list[Any]:
    if isinstance(payload, dict) and "predictions" in payload:
        value = payload["predictions"]
    else:
        value = payload
    if isinstance(value, dict):  # columnar outputs
        names = list(value)
        return [dict(zip(names, row)) for row in zip(*[v if isinstance(v, list) else [v] for v in value.values()])]
    return value if isinstance(value, list) else [value]


def records(request: bytes, response: bytes, exclude: set[str], now: float) -> list[dict[str, Any]]:
    """One record per input row: timestamp, inputs minus the excluded fields, prediction."""
    try:
        inputs = rows(json.loads(request))
        outputs = predictions(json.loads(response))
    except (ValueError, UnicodeDecodeError):
        return []
    found = []
    for index, row in enumerate(inputs):
        found.append({
            "ts": round(now, 3),
            "inputs": {k: v for k, v in row.items() if k not in exclude},
            "prediction": outputs[index] if index < len(outputs) else None,
        })
    return found


class Logger:
    """Buffers sampled records and writes them to the object store in JSON-lines batches."""

    def __init__(self, env: dict[str, str], client: Any = None):
        self.bucket = env["BUCKET"]
        self.prefix = "/".join(
            [env.get("LOG_PREFIX", "inference"), env["NAMESPACE"], env["MODEL_NAME"], env["MODEL_VERSION"]]
        )
        self.pod = env.get("POD_NAME", "pod")
        self.rate = float(env["SAMPLE_RATE"])
        self.exclude = {f for f in json.loads(env.get("EXCLUDE_FIELDS", "[]"))}
        self.flush_seconds = float(env.get("FLUSH_SECONDS", "60"))
        self.client = client
        self.lock = threading.Lock()
        self.buffer: list[dict[str, Any]] = []
        self.sequence = 0
        self.dropped = 0
        self.written = 0

    def _client(self) -> Any:
        if self.client is None:
            import boto3

            self.client = boto3.client("s3")
        return self.client

    def sample(self) -> bool:
        return random.random() < self.rate

    def add(self, request: bytes, response: bytes) -> None:
        found = records(request, response, self.exclude, time.time())
        with self.lock:
            self.buffer.extend(found)
            if len(self.buffer) > MAX_BUFFER:
                self.dropped += len(self.buffer) - MAX_BUFFER
                del self.buffer[: len(self.buffer) - MAX_BUFFER]
            full = len(self.buffer) >= 1000
        if full:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            batch, self.buffer = self.buffer, []
            self.sequence += 1
            sequence = self.sequence
        if not batch:
            return
        # One object per day partition (a batch can span midnight).
        by_day: dict[str, list[dict[str, Any]]] = {}
        for record in batch:
            by_day.setdefault(time.strftime("%Y-%m-%d", time.gmtime(record["ts"])), []).append(record)
        for day, items in by_day.items():
            key = f"{self.prefix}/date={day}/{self.pod}-{int(time.time() * 1000)}-{sequence}.jsonl"
            body = "".join(json.dumps(r, separators=(",", ":"), default=str) + "\n" for r in items).encode()
            try:
                self._client().put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/x-ndjson")
                self.written += len(items)
            except Exception as error:  # noqa: BLE001 - the model keeps serving whatever the store does
                print(f"inference-logger: writing {key} failed ({error}); keeping {len(items)} records", file=sys.stderr)
                with self.lock:
                    self.buffer[:0] = items
                    if len(self.buffer) > MAX_BUFFER:
                        self.dropped += len(self.buffer) - MAX_BUFFER
                        del self.buffer[: len(self.buffer) - MAX_BUFFER]

    def run_flusher(self, stop: threading.Event) -> None:
        while not stop.wait(self.flush_seconds):
            self.flush()
        self.flush()


def handler(logger: Logger, upstream: tuple[str, int]) -> type[http.server.BaseHTTPRequestHandler]:
    class Proxy(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet access log
            return

        def _proxy(self) -> None:
            if self.path == HEALTH_PATH:
                self._answer(200, b"ok\n", [("Content-Type", "text/plain")])
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
            connection = http.client.HTTPConnection(*upstream, timeout=120)
            try:
                connection.request(self.command, self.path, body=body or None, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
                status, answer_headers = answer.status, answer.getheaders()
            except OSError as error:
                self._answer(502, f"model server unreachable: {error}\n".encode(), [("Content-Type", "text/plain")])
                return
            finally:
                connection.close()
            self._answer(status, data, [(k, v) for k, v in answer_headers if k.lower() not in HOP_HEADERS | {"content-length"}])
            if self.command == "POST" and self.path.split("?")[0] == "/invocations" and status == 200 and logger.sample():
                logger.add(body, data)

        def _answer(self, status: int, data: bytes, headers: list[tuple[str, str]]) -> None:
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _proxy

    return Proxy


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main() -> int:
    env = dict(os.environ)
    logger = Logger(env)
    port = int(env.get("LISTEN_PORT", "8080"))
    upstream = ("127.0.0.1", int(env.get("UPSTREAM_PORT", "8081")))
    stop = threading.Event()
    flusher = threading.Thread(target=logger.run_flusher, args=(stop,), daemon=True)
    flusher.start()
    server = Server(("0.0.0.0", port), handler(logger, upstream))
    import signal

    def shutdown(*_: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    print(f"inference-logger: :{port} -> {upstream[1]}, sample rate {logger.rate}, to s3://{logger.bucket}/{logger.prefix}/", flush=True)
    server.serve_forever()
    stop.set()
    flusher.join(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
