import os
import time

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

registry = CollectorRegistry()
MultiProcessCollector(registry, path=os.environ["METRICS_DIR"])
start_http_server(int(os.environ["EXPORTER_PORT"]), registry=registry)
while True:
    time.sleep(3600)
